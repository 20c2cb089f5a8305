"""Area SEND inspections for tests: an inspector reads an area while its organisation's ``inspection.started`` for
that LA is in force (docs/access.md), so tests that read as an inspector start one first."""

from __future__ import annotations

from datetime import date

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.tools import admin

from .conftest import World


def start_inspection(w: World, la: str, start: date, end: date, inspectorate: str = "ofsted", kind: str = "full") -> str:
    """Post ``inspectorate``'s ``inspection.started`` of ``la`` (registering the inspectorate and its key if need be);
    its event id. Notified on ``start``, or today if that is later than today."""
    if not w.ledger.org_state(inspectorate).registered:
        admin.add_org(w.ledger, inspectorate, "inspectorate", inspectorate.upper())
    if inspectorate not in w.keys:
        w.keys[inspectorate] = Ed25519PrivateKey.generate()
        admin.add_key(w.ledger, inspectorate, w.keys[inspectorate].public_key())
    notified = min(start, w.clock.now.date())
    return str(
        w.post(
            "inspection.started",
            inspectorate,
            {"kind": kind, "from": start.isoformat(), "to": end.isoformat()},
            org=la,
            occurred_on=notified,
        ).event_id
    )
