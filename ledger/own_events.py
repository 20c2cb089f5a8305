"""Events the ledger signs itself, as dfe:admin (its own organisation, with the ledger's key), and the event body
every submitter's events share: the operator's ``org.*`` and ``research.*`` events are built and signed here."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.core import envelope
from ledger.service import ADMIN_ORG, Ledger, timestamp


def utc_seconds(moment: datetime) -> str:
    """RFC 3339 UTC to the second, as event bodies carry times."""
    return timestamp(moment)[:19] + "Z"


def event_body(
    event_type: str,
    submitter: str,
    subject: dict[str, str],
    data: dict[str, Any],
    occurred_on: date,
    reported_at: datetime,
    event_id: str | None = None,
    corrects: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": event_id or str(uuid.uuid4()),
        "type": event_type,
        "schema_version": 1,
        "submitter": submitter,
        "subject": subject,
        "occurred_on": occurred_on.isoformat(),
        "reported_at": utc_seconds(reported_at),
        "data": data,
    }
    if corrects:
        body["corrects"] = corrects
    return body


def signed(body: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    return envelope.sign(body, key)


def admin_event(ledger: Ledger, event_type: str, org: str, data: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    now = now or ledger.clock()
    body = event_body(event_type, ADMIN_ORG, {"org": org}, data, now.date(), now)
    return signed(body, ledger.secrets.signing_key)
