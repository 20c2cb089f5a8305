"""``pupil-ledger project run --source kafka``: a projection worker in a consumer group (docs/deployment.md).

The group's workers split the topic's partitions and rebalance when one dies or joins. A worker applies a polled
batch to the views with the runner's own code (``Projector.apply_events``) and, in the same database transaction,
stores every partition's next offset (``pv_kafka_offsets``), the highest ledger sequence applied per subject
(``pv_kafka_applied``) and the views' position: the highest sequence whose relay mark (``feed_marks``) every
partition has reached, so ``min_sequence`` waits and ``project status`` mean what they mean for the direct
projector. The database, not the broker, holds the offsets that count: a worker given a partition starts at the
stored offset (none yet: at the relay's mark for the views' position, where a rebuild from the log handed over);
a record at or before the subject's applied sequence, or before the stored offset, is skipped, so redelivery and a
worker that lost its partition mid-batch never count anything twice. A record that is not a valid
``event-record.v1`` goes to ``<topic>.dead-letter`` and is counted (``/healthz``, ``project status``), never retried.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import fastjsonschema
import orjson
import psycopg
from eventsourcing.persistence import IntegrityError, OperationalError
from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from ledger.config import FOLLOWER_PACE_SECONDS, follower_pause
from ledger.core.catalogue import event_types, parse_timestamp
from ledger.core.rules import Record
from ledger.feed import ERASURE, SCHEMA, FeedConfig, record_schema
from ledger.storage.store import Store, fetch_tuples
from projections.facts import LogEvent, View
from projections.read_model_england import SHARDS, use_shard
from projections.runner import CATCH_UP_BATCH, DEFAULT_BATCH, VIEWS, Projector, forget_subject

from .check import RecordCheck
from .state import FeedState, Offsets

log = logging.getLogger("pupil_ledger.feed_consumer")


def rolled_back(exc: BaseException) -> bool:
    """The database rolled the transaction back for its own reasons (SQLSTATE class 40: a deadlock, a serialization
    failure), nothing of it stored: it may be run again as it was."""
    cause = exc if isinstance(exc, psycopg.Error) else exc.__cause__
    return isinstance(cause, psycopg.Error) and str(cause.sqlstate or "").startswith("40")


class PoisonRecord(ValueError):
    """A record this worker cannot apply: not ``event-record.v1``, or of an event type it does not know."""


_validate: Callable[[Any], Any] | None = None
_quick: RecordCheck | None = None


def log_event_of(value: bytes, headers: Sequence[tuple[str, bytes | None]] = ()) -> LogEvent:
    """The view's event of a feed record, or ``PoisonRecord``."""
    global _validate, _quick
    schema = dict(headers).get("schema")
    if schema is not None and schema != SCHEMA.encode("ascii"):
        raise PoisonRecord(f"schema {schema!r} is not {SCHEMA}")
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise PoisonRecord(f"not JSON: {exc}") from None
    if _quick is None:
        _quick = RecordCheck(record_schema())
    if not _quick(body):  # not certainly valid: the schema's own validator decides, and says why
        if _validate is None:
            _validate = fastjsonschema.compile(record_schema())
        try:
            _validate(body)
        except fastjsonschema.JsonSchemaException as exc:
            raise PoisonRecord(f"not {SCHEMA}: {exc}") from None
    if body["type"] not in event_types():
        raise PoisonRecord(f"unknown event type {body['type']}")
    received = parse_timestamp(body["received_at"])
    try:
        occurred = date.fromisoformat(body["occurred_on"])
    except ValueError:
        raise PoisonRecord("occurred_on is not a date") from None
    if received is None:
        raise PoisonRecord("received_at is not a time")
    record = Record(body["event_id"], body["type"], body["submitter"], body["subject"], occurred, received, body["data"], body["corrects"])
    return LogEvent(int(body["sequence"]), body["subject"], record, tuple(body["flags"]))


