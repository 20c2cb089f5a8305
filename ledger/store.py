"""Event store: an ``eventsourcing`` Application with one aggregate per subject.

Every accepted envelope is exactly one stored event (``Subject.Created`` for the subject's first,
``Subject.Recorded`` after), encrypted at rest (AES-GCM). Beside the library's tables, the
same transaction writes ``ledger_index`` (event_id -> sequence, digests: idempotency and
look-ups) and ``ledger_keys`` (key id -> organisation), so a 2xx is only ever sent for an event
whose index row and stored event committed together.

A pupil's stream (a version-8 id, see ``secrets.pupil_id``) is encrypted with that pupil's own data
key, kept in ``pupil_keys`` wrapped by the master key from the secrets folder; ``erase_subject``
deletes the key (crypto-shredding, docs/access.md). Other streams use the store key.
"""

from __future__ import annotations

import base64
import contextvars
import copy
import functools
import logging
import os
import threading
import time
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, NamedTuple, TypeVar
from urllib.parse import unquote, urlparse

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Compressor, IntegrityError, InterfaceError, Mapper, OperationalError, ProgrammingError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from eventsourcing.utils import get_topic, retry
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier, Literal

from . import database, jcs
from .errors import Category, LedgerError
from .rules import Record
from .secrets import as_pupil_uuid, is_pupil_stream

T = TypeVar("T")
log = logging.getLogger("pupil_ledger.store")

