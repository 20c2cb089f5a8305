"""The database when it fails: every wait bounded, and what each failure tells the caller (README, "HTTP").

PostgreSQL can fail in two ways a client sees: it refuses (a restart, a cut link: errors come at once) or it stops
answering (a dead host, a hung server: every wait lasts as long as the client lets it). Both are bounded here, per
process, for every connection of the store's pool:

- a new connection gives up after ``CONNECT_SECONDS``, a wait for a pooled one after ``CHECKOUT_SECONDS``
  (``POSTGRES_CONNECT_TIMEOUT``, set in ``store.persistence_env``), and the pool stops retrying a lost slot after
  ``RECONNECT_SECONDS`` (it grows again on demand);
- a round trip that has waited ``STALL_SECONDS``, or a connection lost, makes a watchdog ask the database, on a
  connection of its own, to answer within ``PROBE_SECONDS``. A long statement on a database that answers is left
  alone (no statement timeout could tell it from a dead server; projection rebuilds run minutes). If the database
  does not answer it is *away*: every waiting round trip is cut (its socket shut down), and until the watchdog
  sees it answer again new round trips fail at once and checkouts do not wait.

What a failure means for a write is exact: a round trip that fails after a ``COMMIT`` was sent on its connection
raises ``CommitUnconfirmed`` (the commit may have happened), which the library does not retry; any other failure of
a connection means nothing the write sent was committed, and the library's retry runs on a fresh connection.
``failure_of`` turns each kind into what a caller is told: 503 (unavailable: nothing stored), 504 (unconfirmed:
resubmit the same bytes, a stored event is answered 200 with its receipt) or 507 (the disk is full: nothing stored).

SQLite has no link to lose: its errors are only classified (a full disk, a busy lock).
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import psycopg
from psycopg import pq

log = logging.getLogger("pupil_ledger.database")

CONNECT_SECONDS = 2  # libpq's least connect_timeout
CHECKOUT_SECONDS = 2
RECONNECT_SECONDS = 5.0
STALL_SECONDS = 1.0
PROBE_SECONDS = 1.0
TICK_SECONDS = 0.25  # how often the watchdog looks, and asks an away database again
RETRY_AFTER_SECONDS = 2


class CommitUnconfirmed(Exception):  # noqa: N818 - it names the outcome, as the HTTP answer does
    """The connection was lost after a ``COMMIT`` was sent on it: the transaction may or may not have committed.

    Not a ``psycopg.Error``, so that nothing retries the write believing it failed."""


@dataclass(frozen=True)
class Failure:
    """What a database failure means for the request that met it."""

    status: int
    code: str
    message: str
    retry_after: int


UNAVAILABLE = Failure(
    503, "database_unavailable", "the database is not answering; nothing was stored. Retry after Retry-After seconds", RETRY_AFTER_SECONDS
)
UNCONFIRMED = Failure(
    504,
    "commit_unconfirmed",
    "the database stopped answering while committing: the request may or may not have "
    "been stored. Resubmit the same bytes once /healthz is ok: an event already stored is answered 200 with its "
    "receipt",
    RETRY_AFTER_SECONDS,
)
FULL = Failure(507, "insufficient_storage", "the ledger's storage is full; nothing was stored", 60)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling (the library wraps the driver's)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def failure_of(exc: BaseException) -> Failure | None:
    """The meaning of a database failure, or None for anything else (a fault, answered 500)."""
    chain = list(_chain(exc))
    if any(isinstance(e, CommitUnconfirmed) for e in chain):
        return UNCONFIRMED
    for e in chain:
        if isinstance(e, psycopg.errors.DiskFull) or (isinstance(e, OSError) and e.errno == errno.ENOSPC):
            return FULL
        if isinstance(e, sqlite3.Error) and "database or disk is full" in str(e):
            return FULL
    for e in chain:  # the driver's own errors (the library wraps them): SQLite's OperationalError also means "no such table"
        if isinstance(e, psycopg.OperationalError | psycopg.InterfaceError):
            return UNAVAILABLE
        if isinstance(e, sqlite3.OperationalError) and "database is locked" in str(e):
            return UNAVAILABLE
    return None


class Liveness:
    """Whether one pool's database answers, judged by a watchdog thread (module docstring)."""

    def __init__(self, pool: Any):
        self._pool = pool
        self._checkout_seconds = float(pool.timeout)
        self._waits: dict[GuardedConnection, float] = {}  # connection -> when its current round trip began
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._probe: psycopg.Connection[Any] | None = None
        self.away_since: float | None = None  # monotonic time the database was found not answering

    @property
    def away(self) -> bool:
        return self.away_since is not None

    def begin(self, conn: GuardedConnection) -> None:
        with self._lock:
            self._waits[conn] = time.monotonic()
            if self._thread is None:  # first use: the pool is open now, and the watchdog follows it until it closes
                self._thread = threading.Thread(target=self._watch, name="database-watchdog", daemon=True)
                self._thread.start()

    def end(self, conn: GuardedConnection) -> None:
        with self._lock:
            self._waits.pop(conn, None)

    def suspect(self) -> None:
        """A connection was lost: ask the database now, not at the next stall."""
        self._wake.set()

    def _watch(self) -> None:
        self._answers()  # opens the watchdog's connection now, so that its first question costs one round trip
        try:
            while not self._pool.closed:
                suspected = self._wake.wait(TICK_SECONDS)
                self._wake.clear()
                with self._lock:
                    oldest = min(self._waits.values(), default=None)
                stalled = oldest is not None and time.monotonic() - oldest >= STALL_SECONDS
                if not (suspected or stalled or self.away):
                    continue
                if self._answers():
                    if self.away:
                        self._back()
                elif not self._pool.closed:
                    self._lost()
        finally:
            self._close_probe()

    def _answers(self) -> bool:
        """Whether the database answers a query within ``PROBE_SECONDS`` (on the watchdog's own connection)."""
        try:
            if self._probe is None or self._probe.closed:
                self._probe = psycopg.Connection.connect(**{**self._pool.kwargs, "autocommit": True})
            if _ping(self._probe.pgconn, PROBE_SECONDS):
                return True
        except psycopg.Error:
            pass
        self._close_probe()  # in an unknown state: the next question goes on a new connection
        return False

    def _close_probe(self) -> None:
        if self._probe is not None:
            self._probe.close()
            self._probe = None

    def _lost(self) -> None:
        if not self.away:
            self.away_since = time.monotonic()
            self._pool.timeout = 0.0  # a checkout would wait for a connection that cannot be made
            log.warning("the database is not answering: requests fail at once until it does")
        with self._lock:
            waiting = list(self._waits)
        for conn in waiting:
            conn.cut()

    def _back(self) -> None:
        self._pool.timeout = self._checkout_seconds
        log.warning("the database answers again, after %.1f s", time.monotonic() - (self.away_since or 0.0))
        self.away_since = None


