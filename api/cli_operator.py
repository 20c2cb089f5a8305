"""The operator's commands on a pupil's record and on organisations' conduct: the unusual-claims report
(``claims``) and erasure (``erase``)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from api.cli_common import fail, open_ledger, out
from ledger.core.errors import LedgerError


def claims(
    since: Annotated[datetime | None, typer.Option(formats=["%Y-%m-%d"], help="first day (default: 30 days ago)")] = None,  # noqa: UP007
    until: Annotated[datetime | None, typer.Option(formats=["%Y-%m-%d"], help="last day (default: today)")] = None,  # noqa: UP007
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The operator's report: organisations by their unusual claims (claim_new_area) and their rejections that depended on
    other organisations' records of the pupil, in a period; most first, then newest first (docs/access.md).

    Example: `pupil-ledger claims --since 2026-09-01 --until 2026-09-30`
    """
    from api.routes.admin import claims_period

    ledger = open_ledger()
    try:
        report = ledger.claims_report(
            None, *claims_period(ledger.clock(), since.date() if since else None, until.date() if until else None)
        )
    except LedgerError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(report, indent=1))
        return
    table = Table("org", "total", "by code", "latest")
    for o in report["organisations"]:
        table.add_row(o["org"], str(o["total"]), ", ".join(f"{code} {n}" for code, n in sorted(o["codes"].items())), o["latest"])
    out.print(table)


def erase(
    upn: str,
    ground: Annotated[str, typer.Option(help="erasure_request, recorded_in_error, retention_expired or court_order")],
    reference: Annotated[str | None, typer.Option(help="case reference recorded with the erasure")] = None,  # noqa: UP007
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
) -> None:
    """Erase one pupil by destroying the pupil's data key (crypto-shredding); the log and its proofs stay valid.

    Example: `pupil-ledger erase H801200001001 --ground erasure_request --reference SAR-2026-17 --yes`
    """
    if not yes and not typer.confirm(f"Erase every event about {upn}? This cannot be undone."):
        raise typer.Exit(1)
    from projections.runner import forget_pupil

    ledger = open_ledger()
    try:  # the views forget the pupil in the erasure's own transaction
        result = ledger.erase(upn, ground, reference, forget=lambda pupil: forget_pupil(ledger.store, pupil))
    except LedgerError as exc:
        fail(exc)
    from feed.relay import announce_erasure

    announce_erasure(ledger.store, result["erasure_event_id"], str(ledger.secrets.pupil_id(upn)))  # the change feed's consumers too
    out.print(f"erased {result['events_erased']} events; erasure recorded as {result['erasure_event_id']}")
