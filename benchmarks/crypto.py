"""Ed25519 verifications per second on the available cores: the physical limit of signed ingest.

The messages are the workload's own DSSE pre-authentication encodings, verified with the submitters'
keys, one thread per core (both libraries release the GIL while they verify): by ``ledger.core.ed25519.verify``
(libsodium, with cryptography's verdict: what the ledger runs), and by ``cryptography`` alone for reference.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ledger.core import ed25519, envelope

from .harness import Context, Result, Scenario, rss_mb

SAMPLE = 20_000


def run(ctx: Context) -> list[Result]:
    if ctx.backend != "sqlite":
        return []  # no database involved: measured once, reported under the first backend
    w = ctx.workload
    keys = {envelope.key_id(o.key.public_key()): envelope.raw_public_key(o.key.public_key()) for o in w.orgs}
    jobs: list[tuple[bytes, bytes, bytes]] = []
    while len(jobs) < SAMPLE:
        for env in w.signed[:SAMPLE]:
            decoded = envelope.decode(env)
            kid, sig = decoded.signatures[0]
            jobs.append((keys[kid], sig, envelope.pae(decoded.payload_type, decoded.payload)))
    jobs = jobs[:SAMPLE]

    def verifier(check: Callable[[bytes, bytes, bytes], bool]) -> Callable[[list[tuple[bytes, bytes, bytes]]], int]:
        def verify(part: list[tuple[bytes, bytes, bytes]]) -> int:
            for key, sig, message in part:
                if not check(key, sig, message):
                    raise AssertionError("a workload signature did not verify")
            return len(part)

        return verify

    rows = []
    cores = os.cpu_count() or 1
    for name, check, cores_to_try, note in (
        ("verify", ed25519.verify, sorted({1, cores}), "physical limit for signed ingest"),
        ("verify with cryptography alone", ed25519.verify_openssl, [1], "the reference: OpenSSL"),
    ):
        for threads in cores_to_try:

            def once(
                threads: int = threads, verify: Callable[[list[tuple[bytes, bytes, bytes]]], int] = verifier(check)
            ) -> tuple[float, list[float]]:
                started = time.perf_counter()
                with ThreadPoolExecutor(threads) as pool:
                    sum(pool.map(verify, [jobs[i::threads] for i in range(threads)]))
                return time.perf_counter() - started, []

            seconds, _ = ctx.measure(once)
            rows.append(
                Result(
                    "ed25519",
                    "-",
                    f"{name}, {threads} core{'s' if threads > 1 else ''}",
                    "verifications/s",
                    len(jobs),
                    seconds,
                    [],
                    rss_mb()[0],
                    note=note,
                )
            )
    return rows


SCENARIO = Scenario("ed25519", run, "Ed25519 verifications per second, one core and all cores")
