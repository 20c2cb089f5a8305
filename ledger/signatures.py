"""Ed25519 verification of a batch's signatures in worker processes, while the submitting thread goes on; and
the receipts' signatures, side by side.

A verification takes about 40 µs of CPU (``ed25519.verify``; the ed25519 benchmark measures it). In threads
it would release the GIL for the check itself but need it back between checks, and a submitting thread busy
with the rules holds it for up to the switch interval (5 ms) each time, so the verifiers starve exactly when
overlap would pay. Worker processes share nothing: the caller sends (public key, signature, signed bytes) triples and later collects the verdicts.

The caller writes each task straight into a worker's pipe and reads the verdicts straight from it, in its own
thread. A ``concurrent.futures`` pool would hand every task and every verdict through two helper threads of
the calling process, each of which needs the GIL that the busy submitting thread holds: measured, a task of
3 ms of work came back 20–30 ms after it was sent, and the submitting thread waited for it.

The workers are started on first use with the ``spawn`` method (never ``fork``: the caller holds database
connections and threads) and live as long as the process; a worker leaves when its pipe closes, so a killed
parent leaves none behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import itertools
import logging
import multiprocessing
import os
import queue
import threading
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any, Generic, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.core import ed25519

log = logging.getLogger("pupil_ledger.signatures")
Check = tuple[bytes, bytes, bytes]  # raw public key, signature, signed bytes (the DSSE PAE)
TASK_SIZE = 64  # checks per task sent to a worker (about 3 ms of work)
MIN_BATCH = 16  # callers verify (or sign) fewer than this themselves, when they need each verdict
SIGN_TASK_SIZE = 64  # messages per signing task (about 1 ms of work)
T = TypeVar("T")
R = TypeVar("R")
PIPE_BYTES = (
    1 << 20
)  # room for a batch's tasks in a worker's pipe, so sending never waits for the worker (Linux allows up to 1 MiB unprivileged)


def _verify_all(checks: Sequence[Check]) -> list[bool]:
    return [ed25519.verify(*check) for check in checks]


def _serve(tasks: Connection, results: Connection) -> None:
    """In a worker: do each task as it arrives, answer with its number and results; leave when the parent's end closes.

    A thread reads the tasks as they come, whatever the worker is doing: a caller sends all of a batch's tasks
    before it reads any result, so a worker that stopped reading while its results pipe was full would leave
    the caller blocked on a full task pipe, and both waiting for the other.
    """
    arrived: queue.SimpleQueue[tuple[int, Callable[[list[Any]], list[Any]], list[Any]] | None] = queue.SimpleQueue()

    def read() -> None:
        while True:
            try:
                arrived.put(tasks.recv())
            except (EOFError, OSError):
                arrived.put(None)
                return

    threading.Thread(target=read, name="tasks", daemon=True).start()
    while (task := arrived.get()) is not None:
        number, work, items = task
        try:
            results.send((number, work(items)))
        except OSError:  # the parent is gone
            return


def workers() -> int:
    """One fewer than the cores this process may use (at least one): the submitting thread keeps a core to
    itself. On this 2-core machine one worker per process gave submitBatch 7,100-7,600 events/s against
    6,800-7,200 with two (four alternating runs of three), the worker and PostgreSQL sharing the other core."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores - 1)


class WorkerGone(Exception):
    """A worker process could not be started or died; its checks are verified in the calling thread."""


class _Worker:
    """One worker process and the two pipes to it. Safe to share between threads: each task has a number, and a
    thread that reads another thread's verdicts keeps them for it."""

    def __init__(self, context: Any):
        tasks_out, tasks_in = context.Pipe(duplex=False)[::-1]  # Pipe(duplex=False) is (reader, writer)
        verdicts_in, verdicts_out = context.Pipe(duplex=False)
        for connection in (tasks_in, verdicts_in):
            _widen(connection)
        self.process = context.Process(target=_serve, args=(tasks_in, verdicts_out), daemon=True, name="signature-worker")
        self.process.start()
        tasks_in.close()  # the worker's ends: held by the worker alone, so either side sees the other leave
        verdicts_out.close()
        self._tasks, self._verdicts = tasks_out, verdicts_in
        self._sending, self._receiving = threading.Lock(), threading.Lock()
        self._arrived: dict[int, list[Any]] = {}

    def send(self, number: int, work: Callable[[list[Any]], list[Any]], items: list[Any]) -> None:
        try:
            with self._sending:
                self._tasks.send((number, work, items))
        except OSError as exc:
            raise WorkerGone(str(exc)) from exc

    def receive(self, number: int) -> list[Any]:
        with self._receiving:
            while number not in self._arrived:
                try:
                    got, verdicts = self._verdicts.recv()
                except (EOFError, OSError) as exc:
                    raise WorkerGone(f"signature worker {self.process.pid} exited with {self.process.exitcode}") from exc
                self._arrived[got] = verdicts
            return self._arrived.pop(number)

    def stop(self) -> None:
        self._tasks.close()
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self._verdicts.close()


