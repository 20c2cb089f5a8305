"""``pupil-ledger simulate`` and ``demo``: a simulated population calibrated on published DfE figures, written
as signed envelopes or loaded into a fresh home and served."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress

from api.cli_common import err, out
from ledger import dfe, own_events
from ledger.config import Settings
from ledger.service import Ledger
from ledger.tools import admin


def simulate(
    out_dir: Annotated[Path, typer.Argument(help="writes orgs.json (with private keys) and events.jsonl")],
    pupils: int = 300,
    seed: int = 1,
    la: Annotated[
        str | None, typer.Option(help="3-digit LA code: one local area calibrated on it; default: all of England's LAs, sized like them")
    ] = None,  # noqa: UP007
    workers: Annotated[int, typer.Option(help="processes generating and signing areas in parallel")] = max(1, os.cpu_count() or 1),
) -> None:
    """Generate a national-shaped population (or one local area) as signed envelopes, calibrated on published DfE figures.

    Example: `pupil-ledger simulate ./sim --pupils 100000` (or `--la 202` for one area)
    """
    from ledger.tools.simulate_load import export

    if pupils < 1:
        err.print("[red]error:[/red] --pupils must be at least 1")
        raise typer.Exit(2)
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("generating and signing", total=None)
        orgs, events = export(
            out_dir, pupils, seed, la, workers=workers if la is None else 1, on_progress=lambda n: progress.advance(task, n)
        )
    out.print(f"{orgs} organisations, {events} events in {out_dir}")


def demo(port: int = 8000, pupils: int = 4000, seed: int = 1, la: str = "801") -> None:
    """Initialise a fresh home, load a simulated local area and serve it: the dashboards, the public reports and the API.

    Example: `PUPIL_LEDGER_HOME=./demo-home pupil-ledger demo --port 8000`
    """
    import uvicorn

    from api.bootstrap import build_app
    from api.security import server_options
    from ledger.tools.simulate import simulate_area
    from ledger.tools.simulate_ehcp import add_ehcp_journeys, start_demo_inspection
    from ledger.tools.simulate_load import load_area

    dfe.check()  # the simulation and the views read the published figures: stop before creating a home without them
    settings = Settings.from_env()
    if (settings.home / "secrets").exists():
        # a fresh home beside it, with the default settings but the database and the pages' settings
        settings = Settings(
            home=settings.home / f"demo-{uuid.uuid4().hex[:6]}",
            database_url=settings.database_url,
            web_refresh_seconds=settings.web_refresh_seconds,
            dashboard_refresh_seconds=settings.dashboard_refresh_seconds,
            disclosure_threshold=settings.disclosure_threshold,
        )
    result = admin.initialise(settings)
    ledger = result.ledger
    area = add_ehcp_journeys(simulate_area(pupils=pupils, seed=seed, la_code=la, today=ledger.clock().date()), seed, ledger.clock().date())
    with Progress(console=err) as progress:
        task = progress.add_task("loading simulated area", total=len(area.events))
        load_area(ledger, area, on_progress=lambda n: progress.advance(task, n))
    from ledger.tools.simulate_funding import load_funding

    start_demo_inspection(ledger, area)  # the inspector reads the area's pupils while Ofsted inspects it (docs/access.md)
    load_funding(ledger, area)  # a local inclusion plan, the national tariff, AP budgets and bands (issue 25)
    inspector = ledger.issue_token("ofsted", "inspector")
    la_token = ledger.issue_token(f"la:{la}", "la")
    from api.cli_research import demo_project

    researcher = demo_project(ledger, la)
    base = f"http://127.0.0.1:{port}"
    upn = area.example_upn
    # The simulated year starts last September, so by today most of its placements have ended: the pages open
    # on the day the simulation had the most placements open (any other date can be chosen on every page).
    busiest = busiest_day(area.events)
    day = busiest.isoformat()
    raise_demo_concern(ledger, area, busiest)  # so the Regions Group cases page has a case too
    out.print(f"dashboards:      {base}/dashboards/la/la:{la}?as_of={day}  (sign in with the LA token below)")
    out.print(f"public report:   {base}/reports/la/{la}?as_of={day}   England: {base}/reports/england?as_of={day}")
    out.print(f"start page:      {base}/")
    out.print(
        f"find a setting:  {base}/find-a-setting?la=la:{la}&need=SEMH&phase=secondary  (JSON: {base}/tailored-list?la=la:{la}&need=SEMH&phase=secondary)"
    )
    out.print(f"ledger home: {settings.home}  ({ledger.store.count_events()} events)")
    out.print(f"LA token:        {la_token}")
    out.print(f"admin token:     {result.admin_token}")
    out.print(f"inspector token: {inspector}")
    out.print(f"API docs:        {base}/docs")
    out.print(f"health:          {base}/healthz")
    out.print(f"pupil history:   curl -H 'Authorization: Bearer {inspector}' '{base}/pupils/{upn}/history?purpose=inspection'")
    out.print(f"who looked:      curl -H 'Authorization: Bearer {result.admin_token}' {base}/access-log")
    out.print(f"publish:         PUPIL_LEDGER_HOME={settings.home} pupil-ledger report publish ./site --as-of {day} --la {la}")
    out.print(f"researcher token: {researcher}")
    out.print(f"research export: PUPIL_LEDGER_TOKEN={researcher} pupil-ledger export research --project demo ./demo-export --url {base}")
    uvicorn.run(
        build_app(ledger), host="127.0.0.1", port=port, access_log=False, log_level="warning", **server_options(settings.trusted_proxies)
    )


def raise_demo_concern(ledger: Ledger, area: Any, day: date) -> None:
    """A Regions Group concern about the area's LA, citing its removals with unknown destination so far that year
    (counted from the simulated events as docs/metrics.md defines the metric), signed with the simulation's key."""
    from ledger.core.schooltime import academic_year

    year_start = date(int(academic_year(day)[:4]), 9, 1)
    unknown = sum(
        1
        for _, body in area.events
        if body["type"] == "pupil.deregistered"
        and body["data"]["destination"] == "unknown"
        and year_start <= date.fromisoformat(body["occurred_on"]) <= day
    )
    now = ledger.clock()
    body = own_events.event_body(
        "accountability.concern_raised",
        "dfe:regions",
        {"org": area.la},
        {
            "category": "roll_integrity",
            "metric": "removals_unknown_destination",
            "metric_value": unknown,
            "metric_as_of": day.isoformat(),
            "summary": "Removals with unknown destination above the area's usual level",
        },
        day,
        now,
    )  # raised as of the day the pages open on (reported now: the ledger flags it late)
    ledger.submit(own_events.signed(body, area.orgs["dfe:regions"].key))


def busiest_day(events: list[tuple[str, dict[str, Any]]]) -> date:
    """The date on which the most AP placements of ``events`` (submitter, body) were open (the latest of ties)."""
    starts: dict[str, date] = {}
    ends: dict[str, date] = {}
    for _, body in events:
        if body["type"] == "pupil.ap_placement_started":
            starts[body["event_id"]] = date.fromisoformat(body["occurred_on"])
        elif body["type"] == "pupil.ap_placement_ended":
            ends[body["data"]["placement_event_id"]] = date.fromisoformat(body["occurred_on"])
    if not starts:
        return datetime.now(UTC).date()
    best, most = min(starts.values()), -1
    for day in sorted(set(starts.values()) | set(ends.values())):
        count = sum(1 for k, s in starts.items() if s <= day and (k not in ends or ends[k] > day))
        if count >= most:
            best, most = day, count
    return best
