"""The change feed on Kafka (docs/deployment.md), beside the direct in-process projector (``projections``).

PostgreSQL only (the distributed shape). The broker is ``PUPIL_LEDGER_KAFKA`` if set, else the test broker
(``noida-db``, test extra) started on a free port for each run. Rows:

- relay: a copy of the loaded ledger published to a new topic (6 partitions), batches of 2,000, until caught up
  (with its encoder process, as `pupil-ledger relay` runs; the producer connected and that process started first);
- one and two projection workers (``project run --source kafka`` processes as deployed, without ``--batch``, a new
  group each) applying the whole topic to empty views: timed from when every worker has held its partitions for
  0.3 s and records are applied, to the views' position reaching the last event, so process start, the group join
  and its rebalance are left out; the row's rate is the median of the runs' rates;
- end to end: events posted over HTTP at 1,000/s (16 open-loop client threads, the requests encoded before the
  clock starts) to ``serve --no-followers`` with the relay and one worker running as processes; latency from each
  201 to the views' position covering the event (what ``min_sequence`` waits for), sampled every 5 ms.

Each run has a broker of its own (the test broker slows as it holds more records), and each row notes how busy the
whole machine was: on two cores the relay or workers share them with the broker and PostgreSQL.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ledger.config import Settings
from ledger.feed import FeedConfig
from ledger.tools import admin
from projections.runner import Projector

from .harness import Context, MachineLoad, MachineMeter, Result, Scenario, machine_cpu_seconds, rss_mb
from .ingest import _register

PARTITIONS = 6
E2E_RATE = 1_000  # events/s submitted
E2E_SECONDS = 10
CLIENTS = 16  # threads posting, each with one request in flight
SETTLE_SECONDS = 0.3  # every worker has held its partitions this long: the group is no longer rebalancing
CLI = [sys.executable, "-m", "api.cli"]


@contextmanager
def broker() -> Iterator[str]:
    configured = os.environ.get("PUPIL_LEDGER_KAFKA")
    if configured:
        yield configured
        return
    import noida_db  # the test broker (test extra)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    data = Path(tempfile.mkdtemp(prefix="pl-bench-kafka-"))
    process = subprocess.Popen(
        [
            str(Path(noida_db.__file__).with_name("noida-db")),
            "start",
            "--only",
            "kafka",
            "--kafka-port",
            str(port),
            "--host",
            "127.0.0.1",
            "--data-dir",
            str(data),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)


def feed_env(settings: Settings, config: FeedConfig) -> dict[str, str]:
    env = dict(
        os.environ,
        PUPIL_LEDGER_HOME=str(settings.home),
        PUPIL_LEDGER_KAFKA=config.bootstrap,
        PUPIL_LEDGER_KAFKA_TOPIC=config.topic,
        PUPIL_LEDGER_KAFKA_PARTITIONS=str(config.partitions),
        PUPIL_LEDGER_KAFKA_GROUP=config.group,
    )
    env["PUPIL_LEDGER_DATABASE_URL"] = settings.database_url or ""
    return env


def new_config(bootstrap: str) -> FeedConfig:
    name = uuid.uuid4().hex[:8]
    return FeedConfig(bootstrap, f"bench.events.{name}", PARTITIONS, f"bench-{name}")


def publish_all(settings: Settings, config: FeedConfig) -> tuple[int, float, MachineLoad | None]:
    """Events covered, seconds, and how busy the machine was meanwhile (the relay, the broker and PostgreSQL)."""
    from feed.relay import Relay, ensure_topic

    ledger = admin.open_ledger(settings)
    ensure_topic(config)
    relay = Relay(ledger.store, config, settings.database_url, batch_size=2000, settings=settings)
    relay.state.ensure_relay()
    relay.prepare()  # the producer connected and the encoder process started: a relay's start is not its rate
    total, started = 0, time.perf_counter()
    with MachineMeter() as meter:
        while done := relay.step():
            total += done
    took = time.perf_counter() - started
    relay.close()
    ledger.store.close()
    return total, took, meter.load


class NothingApplied(RuntimeError):
    """The views reached the log's end though no worker applied a record (seen once, in the smoke test: 0 events/s)."""


