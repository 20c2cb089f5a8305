"""A projection worker process: one active worker per view, by PostgreSQL session advisory locks.

Each view has its own lock; a worker projects the views whose locks it holds and keeps trying for
the others, so a standby worker takes a view over within ``idle`` seconds of its holder dying (the
lock is released with the dead worker's connection). On SQLite there is a single process, no lock.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable
from typing import Any

import psycopg

from ledger.config import FOLLOWER_PACE_SECONDS, follower_pause
from ledger.storage.store import Store

from .facts import View
from .runner import DEFAULT_BATCH, VIEWS, Projector


def lock_key(view: View) -> int:
    return zlib.crc32(f"pupil-ledger:view:{view.name}".encode())


class Worker:
    def __init__(
        self,
        store: Store,
        database_url: str | None,
        views: tuple[View, ...] = VIEWS,
        batch_size: int | None = None,  # None: the projector's own (runner.CATCH_UP_BATCH)
        idle: float = 0.5,
        on_batch: Callable[[int], None] | None = None,
        pace: float = FOLLOWER_PACE_SECONDS,
    ):
        self.store, self.views, self.batch_size, self.idle, self.on_batch = store, views, batch_size, idle, on_batch
        self.pace = pace  # after a step that found less than a full batch: ledger.config.follower_pause
        self._conn: Any = psycopg.connect(database_url, autocommit=True) if database_url else None
        self.held: list[View] = []
        self.stopping = threading.Event()

    def _acquire(self) -> None:
        if self._conn is None:
            self.held = list(self.views)
            return
        for view in self.views:
            if view in self.held:
                continue
            (got,) = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(view),)).fetchone()
            if got:
                self.held.append(view)

    def run(self) -> None:
        Projector(self.store, self.views, self.batch_size).ensure()
        projector: Projector | None = None
        while not self.stopping.is_set():
            self._acquire()
            if self.held and (projector is None or {v.name for v in projector.views} != {v.name for v in self.held}):
                projector = Projector(self.store, tuple(self.held), self.batch_size, ready=True)  # ensured above
            done = projector.step() if projector is not None else 0
            if done and self.on_batch:
                self.on_batch(done)
            pause = follower_pause(done, self.batch_size or DEFAULT_BATCH, self.idle, self.pace)
            if pause:
                self.stopping.wait(pause)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
