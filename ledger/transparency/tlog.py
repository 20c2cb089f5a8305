"""The transparency log: sealer, stored tree, signed checkpoints, tiles and proofs (design.md 3.3).

The sealer follows ``ledger_index`` in sequence order (the store's notification ids, which commit
in order but may have gaps) and gives each event the next contiguous leaf index. One sealing
transaction writes the entries, every newly completed tree node, the new position and the signed
checkpoint, so a crash leaves either all of a batch or none of it. Before a checkpoint is signed the
new tree is proved consistent with the previous checkpoint, from the stored hashes.

Tables (created by :func:`create_tables`):

- ``log_entries``: leaf index -> ledger sequence and the entry bytes (digests only);
- ``log_nodes``: ``(level, idx)`` -> hash of the complete subtree of leaves
  ``[idx * 2**level, (idx + 1) * 2**level)``; level 0 holds the leaf hashes;
- ``log_state``: one row, the sealed tree size and the last sealed sequence;
- ``log_checkpoints``: every signed checkpoint note by tree size;
- ``log_cosignatures``: witness cosignature lines on checkpoints.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.core import envelope, jcs, merkle, notes, tiles
from ledger.storage.store import Store, SubjectErased, fetch_tuples, rowcount
from ledger.transparency.verify import StoredEnvelope

SEALER_LOCK = 0x504C5345414C  # "PLSEAL": one sealing transaction at a time on PostgreSQL


def _blob(store: Store) -> str:
    return "BYTEA" if store.is_postgres else "BLOB"


def create_tables(store: Store) -> None:
    blob = _blob(store)
    statements = [
        f"CREATE TABLE IF NOT EXISTS log_entries (leaf_index BIGINT PRIMARY KEY, sequence BIGINT NOT NULL UNIQUE, entry {blob} NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS log_nodes (level INTEGER NOT NULL, idx BIGINT NOT NULL, hash {blob} NOT NULL, PRIMARY KEY (level, idx))",
        "CREATE TABLE IF NOT EXISTS log_state (id INTEGER PRIMARY KEY CHECK (id = 1), tree_size BIGINT NOT NULL, last_sequence BIGINT NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS log_checkpoints (tree_size BIGINT PRIMARY KEY, root {blob} NOT NULL, note TEXT NOT NULL, "
        "signed_at TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS log_cosignatures (tree_size BIGINT NOT NULL, witness TEXT NOT NULL, line TEXT NOT NULL, "
        "PRIMARY KEY (tree_size, witness))",
    ]
    with store.cursor(commit=True) as cur:
        for statement in statements:
            cur.execute(statement)
        cur.execute(store.sql("SELECT COUNT(*) FROM log_state"))
        if _scalar(cur) == 0:
            cur.execute(store.sql("INSERT INTO log_state (id, tree_size, last_sequence) VALUES (1, 0, 0)"))


def _scalar(cur: Any) -> Any:
    return fetch_tuples(cur)[0][0]


class LogError(RuntimeError):
    """The stored log is not in a state the sealer may extend (e.g. an inconsistent checkpoint)."""


@dataclass(frozen=True)
class SealResult:
    sealed: int
    tree_size: int
    root: bytes


class TreeReader:
    """Reads of the stored tree: O(log n) hashes per proof, fetched in one query."""

    def __init__(self, store: Store, cur: Any = None):
        self.store = store
        self._cur = cur

    def _query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self._cur is not None:
            self._cur.execute(self.store.sql(statement), tuple(params))
            return fetch_tuples(self._cur)
        return self.store.query(statement, params)

    def nodes(self, wanted: Sequence[merkle.NodeId]) -> dict[merkle.NodeId, bytes]:
        found: dict[merkle.NodeId, bytes] = {}
        for start in range(0, len(wanted), 200):
            chunk = wanted[start : start + 200]
            where = " OR ".join("(level = ? AND idx = ?)" for _ in chunk)  # each term a primary-key probe, on both databases
            params = [v for node in chunk for v in node]
            for level, idx, h in self._query(f"SELECT level, idx, hash FROM log_nodes WHERE {where}", params):
                found[(int(level), int(idx))] = bytes(h)
        missing = [n for n in wanted if n not in found]
        if missing:
            raise LogError(f"the stored tree is missing node(s) {missing[:3]} (truncated or not yet sealed)")
        return found

    def build(self, construct: Callable[[merkle.NodeSource], Any]) -> Any:
        """Run a proof or root construction against the stored nodes it needs, fetched together."""
        nodes = self.nodes(merkle.plan(construct))
        return construct(lambda level, idx: nodes[(level, idx)])

    def root(self, size: int) -> bytes:
        return self.build(lambda get: merkle.tree_hash(get, size))  # type: ignore[no-any-return]

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return self.build(lambda get: merkle.inclusion_proof(get, index, size))  # type: ignore[no-any-return]

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        return self.build(lambda get: merkle.consistency_proof(get, size1, size2))  # type: ignore[no-any-return]

    def frontier(self, size: int) -> merkle.CompactRange:
        return self.build(lambda get: merkle.CompactRange.load(get, size))  # type: ignore[no-any-return]


class Sealer:
    """Follows the ledger in sequence order and appends it to the Merkle log (a background follower)."""

    name = "sealer"

    def __init__(
        self,
        store: Store,
        origin: str,
        signing_key: Ed25519PrivateKey,
        batch_size: int = 5000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.store = store
        self.origin = origin
        self.signing_key = signing_key
        self.batch_size = batch_size
        self.clock = clock

    def step(self) -> int:
        return self.seal_batch().sealed

    def seal_all(self, on_progress: Callable[[int], None] | None = None) -> int:
        total = 0
        while done := self.step():
            total += done
            if on_progress:
                on_progress(done)
        return total

    def seal_batch(self) -> SealResult:
        with self.store.cursor(commit=True) as cur:
            if self.store.is_postgres:
                cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (SEALER_LOCK,))
                if not _scalar(cur):
                    return SealResult(0, -1, b"")  # another sealer is in a transaction; nothing done here
            cur.execute("SELECT tree_size, last_sequence FROM log_state WHERE id = 1" + (" FOR UPDATE" if self.store.is_postgres else ""))
            size, last_sequence = (int(v) for v in fetch_tuples(cur)[0])
            cur.execute(
                self.store.sql(
                    "SELECT sequence, received_at, event_digest, envelope_digest FROM ledger_index "
                    "WHERE sequence > ? ORDER BY sequence LIMIT ?"
                ),
                (last_sequence, self.batch_size),
            )
            rows = fetch_tuples(cur)
            reader = TreeReader(self.store, cur)
            if not rows:
                self._ensure_first_checkpoint(cur, size, reader)
                return SealResult(0, size, b"")
            tree = reader.frontier(size)
            entries, nodes = [], []
            for sequence, received_at, event_digest, envelope_digest in rows:
                entry = tiles.log_entry(tree.size, received_at, event_digest, envelope_digest)
                entries.append((tree.size, sequence, entry))
                nodes.extend(tree.append(merkle.leaf_hash(entry)))
            self._insert(cur, "log_entries (leaf_index, sequence, entry)", entries)
            self._insert(cur, "log_nodes (level, idx, hash)", nodes)
            cur.execute(
                self.store.sql("UPDATE log_state SET tree_size = ?, last_sequence = ? WHERE id = 1 AND tree_size = ?"),
                (tree.size, rows[-1][0], size),
            )
            if rowcount(cur) != 1:
                raise LogError("another sealer moved the log while this batch was sealed; the batch is rolled back")
            root = tree.root()
            self._sign_checkpoint(cur, reader, tree.size, root)
            return SealResult(len(rows), tree.size, root)

    def _insert(self, cur: Any, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
        if self.store.is_postgres:  # COPY: the bulk path PostgreSQL rewards (about 3x executemany here)
            with cur.copy(f"COPY {table} FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            cur.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(rows[0]))})", rows)

    def _ensure_first_checkpoint(self, cur: Any, size: int, reader: TreeReader) -> None:
        cur.execute("SELECT COUNT(*) FROM log_checkpoints")
        if _scalar(cur) == 0:
            self._sign_checkpoint(cur, reader, size, reader.root(size) if size else merkle.EMPTY_ROOT)

    def _sign_checkpoint(self, cur: Any, reader: TreeReader, size: int, root: bytes) -> None:
        """Sign only what is provably an extension of the previous checkpoint (from the stored hashes)."""
        if size and reader.root(size) != root:
            raise LogError(f"the stored tree of size {size} does not hash to the sealed root")
        cur.execute("SELECT tree_size, root FROM log_checkpoints ORDER BY tree_size DESC LIMIT 1")
        previous = fetch_tuples(cur)
        if previous:
            old_size, old_root = int(previous[0][0]), bytes(previous[0][1])
            if old_size > size:
                raise LogError(f"refusing to sign size {size}: a checkpoint of size {old_size} exists")
            if old_size:
                try:
                    merkle.verify_consistency(old_size, size, reader.consistency_proof(old_size, size), old_root, root)
                except merkle.ProofError as exc:
                    raise LogError(f"refusing to sign size {size}: not consistent with checkpoint {old_size}: {exc}") from None
            if old_size == size:
                return
        note = notes.sign_checkpoint(notes.Checkpoint(self.origin, size, root), self.signing_key)
        signed_at = self.clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        cur.execute(
            self.store.sql("INSERT INTO log_checkpoints (tree_size, root, note, signed_at) VALUES (?, ?, ?, ?)"),
            (size, root, note, signed_at),
        )


# -- reads for the HTTP API and the verifier ------------------------------------------------------------


@dataclass(frozen=True)
class LeafRef:
    leaf_index: int
    sequence: int
    entry: bytes


MAX_SIZE = 2**63 - 1  # a bigint: no tree has more leaves, and the database cannot be asked about more


class Log:
    """Read side of the stored log."""

    def __init__(self, store: Store):
        self.store = store
        self.tree = TreeReader(store)

    def checkpoint(self, size: int | None = None) -> tuple[int, str] | None:
        """The latest signed checkpoint (or the one of ``size``) with its witness cosignatures."""
        if size is None:
            rows = self.store.query("SELECT tree_size, note FROM log_checkpoints ORDER BY tree_size DESC LIMIT 1")
        elif not 0 <= size <= MAX_SIZE:
            return None
        else:
            rows = self.store.query("SELECT tree_size, note FROM log_checkpoints WHERE tree_size = ?", (size,))
        if not rows:
            return None
        tree_size, note = int(rows[0][0]), str(rows[0][1])
        lines = [r[0] for r in self.store.query("SELECT line FROM log_cosignatures WHERE tree_size = ? ORDER BY witness", (tree_size,))]
        return tree_size, note + "".join(lines)

    def tree_size(self) -> int:
        """The size of the latest signed checkpoint (what tiles and proofs are served for)."""
        return int(self.store.query("SELECT COALESCE(MAX(tree_size), 0) FROM log_checkpoints")[0][0])

    def last_leaf_through(self, sequence: int) -> int | None:
        """The index of the last leaf whose event's ledger sequence is at most ``sequence`` (None: no such leaf)."""
        rows = self.store.query("SELECT leaf_index FROM log_entries WHERE sequence <= ? ORDER BY sequence DESC LIMIT 1", (sequence,))
        return int(rows[0][0]) if rows else None

    def sequence_of_leaf(self, index: int) -> int | None:
        """The ledger sequence of the event at leaf ``index`` (None: no such leaf)."""
        rows = self.store.query("SELECT sequence FROM log_entries WHERE leaf_index = ?", (index,))
        return int(rows[0][0]) if rows else None

    def checkpoint_sizes_up_to(self, size: int, limit: int) -> list[int]:
        """The tree sizes of the signed checkpoints no larger than ``size``, largest first, at most ``limit``."""
        rows = self.store.query("SELECT tree_size FROM log_checkpoints WHERE tree_size <= ? ORDER BY tree_size DESC LIMIT ?", (size, limit))
        return [int(r[0]) for r in rows]

    def signed_checkpoint(self, size: int) -> tuple[bytes, str, str] | None:
        """(root hash, note as signed, signed at) of the checkpoint of tree size ``size``, without cosignatures."""
        rows = self.store.query("SELECT root, note, signed_at FROM log_checkpoints WHERE tree_size = ?", (size,))
        return (bytes(rows[0][0]), str(rows[0][1]), str(rows[0][2])) if rows else None

    def leaf_for_event(self, event_id: str) -> LeafRef | None:
        rows = self.store.query(
            "SELECT e.leaf_index, e.sequence, e.entry FROM ledger_index i JOIN log_entries e ON e.sequence = i.sequence "
            "WHERE i.event_id = ?",
            (event_id,),
        )
        return LeafRef(int(rows[0][0]), int(rows[0][1]), bytes(rows[0][2])) if rows else None

    def leaf(self, index: int) -> LeafRef | None:
        if not 0 <= index < MAX_SIZE:
            return None
        rows = self.store.query("SELECT leaf_index, sequence, entry FROM log_entries WHERE leaf_index = ?", (index,))
        return LeafRef(int(rows[0][0]), int(rows[0][1]), bytes(rows[0][2])) if rows else None

    def tile(self, ref: tiles.TileRef, tree_size: int) -> bytes | None:
        """A tile or entry bundle, if the tree of ``tree_size`` has it at that width."""
        level = 0 if ref.is_entries else ref.level
        if tiles.tile_width_at(level, ref.index, tree_size) < ref.width:
            return None
        lo = ref.index * tiles.TILE_WIDTH
        if ref.is_entries:
            rows = self.store.query(
                "SELECT entry FROM log_entries WHERE leaf_index >= ? AND leaf_index < ? ORDER BY leaf_index", (lo, lo + ref.width)
            )
            found = [bytes(r[0]) for r in rows]
            return tiles.encode_bundle(found) if len(found) == ref.width else None
        rows = self.store.query(
            "SELECT hash FROM log_nodes WHERE level = ? AND idx >= ? AND idx < ? ORDER BY idx",
            (tiles.TILE_HEIGHT * ref.level, lo, lo + ref.width),
        )
        return b"".join(bytes(r[0]) for r in rows) if len(rows) == ref.width else None

    def tlog_proof(self, event_id: str) -> str | None:
        """A ``c2sp.org/tlog-proof@v1`` for the event in the latest checkpoint (extra = the entry bytes)."""
        leaf = self.leaf_for_event(event_id)
        latest = self.checkpoint()
        if leaf is None or latest is None or leaf.leaf_index >= latest[0]:
            return None
        size, note = latest
        proof = self.tree.inclusion_proof(leaf.leaf_index, size)
        lines = [
            "c2sp.org/tlog-proof@v1",
            f"extra {base64.b64encode(leaf.entry).decode()}",
            f"index {leaf.leaf_index}",
            *(base64.b64encode(p).decode() for p in proof),
        ]
        return "\n".join(lines) + "\n\n" + note

    # -- as a static tiled log ------------------------------------------------------------------

    def fetch(self, path: str) -> bytes:
        """The bytes a C2SP client gets at ``path`` (``checkpoint`` or a tile), for the latest checkpoint."""
        latest = self.checkpoint()
        if latest is None:
            raise FileNotFoundError(path)
        if path == "checkpoint":
            return latest[1].encode("utf-8")
        data = self.tile(tiles.parse_tile_path(path), latest[0])
        if data is None:
            raise FileNotFoundError(path)
        return data

    def tile_paths(self, size: int) -> Iterator[str]:
        for n, width in tiles.tiles_at(0, size):
            yield tiles.entries_path(n, width)
        for level in tiles.levels(size):
            for n, width in tiles.tiles_at(level, size):
                yield tiles.tile_path(level, n, width)

    def export(self, directory: Path, on_progress: Callable[[int], None] | None = None) -> int:
        """Write the latest checkpoint and every tile and entry bundle as a static C2SP tiled log."""
        latest = self.checkpoint()
        if latest is None:
            raise LogError("the log has no checkpoint yet")
        size, note = latest
        count = 0
        for path in self.tile_paths(size):
            target = directory / path
            target.parent.mkdir(parents=True, exist_ok=True)
            data = self.tile(tiles.parse_tile_path(path), size)
            assert data is not None, path
            target.write_bytes(data)
            count += 1
            if on_progress:
                on_progress(1)
        (directory / "checkpoint").write_text(note, "utf-8")
        return count


