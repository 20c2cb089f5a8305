"""Principals (ledger tokens and OIDC JWTs), oversight of the access log, abuse resistance, and the pure
policy's relationship rules (docs/access.md)."""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.responses import Response
from fastapi.testclient import TestClient

from api import security
from api.app import create_app
from ledger.core import policy
from ledger.core.errors import LedgerError
from ledger.core.policy import Link, OrgFacts, Principal, Standing
from ledger.core.rules import Record

from .conftest import LA, SCHOOL_A, SCHOOL_B, UPN, World, upn
from .inspection_support import start_inspection
from .processes import run_cli


def client_for(world: World, token: str, **settings: Any) -> TestClient:
    if settings:
        world.ledger.settings = dataclasses.replace(world.ledger.settings, **settings)
    return TestClient(create_app(world.ledger), headers={"authorization": f"Bearer {token}"}, raise_server_exceptions=False)


# -- principals ------------------------------------------------------------------------------------


def test_tokens_are_bound_to_a_fitting_organisation_and_an_inspectors_scope_to_its_inspections(world: World) -> None:
    ledger = world.ledger
    for org, role, scope, code in (
        (LA, "school", (), "role_org_mismatch"),
        (SCHOOL_A, "wizard", (), "unknown_role"),
        ("ofsted", "inspector", ("trust:TR00001",), "scope"),
        (SCHOOL_A, "school", (LA,), "scope"),
        ("urn:999999", "school", (), "org_unknown"),
    ):
        with pytest.raises(LedgerError) as exc:
            ledger.issue_token(org, role, scope=scope)
        assert exc.value.problems[0].code == code, (org, role, scope)
    start_inspection(world, LA, date(2026, 10, 1), date(2026, 10, 30))
    token = ledger.issue_token("ofsted", "inspector", scope=[LA, SCHOOL_B, "la:802"])  # a token's scope narrows what Ofsted inspects
    assert ledger.authenticate(token) == Principal("ofsted", "inspector", token.split("_")[1], frozenset({LA, SCHOOL_B}))
    assert ledger.authenticate(ledger.issue_token("ofsted", "inspector")).scope == frozenset({LA})  # type: ignore[union-attr]
    stored = ledger.store.query("SELECT token_hash FROM ledger_tokens WHERE token_id = ?", (token.split("_")[1],))[0][0]
    assert token not in stored and len(stored) == 64  # only the SHA-256 is kept


def test_cli_issues_an_inspector_token_with_its_scope(world: World) -> None:
    start_inspection(world, LA, date(2026, 10, 1), date(2026, 10, 30))
    token = run_cli(world.ledger.settings, "tokens", "issue", "ofsted", "--role", "inspector", "--scope", LA, "--days", "30").stdout.strip()
    assert world.ledger.authenticate(token).scope == frozenset({LA})
    refused = run_cli(world.ledger.settings, "tokens", "issue", LA, "--role", "la", "--scope", LA, check=False)
    assert refused.returncode == 1 and "scope" in refused.stderr


@pytest.fixture
def jwks(tmp_path: Path) -> tuple[Ed25519PrivateKey, Path]:
    key = Ed25519PrivateKey.generate()
    public = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key()))
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [{**public, "kid": "idp-1", "use": "sig", "alg": "EdDSA"}]}))
    return key, path


def test_oidc_jwts_name_principals_when_an_identity_provider_is_configured(world: World, jwks: tuple[Ed25519PrivateKey, Path]) -> None:
    key, path = jwks
    world.admit(UPN)
    issuer = "https://idp.example.gov.uk"
    now = int(time.time())

    def token(signer: Ed25519PrivateKey = key, **claims: Any) -> str:
        body = {"iss": issuer, "aud": "pupil-ledger", "exp": now + 300, "org": SCHOOL_A, "role": "school", "sub": "user-17", **claims}
        return jwt.encode({k: v for k, v in body.items() if v is not None}, signer, algorithm="EdDSA", headers={"kid": "idp-1"})

    good = client_for(world, token(), oidc_jwks=str(path), oidc_issuer=issuer)
    response = good.get(f"/pupils/{UPN}/history")
    assert response.status_code == 200
    view = world.ledger.get_event(response.json()["access_event_id"])["envelope"]
    assert json.loads(__import__("base64").b64decode(view["payload"]))["data"]["principal"] == {
        "org": SCHOOL_A,
        "role": "school",
        "token_id": "jwt:user-17",
    }
    for bad in (
        token(exp=now - 10),
        token(aud="someone-else"),
        token(iss="https://evil.example"),
        token(signer=Ed25519PrivateKey.generate()),
        token(role="inspector", org="ofsted"),
        token(org="urn:999999"),
        token(role="school", org=LA),
        token(org=None),
    ):
        assert client_for(world, bad).get(f"/pupils/{UPN}/history").status_code == 401
    world.ledger.settings = dataclasses.replace(world.ledger.settings, oidc_jwks="")
    assert client_for(world, token()).get(f"/pupils/{UPN}/history").status_code == 401  # not configured: JWTs are not accepted


