"""Projection catch-up: the read-side views built from a ledger loaded with the whole workload.

Each run takes a fresh copy of the loaded ledger (views empty), creates the views and times
``Projector.catch_up`` over every event, in the runner's exactly-once batches.
"""

from __future__ import annotations

import time

from ledger.tools import admin
from projections.config import ViewSettings
from projections.facts import Moment
from projections.queries import accountability_metrics
from projections.runner import Projector, Reader

from .harness import Context, Result, Scenario, rss_mb


def run(ctx: Context) -> list[Result]:
    sizes: list[int] = []
    national_reads: list[float] = []

    def once() -> tuple[float, list[float]]:
        with ctx.loaded() as settings:
            ledger = admin.open_ledger(settings)
            projector = Projector(ledger.store)
            projector.ensure()
            latencies: list[float] = []
            started = time.perf_counter()
            last = started

            def tick(n: int) -> None:
                nonlocal last
                now = time.perf_counter()
                latencies.append((now - last) * 1000)
                last = now

            sizes.append(projector.catch_up(on_progress=tick))
            took = time.perf_counter() - started
            read_started = time.perf_counter()  # a fresh moment, nothing cached (the read model answers: benchmarks/read_model.py)
            accountability_metrics(Reader(ledger.store), ViewSettings(), Moment(ledger.clock().date()), "national", "england")
            national_reads.append(time.perf_counter() - read_started)
            ledger.store.close()
        return took, latencies

    seconds, latencies = ctx.measure(once)
    return [
        Result(
            "projections",
            ctx.backend,
            "projection catch-up",
            "events/s",
            sizes[-1] if sizes else 0,
            seconds,
            latencies,
            rss_mb()[0],
            target="≥ 10,000/s",
            note="all views, the read model's included; latency per runner batch",
        ),
        Result(
            "projections",
            ctx.backend,
            "accountabilityMetrics, England, new moment",
            "reads/s",
            1,
            national_reads[-len(seconds) :],
            [s * 1000 for s in national_reads[-len(seconds) :]],
            note="from the read model (issue 20); the fold's baseline is in the read_model scenario",
        ),
    ]


SCENARIO = Scenario("projections", run, "projection catch-up over the loaded ledger")
