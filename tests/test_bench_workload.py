"""The benchmarks' workload at the sizes issue 20 asks for: a 10 M-event ledger is loaded one simulated area at a time
(the whole workload held at once was 1.5 GB per million pupils), and the read model's scenario leaves out the fold,
its baseline, above the size where the fold's every pupil in memory would take the machine's."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks import read_model, workload
from benchmarks.harness import Context, Result


def _same(area: Any) -> tuple[Any, ...]:
    return area.la, sorted(area.orgs), area.events, area.schools, area.example_upn


def test_streamed_areas_are_the_workloads_areas_without_building_it() -> None:
    streamed = workload.streamed_areas(300, seed=5)
    assert not isinstance(streamed, list) and (300, 5) not in workload._WORKLOADS, "streaming builds no workload"
    first = next(streamed)
    assert (300, 5) not in workload._WORKLOADS
    rest = list(streamed)
    built = workload.workload(300, seed=5)
    assert [_same(a) for a in [first, *rest]] == [_same(a) for a in built.areas]
    assert sum(len(a.events) for a in [first, *rest]) == built.size > 0
    # once built (another scenario asked for it), the built areas themselves are streamed: nothing simulated twice
    assert all(a is b for a, b in zip(workload.streamed_areas(300, seed=5), built.areas, strict=True))
    assert workload.workload(300, seed=5) is built


@pytest.mark.slow
def test_the_read_model_scenario_leaves_the_fold_out_above_its_size(monkeypatch: pytest.MonkeyPatch) -> None:
    folded: list[Any] = []
    real = read_model.context
    monkeypatch.setattr(read_model, "context", lambda *args: folded.append(args) or real(*args))
    monkeypatch.setattr(read_model, "READS", 2)
    monkeypatch.setattr(read_model, "SERIES_MONTHS", 2)

    def rows(limit: int) -> dict[str, Result]:
        monkeypatch.setattr(read_model, "FOLD_UP_TO", limit)
        ctx = Context("sqlite", 150, runs=1, warmup=0)
        try:
            return {r.what: r for r in read_model.run(ctx)}
        finally:
            ctx.close()

    fold = "accountabilityMetrics, national, new moment (fold, baseline)"
    model = "accountabilityMetrics, national, new moment (read model)"
    above = rows(149)
    assert folded == [] and above[fold].items == 0 and above[fold].latencies_ms == []
    assert above[fold].note == "not run above 149 events: the fold holds every pupil in memory"
    assert above[model].items == 2 and above[model].note.endswith("; no fold at this size")
    within = rows(150)
    assert len(folded) == 1 and within[fold].items == 1 and within[fold].note == ""
    assert within[model].items == 2 and "; fold ÷ model (median) " in within[model].note
    for level in ("la", "school"):  # over HTTP, with the year before and the region, at the in-process reads' moments
        over_http = within[f"accountabilityMetrics over HTTP, {level}, new moment (with the year before and the region)"]
        assert over_http.items == 2 and "statuses {200: 2}" in over_http.note, over_http.note
    dashboard = within["LA dashboard page over HTTP, new moment (a state of every unit at the pinned ledger time)"]
    assert dashboard.items == 2 and "statuses {200: 2}" in dashboard.note, dashboard.note
