"""The benchmark harness: contexts (a backend and a size), results, warm-up and runs, the report.

A scenario gets a ``Context`` and returns ``Result`` rows. The context makes fresh ledgers (a temporary
home; on PostgreSQL a freshly created database, dropped afterwards), and a ledger already loaded with
the simulated workload, built once and copied for each run (``CREATE DATABASE ... TEMPLATE`` on
PostgreSQL, a file copy on SQLite), so every run starts from the same state.
"""

from __future__ import annotations

import gc
import importlib
import json
import math
import os
import pkgutil
import platform
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from ledger.config import Settings
from ledger.tools import admin

from .workload import Workload, streamed_areas, workload

PG_ADMIN_URL = os.environ.get("PUPIL_LEDGER_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ("sqlite", "postgres")
# With autovacuum off (this CI machine's PostgreSQL: conf.d/90-ci.conf), nothing keeps the planner's statistics:
# at 4 million events it took the 500-id subject query for a parallel scan of the whole events table and the
# 10M load fell from 2,500 to 700 events/s. The template load then analyses the tables itself, this often.
ANALYZE_EVERY = 1_000_000


def settle() -> None:
    """Take everything allocated so far (the simulated workload above all) out of the garbage collector's view.

    The workload lives for the whole run and is never traversed again, but a full collection would walk it
    every time: at 10 million events, about 100 million objects, a pause of several seconds that can fall
    inside a transaction and outlast eventsourcing's 5 s idle-in-transaction timeout (it did: PostgreSQL
    closed the connection 560,000 events into the load). ``gc.freeze`` is constant-time; call it again after
    building more. What is garbage already is collected first: frozen, the ledgers of earlier scenarios (cycles
    the tuned collector leaves for a rare full collection) would stay in memory for good, and in the RSS column.
    """
    gc.collect()
    gc.freeze()


def nearest_rank(ordered: list[float], p: float) -> float:
    """The p-th percentile of sorted samples by the nearest-rank rule (p99 of 100 samples is the 99th)."""
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


@dataclass
class Result:
    """One measured row: ``items`` per run, the wall time of each measured run, per-operation latencies."""

    scenario: str
    backend: str
    what: str
    unit: str
    items: int
    seconds: list[float]
    latencies_ms: list[float] = field(default_factory=list)
    rss_mb: float | None = None
    baseline_for: str | None = None  # ``what`` of the row this one is a baseline (or physical limit) for
    target: str = ""
    note: str = ""
    events: int = 0  # the context's workload size

    @property
    def throughput(self) -> float:
        return self.items / statistics.median(self.seconds) if self.seconds and statistics.median(self.seconds) > 0 else 0.0

    def percentile(self, p: float) -> float | None:
        return nearest_rank(sorted(self.latencies_ms), p) if self.latencies_ms else None

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "latencies_ms"}
        out.update(
            throughput=round(self.throughput, 1),
            runs=len(self.seconds),
            p50_ms=self.percentile(50),
            p95_ms=self.percentile(95),
            p99_ms=self.percentile(99),
            latency_samples=len(self.latencies_ms),
        )
        return out


@dataclass
class Scenario:
    name: str
    run: Callable[[Context], list[Result]]
    description: str = ""


def scenarios() -> dict[str, Scenario]:
    """Every ``benchmarks/<module>.py`` that defines ``SCENARIO``, by name."""
    found: dict[str, Scenario] = {}
    package = Path(__file__).parent
    for info in sorted(pkgutil.iter_modules([str(package)]), key=lambda m: m.name):
        if info.name.startswith("_") or info.name in ("harness", "workload", "serving"):
            continue
        module = importlib.import_module(f"benchmarks.{info.name}")
        scenario = getattr(module, "SCENARIO", None)
        if isinstance(scenario, Scenario):
            found[scenario.name] = scenario
    return found


