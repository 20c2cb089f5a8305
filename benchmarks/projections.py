"""Projection throughput: events/s of the exactly-once projector catching up over a loaded ledger,
and the latency of one national ``accountabilityMetrics`` read, on SQLite and PostgreSQL.

Self-contained: ``python -m benchmarks.projections [--pupils 5000] [--batch 500] [--runs 3]``.
PostgreSQL is used if ``PUPIL_LEDGER_TEST_PG`` (default postgresql://postgres@127.0.0.1:5432/postgres)
accepts connections; each run gets a fresh database, dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import psycopg

from ledger import admin
from ledger.config import Settings
from ledger.simulate import load_area, simulate_area
from projections.config import ViewSettings
from projections.facts import Moment
from projections.queries import accountability_metrics
from projections.runner import Projector, Reader

PG_ADMIN_URL = os.environ.get("PUPIL_LEDGER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
TODAY = date(2026, 10, 5)


@contextmanager
def fresh(backend: str) -> Iterator[Settings]:
    with tempfile.TemporaryDirectory() as tmp:
        if backend == "sqlite":
            yield Settings(home=Path(tmp) / "home")
            return
        name = f"pl_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield Settings(home=Path(tmp) / "home", database_url=f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}")
        finally:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_available() -> bool:
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def run_once(backend: str, pupils: int, batch: int, seed: int) -> dict[str, float]:
    with fresh(backend) as settings:
        ledger = admin.initialise(settings).ledger
        load_area(ledger, simulate_area(pupils=pupils, seed=seed, la_code="801", today=TODAY))
        events = ledger.store.count_events()
        projector = Projector(ledger.store, batch_size=batch)
        projector.ensure()
        started = time.perf_counter()
        projected = projector.catch_up()
        took = time.perf_counter() - started
        assert projected == events or projected >= events, (projected, events)
        read_started = time.perf_counter()
        accountability_metrics(Reader(ledger.store), ViewSettings(), Moment(TODAY), "national", "england")
        read = time.perf_counter() - read_started
        ledger.store.close()
    return {"events": events, "seconds": took, "events_per_s": events / took, "national_metrics_read_s": read}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pupils", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgres")
    args = parser.parse_args(argv)
    results = []
    for backend in args.backends.split(","):
        if backend == "postgres" and not postgres_available():
            print(f"postgres: skipped ({PG_ADMIN_URL} not reachable)")
            continue
        runs = [run_once(backend, args.pupils, args.batch, seed) for seed in range(1, args.runs + 1)]
        rates = [r["events_per_s"] for r in runs]
        result = {
            "scenario": "projection catch-up", "backend": backend, "pupils": args.pupils, "events": int(runs[0]["events"]),
            "batch": args.batch, "runs": len(runs), "events_per_s_median": round(statistics.median(rates)),
            "events_per_s_min": round(min(rates)), "events_per_s_max": round(max(rates)),
            "national_metrics_read_s_median": round(statistics.median(r["national_metrics_read_s"] for r in runs), 3),
        }
        results.append(result)
        print(f"{backend:9} {result['events']:>7} events  {result['events_per_s_median']:>8} events/s (median of {len(runs)}; "
              f"{result['events_per_s_min']}-{result['events_per_s_max']})  national accountabilityMetrics read "
              f"{result['national_metrics_read_s_median']} s")
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
