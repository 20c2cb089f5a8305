"""Projection runner: follows the ledger's notification log and keeps the fact tables of every view.

Exactly once: the next batch of the log is read, then one transaction locks the views' positions,
checks they are still those the batch was read from, writes the batch's rows into every view that has
not seen it, and moves each position to the batch's last sequence. A crash anywhere rolls back the whole batch, so no event is ever applied twice or skipped.
A view whose ``version`` changed is dropped and rebuilt from the log.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import StoredEvent

from ledger.core.catalogue import event_types
from ledger.storage.secrets import is_pupil_stream
from ledger.storage.store import PupilKey, Store, SubjectErased, as_uuid, fetch_tuples, record_of, rowcount

from . import cases, ehcp, orgs, plans, pupils, read_model
from .config import ViewSettings
from .facts import LogEvent, Moment, View, in_force

VIEWS: tuple[View, ...] = (
    orgs.VIEW,
    pupils.VIEW,
    cases.VIEW,
    ehcp.VIEW,
    plans.VIEW,
    *read_model.views(ViewSettings.from_env()),
)  # the read model after pupils
POSITIONS_DDL = "CREATE TABLE IF NOT EXISTS pv_positions (view TEXT PRIMARY KEY, position BIGINT NOT NULL, version INTEGER NOT NULL)"
DEFAULT_BATCH = 500
# On PostgreSQL a projector with no batch size of its own doubles its batch after each full one, up to this, while it
# is far behind (a rebuild, a new worker), and goes back to DEFAULT_BATCH at the log's end. At 300,000 pupils the
# read model rebuilt 1.4x faster in batches of 2,000 and 1.5x in 5,000 than in 500: a pupil's events meet in fewer
# batches, so fewer interval rows are written and then ended. The cost is a longer transaction (about half a second
# here), which an erasure waits for; SQLite keeps DEFAULT_BATCH, as its one write lock holds up every submission.
CATCH_UP_BATCH = 4000
# On PostgreSQL a view's tables are analysed in the batch that takes its position past this, and past each doubling of
# it (100,000, 200,000, 400,000, ... events). A rebuilt table has no statistics until autovacuum gets round to it (never,
# where it is off), and without them the planner took the upkeep's searches by a batch's keys for reads of most of the
# table: at 1.34 M events the model's stored rows of a batch's pupils (``read_model._load_tails``) were found through
# every row known now, 230 ms a batch where their pupils' index takes a few. Doubling, the statistics follow a table's
# growth (the planner scales them by its size now), remade a few times in a rebuild and rarely after. Each round costs
# about 0.2 s (every view's tables, their samples of 30,000 rows): from 10,000 on, the four rounds of a rebuild from
# 100 k events cost it 8%, and the plans were cheap enough before 100,000
ANALYZE_FROM = 100_000


def doubled(before: int, after: int, first: int) -> bool:
    """Whether a position moving from ``before`` to ``after`` passes ``first`` or one of its doublings."""
    if first < 1:  # (0 never doubles: the search would not end)
        raise ValueError(f"the first mark is a position after the log's start, not {first}")
    mark = first
    while mark <= after:
        if before < mark:
            return True
        mark *= 2
    return False


def views_named(names: Sequence[str] | None) -> tuple[View, ...]:
    if not names:
        return VIEWS
    known = {v.name: v for v in VIEWS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown view {', '.join(unknown)}; views are {', '.join(known)}")
    return tuple(known[n] for n in names)


def in_dependency_order(views: Sequence[View]) -> tuple[View, ...]:
    """``views`` ordered so that each comes after those of them it reads (``View.reads``), else as given: a projector
    writes a batch into its views in this order, so a view's upkeep reads what the batch wrote into those it reads."""
    names = {v.name for v in views}
    ordered: list[View] = []
    pending = list(views)
    while pending:
        placed = {v.name for v in ordered}
        ready = next((v for v in pending if all(r in placed or r not in names for r in v.reads)), None)
        if ready is None:
            raise ValueError(f"views that read each other: {', '.join(v.name for v in pending)}")
        ordered.append(ready)
        pending.remove(ready)
    return tuple(ordered)


