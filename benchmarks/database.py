"""The database's own costs on this machine: the physical limits every other row stands on.

- ``round trip``: ``SELECT 1`` from a client process (PostgreSQL only; SQLite runs in-process). Every
  statement a ledger sends pays it once, so it bounds anything done one statement or one event at a time
  (the naive loop pays it about eight times per event).
- ``one-row commit``: a transaction (``BEGIN``, one ``INSERT`` into a logged table, ``COMMIT``: three round
  trips on PostgreSQL, as a write of the library's naive loop takes), with the durability the ledger runs with (PostgreSQL ``fsync`` and ``synchronous_commit`` on; SQLite in WAL mode with
  ``synchronous=FULL``, its default): the floor under one transaction per event.

Machines of the same kind differ here by several times between sessions (a round trip of 0.1 ms on one,
0.3 ms on another), and the ratios against one-transaction-per-event baselines move with them: these rows
say which machine a report was measured on.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any

import psycopg

from .harness import Context, Result, Scenario

ROUND_TRIPS = 2_000
COMMITS = 300


def _timed(count: int, once: Callable[[int], Any]) -> tuple[float, list[float]]:
    latencies = []
    started = time.perf_counter()
    for i in range(count):
        t = time.perf_counter()
        once(i)
        latencies.append((time.perf_counter() - t) * 1000)
    return time.perf_counter() - started, latencies


def run(ctx: Context) -> list[Result]:
    rows = []
    with ctx.fresh() as settings:
        if settings.database_url:
            with psycopg.connect(settings.database_url, autocommit=True) as conn:
                settings_now: dict[str, str] = dict(
                    conn.execute("SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit')").fetchall()
                )
                for _ in range(100):
                    conn.execute("SELECT 1")
                seconds, latencies = ctx.measure(lambda: _timed(ROUND_TRIPS, lambda _: conn.execute("SELECT 1").fetchone()))
                rows.append(
                    Result(
                        "database",
                        ctx.backend,
                        "round trip (SELECT 1)",
                        "queries/s",
                        ROUND_TRIPS,
                        seconds,
                        latencies,
                        note="physical limit: one statement from a client process over TCP",
                    )
                )
                conn.execute("CREATE TABLE probe (n INTEGER)")

                def commit(i: int) -> None:
                    with conn.transaction():
                        conn.execute("INSERT INTO probe VALUES (%s)", (i,))

                seconds, latencies = ctx.measure(lambda: _timed(COMMITS, commit))
                rows.append(
                    Result(
                        "database",
                        ctx.backend,
                        "one-row commit",
                        "commits/s",
                        COMMITS,
                        seconds,
                        latencies,
                        note=f"physical limit: one transaction per event, BEGIN + INSERT + COMMIT (fsync={settings_now.get('fsync')}, "
                        f"synchronous_commit={settings_now.get('synchronous_commit')})",
                    )
                )
        else:
            settings.home.mkdir(parents=True, exist_ok=True)
            lite = sqlite3.connect(settings.home / "probe.sqlite3", isolation_level=None)
            try:
                lite.execute("PRAGMA journal_mode=WAL")
                lite.execute("PRAGMA synchronous=FULL")
                lite.execute("CREATE TABLE probe (n INTEGER)")

                def commit_sqlite(i: int) -> None:
                    lite.execute("BEGIN")
                    lite.execute("INSERT INTO probe VALUES (?)", (i,))
                    lite.execute("COMMIT")

                seconds, latencies = ctx.measure(lambda: _timed(COMMITS, commit_sqlite))
                rows.append(
                    Result(
                        "database",
                        ctx.backend,
                        "one-row commit",
                        "commits/s",
                        COMMITS,
                        seconds,
                        latencies,
                        note="physical limit: one transaction per event (WAL, synchronous=FULL)",
                    )
                )
            finally:
                lite.close()
    return rows


SCENARIO = Scenario("database", run, "the database's round trip and one-row commit on this machine (physical limits)")
