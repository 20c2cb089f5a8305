"""``pupil-ledger relay`` and the change feed's part of ``project run --source kafka`` and ``project status``
(docs/deployment.md)."""

from __future__ import annotations

import faulthandler
import logging
import signal
from typing import Annotated

import typer
from rich.console import Console

from api.cli_common import open_ledger
from feed.report import feed_report
from ledger.feed import FeedConfig
from ledger.service import Ledger

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def feed_config() -> FeedConfig:
    """The feed's configuration from the environment, or exit 2 saying what is missing."""
    try:
        config = FeedConfig.from_env()
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if config is None:
        err.print("[red]error:[/red] set PUPIL_LEDGER_KAFKA to the Kafka bootstrap servers (host:port[,host:port...])")
        raise typer.Exit(2)
    return config


def relay(
    batch: Annotated[int, typer.Option(min=1, help="ledger events per published batch (one flush, one stored position)")] = 1000,
    idle: Annotated[float, typer.Option(min=0.0, help="seconds to sleep when caught up")] = 0.2,
) -> None:
    """Publish every accepted event to the change feed (Kafka topic `pupil-ledger.events.v1`) until stopped.

    At-least-once with a durable position; one active relay at a time (PostgreSQL advisory lock): start a
    second one as a standby. Configuration: PUPIL_LEDGER_KAFKA (bootstrap servers), PUPIL_LEDGER_KAFKA_TOPIC,
    PUPIL_LEDGER_KAFKA_PARTITIONS (when it creates the topic).

    Example: `PUPIL_LEDGER_KAFKA=kafka:9092 PUPIL_LEDGER_DATABASE_URL=postgresql://ledger@db/ledger pupil-ledger relay`
    """
    from feed.relay import Relay

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("pupil_ledger").setLevel(logging.INFO)
    config = feed_config()
    ledger = open_ledger()
    worker = Relay(
        ledger.store, config, ledger.settings.database_url, batch, idle, pace=ledger.settings.follower_pace, settings=ledger.settings
    )
    signal.signal(signal.SIGTERM, lambda *_: worker.stopping.set())
    out.print(f"relaying to {config.topic} at {config.bootstrap} (batch {batch})")
    try:
        worker.run()
    except KeyboardInterrupt:
        pass
    finally:
        worker.close()
        ledger.store.close()


def run_kafka_worker(
    ledger: Ledger, config: FeedConfig, group: str | None, batch: int | None, idle: float, instance: str | None = None
) -> None:
    """``project run --source kafka``: one member of the projection consumer group, until SIGTERM or Ctrl-C."""
    from feed.consumer import FeedWorker

    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 PID` prints every thread's stack: where a stuck worker waits

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("pupil_ledger").setLevel(logging.INFO)
    worker = FeedWorker(ledger.store, config, group, batch_size=batch, idle=idle, instance=instance, pace=ledger.settings.follower_pace)
    signal.signal(signal.SIGTERM, lambda *_: worker.stopping.set())
    size = f"batch {worker.batch_size}" + (
        f", growing to {worker.largest_batch} while far behind" if worker.largest_batch > worker.batch_size else ""
    )
    out.print(f"projecting all views from {config.topic} as group {worker.group} ({size})")
    try:
        worker.run()
    except KeyboardInterrupt:
        pass
    finally:
        worker.close()


def print_feed_status(ledger: Ledger) -> None:
    report = feed_report(ledger, FeedConfig.from_env())
    if report is None:
        return
    relay_status = report["relay"]
    if relay_status is None:
        out.print(f"relay: never published to {report['topic']}")
    else:
        out.print(
            f"relay: {relay_status['position']} ({relay_status['behind']} behind), last publish {relay_status['published_at']}"
            + (f"; [red]{relay_status['error']}[/red] since {relay_status['error_since']}" if relay_status["error"] else "")
        )
    for group, entry in sorted(report["groups"].items()):
        lags = ", ".join(
            f"{p}: {v['lag'] if v['lag'] is not None else '?'}" for p, v in sorted(entry["partitions"].items(), key=lambda kv: int(kv[0]))
        )
        out.print(f"group {group}: lag per partition {{{lags}}}; dead letters {entry['dead_letters']}")