def _widen(connection: Connection) -> None:
    with contextlib.suppress(
        OSError, AttributeError
    ):  # not Linux, or above the system's limit: the default pipe only makes sending wait sometimes
        fcntl.fcntl(connection.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)


class _Pool:
    def __init__(self, size: int):
        self.owner = os.getpid()
        self.workers = [_Worker(multiprocessing.get_context("spawn")) for _ in range(size)]
        self._numbers = itertools.count()
        self._next = itertools.cycle(range(size))
        self._lock = threading.Lock()

    def send(self, work: Callable[[list[Any]], list[Any]], items: list[Any]) -> tuple[_Worker, int]:
        with self._lock:
            number, worker = next(self._numbers), self.workers[next(self._next)]
        worker.send(number, work, items)
        return worker, number

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()


_lock = threading.Lock()
_pool: _Pool | None = None
_broken = False  # once the workers failed, this process verifies inline rather than respawn them per batch


def _running() -> _Pool:
    global _pool
    with _lock:
        if _broken:
            raise WorkerGone("signature workers failed earlier in this process")
        if _pool is None or _pool.owner != os.getpid():  # a forked child does not own its parent's workers
            try:
                _pool = _Pool(workers())
            except Exception as exc:  # e.g. an unguarded __main__ under spawn
                raise WorkerGone(f"signature workers could not start: {exc}") from exc
        return _pool


class Tasks(Generic[T, R]):
    """Items sent to the workers a task at a time, as they are added, for ``work`` (a module-level function, or
    a ``functools.partial`` of one: it goes to the worker by reference); the results collected at once, in order."""

    def __init__(self, work: Callable[[list[T]], list[R]], task_size: int = TASK_SIZE):
        self.work = work
        self.task_size = task_size
        self._items: list[T] = []
        self._tasks: list[tuple[_Worker, int]] = []  # worker, task number
        self._sent = 0
        self._inline = False  # the workers are gone: whatever is not back is done here

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: T) -> None:
        self._items.append(item)
        if len(self._items) - self._sent >= self.task_size:
            self._send()

    def flush(self) -> None:
        """Send what is added but not yet sent, rather than wait for a full task."""
        self._send()

    def _send(self) -> None:
        task = self._items[self._sent :]
        if not task or self._inline:
            return
        try:
            self._tasks.append(_running().send(self.work, task))
        except WorkerGone:
            self._give_up()
            return
        self._sent = len(self._items)

    def results(self) -> list[R]:
        self._send()
        done: list[R] = []
        for worker, number in self._tasks:
            if self._inline:
                break
            try:
                done.extend(worker.receive(number))
            except WorkerGone:
                self._give_up()
        return done + self.work(self._items[len(done) :])

    def _give_up(self) -> None:
        self._inline = True
        if _discard_broken():  # said once per process, with the cause; every later batch is inline anyway
            log.warning("signature workers unavailable; working in the calling thread", exc_info=True)


class Batch(Tasks[Check, bool]):
    """Signatures to verify: ``add`` each check, then ``results`` gives the verdicts in order."""

    def __init__(self, task_size: int = TASK_SIZE):
        super().__init__(_verify_all, task_size)


class Signing:
    """Ed25519 signatures of ``messages`` by ``private_key``, started at once in the workers side by side (by
    the caller, when ``results`` is asked, below ``MIN_BATCH``): the same bytes ``ed25519.sign`` gives, since
    Ed25519 signing is deterministic."""

    def __init__(self, private_key: Ed25519PrivateKey, messages: Sequence[bytes]):
        self._secret = ed25519.libsodium_secret(private_key)
        self._messages = messages
        self._tasks: Tasks[bytes, bytes] | None = None
        if len(messages) >= MIN_BATCH:
            self._tasks = Tasks(functools.partial(ed25519.sign_all, self._secret), SIGN_TASK_SIZE)
            for message in messages:
                self._tasks.add(message)
            self._tasks.flush()

    def results(self) -> list[bytes]:
        return self._tasks.results() if self._tasks is not None else ed25519.sign_all(self._secret, self._messages)


def start() -> None:
    """Start every worker now, so the first batches do not wait for them (about a second each)."""
    try:
        pool = _running()
        sent = [
            pool.send(_verify_all, []) for _ in pool.workers
        ]  # an empty task each (round robin): answered once it has imported and listens
        for worker, number in sent:
            worker.receive(number)
    except WorkerGone:
        _discard_broken()


def pids() -> list[int]:
    """The running workers' process ids (none before the first batch or ``start``)."""
    with _lock:
        return [w.process.pid for w in _pool.workers if w.process.pid is not None] if _pool is not None else []


def _discard_broken() -> bool:
    """Stop using the workers in this process; whether they were still thought to be working (the first to see it)."""
    global _pool, _broken
    with _lock:
        broken, _pool, first, _broken = _pool, None, not _broken, True
    if broken is not None and broken.owner == os.getpid():
        for worker in broken.workers:
            worker.process.kill()
    return first


def shutdown() -> None:
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None and pool.owner == os.getpid():
        pool.stop()
