"""``pupil-ledger tokens``: issue and revoke the HTTP API's bearer tokens."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from api.cli_common import err, fail, open_ledger, out
from ledger.core.errors import LedgerError

tokens_app = typer.Typer(help="Bearer tokens for the HTTP API.", no_args_is_help=True)


@tokens_app.command("issue")
def tokens_issue(
    org_id: str,
    role: Annotated[str, typer.Option(help="school, la, trust, ap_setting, inspector, regions, researcher, admin, tribunal, mediation")],
    days: Annotated[int, typer.Option(help="expires after this many days")] = 365,
    scope: Annotated[
        list[str] | None,
        typer.Option(help="inspectors, optionally: limit to a school (urn:...) or area (la:...) among those being inspected; repeatable"),
    ] = None,  # noqa: UP007
) -> None:
    """Issue a bearer token for an organisation and role; prints it once (only its hash is kept).

    Example: `pupil-ledger tokens issue ofsted --role inspector --days 30` (reads the areas Ofsted is inspecting)
    """
    ledger = open_ledger()
    try:
        token = ledger.issue_token(org_id, role, ledger.clock() + timedelta(days=days), scope or ())
    except LedgerError as exc:
        fail(exc)
    print(token)


@tokens_app.command("revoke")
def tokens_revoke(token: Annotated[str, typer.Argument(help="the token, or its id (the 8 hex characters after plt_)")]) -> None:
    """Revoke a bearer token.

    Example: `pupil-ledger tokens revoke plt_1a2b3c4d`
    """
    if not open_ledger().revoke_token(token):
        err.print("[red]error:[/red] no such token")
        raise typer.Exit(1)
    out.print("revoked")
