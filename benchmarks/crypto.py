"""Ed25519 verifications per second on the available cores: the physical limit of signed ingest.

The messages are the workload's own DSSE pre-authentication encodings, verified with the submitters'
keys, one thread per core (``cryptography`` releases the GIL while it verifies).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger import envelope

from .harness import Context, Result, Scenario, rss_mb

SAMPLE = 20_000


def run(ctx: Context) -> list[Result]:
    if ctx.backend != "sqlite":
        return []  # no database involved: measured once, reported under the first backend
    w = ctx.workload
    keys = {envelope.key_id(o.key.public_key()): o.key.public_key() for o in w.orgs}
    jobs: list[tuple[Ed25519PublicKey, bytes, bytes]] = []
    while len(jobs) < SAMPLE:
        for env in w.signed[:SAMPLE]:
            decoded = envelope.decode(env)
            kid, sig = decoded.signatures[0]
            jobs.append((keys[kid], sig, envelope.pae(decoded.payload_type, decoded.payload)))
    jobs = jobs[:SAMPLE]

    def verify(part: list[tuple[Ed25519PublicKey, bytes, bytes]]) -> int:
        for key, sig, message in part:
            key.verify(sig, message)
        return len(part)

    rows = []
    cores = os.cpu_count() or 1
    for threads in sorted({1, cores}):
        def once(threads: int = threads) -> tuple[float, list[float]]:
            started = time.perf_counter()
            with ThreadPoolExecutor(threads) as pool:
                sum(pool.map(verify, [jobs[i::threads] for i in range(threads)]))
            return time.perf_counter() - started, []

        seconds, _ = ctx.measure(once)
        rows.append(Result("ed25519", "-", f"verify, {threads} core{'s' if threads > 1 else ''}", "verifications/s", len(jobs), seconds, [],
                           rss_mb()[0], note="physical limit for signed ingest"))
    return rows


SCENARIO = Scenario("ed25519", run, "Ed25519 verifications per second, one core and all cores")
