"""Reads that wait for the views to reach a receipt's sequence (``min_sequence``, read-your-writes).

A wait held a worker thread polling the database for up to 2 s, so one token sending many such reads took
every thread of the pool and ``/healthz`` and other tokens' reads queued behind them. Here the waits hold no
thread: one task per process polls the views' position for all of them (its database work does not grow with
the number of waiting reads), and a token may have at most ``per_token`` reads waiting at once; beyond that its
reads are refused with 429 ``too_many_waiting_reads``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from fastapi.concurrency import run_in_threadpool

from api.limits import Refusal

log = logging.getLogger("pupil_ledger.api")

WAITING_READS_PER_TOKEN = 4
POLL_SECONDS = 0.05


class ViewWaits:
    def __init__(self, lowest: Callable[[], int], per_token: int = WAITING_READS_PER_TOKEN, poll_seconds: float = POLL_SECONDS):
        self.lowest = lowest  # the position every view has reached (blocking: read from the database)
        self.per_token, self.poll_seconds = per_token, poll_seconds
        self._waiting: dict[str, int] = {}  # who -> reads of theirs waiting now (touched on the event loop only)
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._poller: asyncio.Task[None] | None = None

    async def reached(self, min_sequence: int, timeout: float, who: str) -> bool:
        """Whether the views reach ``min_sequence`` within ``timeout`` seconds; ``who`` (a token) waits at most
        ``per_token`` times at once."""
        if self._waiting.get(who, 0) >= self.per_token:
            raise Refusal(
                429,
                "too_many_waiting_reads",
                "query:min_sequence",
                f"at most {self.per_token} reads with min_sequence may wait at once per token; retry after Retry-After seconds",
                1,
            )
        self._waiting[who] = self._waiting.get(who, 0) + 1
        try:
            if await run_in_threadpool(self.lowest) >= min_sequence:
                return True  # most reads: already there, no wait
            arrived: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            waiter = (min_sequence, arrived)
            self._waiters.append(waiter)
            if self._poller is None or self._poller.done():
                self._poller = asyncio.create_task(self._poll())
            try:
                await asyncio.wait_for(arrived, timeout)
                return True
            except TimeoutError:
                return False
            finally:
                self._waiters.remove(waiter)
        finally:
            self._waiting[who] -= 1
            if not self._waiting[who]:
                del self._waiting[who]

    async def _poll(self) -> None:
        while self._waiters:
            await asyncio.sleep(self.poll_seconds)
            try:
                lowest = await run_in_threadpool(self.lowest)
            except Exception:  # noqa: BLE001 - the database may be away: the waits time out and say "not yet"
                log.debug("view positions unreadable; polling on", exc_info=True)
                continue
            for wanted, arrived in self._waiters:
                if wanted <= lowest and not arrived.done():
                    arrived.set_result(None)
