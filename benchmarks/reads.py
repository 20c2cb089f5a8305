"""pupilHistory and inclusionProof latency on a ledger loaded with the whole workload, over real HTTP.

A copy of the loaded ledger is served by ``pupil-ledger serve``; no timing starts before its sealer has
sealed the log and its in-process projections have caught up (both start from zero on the copy; the note
gives how long that took, and says NOT CAUGHT UP if it had not within ``SEAL_TIMEOUT``). Then one client
asks for random pupils' histories (as the operator's admin, a privileged reader) and for inclusion proofs
of random leaves, one request at a time. RSS is the server's peak over the whole run.
"""

from __future__ import annotations

import random
import time

from ledger.service import ADMIN_ORG, Ledger
from ledger.tools import admin

from .harness import Context, Result, Scenario
from .serving import Server, drive, get

REQUESTS = 500
SEAL_TIMEOUT = 1800.0


def _projected(ledger: Ledger) -> bool:
    """Whether the server's in-process projections have caught up with the copied ledger (they start from zero)."""
    try:
        lowest = ledger.store.query("SELECT MIN(position) FROM pv_positions")[0][0]
    except Exception:  # noqa: BLE001 - the views' table does not exist until the projector's first step
        return False
    return lowest is not None and int(lowest) >= ledger.store.max_sequence()


def run(ctx: Context) -> list[Result]:
    upns = ctx.workload.sample_upns(REQUESTS)
    history: list[float] = []
    proofs: list[float] = []
    history_latency: list[float] = []
    proof_latency: list[float] = []
    peaks: list[float] = []
    catch_up: list[float] = []
    failures: list[str] = []
    for i in range(ctx.warmup + ctx.runs):
        with ctx.loaded() as settings:
            ledger = admin.open_ledger(settings)
            token = ledger.issue_token(ADMIN_ORG, "admin")
            size = ledger.store.count_events()
            with Server(settings) as server:
                started = time.monotonic()
                while not (caught_up := server.sealed_size() >= size and _projected(ledger)) and time.monotonic() < started + SEAL_TIMEOUT:
                    time.sleep(0.5)
                catch_up.append(time.monotonic() - started)
                ledger.store.close()
                sealed = server.sealed_size()
                if not caught_up:
                    failures.append(
                        f"NOT CAUGHT UP within {SEAL_TIMEOUT:.0f} s: {sealed:,} of {size:,} sealed; reads timed during catch-up"
                    )
                rng = random.Random(i)
                reads = drive(server.port, [[get(f"/pupils/{upn}/history?purpose=data_correction", token) for upn in upns]])
                inclusion = drive(
                    server.port, [[get(f"/log/proof/inclusion?index={rng.randrange(max(1, sealed))}") for _ in range(REQUESTS)]]
                )
                peaks.append(server.rss_mb()[1])
                for load in (reads, inclusion):
                    if load.first_error:
                        failures.append(f"{load.first_error}; server log: {server.log_tail(12)[-1500:]}")
            if i >= ctx.warmup:
                history.append(reads.seconds)
                proofs.append(inclusion.seconds)
                history_latency.extend(reads.latencies_ms)
                proof_latency.extend(inclusion.latencies_ms)
    note = (
        f"{ctx.workload.size:,} events, {len(ctx.workload.upns):,} pupils; one client; the server sealed and projected "
        f"the copy in {max(catch_up, default=0.0):.0f} s (the longest run)"
    )
    if failures:
        note += f"; ERRORS: {failures[0]}"
    return [
        *([ctx.load] if ctx.load else []),
        Result(
            "reads",
            ctx.backend,
            "pupilHistory",
            "requests/s",
            REQUESTS,
            history,
            history_latency,
            max(peaks, default=0.0),
            target="p99 < 20 ms at 10M events / 1M pupils",
            note=note,
        ),
        Result(
            "reads",
            ctx.backend,
            "inclusionProof",
            "requests/s",
            REQUESTS,
            proofs,
            proof_latency,
            max(peaks, default=0.0),
            target="p99 < 10 ms at 10M events",
            note=note,
        ),
    ]


SCENARIO = Scenario("reads", run, "pupilHistory and inclusionProof latency on the loaded ledger (HTTP)")
