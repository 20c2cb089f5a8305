"""A C2SP ``tlog-witness`` witness: the server side of witnessing the log.

:class:`Witness` is the witness itself (c2sp.org/tlog-witness ``add-checkpoint``): it trusts log
verifier keys per origin, keeps the latest checkpoint it cosigned per origin in its own SQLite file,
and returns ``tlog-cosignature/v1`` (Ed25519, type 0x04) cosignature lines. The check of the old
size and the update of the stored checkpoint happen in one ``BEGIN IMMEDIATE`` transaction, so two
concurrent submissions can never roll it back. :class:`Submission` is the add-checkpoint request
body both sides speak.

The ledger's client for a witness, :class:`ledger.transparency.witnessing.Witnessing`, is its own
module; the verifier's quorum check, :func:`ledger.core.notes.require_quorum`, lives with the other
note checks.
"""

from __future__ import annotations

import base64
import binascii
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ledger.core import merkle, notes

MAX_PROOF_LINES = 63
SIZE_CONTENT_TYPE = "text/x.tlog.size"


# -- the witness's answers ---------------------------------------------------------------------------


class Rejected(Exception):
    """An add-checkpoint request the witness refuses; ``status`` is the HTTP status the spec requires."""

    status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class Malformed(Rejected):
    status = 400


class UntrustedSignature(Rejected):
    status = 403


class UnknownOrigin(Rejected):
    status = 404


class Conflict(Rejected):
    """409: the old size is not the size the witness last cosigned, or the same size has another root."""

    status = 409

    def __init__(self, message: str, latest_size: int):
        super().__init__(message)
        self.latest_size = latest_size

    def body(self) -> str:
        """The ``text/x.tlog.size`` body: the size of the latest cosigned checkpoint."""
        return f"{self.latest_size}\n"


class Inconsistent(Rejected):
    status = 422


@dataclass(frozen=True)
class Submission:
    """A parsed add-checkpoint request body: ``old N``, proof lines, a blank line, a checkpoint note."""

    old_size: int
    proof: tuple[bytes, ...]
    note_text: str

    @classmethod
    def parse(cls, body: bytes) -> Submission:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise Malformed("the request body is not UTF-8") from None
        split = text.find("\n\n")
        if split < 0:
            raise Malformed("the body is an old size line, proof lines, a blank line and a checkpoint")
        head, note_text = text[:split].split("\n"), text[split + 2 :]
        old_line, proof_lines = head[0], head[1:]
        number = old_line.removeprefix("old ")
        if number == old_line or not number.isdigit() or not number.isascii() or (number != "0" and number.startswith("0")):
            raise Malformed(f"the first line {old_line[:40]!r} is not 'old <size>' in decimal without leading zeroes")
        if len(proof_lines) > MAX_PROOF_LINES:
            raise Malformed(f"{len(proof_lines)} consistency proof lines; at most {MAX_PROOF_LINES} are allowed")
        proof = []
        for n, line in enumerate(proof_lines, start=1):
            try:
                value = base64.b64decode(line, validate=True)
            except (binascii.Error, ValueError):
                value = b""
            if len(value) != 32:
                raise Malformed(f"consistency proof line {n} is not a base64 32-byte hash")
            proof.append(value)
        return cls(int(number), tuple(proof), note_text)

    def text(self) -> str:
        lines = [f"old {self.old_size}", *(base64.b64encode(h).decode("ascii") for h in self.proof)]
        return "\n".join(lines) + "\n\n" + self.note_text


@dataclass(frozen=True)
class Cosigned:
    """What the witness keeps per origin: the latest checkpoint it cosigned."""

    origin: str
    size: int
    root: bytes
    note: str
    cosigned_at: int


def public_raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def witness_vkey(name: str, key: Ed25519PrivateKey) -> str:
    """The witness's verifier key: ``tlog-cosignature/v1`` Ed25519 (type 0x04); a bad name is a :class:`notes.NoteError`."""
    if not name or any(c.isspace() or c == "+" for c in name):
        raise notes.NoteError(f"a witness name is non-empty, without spaces or '+': {name!r}")
    return notes.vkey(name, public_raw(key), notes.COSIGNATURE_ALG)


def log_verifiers(vkeys: Sequence[str]) -> dict[str, list[notes.Verifier]]:
    """Trusted log keys by origin (a log's key name is its origin); only note-signer keys (0x01)."""
    by_origin: dict[str, list[notes.Verifier]] = {}
    for text in vkeys:
        verifier = notes.Verifier.parse(text)
        if verifier.alg != notes.ED25519_ALG:
            raise notes.NoteError(f"the log key {verifier.name} is not an Ed25519 note-signing key (type 01)")
        by_origin.setdefault(verifier.name, []).append(verifier)
    return by_origin


# -- the witness -------------------------------------------------------------------------------------------


