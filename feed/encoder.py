"""The relay's encoder: the log's next batch read, decrypted and made into the feed's records, ready to send.

That is half the relay's work, and the other half (kafka-python's producer) runs on the same Python thread. Given
the ledger's settings the relay runs it in a child process (``ProcessEncoder``), which reads the next batch while
the relay sends the last one; without them, in the relay's own process (``LocalEncoder``). Both give the same
records, from the same function (``encode_batch``), and each record comes with its partition: Kafka's default for a
keyed record (murmur2 of the key, as every Kafka client computes it), worked out here so the sending thread does
not. A batch read ahead is used only if it starts where the relay's durable position is when it is taken, so a
batch sent again after a broker failure is read again; one that found no events is not trusted either (the log
may have grown since it was read). The child exits when the relay's end of the pipe closes, a ``kill -9`` of the
relay included.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import struct
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Protocol

from ledger.config import Settings
from ledger.core.catalogue import event_types
from ledger.feed import ERASURE, encode, erasure_record, feed_record, key_of
from ledger.storage.store import Store
from projections.runner import Projector

from .state import FeedState

log = logging.getLogger("pupil_ledger.relay")
ERASURE_WAIT_SECONDS = 10.0  # the erasure's pseudonym is noted just after its event commits (Ledger.erase)
START_SECONDS = 120.0  # for the child to open the ledger


@dataclass
class Encoded:
    """One batch of the log after ``start``: ``count`` ledger events through sequence ``last`` (0: none), and the
    records to send for them, each as (key, value, partition)."""

    start: int
    partitions: int
    count: int = 0
    last: int = 0
    records: list[tuple[bytes, bytes, int]] = field(default_factory=list)
    erasures: list[int] = field(default_factory=list)  # sequences of the erasures published (their notes are deleted)


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a keyed record (``murmur2(key) & 0x7fffffff`` modulo the count)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


_M = 0x5BD1E995


def murmur2(key: bytes) -> int:
    """MurmurHash2 of ``key`` as Kafka's Java client computes it (``Utils.murmur2``), word by word: kafka-python's own
    goes byte by byte, and was a ninth of the encoder process's time."""
    length = len(key)
    h = 0x9747B28C ^ length
    end = length & ~3
    for (k,) in struct.iter_unpack("<I", key[:end]):
        k = (k * _M) & 0xFFFFFFFF
        k = ((k ^ (k >> 24)) * _M) & 0xFFFFFFFF
        h = ((h * _M) & 0xFFFFFFFF) ^ k
    extra = length - end
    if extra:
        if extra >= 3:
            h ^= key[end + 2] << 16
        if extra >= 2:
            h ^= key[end + 1] << 8
        h = ((h ^ key[end]) * _M) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * _M) & 0xFFFFFFFF
    return h ^ (h >> 15)


def encode_batch(reader: Projector, state: FeedState, start: int, partitions: int, stopping: Any = None) -> Encoded:
    """The records of the log's next batch after ``start`` (pupil and organisation events, and erasures)."""
    batch = reader.read_log(start)
    out = Encoded(start, partitions)
    if not batch.rows:
        return out
    out.count, out.last = len(batch.rows), int(batch.rows[-1][0])
    digests = state.digests(start, out.last)
    kinds = event_types()
    for ev in batch.events:
        if kinds[ev.record.type].subject in ("pupil", "org"):
            record = feed_record(ev.seq, ev.subject, ev.record, ev.flags, *digests[ev.seq], received=ev.received)
        elif ev.record.type == ERASURE:
            pseudonym = erased_pseudonym(state, ev.seq, stopping)
            if pseudonym is None:
                continue
            record = erasure_record(ev.seq, pseudonym, ev.record, *digests[ev.seq], received=ev.received)
            out.erasures.append(ev.seq)
        else:
            continue
        key = key_of(record)
        out.records.append((key, encode(record), partition_of(key, partitions)))
    return out


def erased_pseudonym(state: FeedState, sequence: int, stopping: Any = None) -> str | None:
    deadline = time.monotonic() + ERASURE_WAIT_SECONDS
    while (pseudonym := state.erased_pseudonym(sequence)) is None and time.monotonic() < deadline:
        if stopping is not None and stopping.is_set():
            break
        time.sleep(0.05)
    if pseudonym is None:
        log.warning("erasure at sequence %d: no pseudonym noted (erased elsewhere than Ledger.erase?); not published", sequence)
    return pseudonym


class Encoder(Protocol):
    def start(self) -> None:
        """Be ready to read (a child process started and the ledger opened), rather than at the first batch."""

    def ahead(self, start: int, partitions: int) -> None:
        """Begin the batch after ``start`` (a hint: it may be ignored)."""

    def take(self, start: int, partitions: int) -> Encoded:
        """The batch after ``start``: the one begun ahead if it fits, else read now."""

    def close(self) -> None: ...


