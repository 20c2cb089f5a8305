"""Research export: `pupil-ledger export research` of a whole loaded ledger, as its own process (issue 23's target:
1 M pupils' records in 2 minutes and 1 GB). Each run takes a fresh copy of the loaded ledger, seals it and approves
a national project (untimed), then times the command, which reads every pupil at the checkpoint, anonymises
(k = 10, l = 2), writes Parquet, CSV, the data package and the signed manifest, and records the release; the RSS
column is the command's peak resident memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from ledger.research import operator
from ledger.tools import admin

from .harness import Context, Result, Scenario, rss_mb

PROJECT = {
    "project": "bench",
    "purpose": "Benchmark: every pupil's episodes",
    "unit": "episode",
    "variables": [
        "kind",
        "start",
        "end",
        "duration",
        "establishment",
        "year_group",
        "sen_status",
        "looked_after",
        "setting_type",
        "tier",
        "reason",
        "outcome",
        "hours",
    ],
    "quasi_identifiers": ["start", "establishment", "year_group", "looked_after"],
    "sensitive": ["reason", "sen_status"],
    "period": {"from": "2000-01-01", "to": "2030-12-31"},
    "expires_on": "2030-12-31",
    "k": 10,
    "l": 2,
}


class _PeakMemory:
    """The largest resident memory of a process and all its descendants together, sampled every 50 ms."""

    def __init__(self, pid: int):
        self.pid, self.mb, self._done = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _tree(self, pid: int) -> list[int]:
        children: list[int] = []
        for task in Path(f"/proc/{pid}/task").glob("*"):
            with suppress(OSError):
                children += [int(c) for c in (task / "children").read_text().split()]
        return [pid, *(p for child in children for p in self._tree(child))]

    def _sample(self) -> None:
        while not self._done.wait(0.05):
            total = 0.0
            with suppress(OSError, ValueError):
                for pid in self._tree(self.pid):
                    total += rss_mb(pid)[0]
            self.mb = max(self.mb, total)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def run(ctx: Context) -> list[Result]:
    facts: list[dict[str, Any]] = []

    def once() -> tuple[float, list[float]]:
        with ctx.loaded() as settings:
            ledger = admin.open_ledger(settings)
            admin.sealer(ledger).seal_all()
            admin.add_org(ledger, "research:bench", "researcher", "Benchmark university")
            operator.approve_project(ledger, "research:bench", PROJECT)
            pupils = int(ledger.store.query("SELECT COUNT(*) FROM pupil_keys")[0][0])  # every one of them is read
            ledger.store.close()
            out = Path(tempfile.mkdtemp(prefix="pl-bench-export-"))
            env = dict(os.environ, PUPIL_LEDGER_HOME=str(settings.home))
            env.pop("PUPIL_LEDGER_DATABASE_URL", None)
            if settings.database_url:
                env["PUPIL_LEDGER_DATABASE_URL"] = settings.database_url
            started = time.perf_counter()
            process = subprocess.Popen(
                [sys.executable, "-m", "api.cli", "export", "research", "--project", "bench", str(out / "release")],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            peak = _PeakMemory(process.pid)
            _, stderr_bytes = process.communicate()
            took = time.perf_counter() - started
            peak.stop()
            stderr = stderr_bytes.decode(errors="replace")
            if process.returncode != 0:
                raise RuntimeError(f"export research failed: {stderr[-500:]}")
            manifest = json.loads((out / "release" / "manifest.json").read_text())
            sizes = {p.name: p.stat().st_size for p in (out / "release").iterdir() if p.is_file()}
            steps = next((line for line in stderr.splitlines() if line.startswith("took ")), "")
            facts.append({"manifest": manifest, "rss_mb": peak.mb, "sizes": sizes, "steps": steps, "pupils": pupils})
            subprocess.run(["rm", "-rf", str(out)], check=False)
        return took, []

    seconds, _ = ctx.measure(once)
    manifest, sizes = facts[-1]["manifest"], facts[-1]["sizes"]
    anonymity = manifest["anonymity"]
    note = (
        f"{facts[-1]['pupils']:,} pupils read; released {manifest['rows']:,} rows of {manifest['pupils']:,} pupils, "
        f"{manifest['suppressed_rows']:,} suppressed; k={anonymity['k']}, "
        f"l={anonymity['l']}; levels {', '.join(f'{k}={v}' for k, v in anonymity['levels'].items() if k in anonymity['quasi_identifiers'])}; "
        f"Parquet {sizes.get('rows.parquet', 0) / 1e6:.1f} MB, CSV {sizes.get('rows.csv', 0) / 1e6:.1f} MB; {facts[-1]['steps']}; "
        "RSS: the command and its reader processes together, at their peak"
    )
    return [
        Result(
            "research_export",
            ctx.backend,
            "export research (every pupil, episode rows)",
            "pupils/s",
            int(facts[-1]["pupils"]),
            seconds,
            [],
            max(f["rss_mb"] for f in facts),
            target="1M pupils ≤ 120 s, ≤ 1 GB",
            note=note,
        )
    ]


SCENARIO = Scenario("research_export", run, "pupil-ledger export research of the whole loaded ledger (its own process; peak RSS)")
