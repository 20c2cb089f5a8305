"""Issue 24 over HTTP, on SQLite and PostgreSQL: an EHCP journey posted by the LA, and careless or hostile clients
(bad input, out-of-order steps, another LA's case) get a 4xx naming the JSON path, and nothing is stored."""

from __future__ import annotations

from datetime import date
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from api.app import create_app
from ledger.tools import admin

from .conftest import LA, SCHOOL_A, World, upn

OTHER_LA = "la:802"


def stored(w: World) -> int:
    """Events other than the ledger's own access records (a rejection decided on another organisation's record is
    recorded as a read of the pupil: docs/access.md)."""
    return int(
        w.ledger.store.query("SELECT COUNT(*) FROM ledger_index WHERE type NOT IN ('access.record_viewed', 'access.record_erased')")[0][0]
    )


def probes(w: World) -> int:
    return int(w.ledger.store.query("SELECT COUNT(*) FROM ledger_index WHERE type = 'access.record_viewed'")[0][0])


def client(w: World, org: str, role: str) -> TestClient:
    return TestClient(create_app(w.ledger), headers={"authorization": f"Bearer {w.ledger.issue_token(org, role)}"})


def final(request: str, **more: Any) -> dict[str, Any]:
    return {
        "request_event_id": request,
        "named_setting": SCHOOL_A,
        "primary_need": "SLCN",
        "sections": ["A", "B", "E", "F", "I"],
        "health_provision": False,
        "social_care_provision": False,
        **more,
    }


def test_a_journey_and_what_bad_clients_get(world: World) -> None:
    w = world
    pupil = upn(30)
    w.admit(pupil, occurred_on=date(2026, 6, 1))
    admin.add_org(w.ledger, OTHER_LA, "la", "Another LA")
    w.keys[OTHER_LA] = Ed25519PrivateKey.generate()
    admin.add_key(w.ledger, OTHER_LA, w.keys[OTHER_LA].public_key())
    la = client(w, LA, "la")

    def post(event_type: str, data: dict[str, Any], on: date, submitter: str = LA, via: TestClient | None = None) -> Any:
        body = w.event(event_type, submitter, data, upn=pupil, occurred_on=on)
        return (via or la).post("/events", json=w.sign(body))

    requested = post("ehcp.assessment_requested", {"la": LA, "requested_by": "parent"}, date(2026, 6, 8))
    assert requested.status_code == 201, requested.text
    request = requested.json()["event_id"]
    before = stored(w)
    for event_type, data, on, code, path in [
        ("ehcp.draft_issued", {"request_event_id": request}, date(2026, 7, 1), "no_agreed_assessment", "$.payload.data.request_event_id"),
        (
            "ehcp.assessment_decided",
            {"request_event_id": request, "decision": "yes"},
            date(2026, 7, 1),
            "unknown_code",
            "$.payload.data.decision",
        ),
        ("ehcp.assessment_decided", {"request_event_id": request}, date(2026, 7, 1), "required", "$.payload.data.decision"),
        ("ehcp.annual_review_held", {"outcome": "maintain"}, date(2026, 7, 1), "no_plan", "$.payload"),
        ("ehcp.final_issued", final(request, primary_need="dyslexia"), date(2026, 9, 1), "unknown_code", "$.payload.data.primary_need"),
        ("ehcp.final_issued", final(request), date(2026, 9, 1), "no_agreed_assessment", "$.payload.data.request_event_id"),
    ]:
        response = post(event_type, data, on)
        assert response.status_code == 422, (event_type, response.text)
        assert (response.json()["errors"][0]["code"], response.json()["errors"][0]["path"]) == (code, path), response.text
    other = client(w, OTHER_LA, "la")
    looked = probes(w)
    stolen = post("ehcp.assessment_decided", {"request_event_id": request, "decision": "refuse"}, date(2026, 7, 1), OTHER_LA, other)
    assert stolen.status_code == 403 and stolen.json()["errors"][0]["code"] == "not_owner"
    assert stored(w) == before  # nothing of the refused posts is stored
    assert probes(w) == looked + 1  # another LA's refusal about this pupil's case is recorded as a read

    late = post("ehcp.assessment_decided", {"request_event_id": request, "decision": "agree"}, date(2026, 7, 27))
    assert late.status_code == 201 and "late_assessment_decision" in [f["code"] for f in late.json()["flags"]]
    assert post("ehcp.draft_issued", {"request_event_id": request}, date(2026, 9, 14)).status_code == 201
    # a batch is all or nothing: a good final and a bad cessation store neither
    batch = [
        w.sign(w.event("ehcp.final_issued", LA, final(request), upn=pupil, occurred_on=date(2026, 10, 1))),
        w.sign(w.event("ehcp.ceased", LA, {"reason": "bored"}, upn=pupil, occurred_on=date(2026, 10, 2))),
    ]
    before = stored(w)
    refused = la.post("/batches", json={"envelopes": batch})
    assert refused.status_code == 422
    assert [(e["code"], e["path"]) for e in refused.json()["errors"]] == [("unknown_code", "$.envelopes[1].payload.data.reason")]
    assert stored(w) == before
    accepted = la.post("/batches", json={"envelopes": batch[:1]})
    assert accepted.status_code == 201
    assert accepted.json()["receipts"][0]["flags"] == []  # 115 days after the request: within 20 weeks, and it names a setting
