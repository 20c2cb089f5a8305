"""`pupil-ledger bench` at a tiny size: every scenario runs on both backends and reports sane rows.

Not a timed test: it checks that the harness measures what it says (every envelope accepted, the
baselines beside the rows they are baselines for, the server's RSS), not how fast this machine is.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ledger.config import Settings

from .processes import CLI, env_for, run_cli

pytestmark = pytest.mark.slow
SCENARIOS = {"ingest", "submit_event", "reads", "sealing", "projections", "ed25519", "database"}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_bench_smoke(backend: str, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [*CLI, "bench", "--events", "150", "--runs", "1", "--warmup", "0", "--backend", backend, "--json", str(out)],
        env=env_for(Settings(home=tmp_path)),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert json.loads(done.stdout[done.stdout.index("\n{") + 1 :]) == report, "the JSON printed is the JSON written"
    assert "submitBatch" in done.stdout and "naive eventsourcing loop" in done.stdout
    assert report["machine"]["cores"] >= 1 and report["machine"]["pg_fsync"] == "on"
    rows = report["results"]
    assert {r["scenario"] for r in rows} >= SCENARIOS - ({"ed25519"} if backend == "postgres" else set())
    for r in rows:
        assert r["throughput"] > 0 and r["runs"] == 1, r
        assert "ERRORS" not in r["note"] and "NOT ALL ACCEPTED" not in r["note"] and "NOT SEALED" not in r["note"], r["note"]
        assert r["backend"] in (backend, "-")
    by_what = {r["what"]: r for r in rows}
    naive_loops = [
        "naive eventsourcing loop, the library's own recorder",
        "naive eventsourcing loop, nothing checked",
        "naive loop, same checks",
    ]
    assert all(by_what[what]["baseline_for"] == "submitBatch" for what in naive_loops)
    assert by_what[naive_loops[0]]["target"] == "submitBatch ≥ 10× this"
    assert ("submitBatch, 2 processes" in by_what) == ("submitEvent, 2 API processes" in by_what) == (backend == "postgres")
    assert ("submitEvent, 2 API processes, sealer and projector apart (docker-compose)" in by_what) == (backend == "postgres")
    assert "signed checkpoint" in by_what["submitEvent, group commit"]["note"]
    assert by_what["one-row commit"]["p99_ms"] > 0 and ("round trip (SELECT 1)" in by_what) == (backend == "postgres")
    assert (
        by_what["COPY of the stored rows" if backend == "postgres" else "bulk insert of the stored rows"]["baseline_for"] == "submitBatch"
    )
    submit = by_what["submitEvent, group commit"]
    assert submit["p99_ms"] >= submit["p50_ms"] > 0 and 30 < submit["rss_mb"] < 2000
    assert by_what["pupilHistory"]["latency_samples"] == 500 and by_what["inclusionProof"]["latency_samples"] == 500
    assert "the server sealed and projected the copy in" in by_what["pupilHistory"]["note"]


def test_reads_timed_before_the_server_caught_up_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reads scenario waits for the server to seal and project the copy; if it gives up, the row says so."""
    from benchmarks import reads
    from benchmarks.harness import Context

    monkeypatch.setattr(reads, "SEAL_TIMEOUT", 1.0)
    monkeypatch.setattr(reads, "_projected", lambda ledger: False)  # projections that never catch up
    ctx = Context("sqlite", 150, runs=1, warmup=0)
    try:
        rows = {r.what: r for r in reads.run(ctx)}
    finally:
        ctx.close()
    assert "ERRORS: NOT CAUGHT UP within 1 s" in rows["pupilHistory"].note, rows["pupilHistory"].note


def test_bench_refuses_bad_options(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    unknown = run_cli(settings, "bench", "--scenario", "nope", "--events", "50", check=False)
    assert unknown.returncode == 2 and "unknown scenario 'nope'" in unknown.stderr
    assert run_cli(settings, "bench", "--backend", "mysql", check=False).returncode == 2
    assert run_cli(settings, "bench", "--events", "ten", check=False).returncode == 2
    assert "Example: pupil-ledger bench" in run_cli(settings, "bench", "--help").stdout
    listed = run_cli(settings, "bench", "--list").stdout
    assert all(name in listed for name in SCENARIOS)