# -- the access log --------------------------------------------------------------------------------


def test_access_log_for_oversight_and_for_a_subject_access_request(world: World) -> None:
    world.admit(UPN)
    school_token, other_token = world.ledger.issue_token(SCHOOL_A, "school"), world.ledger.issue_token(SCHOOL_B, "school")
    school = client_for(world, school_token)
    for reference in ("CASE-1", "CASE-2"):
        assert school.get(f"/pupils/{UPN}/history", params={"reference": reference}).status_code == 200
    assert school.get(f"/pupils/{UPN}/history", params={"reference": "not a reference"}).status_code == 422
    own = school.get("/access-log", params={"org": SCHOOL_A}).json()["views"]
    assert [(v["principal"]["org"], v["purpose"], v.get("reference"), v["basis"]) for v in own] == [
        (SCHOOL_A, "direct_education", reference, f"on_roll {SCHOOL_A} current, self-asserted: from 2026-10-05")
        for reference in ("CASE-1", "CASE-2")
    ]
    assert client_for(world, other_token).get("/access-log", params={"org": SCHOOL_A}).status_code == 403
    assert client_for(world, other_token).get("/access-log").status_code == 403
    researcher = world.ledger.issue_token(SCHOOL_B, "researcher")
    assert client_for(world, researcher).get("/access-log", params={"org": SCHOOL_B}).status_code == 403
    # a subject access request, answered by the school: every view so far, and this look is itself recorded
    sar = school.get("/access-log", params={"upn": UPN, "purpose": "subject_access_request"}).json()
    assert [v["purpose"] for v in sar["views"]] == ["direct_education", "direct_education", "subject_access_request"]
    assert UPN not in json.dumps(sar)  # the access log names the pupil by audit pseudonym only
    everything = client_for(world, world.admin_token).get("/access-log", params={"limit": 2}).json()
    assert len(everything["views"]) == 2 and everything["next_after"] == everything["views"][-1]["sequence"]
    rest = client_for(world, world.admin_token).get("/access-log", params={"after": everything["next_after"]}).json()
    assert len(rest["views"]) == 1 and rest["next_after"] is None


# -- abuse resistance ------------------------------------------------------------------------------


def test_per_token_rate_limit_answers_429_with_retry_after(world: World) -> None:
    token = world.ledger.issue_token(SCHOOL_A, "school")
    limited = client_for(world, token, rate_limit_per_second=0.5, rate_limit_burst=3)
    statuses = [limited.get("/events/00000000-0000-4000-8000-000000000000").status_code for _ in range(4)]
    assert statuses == [404, 404, 404, 429]
    refused = limited.get("/events/00000000-0000-4000-8000-000000000000")
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert refused.json()["errors"][0]["code"] == "rate_limited"
    other = TestClient(limited.app, headers={"authorization": f"Bearer {world.ledger.issue_token(SCHOOL_B, 'school')}"})
    assert other.get("/events/00000000-0000-4000-8000-000000000000").status_code == 404  # another token has its own bucket
    assert limited.get("/healthz").status_code == 200  # health checks are not limited


def test_guessing_tokens_is_throttled_per_client(world: World) -> None:
    client = client_for(world, "unused")
    statuses = [client.get("/events/x", headers={"authorization": f"Bearer plt_{n:08x}_guess"}).status_code for n in range(22)]
    assert statuses == [401] * 20 + [429] * 2  # each guess is a new token, but the client's failures add up
    good = world.ledger.issue_token(SCHOOL_A, "school")
    assert (
        client.get("/events/x", headers={"authorization": f"Bearer {good}"}).status_code == 404
    )  # never refused for the guesses (tests/test_rate_limits.py)