def consume_all(settings: Settings, config: FeedConfig, workers: int, batch: int | None = None) -> tuple[int, float, MachineLoad | None]:
    """Records applied and seconds, with ``workers`` processes: from the first moment every worker has its partitions
    and records have been applied, to the views' position reaching the log's end. The records applied before the clock
    starts are not counted (counting them in a window that leaves out their time overstated the rate of large batches),
    nor is the time the group takes to settle: a worker that joins first applies on its own until the second joins
    and the group rebalances, which on the 20k workload was a third of the run or more."""
    ledger = admin.open_ledger(settings)
    store = ledger.store
    Projector(store).ensure()  # empty views at position 0: the workers apply the whole topic (new views would be built from the log)
    last = store.max_sequence()
    logs = [Path(tempfile.mkstemp(prefix="pl-bench-worker-", suffix=".log")[1]) for _ in range(workers)]
    procs = []
    for log_path in logs:
        with log_path.open("wb") as log:
            procs.append(
                subprocess.Popen(
                    [*CLI, "project", "run", "--source", "kafka", *(["--batch", str(batch)] if batch else []), "--idle", "0.05"],
                    env=feed_env(settings, config),
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            )
    try:
        started, before, cpu_at_start, settled_since = None, 0, None, None
        launched, cpu_at_launch = time.perf_counter(), machine_cpu_seconds()
        applied = "SELECT COALESCE(SUM(next_offset), 0) FROM pv_kafka_offsets"  # records applied (each topic is new)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                finished = min(p for (p,) in store.query("SELECT position FROM pv_positions")) >= last
                if started is None and not finished:  # every worker with partitions for SETTLE_SECONDS: no rebalance
                    settled_since = (settled_since or time.monotonic()) if all(map(has_partitions, logs)) else None
                    settled = settled_since is not None and time.monotonic() - settled_since >= SETTLE_SECONDS
                    if settled and (first := int(store.query(applied)[0][0])):
                        started, before, cpu_at_start = time.perf_counter(), first, machine_cpu_seconds()
                if finished:
                    total = int(store.query(applied)[0][0])
                    if not total:  # a rate of 0 is no measurement: say what the views and the workers saw instead
                        raise NothingApplied(
                            f"the views reached sequence {last} with no record applied: positions "
                            f"{store.query('SELECT view, position FROM pv_positions')}, offsets "
                            f"{store.query('SELECT * FROM pv_kafka_offsets')}; workers' logs: "
                            + " | ".join(log.read_text(errors="replace")[-1500:] for log in logs)
                        )
                    if started is not None and total > before:
                        return total - before, time.perf_counter() - started, MachineLoad.between(cpu_at_start, machine_cpu_seconds())
                    # a topic of a few batches, all applied before the group settled: the whole topic from the workers'
                    # launch, process start included (a floor, for workloads too small to measure a rate on)
                    return total, time.perf_counter() - launched, MachineLoad.between(cpu_at_launch, machine_cpu_seconds())
            except NothingApplied:
                raise
            except Exception:  # noqa: BLE001 - the workers create these tables as they start
                pass
            time.sleep(0.01)
        raise RuntimeError("the workers did not catch up in 600 s")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        store.close()
        for log_path in logs:
            log_path.unlink(missing_ok=True)


def has_partitions(log: Path) -> bool:
    """The worker's last rebalance, as its log says, gave it partitions (``partitions assigned: [...]`` not empty)."""
    lines = [line for line in log.read_text(errors="replace").splitlines() if "partitions " in line]
    return bool(lines) and "partitions assigned: " in lines[-1] and not lines[-1].rstrip().endswith("[]")


def run(ctx: Context) -> list[Result]:
    if ctx.backend != "postgres":
        return []
    rows: list[Result] = []
    # a broker per run: the test broker's CPU per record grows with the records it holds (3.8 to 16.6 µs a record
    # over six runs of 100,000 on one broker here), which made each run slower than the last
    relay_runs: list[tuple[int, float, MachineLoad | None]] = []
    consumer_runs: dict[int, list[tuple[int, float, MachineLoad | None]]] = {1: [], 2: []}

    def relay_once() -> tuple[float, list[float]]:
        with broker() as bootstrap, ctx.loaded() as settings:
            relay_runs.append(publish_all(settings, new_config(bootstrap)))
        return relay_runs[-1][1], []

    seconds, _ = ctx.measure(relay_once)
    rows.append(
        Result(
            "kafka",
            ctx.backend,
            "relay: ledger -> topic",
            "events/s",
            relay_runs[-1][0],
            seconds,
            [],
            rss_mb()[0],
            target="≥ 20,000/s",
            note=f"{PARTITIONS} partitions, batches of 2,000, acks=all, idempotent; ledger events covered per second"
            + machine_note(relay_runs[-1]),
        )
    )
    for workers in (1, 2):

        def consume_once(workers: int = workers) -> tuple[float, list[float]]:
            with broker() as bootstrap, ctx.loaded() as settings:
                config = new_config(bootstrap)
                publish_all(settings, config)
                consumer_runs[workers].append(consume_all(settings, config, workers))
            return consumer_runs[workers][-1][1], []

        seconds, _ = ctx.measure(consume_once)
        typical = median_run(consumer_runs[workers][-ctx.runs :])
        rows.append(
            Result(
                "kafka",
                ctx.backend,
                f"projection workers from the topic: {workers}",
                "events/s",
                round(typical[0] / typical[1] * statistics.median(seconds)),  # so the row's rate is the typical run's
                seconds,
                [],
                None,
                target="≥ 10,000/s" if workers == 1 else "≥ 1.6 × one worker",
                note="processes, batches as deployed (500, doubling to 4,000 while far behind); from when every worker has its "
                "partitions and records are applied to the views' position at the end; median of the runs' rates"
                + machine_note(typical)
                + (scaling_note(median_run(consumer_runs[1][-ctx.runs :])) if workers == 2 else ""),
                baseline_for=None,
            )
        )
    with broker() as bootstrap:
        rows.append(end_to_end(ctx, bootstrap))
    return rows


def median_run(runs: list[tuple[int, float, MachineLoad | None]]) -> tuple[int, float, MachineLoad | None]:
    """The run whose rate is the median (the lower of the middle two): the workers' runs count different numbers of
    records (those applied after the group settled), so the row's rate is the median of the runs' rates, not the last
    run's records over the median time."""
    ordered = sorted(runs, key=lambda run: run[0] / run[1])
    return ordered[(len(ordered) - 1) // 2]


def machine_note(run: tuple[int, float, MachineLoad | None]) -> str:
    items, _, load = run
    return f"; {load.describe(items)}" if load is not None else ""


def scaling_note(one_worker: tuple[int, float, MachineLoad | None]) -> str:
    """What 1.6 × one worker would ask of the machine if each event cost what it cost one worker (the worker, the
    broker and PostgreSQL): above 100%, two cores cannot show the target, however well the workers split the work."""
    items, seconds, load = one_worker
    if load is None or not items or not seconds:
        return ""
    needed = 1.6 * items / seconds * (load.cpu_seconds / items) / load.cores
    return f"; 1.6 × one worker at one worker's CPU per event would need {needed * 100:.0f}% of the machine"


def end_to_end(ctx: Context, bootstrap: str) -> Result:
    """Open loop: ``CLIENTS`` threads post the workload's events over HTTP at ``E2E_RATE`` in all (each pupil's events
    in order in one thread) to ``serve --no-followers`` with the relay and one worker beside it; each event's latency
    is from its 201 to the views' position covering its sequence."""
    import http.client
    import json

    from .serving import Server
    from .workload import payload_body, share_of

    clients = CLIENTS
    w = ctx.workload
    signed = w.signed[: E2E_RATE * E2E_SECONDS]
    committed: dict[int, float] = {}
    visible: dict[int, float] = {}
    seconds: list[float] = []
    failures: list[str] = []
    meter = MachineMeter()
    with ctx.fresh() as settings:
        ledger = admin.initialise(settings).ledger
        _register(ledger, w.orgs)
        bodies = [payload_body(env) for env in signed]
        kinds = {o.org_id: o.kind for o in w.orgs}
        tokens = {org: ledger.issue_token(org, kinds[org]) for org in sorted({b["submitter"] for b in bodies})}
        Projector(ledger.store).ensure()
        ledger.store.close()
        config = new_config(bootstrap)
        from feed.relay import ensure_topic

        ensure_topic(config)
        # each request's bytes made before the clock starts: the clients share the machine with what they measure
        shares: list[list[tuple[float, bytes, dict[str, str]]]] = [[] for _ in range(clients)]
        for i, (env, body) in enumerate(zip(signed, bodies, strict=True)):
            headers = {"authorization": f"Bearer {tokens[body['submitter']]}", "content-type": "application/json"}
            shares[share_of(body, clients)].append((i / E2E_RATE, json.dumps(env).encode(), headers))
        saved = {k: os.environ.get(k) for k in ("PUPIL_LEDGER_KAFKA", "PUPIL_LEDGER_KAFKA_TOPIC", "PUPIL_LEDGER_KAFKA_GROUP")}
        os.environ.update(PUPIL_LEDGER_KAFKA=config.bootstrap, PUPIL_LEDGER_KAFKA_TOPIC=config.topic, PUPIL_LEDGER_KAFKA_GROUP=config.group)
        try:
            companions = [
                ["relay", "--batch", "500", "--idle", "0.01"],
                ["project", "run", "--source", "kafka", "--batch", "500", "--idle", "0.01"],
            ]
            with Server(settings, ["--no-followers"], companions) as server:
                time.sleep(3)  # the worker joins the group
                reader = admin.open_ledger(settings)
                stop = threading.Event()
                lock = threading.Lock()
                pending: set[int] = set()

                def watch() -> None:  # an event answered after the views covered it is visible at the next look
                    while not stop.is_set():
                        position = min(p for (p,) in reader.store.query("SELECT position FROM pv_positions"))
                        now = time.perf_counter()
                        with lock:
                            reached = [s for s in pending if s <= position]
                            pending.difference_update(reached)
                        for s in reached:
                            visible[s] = now
                        time.sleep(0.005)

                started = time.perf_counter()

                def client(share: list[tuple[float, bytes, dict[str, str]]]) -> None:
                    # the standard library's client on one kept-alive connection: a third of httpx's CPU per request
                    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
                    try:
                        for due, request, headers in share:
                            pause = started + due - time.perf_counter()
                            if pause > 0:
                                time.sleep(pause)
                            connection.request("POST", "/events", body=request, headers=headers)
                            response = connection.getresponse()
                            answer = response.read()
                            if response.status in (200, 201):
                                sequence = int(json.loads(answer)["sequence"])
                                committed[sequence] = time.perf_counter()
                                with lock:
                                    pending.add(sequence)
                            elif not failures:
                                failures.append(f"{response.status} {answer[:200]!r}")
                    finally:
                        connection.close()

                watcher = threading.Thread(target=watch, daemon=True)
                watcher.start()
                threads = [threading.Thread(target=client, args=(share,)) for share in shares]
                with meter:
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()
                seconds.append(time.perf_counter() - started)
                deadline = time.monotonic() + 60
                while len(visible) < len(committed) and time.monotonic() < deadline:
                    time.sleep(0.05)
                stop.set()
                watcher.join(5)
                reader.store.close()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    latencies = [(visible[s] - committed[s]) * 1000 for s in committed if s in visible]
    missing = len(committed) - len(latencies)
    note = f"serve --no-followers, relay and one worker as processes; {clients} clients, open loop, {len(signed):,} events offered"
    note += f"; {meter.load.describe(len(committed))}" if meter.load is not None else ""
    note += (f"; {missing} NOT VISIBLE within 60 s" if missing else "") + (f"; NOT ALL ACCEPTED: {failures[0]}" if failures else "")
    return Result(
        "kafka",
        ctx.backend,
        f"end to end at {E2E_RATE:,} events/s offered: 201 -> views' position",
        "events/s",
        len(committed),
        seconds,
        latencies,
        None,
        target="p99 ≤ 2 s",
        note=note,
    )


SCENARIO = Scenario("kafka", run, "change feed: relay, projection workers from the topic, end to end (PostgreSQL)")