@dataclass
class _Batch:
    """A batch of the log read and decrypted: its rows from ``start``, the pupils it touches, its events."""

    start: int
    size: int  # the rows asked for (fewer came: the log's end)
    rows: list[tuple[Any, ...]]
    pupils: set[uuid.UUID]
    events: list[LogEvent]
    keyed: bool  # pupils have their own keys (erasable): check in the transaction that theirs still exist
    made: Made | None = None  # the fact views' rows of its events, made on the read-ahead thread (``_read_and_make``)


Made = dict[str, dict[int, list[tuple[str, tuple[Any, ...]]]]]  # view -> event's sequence -> (table, row) of its rows


class Projector:
    """Keeps ``views`` up to date; ``step()`` makes it a background follower."""

    name = "projections"

    def __init__(self, store: Store, views: Sequence[View] = VIEWS, batch_size: int | None = None, ready: bool = False):
        """``batch_size``: events per transaction, exactly; None: DEFAULT_BATCH, growing to CATCH_UP_BATCH while far
        behind on PostgreSQL."""
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"a batch is at least 1 event, not {batch_size}")  # 0 read nothing; SQLite takes LIMIT -1 as no limit
        self.store = store
        self.views = in_dependency_order(views)
        mine = {v.name for v in self.views}
        # the views read by these but projected elsewhere (another worker's): these never pass their positions
        self._outside = sorted({r for v in self.views for r in v.reads if r not in mine})
        known = {v.name for v in VIEWS}
        unknown = [f"{v.name} reads {r}" for v in self.views for r in v.reads if r not in mine and r not in known]
        if unknown:  # no position would ever be found for it: the view would wait at 0 for ever
            raise ValueError(f"a view reads a view that does not exist: {'; '.join(unknown)}")
        self.batch_size = batch_size or DEFAULT_BATCH
        self._largest = CATCH_UP_BATCH if batch_size is None and store.is_postgres else self.batch_size
        self._next_size = self.batch_size
        self._ready = ready  # True: the caller has run ensure() for these views
        self._reader: ThreadPoolExecutor | None = None
        self._ahead: tuple[int, Future[_Batch]] | None = None  # (start, the batch after it) being read: see _try_step
        # PostgreSQL takes each table's new facts in one COPY; SQLite, an executemany of INSERTs
        self._fact_sql = {t.name: t.copy_sql() if store.is_postgres else store.sql(t.insert_sql()) for v in self.views for t in v.tables}
        position = "notification_id" if store.is_postgres else "rowid"
        self._read_sql = store.sql(
            f"SELECT {position}, originator_id, originator_version, topic, state FROM {store.events_table} "
            f"WHERE {position} > ? ORDER BY {position} LIMIT ?"
        )

    # -- schema -----------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        with self.store.cursor(commit=True) as cur:
            if self.store.is_postgres:
                cur.execute("SELECT pg_advisory_xact_lock(7261001)")  # serialise schema changes between processes
            yield cur

    def ensure(self) -> list[str]:
        """Create missing views; drop and recreate those whose version changed; make the indexes declared since a view
        of this version was made (an index changes no row: a new one is made, not the view rebuilt from the log).
        Returns the rebuilt views' names."""
        rebuilt = []
        with self._transaction() as cur:
            cur.execute(POSITIONS_DDL)
            cur.execute("SELECT view, version FROM pv_positions")
            versions = dict(fetch_tuples(cur))
            for view in self.views:
                if versions.get(view.name) == view.version:
                    for table in view.tables:  # (every statement is "IF NOT EXISTS")
                        for statement in table.ddl():
                            cur.execute(statement)
                    continue
                self._reset(cur, view, exists=view.name in versions)
                rebuilt.append(view.name)
        self._ready = True
        return rebuilt

    def _reset(self, cur: Any, view: View, exists: bool) -> None:
        for table in view.tables:
            cur.execute(f"DROP TABLE IF EXISTS {table.name}")
            for statement in table.ddl():
                cur.execute(statement)
        sql = (
            "UPDATE pv_positions SET position = 0, version = ? WHERE view = ?"
            if exists
            else "INSERT INTO pv_positions (version, view, position) VALUES (?, ?, 0)"
        )
        cur.execute(self.store.sql(sql), (view.version, view.name))

    def reset(self, names: Sequence[str] | None = None) -> None:
        """Empty the named views (default: all of this projector's) and rewind them to the start of the log."""
        self.ensure()
        with self._transaction() as cur:
            for view in views_named(names) if names else self.views:
                self._reset(cur, view, exists=True)

    # -- following the log ---------------------------------------------------------------------

    def _decode(self, row: tuple[Any, ...], aggregate_id: uuid.UUID, fetched: Mapping[uuid.UUID, PupilKey] | None) -> LogEvent | None:
        """The event, or None for an erased pupil's (its key is destroyed: the views forget it); ``fetched``: the
        batch's pupils' keys, as found (None: none fetched, the key cache is asked)."""
        seq, _, version, topic, state = row
        stored = StoredEvent(originator_id=aggregate_id, originator_version=version, topic=topic, state=bytes(state))
        try:
            envelope, received_at, flags = self.store.app.subject_mapper.entry_of(stored, fetched)
        except SubjectErased:  # (any other error fails the batch, which is read again: never taken for an erasure)
            return None
        record = record_of(envelope, received_at)
        is_pupil = event_types()[record.type].subject == "pupil"
        # its receipt time is formatted here too: on PostgreSQL this runs on the read-ahead thread, beside the write
        return LogEvent(int(seq), str(aggregate_id) if is_pupil else record.subject, record, tuple(f["code"] for f in flags))

    def step(self) -> int:
        """Project the next batch of the log in one transaction; returns the number of events read (0: none left)."""
        while (done := self._try_step()) is None:
            pass  # another worker moved on since this batch was read: read again (0 would mean the log's end)
        return done

    def _try_step(self) -> int | None:
        """One attempt at ``step``; None when another worker's batch committed between the read and the lock.

        The batch is read and decrypted before the write transaction, so the database's write lock
        (SQLite has one for the whole file) is held only for the inserts; inside it the positions are
        locked and compared with those the batch was read from, so a concurrent worker's batch is
        never applied twice. A pupil erased meanwhile is dropped (its key row is gone by then).

        On PostgreSQL, after a full batch the next one is read and decrypted on another thread while this one
        is written (``_read_ahead``), so the server's work on the write overlaps the decoding: 6% more events/s
        on 2 cores (median of 5 alternations). SQLite's work runs in this process, and the two threads only
        contend (15% fewer). A batch read ahead is used only if the positions still start where it was read
        from and it found events (``_read_ahead_from``), and it passes the same checks in the transaction.
        """
        if not self._ready:
            self.ensure()
        names = [v.name for v in self.views]
        marks = ", ".join("?" * len(names))
        asked = names + self._outside
        known = {
            view: int(position)
            for view, position in self.store.query(
                f"SELECT view, position FROM pv_positions WHERE view IN ({', '.join('?' * len(asked))})", asked
            )
        }
        read = {name: known[name] for name in names}
        ceilings = self._ceilings(known)
        movable = [read[n] for n in names if not _waits(ceilings[n], read[n])]
        if not movable:
            return 0  # every view waits for a view it reads, projected elsewhere
        start = min(movable)
        batch = self._read_ahead_from(start) or self._read(start, self._next_size)
        if not batch.rows:
            return 0
        last = int(batch.rows[-1][0])
        full = len(batch.rows) == batch.size
        self._next_size = min(2 * batch.size, self._largest) if full else self.batch_size
        if self.store.is_postgres and full:  # the log may hold more: read on while this batch is written
            self._read_ahead(last, self._next_size)
        events = batch.events
        with self.store.cursor(commit=True) as cur:
            if self.store.is_postgres:
                cur.execute(
                    self.store.sql(f"SELECT view, position FROM pv_positions WHERE view IN ({marks}) ORDER BY view FOR UPDATE"), names
                )
            else:  # take SQLite's write lock first, so the positions read here cannot change under us
                cur.execute(f"UPDATE pv_positions SET position = position WHERE view IN ({marks})", names)
                cur.execute(f"SELECT view, position FROM pv_positions WHERE view IN ({marks})", names)
            positions = {view: int(position) for view, position in fetch_tuples(cur)}
            if positions != read:
                return None
            if self._outside:  # where the views read by these stand now (committed with the rows they wrote)
                outside = ", ".join("?" * len(self._outside))
                cur.execute(self.store.sql(f"SELECT view, position FROM pv_positions WHERE view IN ({outside})"), self._outside)
                ceilings = self._ceilings({**positions, **{view: int(position) for view, position in fetch_tuples(cur)}})
            if batch.keyed:
                events = self._drop_erased(cur, events, sorted(map(str, batch.pupils)))
            self._apply(cur, events, positions, batch.made, ceilings)
            moved = 0
            for view in self.views:
                ceiling = ceilings[view.name]
                reached = max(last if ceiling is None else min(last, ceiling), positions[view.name])
                moved += reached - positions[view.name]
                cur.execute(self.store.sql("UPDATE pv_positions SET position = ? WHERE view = ?"), (reached, view.name))
                if self.store.is_postgres and doubled(positions[view.name], reached, ANALYZE_FROM):
                    for table in view.tables:  # (in this transaction: the statistics count the batch's rows)
                        cur.execute(f"ANALYZE {table.name}")
            return len(batch.rows) if moved else 0

    def _ceilings(self, positions: Mapping[str, int]) -> dict[str, int | None]:
        """The last sequence each view may be projected to now (None: the log's end). A view whose upkeep reads
        another's tables (``View.reads``) folds what that view has written: projected past it, it would write
        rows missing those facts, for good (a standby worker that took the model's lock a moment before the pupils'
        once did, in the kill test). A view read in the same projector is written first in each batch, so it bounds
        its readers only by its own ceiling; one projected elsewhere bounds them at its position."""
        out: dict[str, int | None] = {}
        for view in self.views:  # in dependency order: a view's ceiling is known before its readers'
            bounds = [out[r] if r in out else positions.get(r, 0) for r in view.reads]
            kept = [b for b in bounds if b is not None]
            out[view.name] = min(kept) if kept else None
        return out

    def _read(self, start: int, size: int | None = None) -> _Batch:
        """The log's next batch (``size`` events, default ``batch_size``) after sequence ``start``, decrypted (the pupils'
        keys fetched in one query)."""
        size = size or self.batch_size
        rows = self.store.query(self._read_sql, (start, size))
        streams = [as_uuid(row[1]) for row in rows]
        pupils = {stream for stream in streams if is_pupil_stream(stream)}
        keys = getattr(self.store.app, "pupil_keys", None)
        fetched = keys.prefetch(list(pupils)) if keys is not None and pupils else None  # the batch's keys, with one query
        events = [ev for row, stream in zip(rows, streams, strict=True) if (ev := self._decode(row, stream, fetched)) is not None]
        return _Batch(start, size, rows, pupils, events, keyed=keys is not None)

    def _read_ahead(self, start: int, size: int) -> None:
        if self._reader is None:
            self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.name}-read-ahead")
        self._ahead = (start, self._reader.submit(self._read_and_make, start, size))

    def _read_and_make(self, start: int, size: int) -> _Batch:
        """``_read``, and the fact views' rows of its events made too: on the read-ahead thread this work overlaps
        the writing thread's waits on the server, which it would otherwise add to (they are pure functions of an
        event: ``View.rows``). Not in ``read_log``, whose other callers (the feed's relay, the replay) want none."""
        batch = self._read(start, size)
        batch.made = {view.name: {ev.seq: _made(view, ev) for ev in batch.events} for view in self.views if view.maintain is None}
        return batch

    def _read_ahead_from(self, start: int) -> _Batch | None:
        """The batch read ahead, if it starts at ``start``, was read without error and found events (else the log
        is read again). A read ahead that found none says only that the log ended there when it ran, which may be
        long before this step: taken for the log's end now, ``step`` would answer 0 with events waiting after it,
        and ``catch_up`` stop short of them. Rows it did find are still the log's next ones, whenever it ran."""
        ahead, self._ahead = self._ahead, None
        if ahead is None or ahead[0] != start or ahead[1].exception() is not None:
            return None
        batch = ahead[1].result()
        return batch if batch.rows else None

    def _drop_erased(self, cur: Any, events: list[LogEvent], pupils: list[str]) -> list[LogEvent]:
        """``events`` without those of the ``pupils`` (their streams, as text) erased meanwhile."""
        if not pupils:
            return events
        # counted first: nearly always every key is there, and one number comes back instead of every id
        counted = self.store.select_in(cur, "SELECT COUNT(*) FROM pupil_keys WHERE {where}", "originator_id", pupils)
        if int(counted[0][0]) == len(set(pupils)):
            return events
        found = self.store.select_in(cur, "SELECT originator_id FROM pupil_keys WHERE {where}", "originator_id", pupils)
        erased = set(pupils) - {str(r[0]) for r in found}
        return [ev for ev in events if ev.subject not in erased]

    def _apply(
        self,
        cur: Any,
        events: Sequence[LogEvent],
        positions: dict[str, int],
        made: Made | None = None,
        ceilings: Mapping[str, int | None] | None = None,
    ) -> None:
        lowest = min((ev.seq for ev in events), default=0)  # a Kafka batch is in order by partition, not overall
        for view in self.views:
            position = positions[view.name]
            ceiling = ceilings.get(view.name) if ceilings else None
            fresh: Sequence[LogEvent]
            if ceiling is not None:
                fresh = [ev for ev in events if position < ev.seq <= ceiling]
            else:
                fresh = events if lowest > position else [ev for ev in events if ev.seq > position]
            if view.maintain is not None:  # a view that keeps its own tables (after the views it reads)
                view.maintain(cur, self.store, fresh)
                continue
            inserts: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
            superseded: list[tuple[str, str]] = []
            ready = made.get(view.name) if made is not None else None
            for ev in fresh:
                rows = ready.get(ev.seq) if ready is not None else None
                for name, row in _made(view, ev) if rows is None else rows:
                    inserts[name].append(row)
                if ev.record.corrects:
                    superseded.append((ev.received, ev.record.corrects))
            for name, rows in inserts.items():
                if self.store.is_postgres:  # each INSERT of an executemany would be its own message to the server
                    with cur.copy(self._fact_sql[name]) as copy:
                        for row in rows:
                            copy.write_row(row)
                else:
                    cur.executemany(self._fact_sql[name], rows)
            if superseded:
                for table in view.fact_tables:
                    cur.executemany(
                        self.store.sql(f"UPDATE {table.name} SET superseded_at = ? WHERE event_id = ? AND superseded_at IS NULL"),
                        superseded,
                    )
            if view.after is not None:
                view.after(cur, self.store, fresh)

    def catch_up(self, on_progress: Callable[[int], None] | None = None) -> int:
        total = 0
        while done := self.step():
            total += done
            if on_progress:
                on_progress(done)
        return total

    def held_back(self) -> dict[str, tuple[int, list[str]]]:
        """The views of this projector behind the log's end because a view they read, projected elsewhere, is
        behind: each one's position and those views (what a rebuild of ``read_model_state`` alone stops at)."""
        if not self._outside:
            return {}
        positions, end = self.positions(), self.store.max_sequence()
        mine = {v.name for v in self.views}
        held = {}
        for view in self.views:
            waits = [r for r in view.reads if r not in mine and positions.get(r, 0) < end]
            if waits and positions.get(view.name, 0) < end:
                held[view.name] = (positions.get(view.name, 0), waits)
        return held

    def rebuild(self, on_progress: Callable[[int], None] | None = None) -> int:
        """Empty this projector's views and project the whole log into them again."""
        self.reset()
        return self.catch_up(on_progress)

    # -- the two halves of a step, for another source of events (projections.kafka_source) ------------------

    def read_log(self, start: int) -> LogBatch:
        """The log's next batch after sequence ``start``, decoded (erased pupils' events left out)."""
        return self._read(start)

    def apply_events(self, cur: Any, events: Sequence[LogEvent], positions: dict[str, int]) -> None:
        """Write ``events`` into every view, in the caller's transaction, but not those at or before a view's position
        nor those of pupils erased meanwhile (their key rows are gone)."""
        if getattr(self.store.app, "pupil_keys", None) is not None:  # pupils have their own keys: erasable
            pupils = sorted({ev.subject for ev in events if event_types()[ev.record.type].subject == "pupil"})
            events = self._drop_erased(cur, list(events), pupils)
        self._apply(cur, events, positions)

    # -- reads -----------------------------------------------------------------------------------

    def positions(self) -> dict[str, int]:
        if not self._ready:
            self.ensure()
        return {v: int(p) for v, p in self.store.query("SELECT view, position FROM pv_positions")}

    def wait_for(self, min_sequence: int, timeout: float = 2.0, names: Sequence[str] | None = None) -> bool:
        """Wait until the views have projected ``min_sequence`` (or the log's end, if it is beyond it)."""
        wanted = [v.name for v in (views_named(names) if names else self.views)]
        deadline = time.monotonic() + timeout
        while True:
            positions = self.positions()
            lowest = min(positions.get(n, 0) for n in wanted)
            if lowest >= min_sequence:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)


