"""Background followers of the log, run in-process by the embedded default.

A follower is anything with a ``name`` and a ``step()`` that processes one batch of the log and
returns how many events it handled (0 when caught up). The sealer (``ledger.transparency.tlog``) and the
projection runner (``projections``) are followers; ``pupil-ledger serve`` runs them in threads
beside the API, and the distributed deployment runs each as its own process instead.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Protocol

from ledger.config import FOLLOWER_IDLE_SECONDS, FOLLOWER_PACE_SECONDS, follower_pause
from ledger.storage import database

log = logging.getLogger("pupil_ledger.background")


class Follower(Protocol):
    name: str

    def step(self) -> int: ...


class Background:
    """Runs followers in daemon threads; each sleeps ``idle_seconds`` when it is caught up.

    After a step that found less than a full batch (``batch_size``) it waits ``pace_seconds``
    (``ledger.config.follower_pause``).
    """

    def __init__(
        self, followers: Sequence[Follower], idle_seconds: float = FOLLOWER_IDLE_SECONDS, pace_seconds: float = FOLLOWER_PACE_SECONDS
    ):
        self.followers = list(followers)
        self.idle_seconds = idle_seconds
        self.pace_seconds = pace_seconds
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for follower in self.followers:
            thread = threading.Thread(target=self._run, args=(follower,), name=f"follower-{follower.name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()
        for follower in self.followers:
            close = getattr(follower, "close", None)  # e.g. the witnessing follower's HTTP client
            if close is not None:
                close()

    def _run(self, follower: Follower) -> None:
        failing = False  # a database failure was logged and the follower has not stepped since
        while not self._stop.is_set():
            try:
                done = follower.step()
            except Exception as exc:  # noqa: BLE001 - a follower must outlive a transient database error
                failure = database.failure_of(exc)
                if failure is None:
                    log.exception("follower %s failed; retrying", follower.name)
                elif not failing:  # once per outage, without the traceback: the database's state is the news
                    log.warning("follower %s paused: %s (%s); retrying", follower.name, failure.code, exc)
                failing = failure is not None
                done = 0
            else:
                if failing:
                    log.warning("follower %s resumed", follower.name)
                failing = False
            pause = follower_pause(done, getattr(follower, "batch_size", 0), self.idle_seconds, self.pace_seconds)
            if pause:
                self._stop.wait(pause)
