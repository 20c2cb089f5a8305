"""The HTTP contract (design.md 3.4) through the ASGI app: statuses, error format, limits, tokens."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api import security
from api.app import create_app

from .conftest import SCHOOL_A, SCHOOL_B, UPN, World

REGISTERED = {"school": SCHOOL_A, "enrolment_status": "C", "year_group": "9", "sen_status": "N", "looked_after": False}


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    with TestClient(create_app(world.ledger)) as c:
        c.headers["authorization"] = f"Bearer {world.ledger.issue_token(SCHOOL_A, 'school')}"
        yield c


def post(client: TestClient, path: str, body: object) -> object:
    return client.post(path, content=body if isinstance(body, bytes) else json.dumps(body), headers={"content-type": "application/json"})


def assert_error(response, status: int, code: str, path: str | None = None) -> None:
    assert response.status_code == status, response.text
    errors = response.json()["errors"]
    assert code in [e["code"] for e in errors], errors
    assert all({"code", "path", "message"} == set(e) for e in errors)
    if path:
        assert path in [e["path"] for e in errors]


def test_submit_replay_conflict(client: TestClient, world: World) -> None:
    body = world.event("pupil.registered", SCHOOL_A, REGISTERED, upn=UPN)
    first = post(client, "/events", world.sign(body))
    assert first.status_code == 201 and first.json()["status"] == "created"
    again = post(client, "/events", world.sign(body))
    assert again.status_code == 200 and again.json()["sequence"] == first.json()["sequence"]
    assert_error(post(client, "/events", world.sign(dict(body, occurred_on="2026-10-01"))), 409, "event_id_conflict", "$.payload.event_id")
    intruder = TestClient(client.app, headers={"authorization": f"Bearer {world.ledger.issue_token(SCHOOL_B, 'school')}"})
    assert_error(post(intruder, "/events", world.sign(body)), 403, "submitter_mismatch")  # a replay too needs the submitter's token
    event = client.get(f"/events/{body['event_id']}")
    assert event.status_code == 200 and event.json()["envelope"] == world.sign(body)


def test_submit_event_is_served_inside_the_guard_and_its_catch_all(world: World) -> None:
    """POST /events skips FastAPI's routing (api.routes.submission.DirectRoute), not the security headers, the rate limits or
    the catch-all that answers an unexpected failure without its details."""
    app = create_app(world.ledger)
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["authorization"] = f"Bearer {world.ledger.issue_token(SCHOOL_A, 'school')}"
        created = post(client, "/events", world.sign(world.event("pupil.registered", SCHOOL_A, REGISTERED, upn=UPN)))
        assert created.status_code == 201 and created.headers["x-content-type-options"] == "nosniff"
        assert created.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
        unauthenticated = client.post("/events", content=b"{}", headers={"authorization": "Bearer nope"})
        assert_error(unauthenticated, 401, "token_invalid", "header:Authorization")
        assert unauthenticated.headers["www-authenticate"] == "Bearer" and unauthenticated.headers["x-frame-options"] == "DENY"
        assert client.get("/events").status_code == 405  # other methods still go through FastAPI's routing
        world.ledger.store.execute("DROP TABLE ledger_index")  # a fault, not an outage: the group commit fails for every caller
        failed = post(client, "/events", world.sign(world.event("pupil.registered", SCHOOL_A, REGISTERED, upn=UPN)))
        assert_error(failed, 500, "internal_error")
        assert "Traceback" not in failed.text
        assert failed.headers["x-content-type-options"] == "nosniff" and failed.headers["content-security-policy"] == security.API_CSP


def test_bad_input_statuses(client: TestClient, world: World) -> None:
    seq = world.ledger.store.max_sequence()
    assert_error(post(client, "/events", b"{not json"), 400, "malformed_json")
    assert_error(post(client, "/events", b""), 400, "empty_body")
    assert_error(post(client, "/events", {"payloadType": "x"}), 400, "envelope_missing_field")
    assert_error(
        post(client, "/events", world.sign(world.event("pupil.registered", SCHOOL_A, REGISTERED, upn="Z801200001001"))),
        422,
        "upn_check_letter",
        "$.payload.subject.upn",
    )
    assert_error(
        post(client, "/events", world.sign(world.event("pupil.registered", SCHOOL_A, REGISTERED, upn=UPN), signer=SCHOOL_B)),
        403,
        "key_not_submitters",
    )
    assert_error(
        post(client, "/events", world.sign(world.event("pupil.registered", SCHOOL_B, dict(REGISTERED, school=SCHOOL_B), upn=UPN))),
        403,
        "submitter_mismatch",
    )
    body = world.event("pupil.registered", SCHOOL_A, REGISTERED, upn=UPN)
    noncanonical = world.sign(body)
    raw = json.dumps(body, indent=1).encode()
    noncanonical["payload"] = __import__("base64").b64encode(raw).decode()
    assert_error(post(client, "/events", noncanonical), 400, "payload_not_canonical", "$.payload")
    unsigned = dict(world.sign(body), signatures=[])
    assert_error(post(client, "/events", unsigned), 403, "signature_missing", "$.signatures")
    assert_error(
        post(client, "/events", world.sign(world.event("pupil.registered", SCHOOL_A, dict(REGISTERED, sen_status="Z"), upn=UPN))),
        422,
        "unknown_code",
        "$.payload.data.sen_status",
    )
    impossible = world.event("pupil.registered", SCHOOL_A, REGISTERED, upn=UPN)
    impossible["occurred_on"] = "2026-02-29"
    assert_error(post(client, "/events", world.sign(impossible)), 422, "impossible_date", "$.payload.occurred_on")
    big = world.sign(world.event("pupil.registered", SCHOOL_A, REGISTERED, upn=UPN))
    big["payload"] = "A" * (world.ledger.settings.max_event_bytes + 10)
    assert_error(post(client, "/events", big), 413, "body_too_large")
    assert_error(post(client, "/batches", {"envelopes": "x"}), 400, "batch_shape")
    assert world.ledger.store.max_sequence() == seq


def test_batch_over_http(client: TestClient, world: World) -> None:
    envs = [world.sign(world.event("pupil.registered", SCHOOL_A, REGISTERED, upn=u)) for u in ("H801200001001", "Z801200001001")]
    assert_error(post(client, "/batches", {"envelopes": envs}), 422, "upn_check_letter", "$.envelopes[1].payload.subject.upn")
    response = post(client, "/batches", {"envelopes": envs[:1]})
    assert response.status_code == 201 and len(response.json()["receipts"]) == 1


def test_tokens_and_read_access(client: TestClient, world: World) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    anonymous = TestClient(client.app)
    assert_error(anonymous.post("/events", content=b"{}"), 401, "token_missing")
    for path in ("/events", "/batches"):  # submitEvent reads its bearer itself: the same answers as the dependency's
        assert_error(anonymous.post(path, content=b"{}", headers={"authorization": "Basic dXNlcjpwYXNz"}), 401, "token_missing")
        assert_error(anonymous.post(path, content=b"{}", headers={"authorization": "bearer  "}), 401, "token_missing")
        assert_error(anonymous.post(path, content=b"{}", headers={"authorization": "Bearer plt_00000000_nope"}), 401, "token_invalid")
    assert_error(anonymous.get("/events/x", headers={"authorization": "Bearer plt_00000000_nope"}), 401, "token_invalid")
    post(client, "/events", world.sign(world.event("pupil.registered", SCHOOL_A, REGISTERED, upn=UPN)))
    history = client.get(f"/pupils/{UPN}/history", params={"as_of": "2026-10-05"})
    assert history.status_code == 200 and history.json()["on_roll"][0]["school"] == SCHOOL_A
    other = TestClient(client.app, headers={"authorization": f"Bearer {world.ledger.issue_token(SCHOOL_B, 'school')}"})
    assert_error(other.get(f"/pupils/{UPN}/history"), 403, "not_related")  # another school's pupil (docs/access.md)
    operator = TestClient(client.app, headers={"authorization": f"Bearer {world.admin_token}"})
    assert_error(operator.get(f"/pupils/{UPN}/history"), 400, "purpose_required")
    assert operator.get(f"/pupils/{UPN}/history", params={"purpose": "data_correction"}).status_code == 200
    assert_error(
        operator.get(f"/pupils/{UPN}/history", params={"known_at": "2026-10-05T10:00:00", "purpose": "data_correction"}),
        422,
        "known_at_zone",
    )
    assert_error(operator.get(f"/pupils/{UPN}/history", params={"as_of": "2026-02-30", "purpose": "data_correction"}), 422, "invalid_query")


def test_openapi_has_the_fixed_operation_ids(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    ids = {op["operationId"] for path in spec["paths"].values() for op in path.values()}
    assert {"submitEvent", "submitBatch", "getEvent", "pupilHistory", "healthz"} <= ids
    assert spec["paths"]["/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]["required"] == [
        "payloadType",
        "payload",
        "signatures",
    ]