LogBatch = _Batch


def _waits(ceiling: int | None, position: int) -> bool:
    """A view at ``position`` can go no further now (``Projector._ceilings``)."""
    return ceiling is not None and ceiling <= position


def _made(view: View, ev: LogEvent) -> list[tuple[str, tuple[Any, ...]]]:
    """The rows ``view`` makes of ``ev``, each with its table's name."""
    return [(table.name, table.row(ev, values)) for table, values in view.rows(ev)]


def forget_pupil(store: Store, pseudonym: uuid.UUID) -> int:
    """Remove an erased pupil's facts from every view (call it after the pupil is crypto-shredded).

    It first locks every view's position, so a projector batch that decoded the pupil's events before
    the erasure commits before this runs; later batches cannot see them (their rows have moved to a
    fresh id with no key), so the facts never come back."""
    Projector(store).ensure()
    with store.cursor(commit=True) as cur:
        # in the order step() locks them (ORDER BY view), so the two cannot deadlock
        cur.execute(
            "SELECT position FROM pv_positions ORDER BY view FOR UPDATE"
            if store.is_postgres
            else "UPDATE pv_positions SET position = position"
        )
        removed = forget_subject(cur, store, VIEWS, str(pseudonym))
    return removed


def forget_subject(cur: Any, store: Store, views: Sequence[View], subject: str) -> int:
    """Delete a pupil's rows from these views' tables (in the caller's transaction); the number of its facts removed."""
    removed = 0
    for view in views:
        if view.forget is not None:
            view.forget(cur, store, subject)  # the pupil's rows off the view's sums, before the rows go
    for view in views:
        for table in view.fact_tables:
            cur.execute(store.sql(f"DELETE FROM {table.name} WHERE subject = ?"), (subject,))
            if not view.name.startswith(read_model.VIEW_PREFIX):  # the count of the pupil's facts (the model's rows are made from them)
                removed += rowcount(cur)
    return removed


class Reader:
    """Read access to the fact tables for the view queries."""

    def __init__(self, store: Store):
        self.store = store

    def facts(
        self,
        table: str,
        moment: Moment,
        columns: str = "*",
        where: str = "",
        params: Sequence[Any] = (),
        order: str = "seq",
        effective_cut: bool = True,
    ) -> list[tuple[Any, ...]]:
        sql, args = in_force(table, moment, where, params, columns, effective_cut)
        return self.store.query(f"{sql} ORDER BY {order}", args)
