"""The store facade: the ledger's reads and writes of the event store and its own tables, by name.

Every accepted envelope is exactly one stored event (``Subject.Created`` for the subject's first,
``Subject.Recorded`` after), encrypted at rest (AES-GCM). Beside the library's tables, the
same transaction writes ``ledger_index`` (event_id -> sequence, digests: idempotency and
look-ups) and ``ledger_keys`` (key id -> organisation), so a 2xx is only ever sent for an event
whose index row and stored event committed together.

A pupil's stream (a version-8 id, see ``secrets.pupil_id``) is encrypted with that pupil's own data
key, kept in ``pupil_keys`` wrapped by the master key from the secrets folder; ``erase_subject``
deletes the key (crypto-shredding, docs/access.md). Other streams use the store key.

The parts live in ``ledger/storage/`` (aggregate, tables, SQL dialect, recorders, keys, cipher, application, and
the tables of research releases and tokens: ``Store.releases``, ``Store.tokens``); the names other modules import
from here are re-exported below. Over 400 lines as one concept: the one door to the database above the storage
layer, whose every statement is a named method here or in the parts it delegates to.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import os
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import StoredEvent
from psycopg.rows import tuple_row

from ledger.storage.aggregate import Entry, Subject, record_of
from ledger.storage.application import LedgerApp, persistence_env
from ledger.storage.cipher import InflatingCompressor, SubjectMapper
from ledger.storage.keys import ErasedMeanwhile, PupilKey, PupilKeys, SubjectErased
from ledger.storage.recorders import KeyRevokedMeanwhile, PostgresLedgerRecorder, SQLiteLedgerRecorder
from ledger.storage.releases import ReleaseTables
from ledger.storage.schema import INDEX_COLUMNS, Beside, IndexRow
from ledger.storage.secrets import as_pupil_uuid, is_pupil_stream
from ledger.storage.sql import Read, as_uuid, execute_in, fetch_tuples, rowcount, where_in
from ledger.storage.tokens import TokenTable

_record_of = record_of  # the name projections imported before it was public

__all__ = [
    "INDEX_COLUMNS",
    "Beside",
    "Entry",
    "ErasedMeanwhile",
    "IndexRow",
    "InflatingCompressor",
    "KeyRevokedMeanwhile",
    "LedgerApp",
    "PostgresLedgerRecorder",
    "PupilKey",
    "PupilKeys",
    "Read",
    "SQLiteLedgerRecorder",
    "Store",
    "Subject",
    "SubjectErased",
    "SubjectMapper",
    "as_uuid",
    "execute_in",
    "fetch_tuples",
    "persistence_env",
    "record_of",
    "rowcount",
    "where_in",
]

log = logging.getLogger("pupil_ledger.store")

# The transaction open in this thread or task, and its store (``Store.cursor``).
_TRANSACTION: contextvars.ContextVar[tuple[Store, Any] | None] = contextvars.ContextVar("store_transaction", default=None)


@functools.cache  # once per process
def _autovacuum_warning() -> None:
    log.warning(
        "PostgreSQL runs with autovacuum off: nothing keeps the planner's statistics, and as the tables "
        "grow it can read whole tables for one batch. Turn it on, or run ANALYZE after large loads."
    )


@dataclass
class Store:
    """Thin adapter over the Application and the ledger's own tables."""

    app: LedgerApp
    _placeholder: str = field(init=False)
    _stream_id_type: str = field(init=False)  # the events table's originator_id column (PostgreSQL: uuid)
    releases: ReleaseTables = field(init=False, repr=False, compare=False)  # the research releases' tables
    tokens: TokenTable = field(init=False, repr=False, compare=False)  # the ledger's bearer tokens

    def __post_init__(self) -> None:
        self._placeholder = getattr(self.app.recorder, "placeholder", "?")
        self._stream_id_type = getattr(getattr(self.app.recorder, "datastore", None), "originator_id_type", "text")
        self.app.pupil_keys.store = self  # the pupil keys are read through this store
        self.releases, self.tokens = ReleaseTables(self), TokenTable(self)

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
        """A transaction. Inside another of this store's, in the same thread or task, it is that one: what runs in
        ``erase_subject``'s ``also`` commits with the erasure or not at all."""
        joined = _TRANSACTION.get()
        if joined is not None and joined[0] is self:
            yield joined[1]
            return
        with self.app.recorder.datastore.transaction(commit=commit) as cur:  # type: ignore[attr-defined]
            token = _TRANSACTION.set((self, cur))
            try:
                yield cur
            finally:
                _TRANSACTION.reset(token)

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

    def select_in(self, cur: Any, statement: str, column: str, values: Sequence[Any], *after: Any) -> list[tuple[Any, ...]]:
        """``query_in`` on the caller's cursor (in its transaction): the rows of ``statement`` (``?`` marks, ``{where}``
        for ``column`` being one of ``values``; ``after``: the values of the marks after it)."""
        where, params = self.where_in(column, values)
        execute_in(cur, self.sql(statement.format(where=where)), [*params, *after], self.is_postgres)
        return fetch_tuples(cur)

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

    def mark_initialised(self, at: str) -> None:
        """Record that ``init`` finished (its genesis events are committed): ``is_initialised`` answers yes from now."""
        self.execute("INSERT INTO ledger_meta (name, value) VALUES ('initialised_at', ?)", (at,))

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

    def lookups(
        self, event_ids: Sequence[str], aggregate_ids: Collection[uuid.UUID], chunk: int = 500, meanwhile: Callable[[], None] = lambda: None
    ) -> tuple[dict[str, IndexRow], dict[uuid.UUID, Subject]]:
        """What a batch reads before its checks: the index rows of ``event_ids`` (as ``index_rows``) and the
        existing subjects among ``aggregate_ids``, with their pupils' keys. Each ``chunk`` of ids is one round
        trip on PostgreSQL (``reads``), the first with the event ids' read; ``meanwhile`` runs during the first."""
        ids = list(aggregate_ids)
        parts = [ids[start : start + chunk] for start in range(0, len(ids), chunk)] or [[]]
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
        return Read(
            f"SELECT originator_id, originator_version, topic, state FROM {self.events_table} WHERE {{where}} "
            "ORDER BY originator_id, originator_version",
            "originator_id",
            aggregate_ids if self.is_postgres else [i.hex for i in aggregate_ids],
            self._stream_id_type,
        )

    def events_in_stream_order(
        self, after: tuple[uuid.UUID, int], below: uuid.UUID | None, through: int, limit: int
    ) -> list[tuple[uuid.UUID, int, str, bytes]]:
        """A page of stored events, (stream, version, topic, state), in stream and version order: the next
        ``limit`` after stream and version ``after``, of streams before ``below`` (None: to the end), among the log's
        first ``through`` (by sequence). A keyset page: a row value is an index range, page after page."""
        position = "notification_id" if self.is_postgres else "rowid"
        below_sql = " AND originator_id < ?" if below is not None else ""
        rows = self.query(
            f"SELECT originator_id, originator_version, topic, state FROM {self.events_table} "
            f"WHERE (originator_id, originator_version) > (?, ?){below_sql} AND {position} <= ? "
            "ORDER BY originator_id, originator_version LIMIT ?",
            (self._stream_param(after[0]), after[1], *([self._stream_param(below)] if below is not None else []), through, limit),
        )
        return [(as_uuid(r[0]), int(r[1]), str(r[2]), bytes(r[3])) for r in rows]

    def _stream_param(self, stream: uuid.UUID) -> Any:
        """A stream id as the events table stores it: a uuid on PostgreSQL, 32 hex digits on SQLite."""
        return stream if self.is_postgres else stream.hex

    def _folded(self, rows: Sequence[tuple[Any, ...]]) -> dict[uuid.UUID, Subject]:
        """The subjects whose stored events ``rows`` are, in stream and version order (their keys fetched)."""
        found: dict[uuid.UUID, Any] = {}
        for originator_id, version, topic, state in rows:
            key = as_uuid(originator_id)
            event: Any = self.app.mapper.to_domain_event(StoredEvent(key, version, topic, bytes(state)))
            found[key] = event.mutate(found.get(key))
        return found

    def append(
        self,
        events: Sequence[Any],
        index_rows: Sequence[dict[str, Any]],
        key_rows: Sequence[tuple[str, str]],
        on_ids: Callable[[Sequence[int]], None] | None = None,
        beside: Beside | None = None,
    ) -> list[int]:
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
            ids = self.app.recorder.insert_events(
                stored, index_rows=index_rows, key_rows=key_rows, pupil_key_rows=pupil_key_rows, on_ids=on_ids, beside=beside
            )
            return list(ids or [])

    def _evict(self, aggregate_id: uuid.UUID) -> None:
        cache = getattr(self.app.repository, "cache", None)
        if cache is not None:
            with suppress(KeyError):
                cache.get(aggregate_id, evict=True)

    def erase_subject(self, aggregate_id: uuid.UUID, also: Callable[[], object] = lambda: None) -> int:
        """Crypto-shred a pupil: delete its data key and move its rows to a fresh random id, so nothing left in
        the database links them to the pupil's pseudonym. Digests, sequences and times stay (the log still
        verifies). Returns the number of events made unreadable (0: no such pupil, or already erased).
        ``also`` runs in the same transaction once the key is gone (the views forget the pupil: ``Ledger.erase``)."""
        tombstone = as_pupil_uuid(os.urandom(16))

        with self.cursor(commit=True) as cur:
            if not self.is_postgres:
                cur.execute("PRAGMA secure_delete = ON")  # overwrite freed content instead of leaving it in free pages
            cur.execute(self.sql("DELETE FROM pupil_keys WHERE originator_id = ?"), (str(aggregate_id),))
            if rowcount(cur) != 1:
                return 0
            cur.execute(
                self.sql(f"UPDATE {self.events_table} SET originator_id = ? WHERE originator_id = ?"),
                (self._stream_param(tombstone), self._stream_param(aggregate_id)),
            )
            erased = rowcount(cur)
            cur.execute(self.sql("UPDATE ledger_index SET originator_id = ? WHERE originator_id = ?"), (str(tombstone), str(aggregate_id)))
            also()
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

    def streams_with_event_type(self, event_type: str) -> list[uuid.UUID]:
        """The streams (subjects) holding at least one accepted event of ``event_type``."""
        return [uuid.UUID(str(r[0])) for r in self.query("SELECT DISTINCT originator_id FROM ledger_index WHERE type = ?", (event_type,))]

    def key_owner(self, key_id: str) -> str | None:
        rows = self.query("SELECT org_id FROM ledger_keys WHERE key_id = ?", (key_id,))
        return rows[0][0] if rows else None

    # the use cases' statements (ledger/*.py hold no SQL) ----------------------------------------

    def count_events_of(self, originator_id: uuid.UUID) -> int:
        """Events on one stream, counted by their index rows."""
        return int(self.query("SELECT COUNT(*) FROM ledger_index WHERE originator_id = ?", (str(originator_id),))[0][0])

    def org_streams(self) -> list[uuid.UUID]:
        """The streams of every organisation registered (or recorded as an unregistered provider)."""
        rows = self.query(
            "SELECT DISTINCT originator_id FROM ledger_index WHERE type IN ('org.registered', 'provider.unregistered_recorded')"
        )
        return [uuid.UUID(originator) for (originator,) in rows]

    def claim_counts(self, since: str, until: str) -> list[tuple[str, str, int, str]]:
        """(organisation, code, count, latest received_at) of ``ledger_claims`` received from ``since`` until before ``until``."""
        rows = self.query(
            "SELECT org_id, code, COUNT(*), MAX(received_at) FROM ledger_claims WHERE received_at >= ? AND received_at < ? "
            "GROUP BY org_id, code",
            (since, until),
        )
        return [(org, code, int(count), latest) for org, code, count, latest in rows]

    def access_rows(self, viewer_org: str | None, after: int, limit: int) -> list[IndexRow]:
        """The index rows of access events (by ``viewer_org``'s principals, or anyone's) after sequence ``after``, oldest
        first: ``ledger_access`` holds every access event's sequence and viewer organisation (written with it), so an
        organisation's views are read by its index, not found by decrypting every view in the ledger."""
        by_viewer = "a.viewer_org = ? AND " if viewer_org is not None else ""
        columns = ", ".join(f"i.{c}" for c in INDEX_COLUMNS)
        rows = self.query(
            f"SELECT {columns} FROM ledger_access a JOIN ledger_index i ON i.sequence = a.sequence "
            f"WHERE {by_viewer}a.sequence > ? ORDER BY a.sequence LIMIT ?",
            (*([viewer_org] if viewer_org is not None else []), after, limit),
        )
        return [IndexRow(*r) for r in rows]

    def newest_received_at(self, after: int, through: int) -> str | None:
        """The latest ``received_at`` among the events with ``after < sequence <= through`` (None if there are none)."""
        found = self.query("SELECT MAX(received_at) FROM ledger_index WHERE sequence > ? AND sequence <= ?", (after, through))[0][0]
        return str(found) if found else None

    def earliest_received_after(self, sequence: int) -> str | None:
        """The earliest ``received_at`` among the events later in sequence than ``sequence`` (None if there are none)."""
        found = self.query("SELECT MIN(received_at) FROM ledger_index WHERE sequence > ?", (sequence,))[0][0]
        return str(found) if found else None

    def count_received_after_sequence(self, sequence: int, received_at: str) -> int:
        """Events later in sequence than ``sequence`` but received at or before ``received_at`` (committed out of order)."""
        return int(self.query("SELECT COUNT(*) FROM ledger_index WHERE sequence > ? AND received_at <= ?", (sequence, received_at))[0][0])

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
