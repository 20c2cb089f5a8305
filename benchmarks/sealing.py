"""Sealing into the Merkle log, as a scenario: wraps ``benchmarks.tlog`` (the log's own benchmark).

``tlog.run_backend`` fills ``ledger_index`` with as many synthetic rows as the context's workload has
events, times the sealer over them (entries/s, in its batches), then times inclusion proofs at that
size against the baseline of recomputing the root over every leaf.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from . import tlog
from .harness import Context, Result, Scenario, rss_mb

PROOFS = 500


def run(ctx: Context) -> list[Result]:
    seal_seconds: list[float] = []
    baseline_ms: list[float] = []
    proof_p: dict[str, list[float]] = {"p50_ms": [], "p95_ms": [], "p99_ms": []}
    leaves = max(ctx.events, 100)
    for i in range(ctx.warmup + ctx.runs):
        with tempfile.TemporaryDirectory() as tmp:
            out = tlog.run_backend(ctx.backend, leaves, PROOFS, 5000, Path(tmp), ctx.pg_admin_url)
        if i >= ctx.warmup:
            seal_seconds.append(out["seal_seconds"] or 1e-9)
            baseline_ms.append(out["baseline_full_recompute_ms"])
            for k in proof_p:
                proof_p[k].append(out["inclusion_proof"][k])
    proof_note = ", ".join(f"{k[:3]} {max(v):.2f} ms" for k, v in proof_p.items())
    sealing = Result(
        "sealing",
        ctx.backend,
        "seal into the Merkle log",
        "entries/s",
        leaves,
        seal_seconds,
        [],
        rss_mb()[0],
        target="≥ 20,000/s",
        note=f"synthetic index rows, 5,000 per transaction; inclusion proof at this size (store, "
        f"worst run) {proof_note}; recomputing the root instead: {max(baseline_ms):.1f} ms",
    )
    return [sealing]


SCENARIO = Scenario("sealing", run, "sealing throughput and proof cost at the workload's size (benchmarks/tlog.py)")
