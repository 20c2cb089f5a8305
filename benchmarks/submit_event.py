"""submitEvent with 32 concurrent clients over real HTTP: group commit under load.

A fresh ledger with the workload's organisations and a bearer token per submitter, served by a real
``pupil-ledger serve`` process (with its in-process followers, as the embedded default runs). Each
client owns a share of the pupils and posts their events in order, one request at a time, each answered
only once its group has committed. The first tenth of each client's requests warm the server up and
are not timed. RSS is the server's peak.
"""

from __future__ import annotations

import time
from collections import defaultdict

from ledger import admin

from .harness import Context, Result, Scenario
from .ingest import _register
from .serving import Request, Server, drive, post
from .workload import payload_body, share_of

CLIENTS = 32
WORKERS = 2
MAX_EVENTS = 20_000


def run(ctx: Context) -> list[Result]:
    rows = [_run(ctx, "submitEvent, group commit", [])]
    if ctx.backend == "postgres":  # several API processes: PostgreSQL only (the embedded SQLite has one writer)
        rows.append(_run(ctx, f"submitEvent, {WORKERS} API processes", ["--workers", str(WORKERS)]))
    return rows


def _run(ctx: Context, what: str, serve_args: list[str]) -> Result:
    w = ctx.workload
    signed = w.signed[:MAX_EVENTS]
    server_peak: list[float] = []
    statuses: dict[int, int] = defaultdict(int)
    errors: list[str] = []

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
            timed = [share[len(share) // 10:] for share in shares]
            with Server(settings, serve_args) as server:
                drive(server.port, warm)
                load = drive(server.port, timed)
                time.sleep(0.2)
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
    if serve_args:
        note += f"; serve {' '.join(serve_args)} (each process its own group commit and in-process followers); RSS of the largest"
    return Result("submit_event", ctx.backend, what, "events/s", timed_items, seconds, latencies,
                  max(server_peak) if server_peak else None, target="≥ 1,000/s, p99 < 100 ms, RSS < 300 MB", note=note)


SCENARIO = Scenario("submit_event", run, "submitEvent over HTTP with 32 concurrent clients (group commit)")