class _NeverAway:
    """SQLite's liveness: a file is never away."""

    away = False
    away_since = None


NEVER_AWAY = _NeverAway()
_LIVENESS: weakref.WeakKeyDictionary[Any, Liveness] = weakref.WeakKeyDictionary()


def _ping(pgconn: pq.abc.PGconn, timeout: float) -> bool:
    """Send ``SELECT 1`` and wait at most ``timeout`` seconds for its answer (the driver's waits have no bound)."""
    deadline = time.monotonic() + timeout
    pgconn.send_query(b"SELECT 1")
    while pgconn.flush():
        if not select.select([], [pgconn.socket], [], max(0.0, deadline - time.monotonic()))[1]:
            return False
    while True:
        pgconn.consume_input()
        if not pgconn.is_busy():
            break
        if not select.select([pgconn.socket], [], [], max(0.0, deadline - time.monotonic()))[0]:
            return False
    ok = True
    while (result := pgconn.get_result()) is not None:
        ok = ok and result.status == pq.ExecStatus.TUPLES_OK
    return ok


class _Cursor(psycopg.Cursor[Any]):
    """Notes on its connection when a ``COMMIT`` is sent (the ledger's writes end with ``execute("COMMIT")``)."""

    def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(query, str) and query.strip().upper() == "COMMIT":
            connection = self.connection
            if isinstance(connection, GuardedConnection):
                connection.commit_sent = True
        return super().execute(query, *args, **kwargs)


class GuardedConnection(psycopg.Connection[Any]):
    """A pooled connection whose round trips the pool's ``Liveness`` watches and may cut (module docstring)."""

    liveness: ClassVar[Liveness]

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.cursor_factory = _Cursor
        self.commit_sent = False  # a COMMIT went out whose answer has not come back
        self._cut = False

    def commit(self) -> None:
        self.commit_sent = True
        super().commit()

    def wait(self, gen: Any, *args: Any, **kwargs: Any) -> Any:
        liveness = self.liveness
        if liveness.away:
            self.close()  # nothing more goes out on it; the pool replaces it once the database answers
            raise self._lost(psycopg.OperationalError("the database is not answering"))
        liveness.begin(self)
        try:
            return super().wait(gen, *args, **kwargs)
        except psycopg.Error as exc:
            if not (self.broken or self._cut):
                raise  # the server answered with an error: the connection and its transaction state are known
            liveness.suspect()
            raise self._lost(exc) from exc
        finally:
            liveness.end(self)
            if not self.closed and self.pgconn.transaction_status == pq.TransactionStatus.IDLE:
                self.commit_sent = False  # committed, rolled back or never begun: nothing left in doubt

    def _lost(self, exc: Exception) -> Exception:
        """What to raise for a round trip lost with the connection: in doubt after a COMMIT, else the driver's error
        (the library retries it: nothing was committed)."""
        return CommitUnconfirmed("the connection was lost after COMMIT was sent") if self.commit_sent else exc

    def cut(self) -> None:
        """End the round trip in progress (the watchdog found the database away): shut the socket down, so the
        driver's wait wakes to an error now instead of whenever the network gives up."""
        self._cut = True
        try:
            with socket.socket(fileno=os.dup(self.pgconn.socket)) as sock:
                sock.shutdown(socket.SHUT_RDWR)
        except (OSError, psycopg.Error):
            pass  # closed meanwhile: nothing left to cut


def guard(datastore: Any) -> None:
    """Bound every wait on a PostgreSQL datastore's connections. Call it before the datastore's first connection."""
    pool = datastore.pool
    if pool in _LIVENESS:
        return
    liveness = Liveness(pool)
    pool.kwargs = {
        **pool.kwargs,
        "connect_timeout": CONNECT_SECONDS,
        # an idle pooled connection to a vanished host is found dead by TCP keepalives within ~10 s
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 3,
    }
    pool.connection_class = type("GuardedConnection", (GuardedConnection,), {"liveness": liveness})
    pool.reconnect_timeout = RECONNECT_SECONDS
    _LIVENESS[pool] = liveness


def liveness_of(recorder: Any) -> Liveness | _NeverAway:
    pool = getattr(getattr(recorder, "datastore", None), "pool", None)
    return _LIVENESS.get(pool, NEVER_AWAY) if pool is not None else NEVER_AWAY
