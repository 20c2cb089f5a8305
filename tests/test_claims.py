"""Rule outcomes that depend on other organisations' records are reads, limited; unusual claims reach the operator
(issue 18, items 3 and 5(c); docs/access.md, "Rule outcomes are reads" and "Unusual claims")."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from ledger.service import ProbeBudget

from .conftest import LA, SCHOOL_A, SCHOOL_B, World, upn
from .processes import run_cli

MAIN = {"enrolment_status": "C", "year_group": "9", "sen_status": "N", "looked_after": False}


def main_registration(w: World, school: str, pupil: str) -> dict[str, Any]:
    return w.sign(w.event("pupil.registered", school, {**MAIN, "school": school}, upn=pupil))


def views_of(w: World, pupil: str) -> list[dict[str, Any]]:
    operator = TestClient(create_app(w.ledger), headers={"authorization": f"Bearer {w.admin_token}"})
    response = operator.get("/access-log", params={"upn": pupil, "purpose": "subject_access_request"})
    return [v for v in response.json()["views"] if v["principal"]["org"] != "dfe:admin"]


@pytest.fixture
def school_a(world: World) -> TestClient:
    return TestClient(create_app(world.ledger), headers={"authorization": f"Bearer {world.ledger.issue_token(SCHOOL_A, 'school')}"})


def test_a_rejection_that_depends_on_another_schools_record_is_recorded_as_a_read_of_the_pupil(world: World, school_a: TestClient) -> None:
    pupil, other = upn(1), upn(2)
    world.admit(pupil, SCHOOL_B, occurred_on=date(2026, 9, 3))
    world.admit(other, SCHOOL_B, occurred_on=date(2026, 9, 3))
    events = world.ledger.store.count_events()
    single = school_a.post("/events", json=main_registration(world, SCHOOL_A, pupil))
    assert single.status_code == 422 and single.json()["errors"][0]["code"] == "second_main_registration"
    batch = school_a.post("/batches", json={"envelopes": [main_registration(world, SCHOOL_A, other)]})
    assert batch.status_code == 422 and batch.json()["errors"][0]["code"] == "second_main_registration"
    assert world.ledger.store.count_events() == events + 2  # the two reads, nothing else
    for who, endpoint in ((pupil, "submitEvent"), (other, "submitBatch")):
        [view] = views_of(world, who)
        assert (view["principal"]["org"], view["principal"]["role"], view["purpose"], view["endpoint"], view["rejected"]) == (
            SCHOOL_A,
            "school",
            "rejected_submission",
            endpoint,
            "second_main_registration",
        )
    oversight = school_a.get("/access-log", params={"org": SCHOOL_A}).json()["views"]
    assert [v["purpose"] for v in oversight] == ["rejected_submission", "rejected_submission"]


def test_an_organisation_that_has_probed_too_much_is_refused_about_pupils_it_has_no_record_of(world: World, school_a: TestClient) -> None:
    """Beyond its budget, an organisation's submissions about pupils it has posted nothing about are refused before
    they are judged (429, whether or not anyone else knows the pupil): the refusal itself reveals nothing."""
    world.ledger.probes = ProbeBudget(burst=2, refill_seconds=3600)
    elsewhere = [upn(n) for n in range(1, 4)]
    for pupil in elsewhere:
        world.admit(pupil, SCHOOL_B, occurred_on=date(2026, 9, 3))
    own = upn(10)
    world.admit(own, SCHOOL_A, occurred_on=date(2026, 9, 3))
    for pupil in elsewhere[:2]:
        assert school_a.post("/events", json=main_registration(world, SCHOOL_A, pupil)).status_code == 422
    for pupil in (elsewhere[2], upn(20)):  # on roll elsewhere, and unknown to the ledger: the same answer
        refused = school_a.post("/events", json=main_registration(world, SCHOOL_A, pupil))
        assert refused.status_code == 429 and refused.json()["errors"][0]["code"] == "rule_probe_limited"
        assert 3500 <= int(refused.headers["retry-after"]) <= 3600
    assert views_of(world, elsewhere[2]) == []  # refused before anything about it was revealed
    leave = world.sign(
        world.event("pupil.deregistered", SCHOOL_A, {"school": SCHOOL_A, "ground": "moved_away", "destination": "moved_away"}, upn=own)
    )
    assert school_a.post("/events", json=leave).status_code == 201  # its own pupils: as ever
    school_b = TestClient(create_app(world.ledger), headers={"authorization": f"Bearer {world.ledger.issue_token(SCHOOL_B, 'school')}"})
    assert school_b.post("/events", json=main_registration(world, SCHOOL_B, upn(21))).status_code == 201  # another organisation: as ever


def test_the_operator_sees_organisations_by_their_unusual_claims_and_probes(world: World, school_a: TestClient) -> None:
    for n in range(1, 4):
        world.admit(upn(n), SCHOOL_B, occurred_on=date(2026, 9, 3))
        assert school_a.post("/events", json=main_registration(world, SCHOOL_A, upn(n))).status_code == 422
    world.clock.advance(hours=1)
    notice = world.post("pupil.home_education_notified", LA, {"la": LA}, upn=upn(9), occurred_on=date(2026, 10, 1))
    assert [f["code"] for f in notice.flags] == ["claim_new_area"]
    operator = TestClient(create_app(world.ledger), headers={"authorization": f"Bearer {world.admin_token}"})
    report = operator.get("/operator/claims", params={"since": "2026-10-01", "until": "2026-10-05"})
    assert report.status_code == 200, report.text
    assert [(o["org"], o["total"], o["codes"]) for o in report.json()["organisations"]] == [
        (SCHOOL_A, 3, {"second_main_registration": 3}),
        (LA, 1, {"claim_new_area": 1}),
    ]
    assert report.json()["organisations"][1]["latest"].startswith("2026-10-05T10:00")
    assert operator.get("/operator/claims", params={"since": "2026-10-06", "until": "2026-10-07"}).json()["organisations"] == []
    backwards = operator.get("/operator/claims", params={"since": "2026-10-06"})  # until defaults to today, 5 October
    assert backwards.status_code == 422 and backwards.json()["errors"][0] == {
        "code": "period",
        "path": "query:until",
        "message": "the period ends after it starts",
    }
    refused = school_a.get("/operator/claims")
    assert refused.status_code == 403 and refused.json()["errors"][0]["code"] == "operator_only"
    printed = json.loads(run_cli(world.ledger.settings, "claims", "--since", "2026-10-01", "--until", "2026-10-05", "--json").stdout)
    assert printed["organisations"] == report.json()["organisations"]


def test_a_trusted_local_callers_rejections_are_not_probes(world: World) -> None:
    world.admit(upn(1), SCHOOL_B, occurred_on=date(2026, 9, 3))
    with pytest.raises(Exception, match="second_main_registration"):
        world.ledger.submit(main_registration(world, SCHOOL_A, upn(1)))
    assert views_of(world, upn(1)) == []


def test_the_reports_period_at_the_ends_of_the_calendar_is_a_clear_error(world: World) -> None:
    operator = TestClient(create_app(world.ledger), headers={"authorization": f"Bearer {world.admin_token}"}, raise_server_exceptions=False)
    for params in ({"until": "9999-12-31"}, {"until": "0001-01-05"}):
        answer = operator.get("/operator/claims", params=params)
        assert answer.status_code == 422 and answer.json()["errors"][0]["code"] == "period", answer.text
    assert operator.get("/operator/claims", params={"since": "0001-01-01", "until": "9999-12-30"}).status_code == 200