class LocalEncoder:
    """In the relay's own process (a relay built from a store, without the ledger's settings)."""

    def __init__(self, store: Store, batch_size: int, stopping: Any = None):
        self.reader = Projector(store, (), batch_size, ready=True)  # reads and decodes the log; applies nothing
        self.state = FeedState(store)
        self.stopping = stopping

    def start(self) -> None:
        pass

    def ahead(self, start: int, partitions: int) -> None:
        pass

    def take(self, start: int, partitions: int) -> Encoded:
        return encode_batch(self.reader, self.state, start, partitions, self.stopping)

    def close(self) -> None:
        pass


class EncoderFailed(RuntimeError):
    """The child process could not encode a batch (its error, as it said it), or died twice in a row."""


class ProcessEncoder:
    """In a child process that opens the ledger from ``settings``, one batch ahead of the relay."""

    def __init__(self, settings: Settings, batch_size: int):
        self.settings, self.batch_size = settings, batch_size
        self._process: Any = None
        self._conn: Connection | None = None
        self._asked: tuple[int, int] | None = None  # the batch the child is reading, not yet taken

    def start(self) -> None:
        if self._process is not None:
            return
        context = multiprocessing.get_context("spawn")  # not fork: the relay has the producer's and psycopg's threads
        ours, theirs = context.Pipe()
        process = context.Process(
            target=_child, args=(theirs, self.settings, self.batch_size), name="pupil-ledger-relay-encoder", daemon=True
        )
        process.start()
        theirs.close()  # the child's end, in this process: so the child's exit is seen here as the pipe's end
        self._process, self._conn, self._asked = process, ours, None
        if not ours.poll(START_SECONDS):
            self.close()
            raise EncoderFailed(f"the relay's encoder process did not open the ledger in {START_SECONDS:.0f} s")
        self._answer()  # "ready", or the error that stopped it opening the ledger

    def ahead(self, start: int, partitions: int) -> None:
        if self._asked is not None:
            return  # one batch ahead at most
        try:
            self._ask(start, partitions)
        except (EOFError, OSError):  # the child died: a new one reads the batch when it is taken
            self.close()

    def take(self, start: int, partitions: int) -> Encoded:
        for attempt in (1, 2):
            try:
                if self._asked is not None:
                    asked, encoded = self._asked, self._take_asked()
                    # read ahead from here, and found events (else it may be stale: the log's end when it was read)
                    if asked == (start, partitions) and encoded.count:
                        return encoded
                self._ask(start, partitions)
                return self._take_asked()
            except (EOFError, OSError) as exc:  # the child died (killed, out of memory): a new one reads the batch
                self.close()
                if attempt == 2:
                    raise EncoderFailed(f"the relay's encoder process died twice in a row ({type(exc).__name__})") from exc
                log.warning("the relay's encoder process died (%s); starting another", type(exc).__name__)
        raise AssertionError("unreachable")

    def _ask(self, start: int, partitions: int) -> None:
        self.start()
        assert self._conn is not None
        self._conn.send((start, partitions))
        self._asked = (start, partitions)

    def _take_asked(self) -> Encoded:
        self._asked = None
        answer = self._answer()
        assert isinstance(answer, Encoded)
        return answer

    def _answer(self) -> Any:
        assert self._conn is not None
        kind, value = self._conn.recv()
        if kind == "error":
            self.close()  # its state is unknown: the next batch starts a new one
            raise EncoderFailed(f"the relay's encoder process failed: {value}")
        return value

    def close(self) -> None:
        conn, process, self._conn, self._process, self._asked = self._conn, self._process, None, None, None
        if conn is not None:
            conn.close()  # the child sees the end of its pipe and exits
        if process is not None:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)


def _child(conn: Connection, settings: Settings, batch_size: int) -> None:
    """The encoder process: answers each (start, partitions) with the batch's ``Encoded`` until the pipe closes."""
    from ledger.tools.admin import open_ledger

    try:
        ledger = open_ledger(settings)
    except Exception as exc:  # noqa: BLE001 - said to the relay, which raises it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    encoder = LocalEncoder(ledger.store, batch_size)
    conn.send(("ready", None))
    with contextlib.suppress(EOFError, OSError, KeyboardInterrupt):  # the relay is gone, or stopping
        while True:
            start, partitions = conn.recv()
            try:
                answer: tuple[str, Any] = ("ok", encoder.take(start, partitions))
            except Exception as exc:  # noqa: BLE001 - said to the relay, which raises it
                answer = ("error", f"{type(exc).__name__}: {exc}")
            conn.send(answer)
    ledger.store.close()
