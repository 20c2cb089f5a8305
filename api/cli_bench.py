"""``pupil-ledger bench``: run the benchmarks (``benchmarks/``) and print a table and JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True, width=240)  # the table is wide; a narrow terminal wraps it rather than cutting it


def bench(
    scenario: Annotated[list[str] | None, typer.Option("--scenario", "-s", help="scenario to run (repeat); default: all")] = None,  # noqa: UP007
    backend: Annotated[list[str] | None, typer.Option("--backend", "-b", help="sqlite or postgres (repeat); default: both")] = None,  # noqa: UP007
    events: Annotated[str, typer.Option(help="workload sizes in events, comma-separated (a growth curve)")] = "10000",
    runs: Annotated[int, typer.Option(help="measured runs per row (the median is reported)")] = 3,
    warmup: Annotated[int, typer.Option(help="discarded warm-up runs per row")] = 1,
    json_out: Annotated[Path | None, typer.Option("--json", help="also write the report as JSON to this file")] = None,  # noqa: UP007
    list_scenarios: Annotated[bool, typer.Option("--list", help="list the scenarios and exit")] = False,
) -> None:
    """Benchmark each scenario against SQLite and PostgreSQL with its baselines (throughput, p50/p95/p99, RSS).

    Example: `pupil-ledger bench --events 10000,100000 --runs 3 --json bench.json`
    """
    from benchmarks.harness import BACKENDS, COLUMNS, report_json, report_rows, run_scenarios, scenarios

    known = scenarios()
    if list_scenarios:
        for s in known.values():
            out.print(f"{s.name:22} {s.description}")
        return
    backends = backend or list(BACKENDS)
    if set(backends) - set(BACKENDS):
        err.print(f"[red]error:[/red] --backend is one of {', '.join(BACKENDS)}")
        raise typer.Exit(2)
    try:
        sizes = [int(size.replace("_", "")) for size in events.split(",")]
    except ValueError:
        err.print(f"[red]error:[/red] --events takes sizes like 10000,100000, not {events!r}")
        raise typer.Exit(2) from None
    if min(sizes) < 1 or runs < 1 or warmup < 0:
        err.print("[red]error:[/red] sizes and --runs must be at least 1, --warmup at least 0")
        raise typer.Exit(2)
    names = scenario or list(known)
    try:
        with err.status("benchmarking") as status:
            report = run_scenarios(names, backends, sizes, runs, warmup, progress=lambda message: status.update(message))
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    table = Table(*COLUMNS, title="pupil-ledger bench")
    for row in report_rows(report):
        table.add_row(*row)
    out.print(table)
    machine = report["machine"]
    out.print(
        f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gb']} GB; PostgreSQL {machine.get('postgresql')} "
        f"fsync={machine.get('pg_fsync')}; SQLite {machine['sqlite']}; load average {machine['load_average']} -> {machine['load_average_after']}"
    )
    document = report_json(report)
    if json_out:
        json_out.write_text(document)
    print(document)
