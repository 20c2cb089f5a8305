"""What the command line's modules share: the two consoles, opening the ledger the environment names (read
once, as the command starts) and printing a refusal's problems. The ``api/cli_*`` modules import this, never
``api.cli``, which only assembles them into the ``pupil-ledger`` command."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

from ledger.config import Settings
from ledger.core.errors import LedgerError
from ledger.service import Ledger
from ledger.tools import admin

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def open_ledger(settings: Settings | None = None) -> Ledger:
    """The ledger of ``settings`` (default ``Settings.from_env()``); exit 2 naming the home when it was never
    initialised."""
    try:
        return admin.open_ledger(settings or Settings.from_env())
    except admin.NotInitialised as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def fail(exc: LedgerError) -> NoReturn:
    """Print each of the refusal's problems and exit 1."""
    for p in exc.problems:
        err.print(f"[red]{p.code}[/red] at {p.path}: {p.message}")
    raise typer.Exit(1)
