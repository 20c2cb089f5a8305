"""submitEvent with 32 concurrent clients over real HTTP: group commit under load.

A fresh ledger with the workload's organisations and a bearer token per submitter, served by a real
``pupil-ledger serve`` process (with its in-process followers, as the embedded default runs). Each
client owns a share of the pupils and posts their events in order, one request at a time, each answered
only once its group has committed. The first tenth of each client's requests warm the server up and
are not timed. RSS is the server's peak. After the load, the note gives how long the log took to cover
every acknowledged event in a signed checkpoint (the receipts promise it within the max merge delay).

On PostgreSQL two more shapes: ``serve --workers 2`` (each process with its own followers), and the
shape ``docker-compose.yml`` deploys: ``serve --workers 2 --no-followers`` beside one ``seal`` and one
``project run`` process.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence

from ledger.tools import admin

from .harness import Context, Result, Scenario
from .ingest import _register
from .serving import Request, Server, drive, post
from .workload import payload_body, share_of

CLIENTS = 32
WORKERS = 2
MAX_EVENTS = 20_000


COMPOSE_FOLLOWERS = [["seal"], ["project", "run"]]


def run(ctx: Context) -> list[Result]:
    rows = [_run(ctx, "submitEvent, group commit", [])]
    if ctx.backend == "postgres":  # several API processes: PostgreSQL only (the embedded SQLite has one writer)
        rows.append(_run(ctx, f"submitEvent, {WORKERS} API processes", ["--workers", str(WORKERS)]))
        rows.append(
            _run(
                ctx,
                f"submitEvent, {WORKERS} API processes, sealer and projector apart (docker-compose)",
                ["--workers", str(WORKERS), "--no-followers"],
                COMPOSE_FOLLOWERS,
            )
        )
    return rows


def _run(ctx: Context, what: str, serve_args: list[str], companions: Sequence[Sequence[str]] = ()) -> Result:
    w = ctx.workload
    signed = w.signed[:MAX_EVENTS]
    server_peak: list[float] = []
    statuses: dict[int, int] = defaultdict(int)
    errors: list[str] = []
    sealed_after: list[float | None] = []

    def once() -> tuple[float, list[float]]:
        with ctx.fresh() as settings:
            ledger = admin.initialise(settings).ledger
            _register(ledger, w.orgs)
            bodies = [payload_body(env) for env in signed]
            kinds = {o.org_id: o.kind for o in w.orgs}  # school, ap_setting or la: the token's role is the org's kind
            tokens = {org: ledger.issue_token(org, kinds[org]) for org in sorted({b["submitter"] for b in bodies})}
            ledger.store.close()
            shares: list[list[Request]] = [[] for _ in range(CLIENTS)]
            for env, body in zip(signed, bodies, strict=True):
                shares[share_of(body, CLIENTS)].append(post("/events", env, tokens[body["submitter"]]))
            warm = [share[: len(share) // 10] for share in shares]
            timed = [share[len(share) // 10 :] for share in shares]
            with Server(settings, serve_args, companions) as server:
                drive(server.port, warm)
                load = drive(server.port, timed)
                answered = time.monotonic()
                reader = admin.open_ledger(settings)
                try:
                    accepted = reader.store.count_events()
                finally:
                    reader.store.close()
                sealed_after.append(server.seconds_until_sealed(accepted, since=answered))
                server_peak.append(server.rss_mb()[1])
            for status, n in load.statuses.items():
                statuses[status] += n
            if load.first_error:
                errors.append(load.first_error)
        return load.seconds, load.latencies_ms

    seconds, latencies = ctx.measure(once)
    timed_items = len(latencies) // max(1, len(seconds))
    bad = {s: n for s, n in statuses.items() if s not in (200, 201)}
    note = f"{CLIENTS} clients; {timed_items:,} timed requests per run"
    if bad:
        note += f"; NOT ALL ACCEPTED {dict(bad)}: {errors[0] if errors else ''}"
    lags = [lag for lag in sealed_after if lag is not None]
    note += (
        f"; every acknowledged event in a signed checkpoint {max(lags):.1f} s after the last answer (the longest of the runs)"
        if len(lags) == len(sealed_after)
        else "; NOT SEALED within 60 s of the load"
    )
    if serve_args:
        followers = "followers apart: " + ", ".join(" ".join(c) for c in companions) if companions else "each process its own followers"
        note += f"; serve {' '.join(serve_args)} ({followers}); RSS of the largest API process"
    return Result(
        "submit_event",
        ctx.backend,
        what,
        "events/s",
        timed_items,
        seconds,
        latencies,
        max(server_peak) if server_peak else None,
        target="≥ 1,000/s, p99 < 100 ms, RSS < 300 MB",
        note=note,
    )


SCENARIO = Scenario("submit_event", run, "submitEvent over HTTP with 32 concurrent clients (group commit)")
