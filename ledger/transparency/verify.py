"""Offline verification of a C2SP tiled log: checkpoints, proofs and whole-log audits.

Everything here works from what a log serves (or what was exported to a folder): a ``fetch(path)``
function returning the bytes at a path relative to the log's root (``checkpoint``,
``tile/0/000``, ``tile/entries/000.p/5``), and the log's verifier key. An audit recomputes every
level-0 leaf hash from the entries, every higher tile from the level below, and the root; it names
the first bad index and what is wrong. For this ledger's own logs, entries are also checked to be
well-formed (their index is their position) and, when the stored envelopes are available, to carry
the digests of the envelope stored at that position.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ledger.core import merkle, notes, tiles

Fetch = Callable[[str], bytes]
ENTRY_KEYS = {"index", "received_at", "event_digest", "envelope_digest"}


class AuditFailure(ValueError):
    """The log does not verify; ``index`` is the first bad leaf index when one can be named."""

    def __init__(self, message: str, index: int | None = None):
        super().__init__(f"entry {index}: {message}" if index is not None else message)
        self.index = index


@dataclass
class AuditReport:
    checkpoint: notes.Checkpoint
    entries: int = 0
    envelopes_checked: int = 0
    envelopes_erased: int = 0
    tiles_read: int = 0
    cosigners: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredEnvelope:
    """What the event store holds for one accepted event, in ledger order."""

    sequence: int
    event_digest: str | None  # None: the stored event could not be opened (altered or erased)
    envelope_digest: str | None
    problem: str = ""
    erased: bool = False  # crypto-shredded on purpose: the entry's digests can no longer be checked, and need not be


def dir_fetcher(root: Path) -> Fetch:
    def fetch(path: str) -> bytes:
        target = (root / path).resolve()
        if root.resolve() not in target.parents:
            raise FileNotFoundError(path)
        return target.read_bytes()

    return fetch


def http_fetcher(base_url: str, timeout: float = 30.0) -> Fetch:
    import httpx

    client = httpx.Client(base_url=base_url.rstrip("/") + "/", timeout=timeout)

    def fetch(path: str) -> bytes:
        response = client.get(path)
        if response.status_code == 404:
            raise FileNotFoundError(path)
        response.raise_for_status()
        return response.content

    return fetch


def verify_checkpoint(text: str, vkey: str, witnesses: Sequence[str] = (), quorum: int = 0) -> tuple[notes.Checkpoint, dict[str, int]]:
    """Verify a checkpoint note against the log's key and, if asked, a quorum of witness cosignatures."""
    checkpoint, note = notes.open_checkpoint(text, vkey)
    if quorum:
        return checkpoint, notes.require_quorum(text, witnesses, quorum)
    return checkpoint, notes.cosigners(note, [notes.Verifier.parse(w) for w in witnesses])


def _get(fetch: Fetch, path: str, what: str, first_index: int) -> bytes:
    try:
        return fetch(path)
    except (FileNotFoundError, KeyError):
        raise AuditFailure(f"{path} ({what}) is missing: the log is shorter than its checkpoint or was truncated", first_index) from None


def _check_ledger_entry(entry: bytes, index: int) -> dict[str, object]:
    try:
        body = json.loads(entry)
    except ValueError:
        raise AuditFailure("the entry is not JSON", index) from None
    if not isinstance(body, dict) or set(body) != ENTRY_KEYS:
        raise AuditFailure(f"the entry does not have exactly the fields {sorted(ENTRY_KEYS)}", index)
    if body["index"] != index:
        raise AuditFailure(f"the entry says it is index {body['index']} (entries reordered or removed)", index)
    if tiles.log_entry(index, str(body["received_at"]), str(body["event_digest"]), str(body["envelope_digest"])) != entry:
        raise AuditFailure("the entry is not in canonical form", index)
    return body


def _is_ledger_entry(entry: bytes) -> bool:
    try:
        body = json.loads(entry)
    except ValueError:
        return False
    return isinstance(body, dict) and set(body) == ENTRY_KEYS


