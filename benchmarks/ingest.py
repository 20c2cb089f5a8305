"""submitBatch ingest, and its baselines on the same events.

- ``submitBatch``: ``Ledger.submit_batch`` in batches of 500: every envelope decoded, validated, its
  signature verified, the rules applied to its subject, then one transaction per batch (events and
  index rows), and a signed receipt each. The organisations are registered first, untimed.
- ``naive eventsourcing loop, the library's own recorder``: the loop a newcomer writes with ``eventsourcing`` as
  it ships: an ``Application`` with the library's stock PostgreSQL (or SQLite) persistence, nothing configured
  beyond the database, the same events, one ``save()`` per event and nothing else (no decoding, validation,
  signature or rules). This is the loop the 10× target names, the one the team first measured (before this
  benchmark) at about 350 single-event transactions/s (each save takes the library's table lock and notifies).
- ``naive eventsourcing loop, nothing checked``: the same loop through the ledger's own recorder (the same
  guarantees and table lock, in fewer round trips): the fastest one-``save()``-per-event loop this store
  offers, a stricter baseline.
- ``naive loop, same checks``: the same events through the same checks, one event per call and per
  transaction (``Ledger.submit`` in a loop: one ``save()`` per event): what batching gains on the same work.
  A strong baseline, since each call still uses the pipeline's caches.
- ``submitBatch, 2 processes`` (PostgreSQL): the same batches from two processes on one database, the pupils
  split between them by a hash of the subject (each pupil's events stay in order in one process); the wall
  time runs from a common start to the last process's end. What several API processes give.
- ``bulk write of the stored rows``: PostgreSQL ``COPY`` (SQLite: one ``executemany`` transaction) of the rows
  the batch run stored, into tables of the same shape: the physical limit for writing these bytes.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from eventsourcing.application import AggregateNotFoundError, Application

from ledger import signatures
from ledger.config import Settings, tune_garbage_collector
from ledger.storage.store import Subject, persistence_env
from ledger.tools import admin
from ledger.tools.simulate_load import org_setup

from .harness import Context, Result, Scenario, rss_mb
from .workload import canonical_text, payload_body, share_of

BATCH = 500
PROCESSES = 2
NAIVE_EVENTS = 2_000  # the one-transaction-per-event baselines run on the first events only (a rate, not a total)
STOCK_SETTINGS = (
    "PERSISTENCE_MODULE",
    "POSTGRES_DBNAME",
    "POSTGRES_HOST",
    "POSTGRES_PORT",
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "SQLITE_DBNAME",
)
NAMESPACE = uuid.UUID("0b3c41a4-7c55-4a61-8f39-3f0a2c6c1a1e")


def _register(ledger: Any, orgs: list[Any]) -> None:
    setup = org_setup(ledger, orgs)
    for i in range(0, len(setup), 2000):
        ledger.submit_batch(setup[i : i + 2000])


def _ingest_share(settings: Settings, envelopes: list[dict[str, Any]], start: Any, results: Any) -> None:
    """In a spawned process: submit ``envelopes`` in batches once every process is ready; report the times."""
    tune_garbage_collector()  # as every API process does (``serve``); a spawned child starts with the defaults
    ledger = admin.open_ledger(settings)
    signatures.start()  # every signature worker running before the clock
    start.wait(timeout=300)  # a sibling that died before this point breaks the barrier instead of hanging it
    began = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process on the machine
    latencies = []
    for i in range(0, len(envelopes), BATCH):
        t = time.perf_counter()
        ledger.submit_batch(envelopes[i : i + BATCH])
        latencies.append((time.perf_counter() - t) * 1000)
    results.put((began, time.monotonic(), latencies))
    ledger.store.close()
    signatures.shutdown()  # a multiprocessing child joins its children before any atexit hook could stop the pool


def run(ctx: Context) -> list[Result]:
    w = ctx.workload
    signed = w.signed
    stored_rows: dict[str, list[tuple[Any, ...]]] = {}

    def batched() -> tuple[float, list[float]]:
        with ctx.fresh() as settings:
            ledger = admin.initialise(settings).ledger
            _register(ledger, w.orgs)
            latencies = []
            started = time.perf_counter()
            for i in range(0, len(signed), BATCH):
                t = time.perf_counter()
                ledger.submit_batch(signed[i : i + BATCH])
                latencies.append((time.perf_counter() - t) * 1000)
            took = time.perf_counter() - started
            if not stored_rows:
                store = ledger.store
                stored_rows["events"] = store.query(f"SELECT originator_id, originator_version, topic, state FROM {store.events_table}")
                stored_rows["index"] = store.query("SELECT * FROM ledger_index")
            ledger.store.close()
        return took, latencies

    seconds, latencies = ctx.measure(batched)
    main = Result(
        "ingest",
        ctx.backend,
        "submitBatch",
        "events/s",
        len(signed),
        seconds,
        latencies,
        rss_mb()[0],
        target="≥ 5,000/s PostgreSQL, ≥ 2,000/s SQLite",
        note=f"{BATCH} per batch; latency per batch",
    )
    naive = signed[:NAIVE_EVENTS]
    texts = [(canonical_text(env), payload_body(env)) for env in naive]

    def save_each(app: Application[uuid.UUID]) -> tuple[float, list[float]]:
        """One ``save()`` per event, each creating or extending its subject's stream, and nothing else."""
        now = datetime.now(UTC)
        latencies = []
        started = time.perf_counter()
        for text, body in texts:
            t = time.perf_counter()
            aggregate_id = uuid.uuid5(NAMESPACE, body["subject"].get("upn") or body["subject"]["org"])
            try:
                subject: Any = app.repository.get(aggregate_id)
                subject.record(text, now, [])
            except AggregateNotFoundError:
                subject = Subject._create(Subject.Created, id=aggregate_id, envelope=text, received_at=now, flags=[])
            app.save(subject)
            latencies.append((time.perf_counter() - t) * 1000)
        return time.perf_counter() - started, latencies

    def stock_loop() -> tuple[float, list[float]]:
        with ctx.fresh() as settings:
            settings.home.mkdir(parents=True, exist_ok=True)
            database = persistence_env(settings.database_url, str(settings.home / "naive.sqlite"), "", True)
            stock = {k: v for k, v in database.items() if k in STOCK_SETTINGS}  # the database only: no recorder, cipher or pool of ours
            app: Application[uuid.UUID] = Application(env={**stock, "CREATE_TABLE": "y"})
            try:
                return save_each(app)
            finally:
                app.close()

    seconds, lat = ctx.measure(stock_loop)
    stock_row = Result(
        "ingest",
        ctx.backend,
        "naive eventsourcing loop, the library's own recorder",
        "events/s",
        len(naive),
        seconds,
        lat,
        rss_mb()[0],
        baseline_for="submitBatch",
        target="submitBatch ≥ 10× this",
        note="eventsourcing as it ships: save() per event and nothing else",
    )

    def naive_loop() -> tuple[float, list[float]]:
        with ctx.fresh() as settings:
            ledger = admin.initialise(settings).ledger
            try:
                return save_each(ledger.store.app)
            finally:
                ledger.store.close()

    seconds, lat = ctx.measure(naive_loop)
    naive_row = Result(
        "ingest",
        ctx.backend,
        "naive eventsourcing loop, nothing checked",
        "events/s",
        len(naive),
        seconds,
        lat,
        rss_mb()[0],
        baseline_for="submitBatch",
        target="submitBatch ≥ 10× this (stricter)",
        note="save() per event and nothing else, through the ledger's own recorder",
    )

    def one_by_one() -> tuple[float, list[float]]:
        with ctx.fresh() as settings:
            ledger = admin.initialise(settings).ledger
            _register(ledger, w.orgs)
            latencies = []
            started = time.perf_counter()
            for env in naive:
                t = time.perf_counter()
                ledger.submit(env)
                latencies.append((time.perf_counter() - t) * 1000)
            took = time.perf_counter() - started
            ledger.store.close()
        return took, latencies

    seconds, lat = ctx.measure(one_by_one)
    each_row = Result(
        "ingest",
        ctx.backend,
        "naive loop, same checks",
        "events/s",
        len(naive),
        seconds,
        lat,
        rss_mb()[0],
        baseline_for="submitBatch",
        note="Ledger.submit per event: every check, one save() and transaction per event",
    )

    def bulk() -> tuple[float, list[float]]:
        with ctx.fresh() as settings:
            ledger = admin.initialise(settings).ledger
            store = ledger.store
            events, index = stored_rows["events"], stored_rows["index"]
            width = len(index[0]) if index else 9
            with store.cursor(commit=True) as cur:
                cur.execute(
                    f"CREATE TABLE bulk_events AS SELECT originator_id, originator_version, topic, state FROM {store.events_table} WITH NO DATA"
                    if store.is_postgres
                    else "CREATE TABLE bulk_events AS SELECT originator_id, originator_version, topic, state FROM stored_events WHERE 0"
                )
                cur.execute("CREATE TABLE bulk_index AS SELECT * FROM ledger_index " + ("WITH NO DATA" if store.is_postgres else "WHERE 0"))
            started = time.perf_counter()
            with store.cursor(commit=True) as cur:
                if store.is_postgres:
                    with cur.copy("COPY bulk_events FROM STDIN") as copy:
                        for row in events:
                            copy.write_row(row)
                    with cur.copy("COPY bulk_index FROM STDIN") as copy:
                        for row in index:
                            copy.write_row(row)
                else:
                    cur.executemany("INSERT INTO bulk_events VALUES (?, ?, ?, ?)", events)
                    cur.executemany(f"INSERT INTO bulk_index VALUES ({', '.join('?' * width)})", index)
            took = time.perf_counter() - started
            store.close()
        return took, []

    seconds, _ = ctx.measure(bulk)
    bulk_row = Result(
        "ingest",
        ctx.backend,
        "COPY of the stored rows" if ctx.backend == "postgres" else "bulk insert of the stored rows",
        "events/s",
        len(stored_rows["events"]),
        seconds,
        [],
        baseline_for="submitBatch",
        note="physical limit: the same event and index rows, one transaction",
    )
    rows = [main, stock_row, naive_row, each_row, bulk_row]
    if ctx.backend == "postgres":  # SQLite has one writer: a second process only waits for the lock
        shares: list[list[dict[str, Any]]] = [[] for _ in range(PROCESSES)]
        for env in signed:
            shares[share_of(payload_body(env), PROCESSES)].append(env)

        def processes() -> tuple[float, list[float]]:
            spawn = multiprocessing.get_context("spawn")
            with ctx.fresh() as settings:
                ledger = admin.initialise(settings).ledger
                _register(ledger, w.orgs)
                ledger.store.close()
                start, results = spawn.Barrier(PROCESSES), spawn.Queue()
                workers = [spawn.Process(target=_ingest_share, args=(settings, share, start, results)) for share in shares]
                for worker in workers:
                    worker.start()
                reports: list[tuple[float, float, list[float]]] = []
                try:
                    while len(reports) < len(workers):
                        try:
                            reports.append(results.get(timeout=1))
                        except queue.Empty:
                            if any(worker.exitcode not in (None, 0) for worker in workers):
                                raise RuntimeError("an ingest process failed (its traceback is above)") from None
                finally:
                    for worker in workers:
                        if worker.exitcode is None and len(reports) < len(workers):
                            worker.terminate()  # a sibling failed: nothing is left to wait for
                        worker.join()
            return max(end for _, end, _ in reports) - min(began for began, _, _ in reports), [ms for *_, lat in reports for ms in lat]

        seconds, lat = ctx.measure(processes)
        rows.insert(
            1,
            Result(
                "ingest",
                ctx.backend,
                f"submitBatch, {PROCESSES} processes",
                "events/s",
                len(signed),
                seconds,
                lat,
                target="≥ 5,000/s PostgreSQL",
                note=f"pupils split between {PROCESSES} processes, one database; latency per batch",
            ),
        )
    return rows


SCENARIO = Scenario("ingest", run, "submitBatch against naive one-save()-per-event loops (with and without the checks) and a bulk COPY")