class WitnessState:
    """The witness's own SQLite file: latest cosigned checkpoint per origin, and rejected-but-signed evidence."""

    def __init__(self, path: Path):
        self.path = path
        with self._connect() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS checkpoints (origin TEXT PRIMARY KEY, size INTEGER NOT NULL, root BLOB NOT NULL, "
                "note TEXT NOT NULL, cosigned_at INTEGER NOT NULL)"
            )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS evidence (id INTEGER PRIMARY KEY, origin TEXT NOT NULL, received_at INTEGER NOT NULL, "
                "status INTEGER NOT NULL, reason TEXT NOT NULL, request TEXT NOT NULL)"
            )

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            yield conn
        finally:
            conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One writer at a time from the first read: the check of the old size and the update are atomic."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @staticmethod
    def read(conn: sqlite3.Connection, origin: str) -> Cosigned | None:
        row = conn.execute("SELECT size, root, note, cosigned_at FROM checkpoints WHERE origin = ?", (origin,)).fetchone()
        return Cosigned(origin, int(row[0]), bytes(row[1]), str(row[2]), int(row[3])) if row else None

    def latest(self, origin: str) -> Cosigned | None:
        with self._connect() as conn:
            return self.read(conn, origin)

    def evidence(self, origin: str) -> list[tuple[int, str, str]]:
        with self._connect() as conn:
            rows = conn.execute("SELECT status, reason, request FROM evidence WHERE origin = ? ORDER BY id", (origin,)).fetchall()
        return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]

    def record_evidence(self, origin: str, received_at: int, rejected: Rejected, request: str) -> None:
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO evidence (origin, received_at, status, reason, request) VALUES (?, ?, ?, ?, ?)",
                (origin, received_at, rejected.status, rejected.message, request),
            )


class Witness:
    """A tlog-witness: verifies submitted checkpoints and cosigns those consistent with what it saw before."""

    def __init__(
        self, name: str, key: Ed25519PrivateKey, log_vkeys: Sequence[str], state: WitnessState, clock: Callable[[], float] = time.time
    ):
        self.name = name
        self.key = key
        self.vkey = witness_vkey(name, key)
        self.logs = log_verifiers(log_vkeys)
        self.state = state
        self.clock = clock

    def add_checkpoint(self, body: bytes) -> str:
        """The add-checkpoint rules of c2sp.org/tlog-witness; returns the cosignature line(s) or raises :class:`Rejected`."""
        submission = Submission.parse(body)
        try:
            note = notes.Note.parse(submission.note_text)
            checkpoint = notes.Checkpoint.parse(note.body)
        except notes.NoteError as exc:
            raise Malformed(f"the checkpoint: {exc}") from None
        trusted = self.logs.get(checkpoint.origin)
        if trusted is None:
            raise UnknownOrigin(f"unknown log origin {checkpoint.origin!r}")
        try:
            notes.open_note(submission.note_text, trusted)
        except notes.NoteError:
            raise UntrustedSignature(f"no signature on the checkpoint verifies with a key trusted for {checkpoint.origin!r}") from None
        if submission.old_size > checkpoint.size:
            raise Malformed(f"the old size {submission.old_size} is larger than the checkpoint size {checkpoint.size}")
        timestamp = int(self.clock())
        try:
            with self.state.transaction() as conn:
                self._check_and_store(conn, submission, checkpoint, note, timestamp)
        except (Conflict, Inconsistent) as exc:
            if not isinstance(exc, Conflict) or exc.latest_size == submission.old_size:  # a fork or a bad proof, not a stale client
                self.state.record_evidence(checkpoint.origin, timestamp, exc, submission.text())
            raise
        return notes.cosign(note.body, self.name, self.key, timestamp).line()

    def _check_and_store(
        self, conn: sqlite3.Connection, submission: Submission, checkpoint: notes.Checkpoint, note: notes.Note, timestamp: int
    ) -> None:
        latest = WitnessState.read(conn, checkpoint.origin)
        latest_size = latest.size if latest else 0
        if submission.old_size != latest_size:
            raise Conflict(f"the old size {submission.old_size} is not the size {latest_size} this witness last cosigned", latest_size)
        if latest is None or latest.size == 0:
            if submission.proof:
                raise Inconsistent("the consistency proof from size 0 must be empty")
        else:
            try:
                merkle.verify_consistency(latest.size, checkpoint.size, list(submission.proof), latest.root, checkpoint.root)
            except merkle.RootMismatch as exc:
                if latest.size == checkpoint.size:
                    raise Conflict(f"size {checkpoint.size} was cosigned with another root hash: {exc}", latest.size) from None
                raise Inconsistent(f"the consistency proof from size {latest.size} does not verify: {exc}") from None
            except merkle.ProofError as exc:
                raise Inconsistent(f"the consistency proof from size {latest.size} does not verify: {exc}") from None
        conn.execute(
            "INSERT INTO checkpoints (origin, size, root, note, cosigned_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (origin) DO UPDATE SET size = excluded.size, root = excluded.root, note = excluded.note, "
            "cosigned_at = excluded.cosigned_at",
            (checkpoint.origin, checkpoint.size, checkpoint.root, note.text(), timestamp),
        )