INDEX_COLUMNS = (
    "event_id", "sequence", "originator_id", "originator_version", "type", "submitter",
    "event_digest", "envelope_digest", "received_at",
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


# -- domain model ---------------------------------------------------------------------------


@dataclass
class Entry:
    """One accepted envelope on a subject's stream."""

    version: int
    envelope: str  # the envelope's canonical JSON text
    received_at: datetime
    flags: list[dict[str, str]]
    record: Record


# The record of an envelope being added now, which its submitter has just parsed (``Subject.start``, ``record``).
_ARRIVING: contextvars.ContextVar[tuple[str, Record] | None] = contextvars.ContextVar("arriving_record", default=None)


@contextmanager
def _arriving(envelope: str, record: Record | None) -> Iterator[None]:
    token = _ARRIVING.set((envelope, record) if record is not None else None)
    try:
        yield
    finally:
        _ARRIVING.reset(token)


def _record_of(envelope: str, received_at: datetime) -> Record:
    arriving = _ARRIVING.get()
    if arriving is not None and arriving[0] is envelope:
        return arriving[1]
    # The ledger's own canonical text of an envelope it accepted (checked strictly then), so the trusted
    # parse suffices: every subject loaded and every event projected passes here.
    body = jcs.parse_trusted(base64.b64decode(jcs.parse_trusted(envelope)["payload"]))
    return Record.from_body(body, received_at)


class Subject(Aggregate):
    """Everything the ledger accepted about one pupil or one organisation, in order."""

    TOPIC = "pupil-ledger/Subject"

    class Created(Aggregate.Created):
        TOPIC = "pupil-ledger/Subject.Created"
        envelope: str
        received_at: datetime
        flags: list[dict[str, str]]

    class Recorded(Aggregate.Event):
        TOPIC = "pupil-ledger/Subject.Recorded"
        envelope: str
        received_at: datetime
        flags: list[dict[str, str]]

        def apply(self, aggregate: Aggregate) -> None:
            assert isinstance(aggregate, Subject)
            aggregate._add(self.originator_version, self.envelope, self.received_at, self.flags)

    def __init__(self, envelope: str, received_at: datetime, flags: list[dict[str, str]]):
        self.entries: list[Entry] = []
        self._folds: dict[str, tuple[int, Any]] = {}
        self._add(1, envelope, received_at, flags)

    def _add(self, version: int, envelope: str, received_at: datetime, flags: list[dict[str, str]]) -> None:
        self.entries.append(Entry(version, envelope, received_at, list(flags), _record_of(envelope, received_at)))

    @property
    def records(self) -> list[Record]:
        return [e.record for e in self.entries]

    def folded(self, name: str, fold: Callable[[list[Record]], T]) -> T:
        """``fold(self.records)``, kept under ``name`` until the stream grows (entries are only ever appended).
        The result is shared by every caller until then, so it must be treated as read-only."""
        kept = self._folds.get(name)
        if kept is None or kept[0] != len(self.entries):
            kept = (len(self.entries), fold(self.records))
            self._folds[name] = kept
        result: T = kept[1]
        return result

    @classmethod
    def start(cls, aggregate_id: uuid.UUID, envelope: str, received_at: datetime, flags: list[dict[str, str]],
              record: Record | None = None) -> Subject:
        """A new subject whose first event is ``envelope``; ``record``: that envelope's record, if the caller
        has it already (then the envelope is not parsed again)."""
        # What the library's ``_create`` does for this class (tested against it), without its general machinery
        # (topic checks, id factories, ``__init__`` arguments picked out by inspecting signatures): 8 -> 4 µs.
        created = cls.Created(originator_topic=get_topic(cls), originator_id=aggregate_id, originator_version=cls.INITIAL_VERSION,  # type: ignore[call-arg]
                              timestamp=cls.Created.create_timestamp(), envelope=envelope, received_at=received_at, flags=flags)
        subject = cls.__new__(cls)
        subject.__base_init__(aggregate_id, cls.INITIAL_VERSION, created.timestamp)
        with _arriving(envelope, record):
            subject.__init__(envelope, received_at, flags)  # type: ignore[misc]
        subject._pending_events.append(created)
        return subject

    def record(self, envelope: str, received_at: datetime, flags: list[dict[str, str]], record: Record | None = None) -> None:
        with _arriving(envelope, record):
            self.trigger_event(Subject.Recorded, envelope=envelope, received_at=received_at, flags=flags)

    def clone(self) -> Subject:
        """A copy that can record new events without changing this one (entries are never mutated)."""
        twin = copy.copy(self)
        twin.entries = list(self.entries)
        twin._folds = dict(self._folds)
        twin._pending_events = []
        return twin


# -- recorders: the index rows commit in the same transaction as the events ----------------


def _pupil_streams_to_hold(stored_events: Sequence[StoredEvent]) -> list[str]:
    """The pupil streams written past their first event (their keys must still exist: see ``_check_pupil_keys``)."""
    created = {as_uuid(e.originator_id) for e in stored_events if e.originator_version == 1}  # their keys come with them
    extended = {as_uuid(e.originator_id) for e in stored_events if e.originator_version > 1}
    return sorted(str(stream) for stream in extended - created if is_pupil_stream(stream))


def _pupil_keys_query(ids: Sequence[str], placeholder: str, lock: str = "") -> tuple[str, list[Any]]:
    where, params = where_in("originator_id", ids, placeholder == "%s", placeholder)
    return f"SELECT originator_id FROM pupil_keys WHERE {where}{lock}", params


def _check_pupil_keys(cursor: Any, stored_events: Sequence[StoredEvent], placeholder: str, lock: str = "") -> None:
    """Inside the write transaction: every pupil stream written past its first event still has its key
    (``lock``: hold the key rows until commit, so an erasure waits for this write or this write sees it)."""
    ids = _pupil_streams_to_hold(stored_events)
    if ids:
        execute_in(cursor, *_pupil_keys_query(ids, placeholder, lock), postgres=placeholder == "%s")
        _keys_found(cursor, ids)


def _keys_found(cursor: Any, ids: Sequence[str]) -> None:
    if len(cursor.fetchall()) != len(ids):
        raise ErasedMeanwhile("a pupil stream being written to was erased meanwhile")


def where_in(column: str, values: Sequence[Any], postgres: bool, mark: str = "?", sql_type: str = "text") -> tuple[str, list[Any]]:
    """SQL saying ``column`` (of ``sql_type``) is one of ``values`` (``mark``: the placeholder), and its parameters.

    PostgreSQL gets one parameter whatever the number of values: psycopg parses a query's placeholders in
    Python, and a 500-item ``IN`` list took 0.8 ms against 0.5 ms. That parameter is the values joined by
    commas, split by the server (``string_to_array``): psycopg writes an array parameter element by element in
    Python, 80 µs of CPU for a group commit's 30 ids against 10 µs for the joined text. Values that hold a comma
    or are empty (never ids, but an event id from a URL may be anything) go as an array. Run such a statement
    with ``execute_in`` (``Store.query_in`` does)."""
    if postgres:
        texts = [str(v) for v in values]
        if all(text and "," not in text for text in texts):
            cast = "" if sql_type == "text" else f"::{sql_type}[]"
            return f"{column} = ANY(string_to_array({mark}, ','){cast})", [",".join(texts)]
        return f"{column} = ANY({mark})", [list(values)]
    return f"{column} IN ({', '.join([mark] * len(values))})", list(values)


class Read(NamedTuple):
    """A read by a list of ids, as ``Store.query_in`` takes it: ``statement`` (``?`` marks, a ``{where}``) where
    ``column`` (of ``sql_type`` on PostgreSQL) is one of ``values``."""

    statement: str
    column: str
    values: Sequence[Any]
    sql_type: str = "text"


def execute_in(cursor: Any, statement: str, params: Sequence[Any], postgres: bool) -> None:
    """Run a ``where_in`` statement; on PostgreSQL never as a prepared statement. psycopg prepares a statement
    it has run five times on a connection, and PostgreSQL may then keep one generic plan for it, made for an
    array it cannot see and a table as small as it was then, until statistics change: with autovacuum off, the
    group commit's read of ``pupil_keys`` kept a plan whose cost grew with the table, 53 µs a group at first and
    854 µs once it held 2,200 keys. Unprepared, each array is planned as it is (an index scan for a group's few
    ids: 0.04 ms), for some µs of planning."""
    if postgres:
        cursor.execute(statement, params, prepare=False)
    else:
        cursor.execute(statement, params)


def rowcount(cursor: Any) -> int:
    """Rows the last statement changed (eventsourcing wraps sqlite3's cursor, which alone knows)."""
    return int(getattr(cursor, "sqlite_cursor", cursor).rowcount)


def fetch_tuples(cursor: Any) -> list[tuple[Any, ...]]:
    """The cursor's remaining rows as tuples, whichever database (psycopg here yields dicts)."""
    return [tuple(row.values()) if isinstance(row, dict) else tuple(row) for row in cursor.fetchall()]


def as_uuid(value: Any) -> uuid.UUID:
    """A stream id as a UUID, whichever form the database gave it (PostgreSQL: UUID; SQLite: hex text)."""
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _match_index_rows(stored_events: Sequence[StoredEvent], ids: Sequence[int], rows: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
    by_position = {(str(s.originator_id), s.originator_version): n for s, n in zip(stored_events, ids, strict=True)}
    out = []
    for row in rows:
        sequence = by_position[(row["originator_id"], row["originator_version"])]
        out.append(tuple(sequence if c == "sequence" else row[c] for c in INDEX_COLUMNS))
    return out


_INDEX_DDL = (
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


class KeyRevokedMeanwhile(IntegrityError):
    """A key the write's events were accepted under was revoked by another writer meanwhile: judged again."""


def _revoked_keys_query(beside: Beside | None, placeholder: str) -> tuple[str, list[Any]] | None:
    """The read, inside the write transaction and after its lock, of the keys in ``beside.signed_with`` revoked by
    ``beside.received_at`` (times are ``timestamp`` text, which sorts as time); None: no key to check."""
    if beside is None or not beside.signed_with:
        return None
    where, params = where_in("key_id", sorted(beside.signed_with), placeholder == "%s", placeholder)
    return f"SELECT key_id FROM ledger_key_revocations WHERE {where} AND revoked_at <= {placeholder}", [*params, beside.received_at]


def _none_revoked(cursor: Any) -> None:
    revoked = cursor.fetchall()
    if revoked:
        raise KeyRevokedMeanwhile(f"{len(revoked)} signing key(s) of this write were revoked meanwhile")


@dataclass(frozen=True)
class _Table:
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
        statement = (f"INSERT INTO {self.name} ({names}) SELECT {names} FROM unnest({arrays}) WITH ORDINALITY "
                     f"AS given({names}, n) ORDER BY n")
        return statement + (" RETURNING originator_id, originator_version, notification_id" if returning else "")

    def columns_of(self, rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
        """``rows`` (at least one) as one list per column: ``insert``'s parameters."""
        return [list(column) for column in zip(*rows, strict=True)]


_INDEX = _Table("ledger_index", INDEX_COLUMNS, ("text", "int8", "text", "int4", "text", "text", "text", "text", "text"))
_KEYS = _Table("ledger_keys", ("key_id", "org_id"), ("text", "text"))
_PUPIL_KEYS = _Table("pupil_keys", ("originator_id", "wrapped_key", "audit_id"), ("text", "text", "text"))
_REVOCATIONS = _Table("ledger_key_revocations", ("key_id", "org_id", "revoked_at"), ("text", "text", "text"))
_ACCESS = _Table("ledger_access", ("sequence", "viewer_org"), ("int8", "text"))
_CLAIMS = _Table("ledger_claims", ("sequence", "org_id", "code", "received_at"), ("int8", "text", "text", "text"))


def _announce(ids: Sequence[int], kwargs: dict[str, Any]) -> None:
    """Tell the writer's ``on_ids`` (if any) the notification ids the events will have, before the commit: the
    receipts are signed meanwhile. It may hear again, with other ids, if the write is retried; nothing it makes
    may leave the process before the write returns."""
    on_ids = kwargs.get("on_ids")
    if on_ids is not None:
        on_ids(ids)


def _other_rows(stored_events: Sequence[StoredEvent], ids: Sequence[int], kwargs: dict[str, Any]) -> list[tuple[_Table, Sequence[Sequence[Any]]]]:
    """What a write stores beside the events, in this order: the index rows (given the ids the events drew),
    the signing keys, the new pupils' keys and what ``Beside`` holds; only the tables that have rows."""
    tables: list[tuple[_Table, Sequence[Sequence[Any]]]] = [
        (_INDEX, _match_index_rows(stored_events, ids, kwargs.get("index_rows", ()))),
        (_KEYS, kwargs.get("key_rows", ())), (_PUPIL_KEYS, kwargs.get("pupil_key_rows", ()))]
    beside: Beside | None = kwargs.get("beside")
    if beside is not None and (beside.access or beside.claims):
        sequence_of = {(str(s.originator_id), s.originator_version): n for s, n in zip(stored_events, ids, strict=True)}
        tables += [(_ACCESS, [(sequence_of[stream, version], viewer) for stream, version, viewer in beside.access]),
                   (_CLAIMS, [(sequence_of[stream, version], org, code, beside.received_at) for stream, version, org, code in beside.claims])]
    if beside is not None:
        tables.append((_REVOCATIONS, beside.revocations))
    return [(table, rows) for table, rows in tables if rows]


class SQLiteLedgerRecorder(SQLiteApplicationRecorder):
    placeholder = "?"

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), *_INDEX_DDL]

    def _insert_events(self, c: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        ids = super()._insert_events(c, stored_events, **kwargs)  # from here on this transaction holds the write lock
        assert ids is not None
        revoked = _revoked_keys_query(kwargs.get("beside"), "?")
        if revoked is not None:
            c.execute(*revoked)
            _none_revoked(c)
        _announce(ids, kwargs)
        for table, rows in _other_rows(stored_events, ids, kwargs):
            c.executemany(table.row_insert(), rows)
        _check_pupil_keys(c, stored_events, "?")
        return ids


class PostgresLedgerRecorder(PostgresApplicationRecorder):
    """Writes a batch with ``COPY`` (binary) instead of the library's one ``INSERT`` of an array of composites,
    and a few rows (a group commit's) as one ``INSERT … SELECT FROM unnest(arrays)`` per table, in two round trips.

    psycopg renders the library's array in Python, element by element, and PostgreSQL parses it back as text:
    about a fifth of ``submitBatch``'s CPU. ``COPY`` rows are formatted by psycopg's C code and read as binary,
    but each ``COPY`` is two round trips (0.2-0.3 ms each on some machines here), which a group commit of ten
    events feels more than the CPU: up to ``SMALL_WRITE`` events go as one statement per table, each column one
    array parameter (one message each, where an ``INSERT`` per row was one message and one wake-up of the server
    per row). A ``COPY`` writes the notification ids itself: the first round trip reserves them from the table's
    sequence (``setval(nextval() + n - 1)``, under the lock), so they are known before the rows are sent, and the
    receipts are signed while the rows are written (``on_ids``). The transaction is begun by hand in the first pipeline (the pool's connections autocommit), so
    ``BEGIN`` costs no round trip of its own, and a small write's ``COMMIT`` shares the second. The guarantees are
    the library's: one transaction for the events, their index rows and keys; the table's ``EXCLUSIVE`` lock
    taken before any notification id is drawn, so ids commit in order; a ``NOTIFY`` for subscribers; a
    duplicate (stream, version) or event id an ``IntegrityError`` that stores nothing (the connection's context
    rolls back on any exception, and nothing commits before the last statement).
    """

    placeholder = "%s"

    def __init__(self, datastore: Any, *args: Any, **kwargs: Any):
        database.guard(datastore)  # bounded waits on every connection, before the first is made (ledger/database.py)
        super().__init__(datastore, *args, **kwargs)
        self.sql_create_statements.extend(SQL(s.replace("{", "{{").replace("}", "}}")).format() for s in _INDEX_DDL)
        table = SQL("{}.{}").format(Identifier(self.datastore.schema), Identifier(self.events_table_name))
        self._events = _Table(table.as_string(), ("originator_id", "originator_version", "topic", "state"),
                              (self.datastore.originator_id_type, "int8", "text", "bytea"))
        self._numbered_events = _Table(table.as_string(), ("notification_id", *self._events.column_names), ("int8", *self._events.types))
        sequence = SQL("pg_get_serial_sequence({}, 'notification_id')").format(Literal(table.as_string()))
        self._reserve_ids = SQL("SELECT setval({seq}, nextval({seq}) + %s - 1) AS last").format(seq=sequence)

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        if not stored_events:
            return []
        small = len(stored_events) <= SMALL_WRITE
        held = _pupil_streams_to_hold(stored_events)
        revoked = _revoked_keys_query(kwargs.get("beside"), "%s")
        events = [(e.originator_id, e.originator_version, e.topic, e.state) for e in stored_events] if small else []
        with self.datastore.get_connection() as conn, conn.cursor() as curs, conn.cursor() as keys, conn.cursor() as drawn, \
                conn.cursor() as revocations:
            with conn.pipeline() as pipeline:  # round trip 1: BEGIN, the checks, the lock, NOTIFY, and the first write or read
                curs.execute("BEGIN")
                if held:
                    execute_in(keys, *_pupil_keys_query(held, "%s", lock=" FOR SHARE"), postgres=True)  # first, as before any write
                self._lock_table(curs)  # every writer takes it before drawing ids: nothing else inserts until this commits
                if revoked is not None:  # after the lock: it sees every revocation committed before this write can commit
                    execute_in(revocations, *revoked, postgres=True)  # never prepared, as every statement over a list of ids (execute_in)
                self._notify_channel(curs)
                if small:
                    drawn.execute(self._events.insert(returning=True), self._events.columns_of(events), prepare=True)
                else:
                    drawn.execute(self._reserve_ids, (len(stored_events),), prepare=True)
                pipeline.sync()
                if held:
                    _keys_found(keys, held)
                if revoked is not None:
                    _none_revoked(revocations)
                if small:  # round trip 2: the other tables and COMMIT
                    ids = _ids_in_order(drawn.fetchall(), events)
                    _announce(ids, kwargs)
                    for table, rows in _other_rows(stored_events, ids, kwargs):
                        curs.execute(table.insert(), table.columns_of(rows), prepare=True)
                    curs.execute("COMMIT")
                    return ids
            last = _first(drawn)["last"]
            ids = list(range(last - len(stored_events) + 1, last + 1))
            _announce(ids, kwargs)
            numbered = ((n, e.originator_id, e.originator_version, e.topic, e.state) for n, e in zip(ids, stored_events, strict=True))
            _copy(curs, self._numbered_events.copy(), self._numbered_events.types, numbered)
            for table, rows in _other_rows(stored_events, ids, kwargs):
                _copy(curs, table.copy(), table.types, rows)
            curs.execute("COMMIT")
        return ids


SMALL_WRITE = 64  # events: fewer go as one INSERT per table (fewest round trips: group commit), more by COPY (least CPU per row)


def _ids_in_order(drawn: Iterable[dict[str, Any]], events: Sequence[tuple[Any, ...]]) -> list[int]:
    """The notification id each event drew, in the events' order, from rows (originator_id, originator_version,
    notification_id) read back; exactly the events' own rows, or ``ProgrammingError``."""
    by_key = {(str(r["originator_id"]), r["originator_version"]): r["notification_id"] for r in drawn}
    wanted = [(str(originator_id), version) for originator_id, version, _, _ in events]
    if len(by_key) != len(wanted) or not all(key in by_key for key in wanted):  # only if something wrote without the lock
        raise ProgrammingError(f"read back {len(by_key)} notification ids for {len(events)} events, not theirs")
    return [by_key[key] for key in wanted]


def _first(curs: Any) -> Any:
    row = curs.fetchone()
    assert row is not None
    return row


def _copy(curs: Any, statement: Any, types: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """``COPY`` ``rows`` in binary (``types``: the columns' PostgreSQL types, in order)."""
    with curs.copy(statement) as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


# -- per-pupil data keys (crypto-shredding) -----------------------------------------------------


class SubjectErased(LedgerError):
    """The pupil's data key was destroyed: its events can no longer be read or added to."""

    def __init__(self, aggregate_id: uuid.UUID):
        super().__init__(LedgerError.one("pupil_erased", "$.subject", "this pupil's record has been erased", Category.CONFLICT).problems)
        self.aggregate_id = aggregate_id


class ErasedMeanwhile(IntegrityError):
    """A write to a pupil stream whose key another process destroyed: retried from the database, as a new pupil."""


@dataclass(frozen=True)
class PupilKey:
    key: bytes
    audit_id: str  # random pseudonym naming the pupil in access.* events; forgotten with the key


_NEW_KEYS: contextvars.ContextVar[dict[uuid.UUID, PupilKey] | None] = contextvars.ContextVar("new_pupil_keys", default=None)


class PupilKeys:
    """Each pupil's AES-256-GCM data key, stored in ``pupil_keys`` wrapped by the master key.

    Keys are cached for ``ttl`` seconds, so another process sees an erasure within that time, and then
    dropped: the cache holds only the keys used in the last ``ttl`` seconds (at most ``max_keys``), not every
    pupil the process ever touched (a projector catching up on 2 million events grew to 800 MB).
    A pupil's first event creates its key in the same transaction (``creating``).
    """

    def __init__(self, master_key: bytes, ttl: float = 2.0, max_keys: int = 200_000):
        self._master = AESGCM(master_key) if master_key else None
        self.ttl = ttl
        self.max_keys = max_keys
        self._cache: OrderedDict[uuid.UUID, tuple[float, PupilKey]] = OrderedDict()  # oldest first
        self._lock = threading.Lock()
        self.store: Any = None  # the Store they are read through, bound by it

    def __len__(self) -> int:
        """Keys held in memory now."""
        return len(self._cache)

    def _aad(self, aggregate_id: uuid.UUID) -> bytes:
        return b"pupil-ledger/pupil-key:" + aggregate_id.bytes

    def _wrap(self, aggregate_id: uuid.UUID, key: bytes) -> str:
        if self._master is None:
            raise RuntimeError("no pupil master key configured (PUPIL_MASTER_KEY)")
        nonce = os.urandom(12)
        return base64.b64encode(nonce + self._master.encrypt(nonce, key, self._aad(aggregate_id))).decode("ascii")

    def _unwrap(self, aggregate_id: uuid.UUID, wrapped: str) -> bytes:
        if self._master is None:
            raise RuntimeError("no pupil master key configured (PUPIL_MASTER_KEY)")
        raw = base64.b64decode(wrapped)
        return self._master.decrypt(raw[:12], raw[12:], self._aad(aggregate_id))

    def prefetch(self, aggregate_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, PupilKey]:
        """Load the keys of many pupils with one query (bulk reads). Only keys found are cached: an absent key
        is looked up again next time, so a pupil created meanwhile is never taken for one without a key."""
        read = self.read_of(aggregate_ids)
        return self.fetched(aggregate_ids, self.store.query_in(*read)) if read else {}

    @staticmethod
    def read_of(aggregate_ids: Sequence[uuid.UUID]) -> Read | None:
        """The read of these pupils' keys (for ``Store.query_in`` or ``Store.reads``); None: no pupil among them."""
        wanted = [str(i) for i in aggregate_ids if is_pupil_stream(i)]
        return Read("SELECT originator_id, wrapped_key, audit_id FROM pupil_keys WHERE {where}", "originator_id", wanted) if wanted else None

    def fetched(self, aggregate_ids: Sequence[uuid.UUID], rows: Sequence[tuple[Any, ...]]) -> dict[uuid.UUID, PupilKey]:
        """Unwrap and cache the keys ``rows`` (the result of ``read_of(aggregate_ids)``) hold."""
        wanted = [i for i in aggregate_ids if is_pupil_stream(i)]
        found = {uuid.UUID(r[0]): PupilKey(self._unwrap(uuid.UUID(r[0]), r[1]), r[2]) for r in rows}
        now = time.monotonic()
        with self._lock:
            for i in wanted:
                if i in found:
                    self._keep(i, found[i], now)
                else:
                    self._cache.pop(i, None)
        return found

    def _keep(self, aggregate_id: uuid.UUID, key: PupilKey, now: float) -> None:
        """Cache a key as fetched at ``now``, dropping those too old to be used again (holding ``_lock``)."""
        self._cache[aggregate_id] = (now, key)
        self._cache.move_to_end(aggregate_id)
        while self._cache:
            fetched, _ = next(iter(self._cache.values()))
            if now - fetched <= self.ttl and len(self._cache) <= self.max_keys:
                break
            self._cache.popitem(last=False)

    def data_key(self, aggregate_id: uuid.UUID, max_age: float | None = None) -> bytes | None:
        """The pupil's key, or None if it has none (never created, or erased)."""
        found = self.get(aggregate_id, max_age)
        return found.key if found else None

    def get(self, aggregate_id: uuid.UUID, max_age: float | None = None) -> PupilKey | None:
        pending = _NEW_KEYS.get()
        if pending and aggregate_id in pending:
            return pending[aggregate_id]
        with self._lock:
            cached = self._cache.get(aggregate_id)
        if cached is not None and time.monotonic() - cached[0] <= (self.ttl if max_age is None else max_age):
            return cached[1]
        return self.prefetch([aggregate_id]).get(aggregate_id)

    @contextmanager
    def creating(self, aggregate_ids: Sequence[uuid.UUID]) -> Iterator[list[tuple[str, str, str]]]:
        """Fresh keys for new pupils: yields their rows to insert with the events; cached once committed."""
        keys = {i: PupilKey(AESGCM.generate_key(256), str(uuid.uuid4())) for i in aggregate_ids}
        token = _NEW_KEYS.set(keys)
        try:
            yield [(str(i), self._wrap(i, k.key), k.audit_id) for i, k in keys.items()]
        finally:
            _NEW_KEYS.reset(token)
        now = time.monotonic()
        with self._lock:
            for i, k in keys.items():
                self._keep(i, k, now)

    def forget(self, aggregate_id: uuid.UUID) -> None:
        with self._lock:
            self._cache.pop(aggregate_id, None)


class SubjectMapper(Mapper[uuid.UUID]):
    """Encrypts a pupil's events with the pupil's own key (AES-GCM, bound to the row by associated data)."""

    keys: PupilKeys

    def _plain(self) -> Mapper[uuid.UUID]:
        return Mapper(self.transcoder, self.compressor, None)

    @staticmethod
    def _aad(aggregate_id: uuid.UUID, version: int, topic: str) -> bytes:
        return aggregate_id.bytes + version.to_bytes(8, "big") + topic.encode("utf-8")

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        aggregate_id = domain_event.originator_id
        if not is_pupil_stream(aggregate_id):
            return super().to_stored_event(domain_event)
        key = self.keys.data_key(aggregate_id)
        if key is None:
            raise ErasedMeanwhile(f"pupil stream {aggregate_id} has no key")
        plain = self._plain_stored(domain_event)
        nonce = os.urandom(12)
        sealed = nonce + AESGCM(key).encrypt(nonce, plain.state, self._aad(aggregate_id, plain.originator_version, plain.topic))
        return StoredEvent(plain.originator_id, plain.originator_version, plain.topic, sealed)

    def _plain_stored(self, domain_event: Any) -> StoredEvent:
        """The library's ``Mapper.to_stored_event`` with no cipher. A subject's own events (strings, a list of
        string dicts, datetimes) are written by orjson, datetimes in the library's own form: the same JSON the
        library's transcoder reads back (tested), for about 2 µs of the 7 its encoder takes."""
        if type(domain_event) not in _SUBJECT_EVENTS:
            return self._plain().to_stored_event(domain_event)
        state = dict(vars(domain_event))
        originator_id, originator_version = state.pop("originator_id"), state.pop("originator_version")
        try:
            data = orjson.dumps(state, default=_library_datetime, option=orjson.OPT_PASSTHROUGH_DATETIME)
        except TypeError:  # something else in the state after all: the library's way
            return self._plain().to_stored_event(domain_event)
        if self.compressor:
            data = self.compressor.compress(data)
        return StoredEvent(originator_id, originator_version, get_topic(type(domain_event)), data)

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        aggregate_id = as_uuid(stored_event.originator_id)
        if not is_pupil_stream(aggregate_id):
            return super().to_domain_event(stored_event)
        key = self.keys.data_key(aggregate_id)
        if key is None:
            raise SubjectErased(aggregate_id)
        state = bytes(stored_event.state)
        try:
            plain = AESGCM(key).decrypt(state[:12], state[12:], self._aad(aggregate_id, stored_event.originator_version, stored_event.topic))
        except InvalidTag:
            raise SubjectErased(aggregate_id) from None  # a stale key for a stream erased and re-created elsewhere
        return self._plain().to_domain_event(StoredEvent(aggregate_id, stored_event.originator_version, stored_event.topic, plain))


_SUBJECT_EVENTS = (Subject.Created, Subject.Recorded)


def _library_datetime(value: Any) -> dict[str, str]:
    """A datetime as eventsourcing's ``DatetimeAsISO`` transcoding writes it (anything else: TypeError)."""
    if type(value) is not datetime:
        raise TypeError(f"not a datetime: {type(value)}")
    return {"_type_": "datetime_iso", "_data_": value.isoformat()}


class InflatingCompressor(Compressor):
    """New events are stored as they are; events stored zlib-compressed (before 2026-11-28) are still read.

    Compressing saved about a third of each ~1 KB stored event (two thirds of it is the base64 payload), for
    15 µs of CPU per event: 6% of ``submitBatch``'s time, against disk that is cheap. A stored event's state
    is JSON, which starts with ``{``; a zlib stream starts with 0x78, so the two cannot be mistaken.
    """

    def compress(self, data: bytes) -> bytes:
        return data

    def decompress(self, data: bytes) -> bytes:
        return zlib.decompress(data) if data[:1] == b"\x78" else data


class LedgerApp(Application[uuid.UUID]):
    name = "Ledger"
    env: ClassVar[dict[str, str]] = {
        "AGGREGATE_CACHE_MAXSIZE": "20000",
        "CIPHER_TOPIC": "eventsourcing.cryptography:AESCipher",
        "COMPRESSOR_TOPIC": "ledger.store:InflatingCompressor",
    }

    def construct_mapper(self) -> Mapper[uuid.UUID]:
        mapper = self.factory.mapper(transcoder=self.construct_transcoder(), mapper_class=SubjectMapper)
        assert isinstance(mapper, SubjectMapper)
        mapper.keys = PupilKeys(base64.b64decode(self.env.get("PUPIL_MASTER_KEY", "")))
        return mapper

    @property
    def pupil_keys(self) -> PupilKeys:
        assert isinstance(self.mapper, SubjectMapper)
        return self.mapper.keys


@functools.cache  # once per process
def _autovacuum_warning() -> None:
    log.warning("PostgreSQL runs with autovacuum off: nothing keeps the planner's statistics, and as the tables "
                "grow it can read whole tables for one batch. Turn it on, or run ANALYZE after large loads.")


# -- the store facade -------------------------------------------------------------------------


def persistence_env(database_url: str | None, sqlite_path: str, cipher_key: str, create_tables: bool, master_key: bytes = b"") -> dict[str, str]:
    env = {"CIPHER_KEY": cipher_key, "CREATE_TABLE": "y" if create_tables else "n",
           "PUPIL_MASTER_KEY": base64.b64encode(master_key).decode("ascii")}
    if database_url:
        url = urlparse(database_url)
        if url.scheme not in ("postgresql", "postgres"):
            raise ValueError(f"PUPIL_LEDGER_DATABASE_URL must be postgresql://..., not {url.scheme}://")
        env.update({
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "APPLICATION_RECORDER_TOPIC": "ledger.store:PostgresLedgerRecorder",
            "POSTGRES_DBNAME": unquote(url.path.lstrip("/")) or "postgres",
            "POSTGRES_HOST": url.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(url.port or 5432),
            "POSTGRES_USER": unquote(url.username or os.environ.get("USER", "postgres")),
            "POSTGRES_PASSWORD": unquote(url.password or ""),
            "POSTGRES_LOCK_TIMEOUT": "5",
            "POSTGRES_CONNECT_TIMEOUT": str(database.CHECKOUT_SECONDS),  # the pool's checkout wait (ledger/database.py)
            "POSTGRES_POOL_SIZE": "4",
            "POSTGRES_MAX_OVERFLOW": "8",
        })
    else:
        env.update({
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "APPLICATION_RECORDER_TOPIC": "ledger.store:SQLiteLedgerRecorder",
            "SQLITE_DBNAME": sqlite_path,
            "SQLITE_LOCK_TIMEOUT": "30",
        })
    return env


@dataclass
class Store:
    """Thin adapter over the Application and the ledger's own tables."""

    app: LedgerApp
    _placeholder: str = field(init=False)
    _stream_id_type: str = field(init=False)  # the events table's originator_id column (PostgreSQL: uuid)

    def __post_init__(self) -> None:
        self._placeholder = getattr(self.app.recorder, "placeholder", "?")
        self._stream_id_type = getattr(getattr(self.app.recorder, "datastore", None), "originator_id_type", "text")
        self.app.pupil_keys.store = self  # the pupil keys are read through this store

    @classmethod
    def open(cls, env: dict[str, str]) -> Store:
        store = cls(LedgerApp(env=env))
        if _autovacuum_warning.cache_info().currsize == 0 and not store.keeps_statistics():
            _autovacuum_warning()
        return store

    def keeps_statistics(self) -> bool:
        """Whether the database keeps the query planner's statistics by itself (PostgreSQL: autovacuum is on)."""
        return not self.is_postgres or self.query("SELECT current_setting('autovacuum')")[0][0] == "on"

    def close(self) -> None:
        self.app.close()

    @property
    def is_postgres(self) -> bool:
        return self._placeholder == "%s"

    @contextmanager
    def cursor(self, commit: bool = False) -> Iterator[Any]:
        with self.app.recorder.datastore.transaction(commit=commit) as cur:  # type: ignore[attr-defined]
            yield cur

    def where_in(self, column: str, values: Sequence[Any], sql_type: str = "text") -> tuple[str, list[Any]]:
        """``column`` is one of ``values``, written with ``?`` placeholders for ``query`` (see ``where_in``)."""
        return where_in(column, values, self.is_postgres, sql_type=sql_type)

    def sql(self, statement: str) -> str:
        return statement.replace("?", self._placeholder)

    @contextmanager
    def _statement(self, commit: bool) -> Iterator[Any]:
        """A cursor for one statement. On PostgreSQL it runs on its own (the pool's connections autocommit):
        a statement alone is a transaction already, and ``BEGIN`` and ``COMMIT`` around it would cost two
        more round trips (0.2-0.3 ms each on some machines here)."""
        if self.is_postgres:
            with self.app.recorder.datastore.cursor() as cur:  # type: ignore[attr-defined]
                cur.row_factory = tuple_row  # the library's connections make dicts; our reads want tuples (fetch_tuples)
                yield cur
        else:
            with self.cursor(commit=commit) as cur:
                yield cur

    def query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._statement(commit=False) as cur:
            cur.execute(self.sql(statement), tuple(params))
            return fetch_tuples(cur)

    def query_in(self, statement: str, column: str, values: Sequence[Any], sql_type: str = "text") -> list[tuple[Any, ...]]:
        """The rows of ``statement`` (``?`` marks) whose ``{where}`` says ``column`` (of ``sql_type`` on PostgreSQL)
        is one of ``values``, run as ``execute_in`` runs it: never prepared."""
        return self.reads([Read(statement, column, values, sql_type)])[0]

    def reads(self, reads: Sequence[Read], meanwhile: Callable[[], None] = lambda: None) -> list[list[tuple[Any, ...]]]:
        """The rows of each read, in order. On PostgreSQL they go together, in one round trip on one connection
        (a pipeline): a group commit's reads took three round trips and three checkouts from the pool, whose
        Python side cost about as much as the queries. ``meanwhile`` runs while the database answers (on SQLite,
        before the reads)."""
        statements = []
        for read in reads:
            where, params = self.where_in(read.column, read.values, read.sql_type)
            statements.append((self.sql(read.statement.format(where=where)), params))
        if not self.is_postgres:
            meanwhile()
            with self._statement(commit=False) as cur:
                out = []
                for statement, params in statements:
                    execute_in(cur, statement, params, postgres=False)
                    out.append(fetch_tuples(cur))
                return out
        with self.app.recorder.datastore.get_connection() as conn:  # type: ignore[attr-defined]
            cursors = [conn.cursor(row_factory=tuple_row) for _ in statements]
            with conn.pipeline():
                for cur, (statement, params) in zip(cursors, statements, strict=True):
                    execute_in(cur, statement, params, postgres=True)  # sent as it is executed, in a pipeline
                meanwhile()
            return [cur.fetchall() for cur in cursors]

    def execute(self, statement: str, params: Sequence[Any] = ()) -> None:
        """One statement, committed. (Several that must commit together: ``cursor(commit=True)``.)"""
        with self._statement(commit=True) as cur:
            cur.execute(self.sql(statement), tuple(params))

    def is_initialised(self) -> bool:
        try:
            return bool(self.query("SELECT value FROM ledger_meta WHERE name = 'initialised_at'"))
        except Exception:  # noqa: BLE001 - a missing table is the answer "no"
            return False

    # subjects ------------------------------------------------------------------------------

    def subject(self, aggregate_id: uuid.UUID, fresh: bool = False) -> Subject | None:
        """The subject's stream, or None. A pupil without a live data key has none (never seen, or erased);
        ``fresh`` re-checks the key in the database (reads of identified records)."""
        if is_pupil_stream(aggregate_id) and self.app.pupil_keys.data_key(aggregate_id, max_age=0 if fresh else None) is None:
            self._evict(aggregate_id)
            return None
        try:
            found: Any = self.app.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        assert isinstance(found, Subject)
        return found

    def subjects(self, aggregate_ids: Collection[uuid.UUID], chunk: int = 500) -> dict[uuid.UUID, Subject]:
        """The existing subjects among ``aggregate_ids``, read with one round trip per ``chunk`` ids (the batch path)."""
        return self.lookups([], aggregate_ids, chunk)[1]

    def lookups(self, event_ids: Sequence[str], aggregate_ids: Collection[uuid.UUID], chunk: int = 500,
                meanwhile: Callable[[], None] = lambda: None) -> tuple[dict[str, IndexRow], dict[uuid.UUID, Subject]]:
        """What a batch reads before its checks: the index rows of ``event_ids`` (as ``index_rows``) and the
        existing subjects among ``aggregate_ids``, with their pupils' keys. Each ``chunk`` of ids is one round
        trip on PostgreSQL (``reads``), the first with the event ids' read; ``meanwhile`` runs during the first."""
        ids = list(aggregate_ids)
        parts = [ids[start:start + chunk] for start in range(0, len(ids), chunk)] or [[]]
        index: list[tuple[Any, ...]] = []
        events: list[tuple[Any, ...]] = []
        for n, part in enumerate(parts):
            with_index = n == 0 and bool(event_ids)
            keys = PupilKeys.read_of(part)
            reads = [self._index_read(event_ids)] if with_index else []
            reads += [keys] if keys else []
            reads += [self._events_read(part)] if part else []
            results = self.reads(reads, meanwhile if n == 0 else lambda: None) if reads else []
            if not reads and n == 0:
                meanwhile()
            if with_index:
                index = results.pop(0)
            if keys:
                self.app.pupil_keys.fetched(part, results.pop(0))
            if part:
                events.extend(results.pop(0))
        return {r[0]: IndexRow(*r) for r in index}, self._folded(events)

    def _events_read(self, aggregate_ids: Sequence[uuid.UUID]) -> Read:
        return Read(f"SELECT originator_id, originator_version, topic, state FROM {self.events_table} WHERE {{where}} "
                    "ORDER BY originator_id, originator_version", "originator_id",
                    aggregate_ids if self.is_postgres else [i.hex for i in aggregate_ids], self._stream_id_type)

    def _folded(self, rows: Sequence[tuple[Any, ...]]) -> dict[uuid.UUID, Subject]:
        """The subjects whose stored events ``rows`` are, in stream and version order (their keys fetched)."""
        found: dict[uuid.UUID, Any] = {}
        for originator_id, version, topic, state in rows:
            key = as_uuid(originator_id)
            event: Any = self.app.mapper.to_domain_event(StoredEvent(key, version, topic, bytes(state)))
            found[key] = event.mutate(found.get(key))
        return found

    def append(self, events: Sequence[Any], index_rows: Sequence[dict[str, Any]], key_rows: Sequence[tuple[str, str]],
               on_ids: Callable[[Sequence[int]], None] | None = None, beside: Beside | None = None) -> list[int]:
        """Store the events and their index rows in one transaction (all or nothing), with what ``beside`` holds and
        checks; new pupils get their data key in it. Returns the events' notification ids (their sequence numbers), in order.

        ``on_ids`` hears the notification ids the events are given once they are known, before the commit (and
        again if the write is retried); nothing it makes may be shown to anyone before ``append`` returns.
        """
        new_pupils = [e.originator_id for e in events if e.originator_version == 1 and is_pupil_stream(e.originator_id)]
        with self.app.pupil_keys.creating(new_pupils) as pupil_key_rows:
            # The recorder directly: ``Application.save`` would only sort these events from aggregates with a
            # typing.Protocol isinstance check each (slow), and no aggregate is passed to cache or snapshot; the
            # library's ``EventStore.put`` would also build a ``Recording`` per event, of which only the id is used.
            stored = [self.app.mapper.to_stored_event(event) for event in events]
            ids = self.app.recorder.insert_events(stored, index_rows=index_rows, key_rows=key_rows, pupil_key_rows=pupil_key_rows, on_ids=on_ids,
                                                  beside=beside)
            return list(ids or [])

    def _evict(self, aggregate_id: uuid.UUID) -> None:
        cache = getattr(self.app.repository, "cache", None)
        if cache is not None:
            with suppress(KeyError):
                cache.get(aggregate_id, evict=True)

    def erase_subject(self, aggregate_id: uuid.UUID) -> int:
        """Crypto-shred a pupil: delete its data key and move its rows to a fresh random id, so nothing left in
        the database links them to the pupil's pseudonym. Digests, sequences and times stay (the log still
        verifies). Returns the number of events made unreadable (0: no such pupil, or already erased)."""
        tombstone = as_pupil_uuid(os.urandom(16))
        def as_param(aggregate: uuid.UUID) -> Any:
            return aggregate if self.is_postgres else aggregate.hex

        with self.cursor(commit=True) as cur:
            if not self.is_postgres:
                cur.execute("PRAGMA secure_delete = ON")  # overwrite freed content instead of leaving it in free pages
            cur.execute(self.sql("DELETE FROM pupil_keys WHERE originator_id = ?"), (str(aggregate_id),))
            if rowcount(cur) != 1:
                return 0
            cur.execute(self.sql(f"UPDATE {self.events_table} SET originator_id = ? WHERE originator_id = ?"),
                        (as_param(tombstone), as_param(aggregate_id)))
            erased = rowcount(cur)
            cur.execute(self.sql("UPDATE ledger_index SET originator_id = ? WHERE originator_id = ?"), (str(tombstone), str(aggregate_id)))
        self.app.pupil_keys.forget(aggregate_id)
        self._evict(aggregate_id)
        self._scrub()
        return erased

    def _scrub(self) -> None:
        """Best effort to leave no old copy of a destroyed key in the database files (docs/access.md)."""
        datastore: Any = self.app.recorder.datastore  # type: ignore[attr-defined]
        if self.is_postgres:
            with datastore.get_connection() as conn:
                conn.execute("VACUUM pupil_keys")
        else:
            with datastore.get_connection(commit=True) as conn:
                conn._sqlite_conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # index -------------------------------------------------------------------------------

    def index_rows(self, event_ids: Sequence[str]) -> dict[str, IndexRow]:
        if not event_ids:
            return {}
        rows = self.query_in(*self._index_read(event_ids))
        return {r[0]: IndexRow(*r) for r in rows}

    @staticmethod
    def _index_read(event_ids: Sequence[str]) -> Read:
        return Read(f"SELECT {', '.join(INDEX_COLUMNS)} FROM ledger_index WHERE {{where}}", "event_id", event_ids)

    def index_for_subject(self, originator_id: uuid.UUID) -> dict[int, IndexRow]:
        rows = self.query(f"SELECT {', '.join(INDEX_COLUMNS)} FROM ledger_index WHERE originator_id = ?", (str(originator_id),))
        return {r[3]: IndexRow(*r) for r in rows}

    def key_owner(self, key_id: str) -> str | None:
        rows = self.query("SELECT org_id FROM ledger_keys WHERE key_id = ?", (key_id,))
        return rows[0][0] if rows else None

    @property
    def events_table(self) -> str:
        return "ledger_events" if self.is_postgres else "stored_events"

    def count_events(self) -> int:
        """Accepted events, counted by their index rows."""
        return int(self.query("SELECT COUNT(*) FROM ledger_index")[0][0])

    def count_stored_events(self) -> int:
        """Rows in the event store itself (equal to ``count_events`` unless something was half-written)."""
        return int(self.query(f"SELECT COUNT(*) FROM {self.events_table}")[0][0])

    def max_sequence(self) -> int:
        return int(self.query("SELECT COALESCE(MAX(sequence), 0) FROM ledger_index")[0][0])