def audit(
    fetch: Fetch,
    vkey: str,
    checkpoint_text: str | None = None,
    *,
    envelopes: Iterator[StoredEnvelope] | None = None,
    witnesses: Sequence[str] = (),
    quorum: int = 0,
    on_progress: Callable[[int], None] | None = None,
) -> AuditReport:
    """Audit the whole tiled log against its (verified) checkpoint; raise :class:`AuditFailure` at the first fault."""
    text = checkpoint_text if checkpoint_text is not None else _get(fetch, "checkpoint", "checkpoint", 0).decode("utf-8", "replace")
    try:
        checkpoint, cosigned = verify_checkpoint(text, vkey, witnesses, quorum)
    except notes.NoteError as exc:
        raise AuditFailure(f"the checkpoint does not verify: {exc}") from None
    report = AuditReport(checkpoint, cosigners=cosigned)
    size = checkpoint.size
    tree = merkle.CompactRange()
    computed: dict[int, list[bytes]] = {}  # tree level (multiple of 8, > 0) -> hashes computed there, in order
    ledger_format: bool | None = None
    for n, width in tiles.tiles_at(0, size):
        first = n * tiles.TILE_WIDTH
        hash_tile = _get(fetch, tiles.tile_path(0, n, width), "level-0 hash tile", first)
        bundle = _get(fetch, tiles.entries_path(n, width), "entry bundle", first)
        report.tiles_read += 2
        if len(hash_tile) != 32 * width:
            raise AuditFailure(f"{tiles.tile_path(0, n, width)} has {len(hash_tile)} bytes, not {32 * width}", first)
        try:
            entries = tiles.decode_bundle(bundle)
        except ValueError as exc:
            raise AuditFailure(f"{tiles.entries_path(n, width)}: {exc}", first) from None
        if len(entries) != width:
            raise AuditFailure(
                f"{tiles.entries_path(n, width)} holds {len(entries)} entries, not {width}", first + min(len(entries), width)
            )
        for j, entry in enumerate(entries):
            index = first + j
            leaf = merkle.leaf_hash(entry)
            if leaf != hash_tile[32 * j : 32 * j + 32]:
                raise AuditFailure(f"the leaf hash in {tiles.tile_path(0, n, width)} is not the hash of the entry in the bundle", index)
            if ledger_format is None:
                ledger_format = _is_ledger_entry(entry)
            if ledger_format:
                body = _check_ledger_entry(entry, index)
                if envelopes is not None:
                    stored = next(envelopes, None)
                    _check_envelope(body, stored, index)
                    if stored is not None and stored.erased:
                        report.envelopes_erased += 1
                    else:
                        report.envelopes_checked += 1
            for level, idx, h in tree.append(leaf):
                if level and level % tiles.TILE_HEIGHT == 0:
                    computed.setdefault(level, []).append(h)
                    assert len(computed[level]) == idx + 1
        report.entries += width
        if on_progress:
            on_progress(width)
    _check_higher_tiles(fetch, size, computed, report)
    if tree.root() != checkpoint.root:
        raise AuditFailure(f"the root recomputed from all {size} entries is not the checkpoint's root")
    return report


def _check_envelope(body: dict[str, object], stored: StoredEnvelope | None, index: int) -> None:
    if stored is None:
        raise AuditFailure("the event store has no event for this entry (deleted?)", index)
    if stored.erased:
        return
    if stored.envelope_digest is None:
        raise AuditFailure(f"the stored event at sequence {stored.sequence} cannot be read: {stored.problem}", index)
    if (stored.event_digest, stored.envelope_digest) != (body["event_digest"], body["envelope_digest"]):
        raise AuditFailure(
            f"the stored event at sequence {stored.sequence} has other digests than the entry (event altered, deleted or reordered)", index
        )


def _check_higher_tiles(fetch: Fetch, size: int, computed: dict[int, list[bytes]], report: AuditReport) -> None:
    for level in tiles.levels(size)[1:]:
        hashes = computed.get(tiles.TILE_HEIGHT * level, [])
        for n, width in tiles.tiles_at(level, size):
            path = tiles.tile_path(level, n, width)
            first_leaf = (n * tiles.TILE_WIDTH) << (tiles.TILE_HEIGHT * level)
            data = _get(fetch, path, f"level-{level} hash tile", first_leaf)
            report.tiles_read += 1
            want = b"".join(hashes[n * tiles.TILE_WIDTH : n * tiles.TILE_WIDTH + width])
            if data != want:
                bad = next((j for j in range(width) if data[32 * j : 32 * j + 32] != want[32 * j : 32 * j + 32]), 0)
                raise AuditFailure(f"{path} does not match the tiles below it", first_leaf + (bad << (tiles.TILE_HEIGHT * level)))


# -- single proofs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlogProof:
    """A parsed ``c2sp.org/tlog-proof@v1``."""

    index: int
    proof: list[bytes]
    checkpoint_note: str
    extra: bytes | None = None

    @classmethod
    def parse(cls, text: str) -> TlogProof:
        head, sep, note = text.partition("\n\n")
        lines = head.split("\n")
        if not sep or not lines or lines[0] != "c2sp.org/tlog-proof@v1":
            raise notes.NoteError("not a c2sp.org/tlog-proof@v1 (first line, then an empty line before the checkpoint)")
        rest = lines[1:]
        extra = None
        if rest and rest[0].startswith("extra "):
            extra = notes._b64(rest.pop(0)[6:], "the extra data")
        if not rest or not rest[0].startswith("index ") or not rest[0][6:].isdigit():
            raise notes.NoteError("the proof has no 'index N' line")
        index = int(rest[0][6:])
        proof = [notes._b64(line, f"proof line {i + 1}") for i, line in enumerate(rest[1:])]
        return cls(index, proof, note, extra)


def verify_tlog_proof(
    text: str,
    vkey: str,
    envelope_digest: str | None = None,
    event_digest: str | None = None,
    witnesses: Sequence[str] = (),
    quorum: int = 0,
) -> tuple[notes.Checkpoint, dict[str, object]]:
    """Verify a ledger tlog-proof (its ``extra`` is the entry) and, if given, the envelope's digests in it."""
    parsed = TlogProof.parse(text)
    checkpoint, _ = verify_checkpoint(parsed.checkpoint_note, vkey, witnesses, quorum)
    if parsed.extra is None:
        raise notes.NoteError("the proof carries no entry (extra line); this ledger's proofs always do")
    body = _check_ledger_entry(parsed.extra, parsed.index)
    merkle.verify_inclusion(merkle.leaf_hash(parsed.extra), parsed.index, checkpoint.size, parsed.proof, checkpoint.root)
    if envelope_digest is not None and body["envelope_digest"] != envelope_digest:
        raise AuditFailure("the logged envelope digest is not this envelope's", parsed.index)
    if event_digest is not None and body["event_digest"] != event_digest:
        raise AuditFailure("the logged event digest is not this event's", parsed.index)
    return checkpoint, body