def rss_mb(pid: int | None = None) -> tuple[float, float]:
    """(current, peak) resident set size of a process in MB, from /proc."""
    values = {}
    for line in Path(f"/proc/{pid or 'self'}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def machine_cpu_seconds() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine so far, all cores, from /proc/stat (None where there is none)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle and iowait
    return (sum(fields) - idle) / ticks, sum(fields) / ticks


@dataclass
class MachineLoad:
    """How busy the whole machine was between ``start`` and ``stop``: every process's CPU, not only this one's. Where
    several processes (broker, database, workers) share the cores, it says how far a rate is from the machine's
    own ceiling: ``ceiling`` is the rate that would use every core at the same CPU per item."""

    busy_share: float  # of all cores, 0..1
    cpu_seconds: float  # busy CPU seconds, all cores
    cores: int

    @staticmethod
    def between(start: tuple[float, float] | None, end: tuple[float, float] | None) -> MachineLoad | None:
        """From two ``machine_cpu_seconds()`` readings."""
        if start is None or end is None or end[1] <= start[1]:
            return None
        busy, total = end[0] - start[0], end[1] - start[1]
        return MachineLoad(busy / total, busy, os.cpu_count() or 1)

    def per_item_us(self, items: int) -> float:
        return self.cpu_seconds / items * 1e6 if items else 0.0

    def ceiling(self, items: int) -> float:
        return self.cores / (self.cpu_seconds / items) if items and self.cpu_seconds else 0.0

    def describe(self, items: int) -> str:
        return (
            f"machine {self.busy_share * 100:.0f}% busy of {self.cores} cores, {self.per_item_us(items):.0f} µs of CPU per "
            f"item in all processes (all cores at that cost: {self.ceiling(items):,.0f}/s)"
        )


class MachineMeter:
    """``with MachineMeter() as meter: ...`` then ``meter.load`` (None where /proc/stat is missing)."""

    def __init__(self) -> None:
        self.load: MachineLoad | None = None
        self._start: tuple[float, float] | None = None

    def __enter__(self) -> MachineMeter:
        self._start = machine_cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.load = MachineLoad.between(self._start, machine_cpu_seconds())


@dataclass
class Context:
    """One backend at one workload size; ``runs`` measured runs after ``warmup`` discarded ones."""

    backend: str
    events: int
    runs: int = 3
    warmup: int = 1
    seed: int = 1
    pg_admin_url: str = PG_ADMIN_URL
    progress: Callable[[str], None] = lambda message: None
    _template: tuple[Path, str | None] | None = None
    load: Result | None = None  # the untimed-for-scenarios load of the template, itself a backfill measurement
    _cleanup: list[Callable[[], None]] = field(default_factory=list)

    @property
    def workload(self) -> Workload:
        return workload(self.events, self.seed)

    def measure(self, once: Callable[[], tuple[float, list[float]]]) -> tuple[list[float], list[float]]:
        """Run ``once`` (returning its seconds and latencies) warm-up + runs times; keep the measured ones."""
        settle()
        seconds: list[float] = []
        latencies: list[float] = []
        for i in range(self.warmup + self.runs):
            gc.collect()  # the last run's ledger (cyclic garbage) goes now, not in the middle of this run, nor into its RSS
            took, lat = once()
            if i >= self.warmup:
                seconds.append(took)
                latencies.extend(lat)
        return seconds, latencies

    # -- databases --------------------------------------------------------------------------

    def _url(self, name: str) -> str:
        return f"{self.pg_admin_url.rsplit('/', 1)[0]}/{name}"

    def _pg(self, statement: str) -> None:
        with psycopg.connect(self.pg_admin_url, autocommit=True) as conn:
            conn.execute(statement)

    @contextmanager
    def fresh(self, template: tuple[Path, str | None] | None = None) -> Iterator[Settings]:
        """Settings for an empty home and database, or for a copy of ``template`` (home, database)."""
        home = Path(tempfile.mkdtemp(prefix="pl-bench-")) / "home"
        database = None
        if template is not None:
            shutil.copytree(template[0], home)
        if self.backend == "postgres":
            database = f"pl_bench_{uuid.uuid4().hex[:12]}"
            self._pg(f'CREATE DATABASE "{database}"' + (f' TEMPLATE "{template[1]}"' if template else ""))
        try:
            yield Settings(home=home, database_url=self._url(database) if database else None)
        finally:
            if database:
                self._pg(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            shutil.rmtree(home.parent, ignore_errors=True)

    def loaded(self) -> AbstractContextManager[Settings]:
        """A copy of a ledger loaded with the whole workload (loaded once per context, untimed)."""
        if self._template is None:
            settle()
            self._template = self._load_template()
        return self.fresh(self._template)

    def _load_template(self) -> tuple[Path, str | None]:
        from ledger.tools.simulate_load import load_areas

        home = Path(tempfile.mkdtemp(prefix="pl-bench-template-")) / "home"
        database = f"pl_bench_tpl_{uuid.uuid4().hex[:12]}" if self.backend == "postgres" else None
        if database:
            self._pg(f'CREATE DATABASE "{database}"')
            self._cleanup.append(lambda: self._pg(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        self._cleanup.append(lambda: shutil.rmtree(home.parent, ignore_errors=True))
        ledger = admin.initialise(Settings(home=home, database_url=self._url(database) if database else None)).ledger
        statistics_kept = ledger.store.keeps_statistics()
        started, done = time.perf_counter(), 0
        batches: list[float] = []
        last = started

        def tick(n: int) -> None:
            nonlocal done, last
            now = time.perf_counter()
            batches.append((now - last) * 1000)
            done, last = done + n, now
            if done % 20_000 < n:
                self.progress(f"loading {self.backend} template: {done:,}/about {self.events:,} events, {now - started:.0f} s")
            if done % ANALYZE_EVERY < n and not statistics_kept:
                ledger.store.execute("ANALYZE")  # what autovacuum would have done: see ANALYZE_EVERY

        load_areas(ledger, streamed_areas(self.events, self.seed), batch_size=1000, on_progress=tick)
        if not statistics_kept:
            ledger.store.execute("ANALYZE")  # the copies inherit the statistics
        took = time.perf_counter() - started
        ledger.store.close()
        self.load = Result(
            "backfill",
            self.backend,
            "whole-workload load (submitBatch)",
            "events/s",
            done,
            [took],
            batches,
            rss_mb()[0],
            note="1,000 per batch, area after area, signing included; one run; latency per batch",
        )
        self.progress(f"loaded {self.backend} template of {done:,} events in {took:.0f} s")
        return home, database

    def close(self) -> None:
        for undo in reversed(self._cleanup):
            undo()
        self._cleanup.clear()
        self._template = None


def machine() -> dict[str, Any]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
        platform.processor(),
    )
    mem_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")))
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "load_average": os.getloadavg(),
    }
    try:
        with psycopg.connect(PG_ADMIN_URL) as conn:
            info["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
            for setting in ("fsync", "synchronous_commit", "shared_buffers"):
                info[f"pg_{setting}"] = conn.execute(f"SHOW {setting}").fetchone()[0]  # type: ignore[index]
    except psycopg.Error as exc:
        info["postgresql"] = f"unavailable: {exc}"
    with suppress(OSError):
        info["commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False, cwd=Path(__file__).parent
        ).stdout.strip()
    return info


def run_scenarios(
    names: list[str], backends: list[str], sizes: list[int], runs: int, warmup: int, progress: Callable[[str], None] = lambda m: None
) -> dict[str, Any]:
    """Run each named scenario on each backend at each size; the report is JSON-ready."""
    known = scenarios()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown scenario {unknown[0]!r}; known: {', '.join(known)}")
    report: dict[str, Any] = {
        "machine": machine(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "runs": runs,
        "warmup": warmup,
        "results": [],
    }
    for size in sizes:
        for backend in backends:
            ctx = Context(backend, size, runs, warmup, progress=progress)
            try:
                for name in names:
                    progress(f"{name} on {backend}, {size:,} events")
                    try:
                        rows = known[name].run(ctx)
                    except Exception as exc:  # noqa: BLE001 - one failing scenario must not lose the others' figures
                        rows = [Result(name, backend, "FAILED", "", 0, [], note=f"FAILED: {type(exc).__name__}: {str(exc)[:300]}")]
                    for result in rows:
                        result.events = size
                        report["results"].append(result)
            finally:
                ctx.close()
    report["machine"]["load_average_after"] = os.getloadavg()
    return report


def report_json(report: dict[str, Any]) -> str:
    return json.dumps({**report, "results": [r.as_dict() for r in report["results"]]}, indent=1)


def report_rows(report: dict[str, Any]) -> list[list[str]]:
    """Table rows: a baseline row shows how many times faster the row it is a baseline for is."""
    results: list[Result] = report["results"]
    main = {(r.events, r.backend, r.scenario, r.what): r for r in results}

    def ms(value: float | None) -> str:
        return "" if value is None else f"{value:.1f}"

    rows = []
    for r in results:
        versus = ""
        if r.baseline_for:
            other = main.get((r.events, r.backend, r.scenario, r.baseline_for))
            if other and r.throughput:
                versus = f"{other.throughput / r.throughput:.1f}×"
        rows.append(
            [
                f"{r.events:,}",
                r.backend,
                r.scenario,
                r.what,
                f"{r.throughput:,.0f} {r.unit}",
                ms(r.percentile(50)),
                ms(r.percentile(95)),
                ms(r.percentile(99)),
                "" if r.rss_mb is None else f"{r.rss_mb:.0f}",
                versus,
                r.target,
                r.note,
            ]
        )
    return rows


COLUMNS = ["events", "backend", "scenario", "what", "throughput", "p50 ms", "p95 ms", "p99 ms", "RSS MB", "main ÷ this", "target", "note"]
