"""Timings of the web pages and of `report publish` on a simulated national population (docs/web.md).

    python scripts/web_timings.py HOME --pupils 100000 [--database-url postgresql://...]

Loads ``--pupils`` simulated pupils over every LA into a fresh ledger at HOME (skipped if HOME exists), seals
and projects the log, then serves the app in-process over real HTTP and times: a public LA report and the
England report (first request after the checkpoint, then warm p50/p95 over 30 requests each), an LA dashboard
summary, its trends and schools; then, for ``--flow-seconds``, the same pages while events arrive (an event every
tenth of a second, sealed and projected as the followers would: every view's position keeps moving), with how far
the dashboards' pinned ledger time trails the views; and building the whole published site (England and every LA).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("home", type=Path)
    parser.add_argument("--pupils", type=int, default=100_000)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--port", type=int, default=8931)
    parser.add_argument("--flow-seconds", type=float, default=90.0)
    parser.add_argument("--la", default=None, help="the LA whose pages are timed (default: the first by code)")
    args = parser.parse_args()

    import httpx
    import uvicorn

    from api.app import create_app
    from api.web import site
    from api.web.data import WebData
    from ledger.config import Settings
    from ledger.tools import admin
    from ledger.tools.simulate import simulate_nation
    from ledger.tools.simulate_load import load_areas
    from projections.facts import Moment
    from projections.runner import Projector

    settings = Settings(home=args.home, database_url=args.database_url)
    out: dict[str, object] = {"pupils": args.pupils, "database": "postgresql" if args.database_url else "sqlite", "cores": os.cpu_count()}
    if not (args.home / "secrets").exists():
        ledger = admin.initialise(settings).ledger
        started = time.monotonic()
        load_areas(ledger, simulate_nation(args.pupils, seed=1, today=ledger.clock().date()))
        out["load_seconds"] = round(time.monotonic() - started, 1)
        started = time.monotonic()
        admin.sealer(ledger).seal_all()
        Projector(ledger.store).catch_up()
        if not ledger.store.keeps_statistics():
            ledger.store.execute("ANALYZE")  # what autovacuum would do after the load (PostgreSQL here runs with it off)
        out["seal_and_project_seconds"] = round(time.monotonic() - started, 1)
    else:
        ledger = admin.open_ledger(settings)
    out["events"] = ledger.store.count_events()
    data = WebData(ledger)
    cp = data.checkpoint()
    assert cp is not None
    las = sorted(data.context(Moment(data.today())).directory.of_kind("la"))
    la = args.la or las[0]
    token = ledger.issue_token(la, "la")

    app = create_app(ledger)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{args.port}"
    while not server.started:
        time.sleep(0.05)

    def timed(path: str, n: int = 30, headers: dict[str, str] | None = None) -> dict[str, float]:
        with httpx.Client(base_url=base, headers=headers or {}, timeout=600) as c:
            started = time.monotonic()
            first = c.get(path)
            assert first.status_code == 200, (path, first.status_code, first.text[:300])
            cold = time.monotonic() - started
            times = []
            for _ in range(n):
                started = time.monotonic()
                assert c.get(path).status_code == 200
                times.append(time.monotonic() - started)
        times.sort()
        return {
            "first_ms": round(cold * 1000),
            "p50_ms": round(statistics.median(times) * 1000, 1),
            "p95_ms": round(times[int(0.95 * (len(times) - 1))] * 1000, 1),
        }

    code = la.removeprefix("la:")
    out["report_la"] = timed(f"/reports/la/{code}")
    out["report_england"] = timed("/reports/england")
    out["report_la_csv"] = timed(f"/reports/la/{code}.csv")
    out["dashboard_la_summary"] = timed(f"/dashboards/la/{la}", headers={"authorization": f"Bearer {token}"})
    out["dashboard_la_units"] = timed(f"/dashboards/la/{la}/units", headers={"authorization": f"Bearer {token}"})
    out["dashboard_la_trends"] = timed(f"/dashboards/la/{la}/trends", n=10, headers={"authorization": f"Bearer {token}"})
    for tab in ("placements", "providers", "cases"):
        out[f"dashboard_la_{tab}"] = timed(f"/dashboards/la/{la}/{tab}", headers={"authorization": f"Bearer {token}"})
    if args.flow_seconds > 0:
        flow_la = las[-1] if las[-1] != la else las[0]  # its new schools do not change the pages timed
        out["under_flow"] = under_flow(ledger, base, la, flow_la, token, args.flow_seconds)
    server.should_exit = True
    thread.join(10)

    fresh = WebData(ledger)  # a new process's view: nothing folded or cached yet
    started = time.monotonic()
    files = site.build(fresh, cp, site.default_options(fresh.today(), [], []))
    out["publish_seconds"] = round(time.monotonic() - started, 1)
    out["publish_reports"] = sum(1 for name in files if name.startswith("reports/") and name.endswith(".json"))
    print(json.dumps(out, indent=1))


def under_flow(ledger: object, base: str, la: str, flow_la: str, token: str, seconds: float) -> dict[str, object]:
    """The pages' latencies while events arrive (10 a second, each batch sealed and projected at once), and how far
    behind the views the dashboards' pinned time is: one client asks each page in turn for ``seconds``."""
    import re

    import httpx

    from ledger import own_events
    from ledger.tools import admin
    from projections.runner import Projector

    stop = threading.Event()
    submitted = [0]

    failed: list[BaseException] = []

    def flow() -> None:
        sealer, projector = admin.sealer(ledger), Projector(ledger.store)  # type: ignore[arg-type, attr-defined]
        n = next(  # a block of 10,000 URNs no earlier run used (a run's schools stay registered)
            b
            for b in range(900_000, 990_000, 10_000)
            if not ledger.org_state(f"urn:{b + 1}").name  # type: ignore[attr-defined]
        )
        try:
            while not stop.is_set():
                batch = []
                for _ in range(5):
                    n += 1
                    data = {"kind": "school", "name": f"Flow School {n}", "la": flow_la}
                    batch.append(own_events.admin_event(ledger, "org.registered", f"urn:{n}", data))  # type: ignore[arg-type]
                ledger.submit_batch(batch)  # type: ignore[attr-defined]
                submitted[0] += len(batch)
                sealer.seal_all()
                projector.catch_up()
                stop.wait(0.5)
        except BaseException as exc:  # noqa: BLE001 - shown in the result: a flow that stopped makes the timings meaningless
            failed.append(exc)

    pages = {
        "report_la": f"/reports/la/{la.removeprefix('la:')}",
        "report_england": "/reports/england",
        "dashboard_la_summary": f"/dashboards/la/{la}",
        "dashboard_la_units": f"/dashboards/la/{la}/units",
        "dashboard_la_trends": f"/dashboards/la/{la}/trends",
        "dashboard_la_placements": f"/dashboards/la/{la}/placements",
        "dashboard_la_providers": f"/dashboards/la/{la}/providers",
        "dashboard_la_cases": f"/dashboards/la/{la}/cases",
    }
    times: dict[str, list[float]] = {name: [] for name in pages}
    behind: list[int] = []
    held = re.compile(r"its first (\d+) events")
    worker = threading.Thread(target=flow, daemon=True)
    worker.start()
    started = time.monotonic()
    with httpx.Client(base_url=base, headers={"authorization": f"Bearer {token}"}, timeout=600) as c:
        while time.monotonic() - started < seconds:
            for name, path in pages.items():
                asked = time.monotonic()
                r = c.get(path)
                times[name].append(time.monotonic() - asked)
                assert r.status_code == 200, (path, r.status_code)
                found = held.search(r.text)
                if found:
                    behind.append(ledger.store.max_sequence() - int(found.group(1)))  # type: ignore[attr-defined]
    stop.set()
    worker.join(30)
    if failed:
        raise RuntimeError(f"the flow of events stopped: {failed[0]!r}")

    def summary(values: list[float]) -> dict[str, float]:
        values = sorted(values)
        return {
            "requests": len(values),
            "p50_ms": round(statistics.median(values) * 1000, 1),
            "p95_ms": round(values[int(0.95 * (len(values) - 1))] * 1000, 1),
            "max_ms": round(values[-1] * 1000, 1),
        }

    out: dict[str, object] = {"seconds": seconds, "events_submitted": submitted[0]}
    out.update({name: summary(values) for name, values in times.items()})
    out["all_pages"] = summary([t for values in times.values() for t in values])
    if behind:
        behind.sort()
        out["dashboard_events_behind_p50_p95_max"] = [behind[len(behind) // 2], behind[int(0.95 * (len(behind) - 1))], behind[-1]]
    return out


if __name__ == "__main__":
    main()