def stored_envelopes(store: Store, page: int = 1000) -> Iterator[StoredEnvelope]:
    """Every event in the store, in ledger order, with the digests of the envelope it holds."""
    start = 1
    recorder: Any = store.app.recorder
    while True:
        batch = recorder.select_notifications(start, page)
        if not batch:
            return
        for notification in batch:
            try:
                event: Any = store.app.mapper.to_domain_event(notification)
                decoded = envelope.decode(jcs.parse(event.envelope.encode("utf-8")))
                yield StoredEnvelope(notification.id, decoded.event_digest, decoded.envelope_digest)
            except Exception as exc:  # noqa: BLE001 - an altered row must be reported, whatever broke
                yield _unreadable(store, notification, exc)
        start = batch[-1].id + 1


def _unreadable(store: Store, notification: Any, exc: Exception) -> StoredEnvelope:
    """An event that cannot be opened: erased (its pupil's key destroyed, as designed) or altered."""
    keys = getattr(store.app.mapper, "keys", None)
    if isinstance(exc, SubjectErased) and keys is not None and keys.data_key(exc.aggregate_id, max_age=0) is None:
        return StoredEnvelope(notification.id, None, None, "erased", erased=True)
    return StoredEnvelope(notification.id, None, None, f"it does not decrypt or decode ({type(exc).__name__}): altered")