def test_security_headers(world: World) -> None:
    world.admit(UPN)
    client = client_for(world, world.ledger.issue_token(SCHOOL_A, "school"))
    read = client.get(f"/pupils/{UPN}/history")
    assert read.headers["x-content-type-options"] == "nosniff" and read.headers["x-frame-options"] == "DENY"
    assert read.headers["content-security-policy"].startswith("default-src 'none'") and read.headers["cache-control"] == "no-store"
    assert read.headers["referrer-policy"] == "no-referrer" and "max-age" in read.headers["strict-transport-security"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "script-src" in docs.headers["content-security-policy"]


def test_security_headers_on_refusals_and_never_over_a_routes_own(world: World) -> None:
    app = create_app(world.ledger)

    @app.get("/access-log/own-headers")
    async def own_headers() -> Response:
        return Response("x", headers={"Cache-Control": "max-age=5", "X-Frame-Options": "SAMEORIGIN"})

    client = TestClient(app, headers={"authorization": "Bearer plt_00000000_guess"})
    refused = client.get("/events/x")
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert refused.headers["x-content-type-options"] == "nosniff" and refused.headers["cache-control"] == "no-store"
    own = client.get("/access-log/own-headers")
    assert own.headers["cache-control"] == "max-age=5" and own.headers["x-frame-options"] == "SAMEORIGIN"
    assert own.headers["referrer-policy"] == "no-referrer" and len(own.headers.get_list("cache-control")) == 1
    world.ledger.settings = dataclasses.replace(world.ledger.settings, rate_limit_per_second=0.5, rate_limit_burst=1)
    limited = TestClient(create_app(world.ledger))
    assert limited.get("/log/vkey").status_code == 200
    throttled = limited.get("/log/vkey")
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "2"
    assert throttled.headers["content-security-policy"] == security.API_CSP and "cache-control" not in throttled.headers


def test_unexpected_failures_carry_no_stack_trace_or_internal_detail(world: World) -> None:
    token = world.ledger.issue_token(SCHOOL_A, "school")
    client = client_for(world, token)
    world.ledger.store.execute("DROP TABLE ledger_tokens")  # a real failure inside the request
    response = client.get("/events/00000000-0000-4000-8000-000000000000")
    assert response.status_code == 500
    body = response.text
    assert response.json()["errors"][0]["code"] == "internal_error"
    assert "Traceback" not in body and "ledger_tokens" not in body and "File " not in body
    assert response.headers["x-frame-options"] == "DENY" and response.headers["cache-control"] == "no-store"  # the guard's headers too
    world.ledger.store.execute("DROP TABLE ledger_index")
    health = client.get("/healthz")
    assert health.status_code == 503 and "ledger_index" not in health.text


# -- the pure policy -------------------------------------------------------------------------------


def record(event_type: str, submitter: str, on: date, data: dict[str, Any], event_id: str) -> Record:
    return Record(event_id, event_type, submitter, UPN, on, datetime(2026, 10, 5, tzinfo=UTC), data)


def test_residence_from_home_education_ends_when_the_pupil_next_registers() -> None:
    records = [
        record(
            "pupil.registered",
            SCHOOL_A,
            date(2025, 9, 3),
            {"school": SCHOOL_A, "enrolment_status": "C", "year_group": "9", "sen_status": "N", "looked_after": False},
            "a",
        ),
        record("pupil.deregistered", SCHOOL_A, date(2026, 1, 9), {"school": SCHOOL_A, "ground": "ehe", "destination": "ehe"}, "b"),
        record("pupil.home_education_notified", LA, date(2026, 1, 9), {"la": LA}, "c"),
        record(
            "pupil.registered",
            SCHOOL_B,
            date(2026, 6, 1),
            {"school": SCHOOL_B, "enrolment_status": "C", "year_group": "9", "sen_status": "N", "looked_after": False},
            "d",
        ),
    ]
    links = policy.pupil_links(records, {SCHOOL_A: OrgFacts(LA), SCHOOL_B: OrgFacts("la:802", "trust:TR00001")})
    resident = [lk for lk in links if lk.kind is Link.RESIDENT]
    assert [(lk.org, lk.start, lk.end) for lk in resident] == [(LA, date(2026, 1, 9), date(2026, 6, 1))]
    la = Principal(LA, "la")
    windows = policy.Windows(after_end=30)
    assert policy.relationship(la, links, date(2026, 6, 20), windows)[0] is Standing.RECENT
    assert policy.relationship(la, links, date(2026, 7, 20), windows)[0] is Standing.LAPSED
    assert policy.relationship(Principal("trust:TR00001", "trust"), links, date(2026, 7, 20), windows)[0] is Standing.CURRENT
    assert (
        policy.relationship(Principal("la:802", "la"), links, date(2026, 7, 20), windows)[0] is Standing.NONE
    )  # an academy is not maintained


@pytest.mark.parametrize(
    ("role", "org", "level", "target", "facts", "allowed"),
    [
        ("admin", "dfe:admin", "national", None, None, True),
        ("regions", "dfe:regions", "la", LA, None, True),
        ("researcher", LA, "la", LA, None, False),
        ("la", LA, "la", LA, None, True),
        ("la", LA, "school", SCHOOL_A, OrgFacts(LA), True),
        ("la", LA, "school", "urn:100007", OrgFacts("la:802"), False),
        ("la", LA, "national", None, None, True),
        ("researcher", LA, "national", None, None, True),
        ("trust", "trust:TR00001", "school", "urn:100007", OrgFacts("la:802", "trust:TR00001"), True),
        ("trust", "trust:TR00001", "school", SCHOOL_A, OrgFacts(LA), False),
        ("school", SCHOOL_A, "school", SCHOOL_A, None, True),
        ("school", SCHOOL_A, "school", SCHOOL_B, OrgFacts(LA), False),
        ("inspector", "ofsted", "school", SCHOOL_A, OrgFacts(LA), True),
        ("inspector", "ofsted", "school", "urn:100007", OrgFacts("la:802"), False),
    ],
)
def test_aggregate_scopes(role: str, org: str, level: str, target: str | None, facts: OrgFacts | None, allowed: bool) -> None:
    principal = Principal(org, role, scope=frozenset({LA}) if role == "inspector" else frozenset())
    assert policy.aggregate_scope_allowed(principal, level, target, facts) is allowed


def test_window_edges_are_inclusive_of_the_last_day() -> None:
    link = policy.PupilLink(Link.ON_ROLL, SCHOOL_A, date(2026, 1, 5), date(2026, 9, 1))
    assert policy.standing_of(link, date(2026, 8, 31), 30) is Standing.CURRENT
    assert policy.standing_of(link, date(2026, 10, 1), 30) is Standing.RECENT
    assert policy.standing_of(link, date(2026, 10, 2), 30) is Standing.LAPSED
    assert policy.standing_of(policy.PupilLink(Link.ON_ROLL, SCHOOL_A, date(2026, 1, 5), None), date(2026, 1, 4), 30) is Standing.NONE
    assert timedelta(days=30) == date(2026, 10, 1) - date(2026, 9, 1)


# -- no timing oracle, and the oversight log by its index (issue 18, items 14 and 17) -------------------


def test_a_refusal_takes_as_long_for_an_unknown_pupil_as_for_a_known_one(world: World) -> None:
    """Medians over a few hundred interleaved refusals: a known pupil's history (three organisations named) is read
    and folded, an unknown one's is not, yet neither answer comes sooner than the other."""
    from ledger.service import Reader

    known = upn(1)
    world.admit(known, SCHOOL_B, occurred_on=date(2026, 9, 3))
    world.post(
        "pupil.ap_placement_started",
        LA,
        {
            "commissioner": LA,
            "setting": "ukprn:10000047",
            "setting_type": "UKPRN",
            "tier": 2,
            "reason": "BEHAVIOUR",
            "planned_end": "2026-12-18",
            "hours_per_week": 15,
            "dual_registered": False,
        },
        upn=known,
        occurred_on=date(2026, 9, 10),
    )
    world.post(
        "pupil.excluded",
        SCHOOL_B,
        {"school": SCHOOL_B, "kind": "SUSP", "sessions": 2, "reasons": ["PP"]},
        upn=known,
        occurred_on=date(2026, 9, 20),
    )
    reader = Reader(Principal(SCHOOL_A, "school"))

    def refusal(upn: str) -> float:
        started = time.perf_counter()
        with pytest.raises(LedgerError) as exc:
            world.ledger.pupil_history(upn, reader=reader)
        assert exc.value.problems[0].code == "not_related"
        return time.perf_counter() - started

    for n in range(20):  # warm up both paths
        refusal(known)
        refusal(upn(900 + n))
    known_times, unknown_times = [], []
    for n in range(300):
        known_times.append(refusal(known))
        unknown_times.append(refusal(upn(1000 + n)))  # a new one each time: nothing about it is cached
    gap = abs(statistics.median(known_times) - statistics.median(unknown_times))
    assert gap < 0.0003, f"medians differ by {gap * 1000:.2f} ms"


def test_an_organisations_views_are_found_by_their_index_and_paged_exactly(world: World) -> None:
    world.admit(UPN)
    school = client_for(world, world.ledger.issue_token(SCHOOL_A, "school"))
    la = client_for(world, world.ledger.issue_token(LA, "la"))
    mine = []
    for n in range(3):  # the school's views, each among many by another organisation
        for _ in range(12):
            assert la.get(f"/pupils/{UPN}/history").status_code == 200
        mine.append(school.get(f"/pupils/{UPN}/history", params={"reference": f"CASE-{n}"}).json()["access_event_id"])
    first = school.get("/access-log", params={"org": SCHOOL_A, "limit": 2}).json()
    assert [v["event_id"] for v in first["views"]] == mine[:2] and first["next_after"] is not None
    rest = school.get("/access-log", params={"org": SCHOOL_A, "limit": 2, "after": first["next_after"]}).json()
    assert [v["event_id"] for v in rest["views"]] == mine[2:] and rest["next_after"] is None
    indexed = world.ledger.store.query("SELECT COUNT(*) FROM ledger_access WHERE viewer_org = ?", (SCHOOL_A,))[0][0]
    assert int(indexed) == 3
    operator = client_for(world, world.admin_token)
    assert len(operator.get("/access-log", params={"limit": 1000}).json()["views"]) == 3 + 36
