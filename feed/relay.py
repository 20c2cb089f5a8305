"""``pupil-ledger relay``: publishes the ledger's accepted events to the change feed (docs/deployment.md).

The ledger's committed sequence is the outbox: the relay reads the next batch of the log after its durable position
(``feed_relay``), sends one record per pupil or organisation event (and per erasure) keyed by the subject's
pseudonym, so a pupil's records stay in order on one partition, waits until the broker has acknowledged all of them
(idempotent producer, ``acks=all``, one flush per batch), and only then moves the position and stores the batch's
mark (every partition's next offset). A crash or a broker failure before that sends the batch again:
at-least-once, never a gap; consumers skip what they have already applied. One relay is active at a time
(PostgreSQL advisory lock); a standby takes over within ``idle`` seconds of the active one's connection closing.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

import psycopg
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from ledger.config import FOLLOWER_PACE_SECONDS, follower_pause
from ledger.core.catalogue import event_types
from ledger.feed import ERASURE, SCHEMA_HEADER, FeedConfig, encode, erasure_record, feed_record, key_of
from ledger.storage.store import Store
from projections.runner import Projector

from .state import FeedState

log = logging.getLogger("pupil_ledger.relay")
LOCK_KEY = zlib.crc32(b"pupil-ledger:relay")
FLUSH_SECONDS = 30.0  # a batch not acknowledged by then is sent again (after a pause)
ERASURE_WAIT_SECONDS = 10.0  # the erasure's pseudonym is noted just after its event commits (Ledger.erase)


def ensure_topic(config: FeedConfig, topic: str | None = None, partitions: int | None = None) -> None:
    admin = KafkaAdminClient(bootstrap_servers=config.servers, client_id="pupil-ledger-admin")
    try:
        admin.create_topics([NewTopic(topic or config.topic, partitions or config.partitions, 1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()


def producer_for(config: FeedConfig, flush_seconds: float = FLUSH_SECONDS) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=config.servers,
        client_id="pupil-ledger-relay",
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        batch_size=256 * 1024,
        max_block_ms=int(flush_seconds * 1000),
        request_timeout_ms=int(flush_seconds * 500),
        delivery_timeout_ms=int(flush_seconds * 1000),
    )


class Relay:
    def __init__(
        self,
        store: Store,
        config: FeedConfig,
        database_url: str | None,
        batch_size: int = 1000,
        idle: float = 0.2,
        on_batch: Callable[[int], None] | None = None,
        flush_seconds: float = FLUSH_SECONDS,
        pace: float = FOLLOWER_PACE_SECONDS,
    ):
        self.flush_seconds = flush_seconds
        self.pace = pace  # after a batch short of ``batch_size``: ledger.config.follower_pause
        self.store, self.config, self.batch_size, self.idle, self.on_batch = store, config, batch_size, idle, on_batch
        self.state = FeedState(store)
        self.log = Projector(store, (), batch_size, ready=True)  # reads and decodes the log; applies nothing
        self._lock_conn: Any = psycopg.connect(database_url, autocommit=True) if database_url else None
        self.active = False
        self.stopping = threading.Event()
        self._producer: KafkaProducer | None = None

    def _acquire(self) -> bool:
        if not self.active:
            self.active = self._lock_conn is None or bool(
                self._lock_conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()[0]
            )
        return self.active

    def run(self) -> None:
        """Publish until stopped: standby while another relay holds the lock; after a broker failure, pause and resend."""
        self.state.ensure_relay()
        pause = self.idle
        while not self.stopping.is_set():
            if not self._acquire():
                self.stopping.wait(self.idle)
                continue
            try:
                done = self.step()
                pause = self.idle
            except KafkaError as exc:
                log.warning("the broker did not take a batch (%s); sending it again in %.1f s", exc, pause)
                self.state.relay_failed(self.config.topic, f"broker unreachable: {type(exc).__name__}: {exc}")
                self._close_producer()
                self.stopping.wait(pause)
                pause = min(pause * 2, 5.0)
                continue
            if done and self.on_batch:
                self.on_batch(done)
            if wait := follower_pause(done, self.batch_size, self.idle, self.pace):
                self.stopping.wait(wait)

    def _producer_now(self) -> KafkaProducer:
        if self._producer is None:
            ensure_topic(self.config)
            self._producer = producer_for(self.config, self.flush_seconds)
        return self._producer

    def step(self) -> int:
        """Publish the next batch of the log; returns the number of ledger events it covered (0: nothing new)."""
        position, offsets = self.state.relay_position(self.config.topic)
        batch = self.log.read_log(position)
        if not batch.rows:
            return 0
        last = int(batch.rows[-1][0])
        digests = self.state.digests(position, last)
        records, erasures = [], []
        kinds = event_types()
        for ev in batch.events:
            if kinds[ev.record.type].subject in ("pupil", "org"):
                records.append(feed_record(ev.seq, ev.subject, ev.record, ev.flags, *digests[ev.seq]))
            elif ev.record.type == ERASURE:
                pseudonym = self._erased_pseudonym(ev.seq)
                if pseudonym is not None:
                    records.append(erasure_record(ev.seq, pseudonym, ev.record, *digests[ev.seq]))
                    erasures.append(ev.seq)
        producer = self._producer_now()
        futures = [producer.send(self.config.topic, key=key_of(r), value=encode(r), headers=[SCHEMA_HEADER]) for r in records]
        producer.flush(timeout=self.flush_seconds)
        offsets = dict(offsets)
        for future in futures:
            metadata = future.get(timeout=0)  # raises the send's error, if any: the batch is sent again
            offsets[metadata.partition] = max(offsets.get(metadata.partition, 0), metadata.offset + 1)
        self.state.published(self.config.topic, last, offsets, erasures)
        return len(batch.rows)

    def _erased_pseudonym(self, sequence: int) -> str | None:
        deadline = time.monotonic() + ERASURE_WAIT_SECONDS
        while (pseudonym := self.state.erased_pseudonym(sequence)) is None and time.monotonic() < deadline and not self.stopping.is_set():
            time.sleep(0.05)
        if pseudonym is None:
            log.warning("erasure at sequence %d: no pseudonym noted (erased elsewhere than Ledger.erase?); not published", sequence)
        return pseudonym

    def _close_producer(self) -> None:
        if self._producer is not None:
            with contextlib.suppress(Exception):  # closing a producer whose broker is gone: nothing to do about it
                self._producer.close(timeout=1)
            self._producer = None

    def close(self) -> None:
        self._close_producer()
        if self._lock_conn is not None:
            self._lock_conn.close()


def announce_erasure(store: Store, erasure_event_id: str, pseudonym: str) -> None:
    """After ``Ledger.erase``: note the erased pupil's pseudonym for the relay's record of the erasure (docs/access.md)."""
    rows = store.index_rows([erasure_event_id])
    if erasure_event_id in rows:
        FeedState(store).note_erasure(rows[erasure_event_id].sequence, pseudonym)
