"""One piece of the pages' work at a time in a background thread: preparing the figures of newer events while
the pages go on serving those already prepared (stale while revalidating)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class OneAtATime:
    """Runs a job in a daemon thread unless one is already running (then the job is dropped: the next request
    that finds the pages behind asks again). A failing job is logged, never raised: the pages keep what they had."""

    def __init__(self, name: str):
        self.name = name
        self._lock = threading.Lock()
        self._running: threading.Thread | None = None
        self._closed = False

    def start(self, job: Callable[[], object]) -> bool:
        """Start ``job`` unless a job is running or the pages are closing; True if it was started."""
        with self._lock:
            if self._running is not None or self._closed:
                return False
            thread = threading.Thread(target=self._run, args=(job,), name=self.name, daemon=True)
            self._running = thread
        thread.start()
        return True

    def _run(self, job: Callable[[], object]) -> None:
        try:
            job()
        except Exception:  # the pages keep serving what they had; the next request after the interval tries again
            log.exception("%s failed", self.name)
        finally:
            with self._lock:
                self._running = None

    @property
    def running(self) -> bool:
        with self._lock:
            return self._running is not None

    def wait(self, timeout: float | None = None) -> None:
        """Until the running job (if any) has finished."""
        with self._lock:
            thread = self._running
        if thread is not None:
            thread.join(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Start nothing more and wait for the running job (it uses the ledger's database)."""
        with self._lock:
            self._closed = True
        self.wait(timeout)
