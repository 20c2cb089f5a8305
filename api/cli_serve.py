"""``pupil-ledger init`` and ``serve``: create a ledger home, and serve its HTTP API (through the composition
root, ``api.bootstrap``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

import typer

from api.cli_common import err, fail, open_ledger, out
from ledger import dfe
from ledger.config import Settings
from ledger.core.errors import LedgerError
from ledger.tools import admin


def init() -> None:
    """Create the stores, the ledger's signing key and an admin token in PUPIL_LEDGER_HOME.

    Example: `PUPIL_LEDGER_HOME=./var pupil-ledger init`
    """
    settings = Settings.from_env()
    try:
        result = admin.initialise(settings)
    except LedgerError as exc:
        fail(exc)
    out.print(f"initialised ledger in {settings.home} ({'postgresql' if settings.database_url else 'sqlite'})")
    out.print(f"admin token: {result.admin_token}")
    out.print(f"log vkey: {result.vkey}")
    result.ledger.store.close()


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: Annotated[
        int, typer.Option(min=1, help="API processes sharing the port (PostgreSQL only; each has its own group commit)")
    ] = 1,
    followers: Annotated[
        bool,
        typer.Option(
            envvar="PUPIL_LEDGER_IN_PROCESS_FOLLOWERS",
            help="also seal the log and update the projections in this process "
            "(--no-followers when `pupil-ledger seal` and `project run` do it; "
            "witnessing, if configured, stays here)",
        ),
    ] = True,
) -> None:
    """Serve the HTTP API (OpenAPI at /docs).

    Example: `pupil-ledger serve --port 8000`

    Example: `pupil-ledger serve --workers 2 --no-followers` (PostgreSQL, with `pupil-ledger seal` and `pupil-ledger project run`)
    """
    import uvicorn

    from api.bootstrap import build_app
    from api.security import server_options
    from api.workers import serve as serve_workers

    dfe.check()  # the views show the published figures
    settings = replace(Settings.from_env(), in_process_followers=followers)  # the option's envvar is the setting's
    ledger = open_ledger(settings)
    if workers > 1 and not ledger.store.is_postgres:
        err.print("[red]error:[/red] --workers above 1 needs PostgreSQL (PUPIL_LEDGER_DATABASE_URL): the embedded SQLite has one writer")
        raise typer.Exit(2)
    out.print(f"serving on http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
    if workers == 1:
        uvicorn.run(
            build_app(ledger),
            host=host,
            port=port,
            access_log=False,
            log_level="warning",
            **server_options(ledger.settings.trusted_proxies),
        )
        return
    ledger.store.close()
    serve_workers(host, port, workers, settings)  # each worker on its own socket: the kernel spreads the connections
