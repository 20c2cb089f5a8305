"""Transparency-log benchmark: sealing throughput and proof latency at large tree sizes.

    python -m benchmarks.tlog --leaves 1000000              # SQLite and PostgreSQL
    python -m benchmarks.tlog --leaves 20000 --backends sqlite

The sealer's input is the ledger index, so the benchmark fills ``ledger_index`` with N synthetic
rows (random digests) in bulk, then times: sealing them (entries/s, in the sealer's batches), and
inclusion and consistency proofs at the final size (p50/p95/p99 over random indices; each reads
O(log n) stored hashes in one query). The baseline is what a log without stored subtrees would
do: recompute the root over all N leaf hashes (one full-tree recomputation per proof).
Prints a table and, with --json, a JSON document.
"""

from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.core import merkle
from ledger.storage.store import Store, persistence_env
from ledger.transparency import tlog

from .harness import PG_ADMIN_URL, nearest_rank

INDEX_COLUMNS = "event_id, sequence, originator_id, originator_version, type, submitter, event_digest, envelope_digest, received_at"


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(p: float) -> float:
        return nearest_rank(ordered, p) * 1000

    return {
        "p50_ms": round(at(50), 3),
        "p95_ms": round(at(95), 3),
        "p99_ms": round(at(99), 3),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 3),
    }


def open_store(backend: str, workdir: Path, pg_admin_url: str = PG_ADMIN_URL) -> tuple[Store, Callable[[], None]]:
    key = base64.b64encode(os.urandom(32)).decode("ascii")
    if backend == "sqlite":
        store = Store.open(persistence_env(None, str(workdir / "bench.sqlite3"), key, create_tables=True))
        return store, store.close
    name = f"pl_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    store = Store.open(persistence_env(f"{pg_admin_url.rsplit('/', 1)[0]}/{name}", "", key, create_tables=True))

    def drop() -> None:
        store.close()
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return store, drop


def fill_index(store: Store, leaves: int) -> float:
    """N synthetic index rows, as the ledger would have written them (sequences with a few gaps)."""
    started = time.perf_counter()
    rng = random.Random(1)
    chunk = 50_000
    sequence = 0
    for start in range(0, leaves, chunk):
        rows = []
        for i in range(start, min(leaves, start + chunk)):
            sequence += 1 + (rng.random() < 0.01)  # the store's ids have gaps; leaf indices must not
            digest = hashlib.sha256(i.to_bytes(8, "big")).hexdigest()
            rows.append(
                (
                    str(uuid.UUID(int=i + 1)),
                    sequence,
                    str(uuid.UUID(int=i + 1)),
                    1,
                    "pupil.registered",
                    "urn:100005",
                    digest,
                    hashlib.sha256(digest.encode()).hexdigest(),
                    "2026-10-05T09:00:00.000000Z",
                )
            )
        with store.cursor(commit=True) as cur:
            if store.is_postgres:
                with cur.copy(f"COPY ledger_index ({INDEX_COLUMNS}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            else:
                cur.executemany(f"INSERT INTO ledger_index ({INDEX_COLUMNS}) VALUES ({', '.join('?' * 9)})", rows)
    return time.perf_counter() - started


def run_backend(backend: str, leaves: int, proofs: int, batch: int, workdir: Path, pg_admin_url: str = PG_ADMIN_URL) -> dict[str, Any]:
    store, close = open_store(backend, workdir, pg_admin_url)
    try:
        tlog.create_tables(store)
        fill_seconds = fill_index(store, leaves)
        sealer = tlog.Sealer(store, "bench.example/log", Ed25519PrivateKey.generate(), batch_size=batch)
        started = time.perf_counter()
        sealed = sealer.seal_all()
        seal_seconds = time.perf_counter() - started
        assert sealed == leaves
        log = tlog.Log(store)
        size = log.tree_size()
        root = log.tree.root(size)
        rng = random.Random(2)
        inclusion, consistency, reads = [], [], []
        for _ in range(proofs):
            index = rng.randrange(size)
            t = time.perf_counter()
            proof = log.tree.inclusion_proof(index, size)
            inclusion.append(time.perf_counter() - t)
            reads.append(len(merkle.plan(functools.partial(merkle.inclusion_proof, index=index, size=size))))
            leaf = log.leaf(index)
            assert leaf is not None
            merkle.verify_inclusion(merkle.leaf_hash(leaf.entry), index, size, proof, root)
            old = rng.randrange(1, size + 1)
            t = time.perf_counter()
            log.tree.consistency_proof(old, size)
            consistency.append(time.perf_counter() - t)
        leaf_hashes = [bytes(r[0]) for r in store.query("SELECT hash FROM log_nodes WHERE level = 0 ORDER BY idx")]
        t = time.perf_counter()
        assert merkle.root_of(leaf_hashes) == root
        recompute = time.perf_counter() - t
        return {
            "backend": backend,
            "leaves": leaves,
            "seal_batch": batch,
            "fill_index_seconds": round(fill_seconds, 2),
            "seal_seconds": round(seal_seconds, 2),
            "seal_entries_per_s": round(leaves / seal_seconds),
            "inclusion_proof": percentiles(inclusion),
            "consistency_proof": percentiles(consistency),
            "stored_hashes_read_per_proof_max": max(reads),
            "baseline_full_recompute_ms": round(recompute * 1000, 1),
        }
    finally:
        close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--proofs", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=5000, help="entries per sealing transaction")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--json", dest="json_out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            print(f"[{backend}] filling {args.leaves} index rows, sealing, proving ...", file=sys.stderr, flush=True)
            results.append(run_backend(backend, args.leaves, args.proofs, args.batch, Path(tmp)))
    header = (
        f"{'backend':9} {'leaves':>9} {'seal/s':>8} {'incl p50':>9} {'p99':>8} {'cons p50':>9} {'p99':>8} {'reads':>5} {'baseline':>10}"
    )
    print(header)
    for r in results:
        print(
            f"{r['backend']:9} {r['leaves']:>9} {r['seal_entries_per_s']:>8} {r['inclusion_proof']['p50_ms']:>7}ms "
            f"{r['inclusion_proof']['p99_ms']:>6}ms {r['consistency_proof']['p50_ms']:>7}ms {r['consistency_proof']['p99_ms']:>6}ms "
            f"{r['stored_hashes_read_per_proof_max']:>5} {r['baseline_full_recompute_ms']:>8}ms"
        )
    print("baseline = recomputing the root over every leaf hash (what a proof costs without stored subtrees)")
    document = {"benchmark": "tlog", "machine": {"cpus": os.cpu_count()}, "results": results}
    if args.json_out:
        args.json_out.write_text(json.dumps(document, indent=1))
    print(json.dumps(document))
    return 0


if __name__ == "__main__":
    sys.exit(main())
