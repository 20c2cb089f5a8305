"""``pupil-ledger relay``: publishes the ledger's accepted events to the change feed (docs/deployment.md).

The ledger's committed sequence is the outbox: the relay reads the next batch of the log after its durable position
(``feed_relay``), sends one record per pupil or organisation event (and per erasure) keyed by the subject's
pseudonym, so a pupil's records stay in order on one partition, waits until the broker has acknowledged all of them
(idempotent producer, ``acks=all``, one flush per batch), and only then moves the position and stores the batch's
mark (every partition's next offset). A crash or a broker failure before that sends the batch again:
at-least-once, never a gap; consumers skip what they have already applied. One relay is active at a time
(PostgreSQL advisory lock); a standby takes over within ``idle`` seconds of the active one's connection closing.
Reading and encoding the log is the encoder's (``feed.encoder``): given the ledger's settings, a child process that
reads the next batch while this one is sent.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import zlib
from collections.abc import Callable
from typing import Any

import psycopg
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from ledger.config import FOLLOWER_PACE_SECONDS, Settings, follower_pause
from ledger.feed import SCHEMA_HEADER, FeedConfig
from ledger.storage.store import Store

from .encoder import Encoder, LocalEncoder, ProcessEncoder
from .state import FeedState

log = logging.getLogger("pupil_ledger.relay")
LOCK_KEY = zlib.crc32(b"pupil-ledger:relay")
FLUSH_SECONDS = 30.0  # a batch not acknowledged by then is sent again (after a pause)


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
        settings: Settings | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"a batch is at least 1 ledger event, not {batch_size}")  # 0 would publish nothing, for ever
        self.flush_seconds = flush_seconds
        self.pace = pace  # after a batch short of ``batch_size``: ledger.config.follower_pause
        self.store, self.config, self.batch_size, self.idle, self.on_batch = store, config, batch_size, idle, on_batch
        self.state = FeedState(store)
        self._lock_conn: Any = psycopg.connect(database_url, autocommit=True) if database_url else None
        self.active = False
        self.stopping = threading.Event()
        # with the ledger's settings, a child process reads and encodes the log one batch ahead (feed.encoder)
        self.encoder: Encoder = ProcessEncoder(settings, batch_size) if settings else LocalEncoder(store, batch_size, self.stopping)
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

    def prepare(self) -> None:
        """Connect to the broker and start the encoder now rather than at the first batch (``run`` needs no call)."""
        self._producer_now()
        self.encoder.start()

    def step(self) -> int:
        """Publish the next batch of the log; returns the number of ledger events it covered (0: nothing new)."""
        position, offsets = self.state.relay_position(self.config.topic)
        producer = self._producer_now()
        partitions = len(producer.partitions_for(self.config.topic))
        batch = self.encoder.take(position, partitions)
        if not batch.count:
            return 0
        if batch.count == self.batch_size:  # a backlog: the next batch is read while this one is sent
            self.encoder.ahead(batch.last, partitions)
        topic = self.config.topic
        futures = [
            producer.send(topic, key=key, value=value, headers=[SCHEMA_HEADER], partition=part) for key, value, part in batch.records
        ]
        producer.flush(timeout=self.flush_seconds)
        offsets = dict(offsets)
        for future in futures:
            metadata = future.get(timeout=0)  # raises the send's error, if any: the batch is sent again
            offsets[metadata.partition] = max(offsets.get(metadata.partition, 0), metadata.offset + 1)
        self.state.published(self.config.topic, batch.last, offsets, batch.erasures)
        return batch.count

    def _close_producer(self) -> None:
        if self._producer is not None:
            with contextlib.suppress(Exception):  # closing a producer whose broker is gone: nothing to do about it
                self._producer.close(timeout=1)
            self._producer = None

    def close(self) -> None:
        self._close_producer()
        self.encoder.close()
        if self._lock_conn is not None:
            self._lock_conn.close()


def announce_erasure(store: Store, erasure_event_id: str, pseudonym: str) -> None:
    """After ``Ledger.erase``: note the erased pupil's pseudonym for the relay's record of the erasure (docs/access.md)."""
    rows = store.index_rows([erasure_event_id])
    if erasure_event_id in rows:
        FeedState(store).note_erasure(rows[erasure_event_id].sequence, pseudonym)
