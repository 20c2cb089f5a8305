"""``pupil-ledger report``: publish the public transparency report as a static site, and verify one against
the log (docs/web.md)."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress

from api.cli_common import open_ledger

report_app = typer.Typer(help="Public transparency reports: publish as a static site, verify against the log.", no_args_is_help=True)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@report_app.command("publish")
def publish(
    directory: Annotated[Path, typer.Argument(help="folder to write the site into (created; files of the same names are replaced)")],
    as_of: Annotated[str | None, typer.Option("--as-of", help="effective date YYYY-MM-DD (default today)")] = None,  # noqa: UP007
    la: Annotated[list[str] | None, typer.Option("--la", help="an LA to publish (801 or la:801); repeatable; default every LA")] = None,  # noqa: UP007
    trust: Annotated[
        list[str] | None, typer.Option("--trust", help="a trust to publish too (TR00001 or trust:TR00001); repeatable")
    ] = None,  # noqa: UP007
    tree_size: Annotated[int | None, typer.Option(help="publish at this checkpoint (default the latest the views have reached)")] = None,  # noqa: UP007
) -> None:
    """Write England's report and each LA's (HTML, CSV, JSON), the signed checkpoint they were computed from and a
    manifest of every file's SHA-256: the same bytes for the same log size and options.

    Example: `pupil-ledger report publish ./site --as-of 2026-03-20 --la 801`
    """
    from api.web import site
    from api.web.data import WebData
    from api.web.report import rules_of

    try:
        day = date.fromisoformat(as_of) if as_of else None
    except ValueError:
        err.print(f"[red]error:[/red] --as-of {as_of!r} is not a date YYYY-MM-DD")
        raise typer.Exit(2) from None
    if directory.exists() and not directory.is_dir():
        err.print(f"[red]error:[/red] {directory} exists and is not a folder")
        raise typer.Exit(2)
    ledger = open_ledger()
    data = WebData(ledger)
    cp = data.checkpoint_at(tree_size) if tree_size is not None else data.checkpoint()
    if cp is None:
        err.print("[red]error:[/red] no such checkpoint yet (the log is sealed by `pupil-ledger serve` or `pupil-ledger seal`)")
        raise typer.Exit(1)
    if not data.is_clean(cp) or min(data.positions().values(), default=0) < cp.last_sequence:
        err.print(
            f"[red]error:[/red] the views have not reached checkpoint {cp.tree_size} cleanly; run `pupil-ledger project run` or pick another --tree-size"
        )
        raise typer.Exit(1)
    options = site.default_options(day or data.today(), la or [], trust or [], rules_of(ledger.settings))
    started = time.monotonic()
    try:
        with Progress(console=err, transient=True) as progress:
            task = progress.add_task("computing reports", total=None)
            files = site.build(data, cp, options, on_progress=lambda n: progress.advance(task, n))
    except KeyError as exc:
        err.print(f"[red]error:[/red] no public report for {exc.args[0]} (not an LA or trust the ledger knows)")
        raise typer.Exit(1) from None
    site.write(directory, files)
    reports = sum(1 for name in files if name.endswith(".json") and name.startswith("reports/"))
    out.print(f"{reports} reports, {len(files)} files in {directory} at tree size {cp.tree_size} ({time.monotonic() - started:.1f} s)")


@report_app.command("verify")
def verify(directory: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="a site written by `report publish`")]) -> None:
    """Recompute a published report from the log at its stated checkpoint (the events themselves, not the views)
    and compare every file; exit 0 if and only if all are equal.

    Example: `pupil-ledger report verify ./site`
    """
    from api.web import site
    from api.web.data import WebData

    data = WebData(open_ledger())
    try:
        with Progress(console=err, transient=True) as progress:
            task = progress.add_task("recomputing from the log", total=None)
            problems = site.verify(data, directory, on_progress=lambda n: progress.advance(task, n))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        err.print(f"[red]error:[/red] {directory} is not a published report: {exc}")
        raise typer.Exit(2) from None
    if problems:
        for p in problems:
            err.print(f"[red]differs:[/red] {p}")
        raise typer.Exit(1)
    options, cp = site.read_manifest(directory)
    out.print(f"verified: every file equals the report recomputed from the log at tree size {cp.tree_size} (root {cp.root_hash})")
