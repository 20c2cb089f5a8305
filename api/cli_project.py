"""``pupil-ledger project``: run the projection worker, rebuild views from the log."""

from __future__ import annotations

import signal
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from api.cli_common import open_ledger
from projections.facts import View
from projections.runner import CATCH_UP_BATCH, DEFAULT_BATCH, VIEWS, Projector, views_named
from projections.worker import Worker

project_app = typer.Typer(help="Read views (projections) of the log.", no_args_is_help=True)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
VIEW_NAMES = ", ".join(v.name for v in VIEWS)


def _views(names: list[str] | None) -> tuple[View, ...]:
    try:
        return views_named(names)
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


@project_app.command("run")
def run(
    views: Annotated[list[str] | None, typer.Argument(help=f"views to run (default all: {VIEW_NAMES})")] = None,  # noqa: UP007
    batch: Annotated[
        int | None,
        typer.Option(
            min=1,
            help=f"events per transaction (default {DEFAULT_BATCH}, doubling up to {CATCH_UP_BATCH} while far behind, on PostgreSQL)",
        ),
    ] = None,
    idle: Annotated[float, typer.Option(min=0.0, help="seconds to sleep when caught up")] = 0.5,
    source: Annotated[str, typer.Option(help="log: follow the ledger's tables; kafka: join the consumer group on the change feed")] = "log",
    group: Annotated[str | None, typer.Option(help="consumer group with --source kafka (default PUPIL_LEDGER_KAFKA_GROUP)")] = None,  # noqa: UP007
    instance: Annotated[
        str | None,
        typer.Option(
            envvar="PUPIL_LEDGER_KAFKA_INSTANCE",
            help="with --source kafka: this worker's stable name "  # noqa: UP007
            "(static group membership: restarted, it takes its partitions back without a rebalance)",
        ),
    ] = None,
) -> None:
    """Follow the log and keep the views up to date until stopped (one active worker per view on PostgreSQL).

    With `--source kafka` the worker joins a consumer group on the change feed instead (all views; the group's
    workers split the partitions: docs/deployment.md).

    Example: `PUPIL_LEDGER_DATABASE_URL=postgresql://ledger@db/ledger pupil-ledger project run`
    """
    chosen = _views(views)
    if source not in ("log", "kafka"):
        err.print(f"[red]error:[/red] --source is log or kafka, not {source}")
        raise typer.Exit(2)
    if source == "kafka":
        if views:
            err.print("[red]error:[/red] --source kafka projects every view (the group's offsets are the views')")
            raise typer.Exit(2)
        from api.cli_feed import feed_config, run_kafka_worker

        config = feed_config()  # the configuration is checked before anything is opened
        ledger = open_ledger()
        try:
            run_kafka_worker(ledger, config, group, batch, idle, instance)
        finally:
            ledger.store.close()
        return
    ledger = open_ledger()
    worker = Worker(ledger.store, ledger.settings.database_url, chosen, batch, idle, pace=ledger.settings.follower_pace)
    signal.signal(signal.SIGTERM, lambda *_: worker.stopping.set())
    out.print(f"projecting {', '.join(v.name for v in chosen)} (batch {batch or DEFAULT_BATCH})")
    try:
        worker.run()
    except KeyboardInterrupt:
        pass
    finally:
        worker.close()
        ledger.store.close()


@project_app.command("rebuild")
def rebuild(
    view: Annotated[str | None, typer.Argument(help=f"one view (default all: {VIEW_NAMES})")] = None,  # noqa: UP007
    batch: Annotated[
        int | None,
        typer.Option(
            min=1,
            help=f"events per transaction (default {DEFAULT_BATCH}, doubling up to {CATCH_UP_BATCH} while far behind, on PostgreSQL)",
        ),
    ] = None,
) -> None:
    """Empty a view (or all) and project it again from the start of the log, with a progress bar.

    Example: `pupil-ledger project rebuild pupils`
    """
    names = [view] if view else None
    chosen = _views(names)
    ledger = open_ledger()
    projector = Projector(ledger.store, chosen, batch)
    total = ledger.store.count_events()
    columns = (TextColumn("rebuilding {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err) as progress:
        task = progress.add_task(view or "all views", total=total)
        done = projector.rebuild(on_progress=lambda n: progress.advance(task, n))  # the projector's own views
    out.print(f"rebuilt {view or 'all views'} from {done} events; positions {projector.positions()}")
    for name, (position, waits) in projector.held_back().items():
        err.print(
            f"[yellow]note:[/yellow] {name} stopped at sequence {position} of {ledger.store.max_sequence()}: it reads "
            f"{', '.join(waits)}, which {'is' if len(waits) == 1 else 'are'} only that far; it goes on as they do "
            f"(`pupil-ledger project run`, or `pupil-ledger project rebuild {waits[0]}`)"
        )
    from feed.state import FeedState

    FeedState(ledger.store).reset_consumers()  # change-feed workers (stopped meanwhile) start again at the relay's mark for these positions
    ledger.store.close()


@project_app.command("status")
def status() -> None:
    """Each view's position in the log and how far behind it is.

    Example: `pupil-ledger project status`
    """
    ledger = open_ledger()
    latest = ledger.store.max_sequence()
    for name, position in sorted(Projector(ledger.store).positions().items()):
        out.print(f"{name}: {position} (latest {latest})")
    from api.cli_feed import print_feed_status

    print_feed_status(ledger)  # with PUPIL_LEDGER_KAFKA: the relay's position and each consumer group's lag
    ledger.store.close()