@dataclass
class Polled:
    partition: int
    offset: int
    event: LogEvent | None  # None: poison
    reason: str = ""
    value: bytes = b""


class _Assignments(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: FeedWorker):
        self.worker = worker

    def on_partitions_revoked(self, revoked: Any) -> None:
        log.info("partitions revoked: %s", sorted(tp.partition for tp in revoked))  # nothing to commit: the offsets are in the database

    def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("partitions assigned: %s", sorted(tp.partition for tp in assigned))
        self.worker.seek_to_stored(list(assigned))


class FeedWorker:
    """One member of the projection consumer group; ``run()`` until ``stopping`` is set."""

    def __init__(
        self,
        store: Store,
        config: FeedConfig,
        group: str | None = None,
        views: tuple[View, ...] = VIEWS,
        batch_size: int | None = 1000,
        idle: float = 0.5,
        on_batch: Callable[[int], None] | None = None,
        instance: str | None = None,
        pace: float = FOLLOWER_PACE_SECONDS,
    ):
        self.pace = pace  # after a batch short of ``batch_size``: ledger.config.follower_pause (a poll waits ``idle`` itself)
        self.instance = instance  # static membership: a restarted worker with the same id takes its partitions back at once
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"a batch is at least 1 record, not {batch_size}")
        self.store, self.config, self.views, self.idle, self.on_batch = store, config, views, idle, on_batch
        # as the direct projector: None is DEFAULT_BATCH, doubled after each full batch up to CATCH_UP_BATCH on PostgreSQL
        # (far behind: a rebuild's hand-over, a new group), back to DEFAULT_BATCH after a short one
        self.batch_size = batch_size or DEFAULT_BATCH
        self.largest_batch = CATCH_UP_BATCH if batch_size is None and store.is_postgres else self.batch_size
        self._size = self.batch_size
        self.group = group or config.group
        self.topic = config.topic
        self.state = FeedState(store)
        self.projector = Projector(store, views, ready=False)
        self.stopping = threading.Event()
        self.consumer: KafkaConsumer | None = None
        self._dead_letters: KafkaProducer | None = None
        self.applied_events = 0

    # -- the group ------------------------------------------------------------------------------------------------

    def start(self) -> None:
        use_shard(os.getpid() % SHARDS)  # England's numbers: this worker's own rows, mostly (read_model_england.use_shard)
        self.state.ensure_consumer()
        if self.projector.ensure():  # a view is new or its version changed: built from the log, then the topic from the relay's mark
            self.projector.catch_up()
            self.state.reset_consumers(self.group)
        self.consumer = KafkaConsumer(
            bootstrap_servers=self.config.servers,
            group_id=self.group,
            client_id=f"pupil-ledger-{self.group}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.largest_batch,
            session_timeout_ms=6_000,
            heartbeat_interval_ms=1_000,
            max_poll_interval_ms=300_000,
            group_instance_id=self.instance,
        )
        self.consumer.subscribe([self.topic], listener=_Assignments(self))

    def run(self) -> None:
        if self.consumer is None:
            self.start()
        while not self.stopping.is_set():
            asked = self._size
            try:
                done = self.poll_once()
            except KafkaError as exc:  # the broker is away: the group is joined again when it is back
                log.warning("the broker is not answering (%s); trying again", exc)
                self.stopping.wait(self.idle)
                continue
            except (IntegrityError, psycopg.IntegrityError) as exc:  # a worker that had lost these partitions applied them meanwhile
                log.warning("batch already applied by another worker (%s); reading on from the stored offsets", exc)
                assert self.consumer is not None
                self.seek_to_stored(list(self.consumer.assignment()))
                continue
            except (OperationalError, psycopg.OperationalError) as exc:
                # a deadlock with another worker (two batches changing the read model's shared numbers, rm_roll, in
                # different orders: an erasure's and its batch's) rolled the whole batch back: apply it again
                if not rolled_back(exc):
                    raise
                log.warning("batch rolled back by the database (%s); applying it again from the stored offsets", exc)
                assert self.consumer is not None
                self.seek_to_stored(list(self.consumer.assignment()))
                continue
            if done and self.on_batch:
                self.on_batch(done)
            self._size = min(2 * asked, self.largest_batch) if done >= asked else self.batch_size
            if done and (wait := follower_pause(done, asked, self.idle, self.pace)):
                self.stopping.wait(wait)  # what arrives meanwhile is applied in the next batch's one transaction

    def poll_once(self, timeout: float | None = None) -> int:
        """Poll one batch and apply it; returns the number of records it held."""
        assert self.consumer is not None
        polled = self.consumer.poll(timeout_ms=int((self.idle if timeout is None else timeout) * 1000), max_records=self._size)
        if not polled:
            self.apply([], {})  # the relay may have stored the mark of records applied already (it does so after their acks)
            return 0
        items: list[Polled] = []
        ends: Offsets = {}
        for tp, records in polled.items():
            end = self.consumer.highwater(tp)
            if end is not None:
                ends[tp.partition] = int(end)
            for r in records:
                try:
                    items.append(Polled(tp.partition, r.offset, log_event_of(r.value, r.headers)))
                except PoisonRecord as exc:
                    items.append(Polled(tp.partition, r.offset, None, str(exc), r.value))
        self.apply(items, ends)
        return len(items)

    def seek_to_stored(self, partitions: list[TopicPartition]) -> None:
        """Start each partition given to this worker where the database says the group's views are."""
        assert self.consumer is not None
        with self.store.cursor() as cur:
            stored = self.state.stored_offsets(cur, self.group, self.topic)
        handover = self._handover()
        for tp in partitions:
            self.consumer.seek(tp, stored.get(tp.partition, handover.get(tp.partition, 0)))

    def _handover(self) -> Offsets:
        """Where a partition with no stored offset starts: the relay's mark at or before the views' position."""
        position = min(self.projector.positions().get(v.name, 0) for v in self.views)
        return self.state.mark_at_or_before(self.topic, position)[1] if position else {}

    # -- one batch, one transaction ---------------------------------------------------------------------------------

    def apply(self, items: list[Polled], ends: Offsets) -> None:
        """Apply a polled batch in one transaction, then move the views' position in a short one of its own.

        The batch's transaction locks only its partitions' offsets, and holds the views' positions with a shared lock
        (``forget_pupil`` waits for it; other workers do not), so workers on different partitions apply in parallel."""
        if items:
            self._apply_batch(items, ends)
        if items or self._position_behind():  # the relay may store a mark only after its records were applied
            self._advance_position()

    def _apply_batch(self, items: list[Polled], ends: Offsets) -> None:
        poison = [i for i in items if i.event is None]
        if poison:
            self._send_dead_letters(poison)
        names = [v.name for v in self.views]
        marks = ", ".join("?" * len(names))
        rewind: dict[int, int] = {}
        by_partition: dict[int, list[Polled]] = defaultdict(list)
        for item in items:
            by_partition[item.partition].append(item)
        with self.store.cursor(commit=True) as cur:
            stored = self.state.stored_offsets(cur, self.group, self.topic, parts=sorted(by_partition), lock=True)
            handover = self._handover() if set(by_partition) - set(stored) else {}  # only a partition never applied starts there
            if self.store.is_postgres:
                cur.execute(
                    self.store.sql(f"SELECT view, position FROM pv_positions WHERE view IN ({marks}) ORDER BY view FOR SHARE"), names
                )
            else:  # SQLite's write lock first
                cur.execute(f"UPDATE pv_positions SET position = position WHERE view IN ({marks})", names)
                cur.execute(f"SELECT view, position FROM pv_positions WHERE view IN ({marks})", names)
            positions = {str(v): int(p) for v, p in fetch_tuples(cur)}
            floor = min(positions.values())
            fresh: list[Polled] = []
            next_offsets: Offsets = {}
            for part, batch in by_partition.items():
                expected = stored.get(part, handover.get(part, 0))
                if batch[0].offset > expected:  # records between are not applied (a rebuild reset the offsets): read them again
                    rewind[part] = expected
                    continue
                taken = [i for i in batch if i.offset >= expected]  # before it: applied already (by this or another worker)
                if taken:
                    fresh += taken
                    next_offsets[part] = taken[-1].offset + 1
            events = [i.event for i in fresh if i.event is not None and i.event.seq > floor]
            applied = self.state.applied(cur, sorted({ev.subject for ev in events}))
            new: list[LogEvent] = []
            for ev in events:  # a subject's records come in sequence order on its partition
                if ev.seq <= applied.get(ev.subject, 0):
                    continue
                applied[ev.subject] = ev.seq
                new.append(ev)
            self._apply(cur, new, positions)
            for item in fresh:
                if item.event is None:
                    self.state.dead_letter(cur, self.group, self.topic, item.partition, item.offset, item.reason)
            self.state.set_applied(cur, {ev.subject: applied[ev.subject] for ev in new})
            self.state.store_offsets(cur, self.group, self.topic, next_offsets, ends)
        self.applied_events += len(fresh)
        for part, offset in rewind.items():
            assert self.consumer is not None
            self.consumer.seek(TopicPartition(self.topic, part), offset)

    def _advance_position(self) -> None:
        """The views' position: the last relay mark that every partition's stored (committed) offset has reached."""
        names = [v.name for v in self.views]
        marks = ", ".join("?" * len(names))
        with self.store.cursor(commit=True) as cur:
            stored = self.state.stored_offsets(cur, self.group, self.topic)
            cur.execute(self.store.sql(f"SELECT MIN(position) FROM pv_positions WHERE view IN ({marks})"), names)
            floor = int(fetch_tuples(cur)[0][0] or 0)
            reached = floor
            handover: Offsets | None = None  # where partitions no worker has applied yet start: read only if one is met
            for sequence, offsets in self.state.marks_after(cur, self.topic, floor):
                if handover is None and set(offsets) - set(stored):
                    handover = self._handover()
                if any(stored.get(p, (handover or {}).get(p, 0)) < o for p, o in offsets.items()):
                    break
                reached = sequence
            if reached > floor:
                cur.execute(
                    self.store.sql(f"UPDATE pv_positions SET position = ? WHERE position < ? AND view IN ({marks})"),
                    (reached, reached, *names),
                )

    def _position_behind(self) -> bool:
        relay = self.state.relay_status(self.topic)
        return relay is not None and relay.position > min(self.projector.positions().get(v.name, 0) for v in self.views)

    def _apply(self, cur: Any, events: list[LogEvent], positions: dict[str, int]) -> None:
        """Erasure records forget their subject in every view; other records become view rows, in order."""
        run: list[LogEvent] = []
        for ev in events:
            if ev.record.type == ERASURE:
                self.projector.apply_events(cur, run, positions)
                run = []
                forget_subject(cur, self.store, self.views, ev.subject)
            else:
                run.append(ev)
        self.projector.apply_events(cur, run, positions)

    def _send_dead_letters(self, poison: list[Polled]) -> None:
        if self._dead_letters is None:
            from .relay import ensure_topic

            ensure_topic(self.config, self.config.dead_letter_topic, 1)
            self._dead_letters = KafkaProducer(bootstrap_servers=self.config.servers, acks="all", enable_idempotence=True)
        for item in poison:
            self._dead_letters.send(
                self.config.dead_letter_topic,
                value=item.value,
                headers=[
                    ("reason", item.reason.encode("utf-8")),
                    ("source", f"{self.topic}/{item.partition}/{item.offset}".encode("ascii")),
                ],
            )
        self._dead_letters.flush(timeout=30)
        log.warning("%d poison record(s) sent to %s", len(poison), self.config.dead_letter_topic)

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()
            self.consumer = None
        if self._dead_letters is not None:
            self._dead_letters.close(timeout=2)
            self._dead_letters = None
