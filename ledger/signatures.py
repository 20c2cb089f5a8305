"""Ed25519 verification of a batch's signatures in worker processes, while the submitting thread goes on.

A verification takes about 40 µs of CPU (``ed25519.verify``; the ed25519 benchmark measures it). In threads
it would release the GIL for the check itself but need it back between checks, and a submitting thread busy
with the rules holds it for up to the switch interval (5 ms) each time, so the verifiers starve exactly when
overlap would pay. Worker processes share nothing: the caller sends (public key, signature, signed bytes) triples and later collects the verdicts.

The pool is started on first use with the ``spawn`` method (never ``fork``: the caller holds database
connections and threads) and lives as long as the process.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from . import ed25519

log = logging.getLogger("pupil_ledger.signatures")
Check = tuple[bytes, bytes, bytes]  # raw public key, signature, signed bytes (the DSSE PAE)
TASK_SIZE = 64  # checks per task sent to a worker (about 3 ms of work)
PARENT_CHECK_SECONDS = 1.0
MIN_BATCH = 16  # callers verify fewer checks than this themselves, when they need each verdict

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_broken = False  # once the workers failed, this process verifies inline rather than respawn them per batch


def _exit_with_parent(parent: int) -> None:
    """In a worker: leave when the process that started it is gone (a killed server must not leave idle workers)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _verify_all(checks: Sequence[Check]) -> list[bool]:
    return [ed25519.verify(*check) for check in checks]


def workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _executor() -> ProcessPoolExecutor:
    global _pool
    with _lock:
        if _broken:
            raise BrokenProcessPool("signature workers failed earlier in this process")
        if _pool is None:
            _pool = ProcessPoolExecutor(workers(), mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_exit_with_parent, initargs=(os.getpid(),))
        return _pool


class Batch:
    """Checks sent to the workers a task at a time, as they are added; the verdicts collected at once, in order."""

    def __init__(self, task_size: int = TASK_SIZE):
        self.task_size = task_size
        self._checks: list[Check] = []
        self._futures: list[Future[list[bool]]] = []
        self._sent = 0

    def __len__(self) -> int:
        return len(self._checks)

    def add(self, check: Check) -> None:
        self._checks.append(check)
        if len(self._checks) - self._sent >= self.task_size:
            self._send()

    def _send(self) -> None:
        task = self._checks[self._sent:]
        if not task:
            return
        try:
            self._futures.append(_executor().submit(_verify_all, task))
            self._sent = len(self._checks)
        except BrokenProcessPool:  # the rest is verified when collected
            _discard_broken()

    def results(self) -> list[bool]:
        self._send()
        verdicts: list[bool] = []
        try:
            for future in self._futures:
                verdicts.extend(future.result())
        except BrokenProcessPool:  # e.g. a worker could not start (an unguarded __main__ under spawn)
            log.warning("signature workers unavailable; verifying in the submitting thread", exc_info=True)
            _discard_broken()
            return _verify_all(self._checks)
        return verdicts + _verify_all(self._checks[len(verdicts):])


def start() -> None:
    """Start every worker now: the pool starts one per task it is given, so a small first batch would leave
    the others to start (about a second each) during later ones."""
    try:
        pool = _executor()
        for started in [pool.submit(time.sleep, 0.2) for _ in range(workers())]:
            started.result()
    except BrokenProcessPool:
        _discard_broken()


def _discard_broken() -> None:
    global _pool, _broken
    with _lock:
        broken, _pool, _broken = _pool, None, True
    if broken is not None:
        broken.shutdown(wait=False, cancel_futures=True)


def shutdown() -> None:
    global _pool
    with _lock:
        if _pool is not None:
            _pool.shutdown(cancel_futures=True)
            _pool = None
