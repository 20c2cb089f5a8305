"""A read model state's statements asked ahead, on other connections, while the state's own thread works (issue 20).

A state (``read_model_queries.ReadModelContext``) asks the database some twenty statements one after another, and
between them makes their rows into items and rolls them up in Python: at 1 M pupils a school read spent about half of
its time waiting on the server and half in Python, never both at once. The statements a state asks depend on its kind
(what it is read for, the level it was made for, and whether it reads at the ledger's now), not on its moment, whose
values are bound parameters. So a new state sends the statements the previous state of its kind asked to a small pool of threads, each
on its own connection from the store's pool, as soon as it is made; when the state asks one of them it takes the rows
already read (or waits for the statement in flight), and the server's work overlaps the state's Python.

Every statement is one autocommit transaction whether it is asked ahead or not, so asking ahead changes when a
statement runs, never what it can see: the state's statements were never one snapshot. A statement the previous state
did not ask runs in the state's thread as before; one asked ahead that the state does not ask is read and dropped. A
statement not yet started when the state asks it is taken back and run in the state's thread, so a busy pool (two reads
at once) never makes a state wait behind another's statements. Statements with values of their own (a scope's) are not
asked ahead: their values are the caller's. PostgreSQL only: SQLite serves one writer and its statements run in this
process, where threads would only contend. A state asks ahead only when its maker names what it is read for (an
``accountabilityMetrics`` body, the year before's values): a national series' states read fewer statements than an
England read's (not every open placement), and would otherwise be sent the England read's.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

Rows = list[tuple[Any, ...]]

REPORT = "accountabilityMetrics"  # a state an ``accountabilityMetrics`` body is reported from
YEAR_BEFORE = "a year before"  # a state the year before's values are read from (``change_since_last_year``)
WORKERS = 2  # statements in flight beside the state's own thread (a 2-core machine: the server's work, on both cores)
_pool: ThreadPoolExecutor | None = None
_last_asked: dict[tuple[Any, ...], list[str]] = {}  # each kind's latest state's statements, in the order it asked them
_lock = threading.Lock()


def _after_fork() -> None:  # a forked child has none of its parent's threads: it makes its own pool when it needs one
    global _pool
    _pool = None


os.register_at_fork(after_in_child=_after_fork)


def _workers() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="read-model-ahead")
        return _pool


class Ahead:
    """The statements of one state: those asked ahead (``sent``), and those the state has asked (``asked``, the plan of
    the next state of its kind). ``run(sql)`` gives a statement's rows for the state's parameters, as ``query`` does."""

    def __init__(self, kind: tuple[Any, ...] | None, run: Callable[[str], Rows], enabled: bool = True):
        """``kind``: the plan the state follows and records (None: neither); ``enabled``: whether it sends it (False:
        the state runs every statement itself, and its statements are still the next state's plan)."""
        self.asked: list[str] = []
        self._run = run
        self._sent: dict[str, Future[Rows]] = {}
        self.taken = 0  # statements answered by the rows read ahead
        self.taken_back = 0  # statements asked ahead that had not started when the state asked them
        plan: list[str] = []
        if kind is not None:
            with _lock:
                plan = _last_asked.get(kind, [])
                _last_asked[kind] = self.asked
        if enabled and plan:
            pool = _workers()
            for sql in dict.fromkeys(plan):  # (in order, once each)
                self._sent[sql] = pool.submit(run, sql)

    def rows(self, sql: str) -> Rows:
        """The rows of ``sql``: those read ahead, or read now in this thread (also when the statement had not started)."""
        self.asked.append(sql)
        sent = self._sent.pop(sql, None)
        if sent is not None:
            if not sent.cancel():  # running or done: its rows, or its error, are this statement's
                self.taken += 1
                return sent.result()
            self.taken_back += 1
        return self._run(sql)


def forget() -> None:
    """No kind's statements are asked ahead until a state of that kind has asked them again (a fresh start)."""
    with _lock:
        _last_asked.clear()
