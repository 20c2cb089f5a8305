"""Getting simulated areas into a ledger (``load_area``, ``load_areas``) or into files (``export``).

The areas come from ``ledger.tools.simulate``; ``export`` is ``pupil-ledger simulate``'s, generating and signing
areas in worker processes and joining their part files in plan order.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import shutil
from collections.abc import Callable, Iterable
from datetime import date
from pathlib import Path
from typing import Any

from ledger import dfe, own_events
from ledger.service import ADMIN_ORG, Ledger
from ledger.tools import admin
from ledger.tools.simulate import Area, Org, national_shape, simulate_area, utc_today
from ledger.tools.simulate_calibration import national_plan
from ledger.tools.simulate_ehcp import add_ehcp_journeys


def load_area(ledger: Ledger, area: Area, batch_size: int = 500, on_progress: Callable[[int], None] = lambda n: None) -> None:
    """Register the area's organisations and keys (as dfe:admin), then submit its events in batches."""
    load_areas(ledger, [area], batch_size, on_progress)


def org_setup(ledger: Ledger, orgs: Iterable[Org]) -> list[dict[str, Any]]:
    """Envelopes registering ``orgs`` and their keys, signed by the ledger as dfe:admin."""
    setup = []
    for o in orgs:
        data: dict[str, Any] = {"kind": o.kind, "name": o.name, **o.extra}
        if o.la:
            data["la"] = o.la
        setup.append(own_events.admin_event(ledger, "org.registered", o.org_id, data))
        setup.append(own_events.admin_event(ledger, "org.key_added", o.org_id, admin.key_data(o.key.public_key())))
    return setup


def load_areas(ledger: Ledger, areas: Iterable[Area], batch_size: int = 500, on_progress: Callable[[int], None] = lambda n: None) -> None:
    """Load areas one after another (a national backfill): each area's new organisations, then its events."""
    registered: set[str] = set()
    for area in areas:
        new_orgs = [o for o in area.orgs.values() if o.org_id not in registered]
        ledger.submit_batch(org_setup(ledger, new_orgs))
        registered.update(o.org_id for o in new_orgs)
        assert all(submitter != ADMIN_ORG for submitter, _ in area.events)
        signed = list(area.signed_events())
        for i in range(0, len(signed), batch_size):
            ledger.submit_batch(signed[i : i + batch_size])
            on_progress(len(signed[i : i + batch_size]))


def _export_area(job: tuple[str, int, int, int, date, Path]) -> tuple[list[dict[str, Any]], int]:
    la_code, pupils, index, seed, today, part = job
    area = add_ehcp_journeys(
        simulate_area(pupils, seed, la_code, today, national_shape(pupils, index) if index >= 0 else None), seed, today
    )
    with part.open("w", encoding="utf-8") as f:
        for env in area.signed_events():
            f.write(json.dumps(env, separators=(",", ":")) + "\n")
    return area.orgs_json(), len(area.events)


def export(
    out_dir: Path,
    pupils: int,
    seed: int = 1,
    la_code: str | None = None,
    today: date | None = None,
    workers: int = 1,
    on_progress: Callable[[int], None] = lambda n: None,
) -> tuple[int, int]:
    """Write ``orgs.json`` (with private keys) and ``events.jsonl`` (signed envelopes, each area in date order).

    ``la_code`` None means a national-shaped population over all LAs. Areas are generated and signed in
    ``workers`` processes, each into its own part file, then joined in plan order. Returns (organisations, events).
    """
    dfe.check()  # before writing anything, not in a worker half way through
    today = today or utc_today()
    plan = national_plan(pupils) if la_code is None else [(la_code, pupils)]
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = out_dir / "parts"
    parts.mkdir(exist_ok=True)
    jobs = [
        (code, n, index if la_code is None else -1, seed, today, parts / f"{index:03d}-{code}.jsonl")
        for index, (code, n) in enumerate(plan)
    ]
    orgs: dict[str, dict[str, Any]] = {}
    events = 0
    with multiprocessing.get_context("spawn").Pool(max(1, workers)) if workers > 1 else contextlib.nullcontext() as pool:
        results = pool.imap(_export_area, jobs) if pool is not None else map(_export_area, jobs)
        for area_orgs, count in results:
            orgs.update((o["org"], o) for o in area_orgs)
            events += count
            on_progress(count)
    (out_dir / "orgs.json").write_text(json.dumps(list(orgs.values()), indent=1))
    with (out_dir / "events.jsonl").open("wb") as joined:
        for job in jobs:
            with job[-1].open("rb") as part:
                shutil.copyfileobj(part, joined)
            job[-1].unlink()
    parts.rmdir()
    return len(orgs), events
