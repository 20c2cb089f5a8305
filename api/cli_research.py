"""``pupil-ledger export research`` (a release, over HTTP with a researcher token or locally as the operator) and
``pupil-ledger research approve | revoke | list`` (the operator's Five Safes decisions). docs/research.md."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console

from api.cli_common import open_ledger
from ledger.core.errors import LedgerError
from ledger.research import operator
from ledger.research.releases import all_projects
from ledger.tools import admin

export_app = typer.Typer(help="Exports for researchers (docs/research.md).", no_args_is_help=True)
research_app = typer.Typer(help="Research projects: the operator approves and revokes them (docs/research.md).", no_args_is_help=True)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
DEFAULT_URL = "http://127.0.0.1:8000"


def _fail(problems: list[dict[str, str]]) -> None:
    for p in problems:
        err.print(f"[red]{p['code']}[/red] at {p['path']}: {p['message']}")
    raise typer.Exit(1)


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


def _write(directory: Path, files: dict[str, bytes]) -> None:
    for name, content in sorted(files.items()):
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


@export_app.command("research")
def export_research(
    out_dir: Annotated[Path, typer.Argument(help="folder to write the release's files into (created if missing)")],
    project: Annotated[str, typer.Option(help="the approved project's id")],
    variables: Annotated[list[str] | None, typer.Option(help="only these approved variables (repeat, or comma-separated)")] = None,  # noqa: UP007
    tree_size: Annotated[int | None, typer.Option(help="cut at this signed checkpoint (default: the latest)")] = None,  # noqa: UP007
    token: Annotated[
        str,
        typer.Option(
            "--token",
            envvar="PUPIL_LEDGER_TOKEN",
            help="a researcher token: release through the API at --url (without one: locally, as the operator)",
        ),
    ] = "",
    url: Annotated[str, typer.Option("--url", envvar="PUPIL_LEDGER_URL", help="the ledger's base URL")] = DEFAULT_URL,
) -> None:
    """Release an anonymised extract of an approved project into OUT_DIR (Parquet, CSV, datapackage.json, data dictionary,
    signed manifest); the release is recorded in the ledger.

    Example: `PUPIL_LEDGER_TOKEN=plt_... pupil-ledger export research --project demo ./demo-export`
    """
    wanted = _split(variables)
    files: dict[str, bytes] = {}
    if token:
        body: dict[str, Any] = {
            "project": project,
            **({"variables": wanted} if wanted else {}),
            **({"tree_size": tree_size} if tree_size else {}),
        }
        with httpx.Client(base_url=url, headers={"authorization": f"Bearer {token}"}, timeout=600) as client:
            response = client.post("/research/exports", json=body)
            if response.status_code != 201:
                err.print(f"[red]{response.status_code}[/red]")
                _fail(response.json().get("errors", []) if response.headers.get("content-type", "").startswith("application/json") else [])
            made = response.json()
            for item in client.get(f"/research/exports/{made['release_id']}").json()["files"]:
                got = client.get(item["url"])
                got.raise_for_status()
                files[item["name"]] = got.content
        release_id, manifest = made["release_id"], made["manifest"]
    else:
        from api.research_release import release

        ledger = open_ledger()
        try:
            made = release(ledger, project, wanted or None, tree_size)
        except LedgerError as exc:
            _fail([p.as_dict() for p in exc.problems])
            return
        files, release_id, manifest = made["built"].files, made["release_id"], made["manifest"]
        err.print("took " + ", ".join(f"{step} {seconds:.1f} s" for step, seconds in made["seconds"].items()))
    out_dir.mkdir(parents=True, exist_ok=True)
    _write(out_dir, files)
    anonymity = manifest["anonymity"]
    out.print(
        f"release {release_id} of project {project}: {manifest['rows']} rows of {manifest['pupils']} pupils, "
        f"{manifest['suppressed_rows']} suppressed; k = {anonymity['k']}, l = {anonymity['l']}; "
        f"checkpoint {manifest['checkpoint']['tree_size']}; files in {out_dir}"
    )


@research_app.command("approve")
def research_approve(
    researcher: Annotated[
        str, typer.Argument(help="the researcher organisation, research:<name> (register it first with orgs add --kind researcher)")
    ],
    project: Annotated[str, typer.Option(help="a new project id, e.g. send-ap-outcomes")],
    purpose: Annotated[str, typer.Option(help="the approved purpose")],
    variables: Annotated[list[str], typer.Option(help="approved variables (code list research_variables; repeat or comma-separate)")],
    quasi_identifiers: Annotated[list[str], typer.Option("--quasi-identifiers", "--qi", help="variables an intruder may know")],
    sensitive: Annotated[list[str] | None, typer.Option(help="sensitive attributes (l-diversity)")] = None,  # noqa: UP007
    unit: Annotated[str, typer.Option(help="episode or event")] = "episode",
    period_from: Annotated[str | None, typer.Option("--from", help="first day of the period (default: a year ago)")] = None,  # noqa: UP007
    period_to: Annotated[str | None, typer.Option("--to", help="last day of the period (default: today)")] = None,  # noqa: UP007
    expires: Annotated[str | None, typer.Option(help="last day exports may be made (default: a year from today)")] = None,  # noqa: UP007
    las: Annotated[list[str] | None, typer.Option("--la", help="population: only rows in these LAs (la:NNN)")] = None,  # noqa: UP007
    kinds: Annotated[list[str] | None, typer.Option("--kind", help="population: only these kinds of row")] = None,  # noqa: UP007
    establishment_level: Annotated[str, typer.Option(help="school, la or region")] = "la",
    date_detail: Annotated[str, typer.Option(help="month or term")] = "month",
    k: Annotated[int, typer.Option(help="k-anonymity to reach, in distinct pupils")] = 10,
    l_diversity: Annotated[int, typer.Option("--l", help="l-diversity to reach on each sensitive attribute")] = 2,
    reference: Annotated[str | None, typer.Option(help="the approval panel's reference")] = None,  # noqa: UP007
) -> None:
    """Approve a research project for a researcher organisation (research.project_approved, signed by the ledger).

    Example: `pupil-ledger research approve research:uni-bristol --project ap-outcomes --purpose "AP outcomes" --variables kind,start,establishment,year_group,reason --qi start,establishment,year_group --sensitive reason`
    """
    ledger = open_ledger()
    today = ledger.clock().date()
    data: dict[str, Any] = {
        "project": project,
        "purpose": purpose,
        "unit": unit,
        "variables": _split(variables),
        "quasi_identifiers": _split(quasi_identifiers),
        "sensitive": _split(sensitive),
        "period": {"from": period_from or (today - timedelta(days=365)).isoformat(), "to": period_to or today.isoformat()},
        "expires_on": expires or (today + timedelta(days=365)).isoformat(),
        "establishment_level": establishment_level,
        "date_detail": date_detail,
        "k": k,
        "l": l_diversity,
    }
    population = {name: _split(values) for name, values in (("las", las), ("kinds", kinds)) if values}
    if population:
        data["population"] = population
    if reference:
        data["reference"] = reference
    try:
        receipt = operator.approve_project(ledger, researcher, data)
    except LedgerError as exc:
        _fail([p.as_dict() for p in exc.problems])
        return
    out.print(f"approved project {project} for {researcher} (sequence {receipt.sequence})")


@research_app.command("revoke")
def research_revoke(
    project: str,
    reason: Annotated[str, typer.Option(help="ended, breach, researcher_left, ethics or other")] = "ended",
    reference: Annotated[str | None, typer.Option()] = None,  # noqa: UP007
) -> None:
    """Withdraw a project's approval: no export of it from now on (research.project_revoked).

    Example: `pupil-ledger research revoke ap-outcomes --reason breach`
    """
    try:
        operator.revoke_project(open_ledger(), project, reason, reference)
    except LedgerError as exc:
        _fail([p.as_dict() for p in exc.problems])
    out.print(f"revoked project {project}")


@research_app.command("list")
def research_list() -> None:
    """Every project with its status and releases (JSON).

    Example: `pupil-ledger research list`
    """
    ledger = open_ledger()
    today: date = ledger.clock().date()
    print(json.dumps([p.as_dict(today) for _, p in sorted(all_projects(ledger.store).items())], indent=1))


def demo_project(ledger: Any, la: str) -> str:
    """For ``pupil-ledger demo``: a researcher organisation with the approved project ``demo`` (AP placements and exclusions in
    the simulated area over the last year); returns a researcher token for it."""
    researcher = "research:demo-university"
    admin.add_org(ledger, researcher, "researcher", "Demo University (simulated)")
    today = ledger.clock().date()
    operator.approve_project(
        ledger,
        researcher,
        {
            "project": "demo",
            "purpose": "How pupils move into and out of alternative provision, and why (demonstration)",
            "unit": "episode",
            "variables": [
                "kind",
                "start",
                "end",
                "duration",
                "establishment",
                "year_group",
                "sen_status",
                "looked_after",
                "setting_type",
                "tier",
                "reason",
                "outcome",
                "hours",
            ],
            "quasi_identifiers": ["start", "establishment", "year_group", "looked_after"],
            "sensitive": ["reason", "sen_status"],
            "population": {"las": [f"la:{la}"], "kinds": ["placement", "exclusion", "managed_move", "part_time_timetable"]},
            "period": {"from": (today - timedelta(days=366)).isoformat(), "to": today.isoformat()},
            "expires_on": (today + timedelta(days=365)).isoformat(),
            "k": 5,
            "l": 2,
            "reference": "DEMO-1",
        },
    )
    token: str = ledger.issue_token(researcher, "researcher", ledger.clock() + timedelta(days=30))
    return token
