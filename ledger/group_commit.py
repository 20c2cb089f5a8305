"""Group commit: concurrent single submissions share one transaction.

Each ``submitEvent`` request is queued; one committer thread takes everything queued so far (up to
``max_group``), runs it through ``Ledger.submit_each`` (every envelope verified, validated and
rule-checked on its own, the accepted ones stored in one transaction) and only then answers each
caller. While one group commits, the next one queues, so the group grows with the load and a lone
request waits for no timer. A 201 is therefore still only sent for a committed event, and a rejected
envelope fails alone, never its neighbours: one that raises while judged, or whose write fails, too
(``submit_each``). The database's failures are every request's: away (503, nothing stored) or a COMMIT whose
answer was lost (504 for each, as each may be stored).
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from ledger.service import Ledger, Principal, Receipt

MAX_GROUP = 256


@dataclass
class _Request:
    raw: Any
    principal: Principal | None
    answer: Future[Receipt] = field(default_factory=Future)


class GroupCommitter:
    def __init__(self, ledger: Ledger, max_group: int = MAX_GROUP):
        self.ledger = ledger
        self.max_group = max_group
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.groups = 0  # groups committed, for tests and the benchmark
        self.largest_group = 0

    def start(self) -> None:
        with self._lock:
            self._start()

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Answer everything already queued, then stop the thread (a later submission starts it again)."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join(timeout)

    def enqueue(self, raw: Any, principal: Principal | None = None) -> Future[Receipt]:
        """Queue one envelope; the future holds its receipt (or its error) once its group has committed."""
        request = _Request(raw, principal)
        with self._lock:  # so a request is never queued behind the stop marker with no thread to take it
            self._start()
            self._queue.put(request)
        return request.answer

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            stopping = False
            while len(group) < self.max_group:
                try:
                    following = self._queue.get_nowait()
                except queue.Empty:
                    break
                if following is None:
                    stopping = True
                    break
                group.append(following)
            self._commit(group)
            if stopping:
                return

    def _commit(self, group: list[_Request]) -> None:
        try:
            outcomes = self.ledger.submit_each([(r.raw, r.principal) for r in group])
        except Exception as exc:  # noqa: BLE001 - e.g. the database is down: every caller of the group hears it
            for r in group:
                r.answer.set_exception(exc)
            return
        self.groups += 1
        self.largest_group = max(self.largest_group, len(group))
        for r, outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, Exception):  # a LedgerError, or what its own write raised (``submit_each``)
                r.answer.set_exception(outcome)
            else:
                r.answer.set_result(outcome)
