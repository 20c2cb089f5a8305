"""The recorders: the library's SQLite and PostgreSQL recorders, writing in the same transaction as the events
their index rows, the signing keys, new pupils' keys and what ``Beside`` holds, and checking that no key the events
were accepted under was revoked and no pupil written to was erased meanwhile."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError, ProgrammingError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from eventsourcing.utils import retry
from psycopg.sql import SQL, Identifier, Literal

from ledger.storage import database
from ledger.storage.keys import ErasedMeanwhile
from ledger.storage.schema import (
    ACCESS_TABLE,
    CLAIMS_TABLE,
    INDEX_COLUMNS,
    INDEX_DDL,
    INDEX_TABLE,
    KEYS_TABLE,
    PUPIL_KEYS_TABLE,
    REVOCATIONS_TABLE,
    Beside,
    Table,
)
from ledger.storage.secrets import is_pupil_stream
from ledger.storage.sql import as_uuid, execute_in, where_in


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


def _match_index_rows(stored_events: Sequence[StoredEvent], ids: Sequence[int], rows: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
    by_position = {(str(s.originator_id), s.originator_version): n for s, n in zip(stored_events, ids, strict=True)}
    out = []
    for row in rows:
        sequence = by_position[(row["originator_id"], row["originator_version"])]
        out.append(tuple(sequence if c == "sequence" else row[c] for c in INDEX_COLUMNS))
    return out


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


def _announce(ids: Sequence[int], kwargs: dict[str, Any]) -> None:
    """Tell the writer's ``on_ids`` (if any) the notification ids the events will have, before the commit: the
    receipts are signed meanwhile. It may hear again, with other ids, if the write is retried; nothing it makes
    may leave the process before the write returns."""
    on_ids = kwargs.get("on_ids")
    if on_ids is not None:
        on_ids(ids)


def _other_rows(
    stored_events: Sequence[StoredEvent], ids: Sequence[int], kwargs: dict[str, Any]
) -> list[tuple[Table, Sequence[Sequence[Any]]]]:
    """What a write stores beside the events, in this order: the index rows (given the ids the events drew),
    the signing keys, the new pupils' keys and what ``Beside`` holds; only the tables that have rows."""
    tables: list[tuple[Table, Sequence[Sequence[Any]]]] = [
        (INDEX_TABLE, _match_index_rows(stored_events, ids, kwargs.get("index_rows", ()))),
        (KEYS_TABLE, kwargs.get("key_rows", ())),
        (PUPIL_KEYS_TABLE, kwargs.get("pupil_key_rows", ())),
    ]
    beside: Beside | None = kwargs.get("beside")
    if beside is not None and (beside.access or beside.claims):
        sequence_of = {(str(s.originator_id), s.originator_version): n for s, n in zip(stored_events, ids, strict=True)}
        tables += [
            (ACCESS_TABLE, [(sequence_of[stream, version], viewer) for stream, version, viewer in beside.access]),
            (CLAIMS_TABLE, [(sequence_of[stream, version], org, code, beside.received_at) for stream, version, org, code in beside.claims]),
        ]
    if beside is not None:
        tables.append((REVOCATIONS_TABLE, beside.revocations))
    return [(table, rows) for table, rows in tables if rows]


class SQLiteLedgerRecorder(SQLiteApplicationRecorder):
    placeholder = "?"

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), *INDEX_DDL]

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
        database.guard(datastore)  # bounded waits on every connection, before the first is made (ledger/storage/database.py)
        super().__init__(datastore, *args, **kwargs)
        self.sql_create_statements.extend(SQL(s.replace("{", "{{").replace("}", "}}")).format() for s in INDEX_DDL)
        table = SQL("{}.{}").format(Identifier(self.datastore.schema), Identifier(self.events_table_name))
        self._events = Table(
            table.as_string(),
            ("originator_id", "originator_version", "topic", "state"),
            (self.datastore.originator_id_type, "int8", "text", "bytea"),
        )
        self._numbered_events = Table(table.as_string(), ("notification_id", *self._events.column_names), ("int8", *self._events.types))
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
        with (
            self.datastore.get_connection() as conn,
            conn.cursor() as curs,
            conn.cursor() as keys,
            conn.cursor() as drawn,
            conn.cursor() as revocations,
        ):
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
