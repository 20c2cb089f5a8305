"""Simulated EHCP journeys, redress and area SEND inspections for ``simulate`` and ``demo`` (issue 24), beside the
movement generator of ``ledger/simulate.py``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from . import admin

if TYPE_CHECKING:
    from .service import Ledger, Receipt
    from .simulate import Area


def inspection_started(la: str, now: datetime, inspectorate: str = "ofsted") -> dict[str, Any]:
    """An area SEND inspection of ``la`` by ``inspectorate``, begun a fortnight ago and open for two months more: its
    inspectors read the area's pupils meanwhile (docs/access.md)."""
    start = now.date() - timedelta(days=14)
    data = {"kind": "full", "from": start.isoformat(), "to": (now.date() + timedelta(days=60)).isoformat()}
    return admin.event_body("inspection.started", inspectorate, {"org": la}, data, start, now)


def start_demo_inspection(ledger: Ledger, area: Area) -> Receipt:
    """Ofsted's inspection of the simulated area's LA, signed with the simulation's Ofsted key."""
    return ledger.submit(admin.signed(inspection_started(area.la, ledger.clock()), area.orgs["ofsted"].key))
