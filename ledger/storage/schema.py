"""The ledger's own tables beside the event store's: their DDL, the index row, and what a write stores beside its
events (``Beside``), with the statements the recorders write them by (``Table``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

INDEX_COLUMNS = (
    "event_id",
    "sequence",
    "originator_id",
    "originator_version",
    "type",
    "submitter",
    "event_digest",
    "envelope_digest",
    "received_at",
)


@dataclass(frozen=True)
class IndexRow:
    event_id: str
    sequence: int
    originator_id: str
    originator_version: int
    type: str
    submitter: str
    event_digest: str
    envelope_digest: str
    received_at: str


INDEX_DDL = (
    "CREATE TABLE IF NOT EXISTS ledger_index (event_id TEXT PRIMARY KEY, sequence BIGINT NOT NULL UNIQUE, "
    "originator_id TEXT NOT NULL, originator_version INTEGER NOT NULL, type TEXT NOT NULL, submitter TEXT NOT NULL, "
    "event_digest TEXT NOT NULL, envelope_digest TEXT NOT NULL, received_at TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS ledger_index_subject ON ledger_index (originator_id, originator_version)",
    "CREATE TABLE IF NOT EXISTS ledger_keys (key_id TEXT PRIMARY KEY, org_id TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ledger_tokens (token_id TEXT PRIMARY KEY, token_hash TEXT NOT NULL UNIQUE, "
    "org_id TEXT NOT NULL, role TEXT NOT NULL, issued_at TEXT NOT NULL, expires_at TEXT, revoked_at TEXT, scope TEXT)",
    "CREATE TABLE IF NOT EXISTS ledger_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS pupil_keys (originator_id TEXT PRIMARY KEY, wrapped_key TEXT NOT NULL, audit_id TEXT NOT NULL UNIQUE)",
    # When each revoked signing key stops being valid (``Beside.signed_with``: checked by every write, under its lock).
    "CREATE TABLE IF NOT EXISTS ledger_key_revocations (key_id TEXT PRIMARY KEY, org_id TEXT NOT NULL, revoked_at TEXT NOT NULL)",
    # Every access.* event by the organisation whose principal read (NULL: an erasure): /access-log?org= without a scan.
    "CREATE TABLE IF NOT EXISTS ledger_access (sequence BIGINT PRIMARY KEY, viewer_org TEXT)",
    "CREATE INDEX IF NOT EXISTS ledger_access_viewer ON ledger_access (viewer_org, sequence)",
    # Claims and rejections the operator watches (docs/access.md, "Unusual claims"): an event flagged claim_new_area, or
    # the access event recording a rejection that depended on other organisations' records.
    "CREATE TABLE IF NOT EXISTS ledger_claims (sequence BIGINT PRIMARY KEY, org_id TEXT NOT NULL, code TEXT NOT NULL, received_at TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS ledger_claims_received ON ledger_claims (received_at)",
)


@dataclass
class Beside:
    """What a write stores and checks beside its events and their index rows, in the same transaction.

    Rows of ``access`` and ``claims`` name their event by (stream id, version); the recorder writes the sequence
    number the event is given. ``signed_with``: the signing keys the events were accepted under; the write fails
    (``KeyRevokedMeanwhile``) if any of them was revoked at or before ``received_at`` by a write committed before
    this one took the lock, so an event received after a revocation committed is never stored, whichever process
    judged it on whatever cached state.
    """

    received_at: str = ""
    signed_with: set[str] = field(default_factory=set)
    revocations: list[tuple[str, str, str]] = field(default_factory=list)  # key id, organisation, revoked_at
    access: list[tuple[str, int, str | None]] = field(default_factory=list)  # stream, version, viewer organisation
    claims: list[tuple[str, int, str, str]] = field(default_factory=list)  # stream, version, organisation, code


@dataclass(frozen=True)
class Table:
    """A table the recorders write beside the events: its columns, and their PostgreSQL types (for ``COPY`` and
    ``unnest``)."""

    name: str
    column_names: tuple[str, ...]
    types: tuple[str, ...]

    def row_insert(self) -> str:
        """One row, with ``?`` marks (SQLite's ``executemany``)."""
        return f"INSERT INTO {self.name} ({', '.join(self.column_names)}) VALUES ({', '.join('?' * len(self.column_names))})"

    def copy(self) -> str:
        return f"COPY {self.name} ({', '.join(self.column_names)}) FROM STDIN (FORMAT BINARY)"

    def insert(self, returning: bool = False) -> str:
        """Every row in one statement: one array parameter per column, inserted in the arrays' order (the
        notification ids an events insert draws follow it). The arrays go in binary: psycopg writes a text array
        element by element in Python (400 µs for a group of 14 events, against 43)."""
        arrays = ", ".join(f"%b::{t}[]" for t in self.types)
        names = ", ".join(self.column_names)
        statement = (
            f"INSERT INTO {self.name} ({names}) SELECT {names} FROM unnest({arrays}) WITH ORDINALITY AS given({names}, n) ORDER BY n"
        )
        return statement + (" RETURNING originator_id, originator_version, notification_id" if returning else "")

    def columns_of(self, rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
        """``rows`` (at least one) as one list per column: ``insert``'s parameters."""
        return [list(column) for column in zip(*rows, strict=True)]


INDEX_TABLE = Table("ledger_index", INDEX_COLUMNS, ("text", "int8", "text", "int4", "text", "text", "text", "text", "text"))
KEYS_TABLE = Table("ledger_keys", ("key_id", "org_id"), ("text", "text"))
PUPIL_KEYS_TABLE = Table("pupil_keys", ("originator_id", "wrapped_key", "audit_id"), ("text", "text", "text"))
REVOCATIONS_TABLE = Table("ledger_key_revocations", ("key_id", "org_id", "revoked_at"), ("text", "text", "text"))
ACCESS_TABLE = Table("ledger_access", ("sequence", "viewer_org"), ("int8", "text"))
CLAIMS_TABLE = Table("ledger_claims", ("sequence", "org_id", "code", "received_at"), ("int8", "text", "text", "text"))
