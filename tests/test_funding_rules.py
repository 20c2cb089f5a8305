"""Issue 25: the catalogue of plans, tariffs, bands, budgets and programmes, and their rules (pure, then through the
ledger on SQLite and PostgreSQL with real signatures)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

import pytest

from ledger.core import catalogue
from ledger.core.errors import LedgerError
from ledger.core.funding_rules import (
    check_org_event,
    financial_year_of,
    financial_year_ok,
    plan_in_force,
    plan_versions,
    tariff_in_force,
    tariffs,
)
from ledger.core.rules import Record
from tests.conftest import World
from tests.funding_support import LA, PROVIDER, SCHOOL_A, SPECIAL, band_for_ehcp, band_for_placement, budget, plan, programme, tariff

NOW = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)
UPN = "H801200001001"


def body(
    event_type: str, data: dict[str, Any], submitter: str = LA, subject: dict[str, str] | None = None, occurred_on: str = "2026-09-10"
) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "type": event_type,
        "schema_version": 1,
        "submitter": submitter,
        "subject": subject or {"org": submitter},
        "occurred_on": occurred_on,
        "reported_at": "2026-09-11T10:00:00Z",
        "data": data,
    }


def problems(b: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p.code, p.path) for p in catalogue.validate(b, NOW).problems]


# -- catalogue ------------------------------------------------------------------------------------


def test_the_five_types_are_in_the_catalogue_and_valid_examples_pass() -> None:
    examples = [
        body("inclusion_plan.published", plan()),
        body("funding.tariff_published", tariff(), submitter="dfe:admin"),
        body("funding.band_assigned", band_for_placement(str(uuid.uuid4())), subject={"upn": UPN}),
        body("funding.band_assigned", band_for_ehcp(SPECIAL), subject={"upn": UPN}),
        body("funding.ap_budget_allocated", budget()),
        body("funding.programme_joined", programme()),
    ]
    for b in examples:
        assert problems(b) == [], b["type"]


@pytest.mark.parametrize(
    "event_type,change,expected",
    [
        ("funding.ap_budget_allocated", {"amount_pence": 12.5}, ("schema_type", "$.payload.data.amount_pence")),
        ("funding.ap_budget_allocated", {"amount_pence": "600000"}, ("schema_type", "$.payload.data.amount_pence")),
        ("funding.ap_budget_allocated", {"amount_pence": -1}, ("schema_minimum", "$.payload.data.amount_pence")),
        ("funding.ap_budget_allocated", {"financial_year": "2026/27"}, ("schema_pattern", "$.payload.data.financial_year")),
        ("funding.ap_budget_allocated", {"financial_year": "2026-2027"}, ("schema_pattern", "$.payload.data.financial_year")),
        ("funding.ap_budget_allocated", {"pounds": 5}, ("unknown_field", "$.payload.data")),
        ("inclusion_plan.published", {"settings": []}, ("schema_minItems", "$.payload.data.settings")),
        (
            "inclusion_plan.published",
            {"partners": [{"org": "icb:qe1", "kind": "icb"}]},
            ("schema_pattern", "$.payload.data.partners[0].org"),
        ),
        ("inclusion_plan.published", {"valid_from": "2026-02-30"}, ("impossible_date", "$.payload.data.valid_from")),
        ("funding.programme_joined", {"programme": "bailout"}, ("unknown_code", "$.payload.data.programme")),
    ],
)
def test_bad_values_are_named_by_path(event_type: str, change: dict[str, Any], expected: tuple[str, str]) -> None:
    data = {"inclusion_plan.published": plan(), "funding.ap_budget_allocated": budget(), "funding.programme_joined": programme()}[
        event_type
    ]
    assert expected in problems(body(event_type, {**data, **change}))


def test_codes_inside_the_plan_and_tariff_are_checked() -> None:
    bad_plan = plan()
    bad_plan["settings"] = [{**bad_plan["settings"][0], "needs": ["SPLD", "DYSLEXIA"], "phases": ["infant"]}]
    assert {("unknown_code", "$.payload.data.settings[0].needs[1]"), ("unknown_code", "$.payload.data.settings[0].phases[0]")} <= set(
        problems(body("inclusion_plan.published", bad_plan))
    )
    bad_tariff = tariff()
    bad_tariff["prices"][0]["band"] = "B9"
    assert ("unknown_code", "$.payload.data.prices[0].band") in problems(
        body("funding.tariff_published", bad_tariff, submitter="dfe:admin")
    )


def test_only_the_operator_publishes_a_tariff_and_only_an_la_a_plan() -> None:
    assert ("submitter_not_allowed", "$.payload.submitter") in problems(body("funding.tariff_published", tariff(), submitter=LA))
    assert ("submitter_not_allowed", "$.payload.submitter") in problems(body("inclusion_plan.published", plan(), submitter=SCHOOL_A))
    assert ("subject_kind", "$.payload.subject") in problems(body("funding.band_assigned", band_for_ehcp(SPECIAL)))


@pytest.mark.parametrize("label,ok", [("2025-26", True), ("2099-00", True), ("2025-27", False), ("2025-25", False), ("2025-26\n", False)])
def test_financial_years(label: str, ok: bool) -> None:
    assert financial_year_ok(label) is ok


def test_financial_year_of_a_day() -> None:
    assert (financial_year_of(date(2026, 3, 31)), financial_year_of(date(2026, 4, 1))) == ("2025-26", "2026-27")


# -- pure rules -----------------------------------------------------------------------------------


def record(
    event_type: str,
    data: dict[str, Any],
    subject: str = LA,
    submitter: str | None = None,
    corrects: str | None = None,
    on: date = date(2026, 9, 10),
) -> Record:
    return Record(str(uuid.uuid4()), event_type, submitter or subject, subject, on, NOW, data, corrects)


def codes(records: list[Record], new: Record) -> list[str]:
    return [p.code for p in check_org_event(records, new)]


def test_a_second_budget_for_a_year_is_a_correction_not_a_second_budget() -> None:
    first = record("funding.ap_budget_allocated", budget())
    assert codes([first], record("funding.ap_budget_allocated", budget(tiers=(1, 2, 3)))) == ["budget_exists"]
    assert codes([first], record("funding.ap_budget_allocated", budget("2027-28"))) == []
    correction = record("funding.ap_budget_allocated", budget(tiers=(1, 2, 3)), corrects=first.event_id)
    assert codes([first], correction) == []
    assert codes([first], record("funding.ap_budget_allocated", budget("2027-28"), corrects=first.event_id)) == ["correction_year"]
    assert codes([first, correction], record("funding.ap_budget_allocated", budget(), corrects=first.event_id)) == ["already_corrected"]


def test_a_budget_split_sums_to_its_total_and_names_a_real_financial_year() -> None:
    wrong = {**budget(), "amount_pence": 1}
    assert codes([], record("funding.ap_budget_allocated", wrong)) == ["budget_split_mismatch"]
    assert codes([], record("funding.ap_budget_allocated", budget("2026-28"))) == ["financial_year"]
    assert codes([], record("funding.ap_budget_allocated", budget(), submitter="la:802")) == ["not_submitter"]


def test_plan_versions_supersede_from_their_start_and_may_not_overlap() -> None:
    v1 = record("inclusion_plan.published", plan(1, "2026-09-01", "2027-08-31"))
    assert codes([v1], record("inclusion_plan.published", plan(1, "2027-01-01", "2027-08-31"))) == ["plan_version_exists"]
    assert codes([v1], record("inclusion_plan.published", plan(2, "2026-09-01", "2027-08-31"))) == ["plan_overlap"]
    assert codes([v1], record("inclusion_plan.published", plan(2, "2026-06-01", "2027-08-31"))) == ["plan_overlap"]
    v2 = record("inclusion_plan.published", plan(2, "2027-01-01", "2027-12-31"))
    assert codes([v1], v2) == []
    assert codes([v1, v2], record("inclusion_plan.published", plan(1, "2027-06-01", "2027-12-31"))) == ["plan_version_exists"]
    assert codes([v1], record("inclusion_plan.published", plan(1, "2026-09-01", "2027-07-31"), corrects=v1.event_id)) == []
    versions = plan_versions(LA, [v1, v2])
    in_force = [
        (p.version if p else None)
        for p in (
            plan_in_force(versions, date(2026, 8, 31)),
            plan_in_force(versions, date(2026, 12, 31)),
            plan_in_force(versions, date(2027, 1, 1)),
            plan_in_force(versions, date(2028, 1, 1)),
        )
    ]
    assert in_force == [None, 1, 2, None]


def test_a_plan_lists_each_setting_once_and_ends_after_it_starts() -> None:
    doubled = plan()
    doubled["settings"] = [doubled["settings"][0], doubled["settings"][0]]
    assert codes([], record("inclusion_plan.published", doubled)) == ["duplicate_setting"]
    assert codes([], record("inclusion_plan.published", plan(valid_from="2027-01-01", valid_to="2026-12-31"))) == ["end_before_start"]


def test_tariffs_price_each_band_once_and_one_tariff_per_date() -> None:
    first = record("funding.tariff_published", tariff("2026-04-01"), subject="dfe:admin")
    doubled = tariff()
    doubled["prices"].append(doubled["prices"][0])
    assert codes([], record("funding.tariff_published", doubled, subject="dfe:admin")) == ["duplicate_price"]
    assert codes([first], record("funding.tariff_published", tariff("2026-04-01"), subject="dfe:admin")) == ["tariff_exists"]
    second = record("funding.tariff_published", tariff("2027-01-01", B3_alternative_provision=2_000_000), subject="dfe:admin")
    assert codes([first], second) == []
    known = tariffs([first, second])
    assert tariff_in_force(known, date(2026, 3, 31)) is None
    assert tariff_in_force(known, date(2026, 12, 31)).prices[("B3", "alternative_provision")] == 1_800_000  # type: ignore[union-attr]
    assert tariff_in_force(known, date(2027, 1, 1)).prices[("B3", "alternative_provision")] == 2_000_000  # type: ignore[union-attr]


def test_a_second_programme_entry_is_a_correction() -> None:
    first = record("funding.programme_joined", programme())
    assert codes([first], record("funding.programme_joined", programme())) == ["programme_exists"]
    assert codes([first], record("funding.programme_joined", programme("dbv"))) == []
    repeated = programme()
    repeated["deficit_path"].append(repeated["deficit_path"][0])
    assert codes([], record("funding.programme_joined", repeated)) == ["duplicate_year"]


# -- through the ledger (SQLite and PostgreSQL) ---------------------------------------------------


def post_tariff(world: World, data: dict[str, Any], corrects: str | None = None) -> Any:
    world.keys.setdefault("dfe:admin", world.ledger.secrets.signing_key)
    return world.post("funding.tariff_published", "dfe:admin", data, org="dfe:admin", corrects=corrects)


def rejected(call: Any) -> list[tuple[str, str]]:
    with pytest.raises(LedgerError) as caught:
        call()
    return [(p.code, p.path) for p in caught.value.problems]


def test_band_not_in_the_tariff_in_force_is_rejected_and_nothing_is_stored(world: World) -> None:
    world.admit(UPN, SCHOOL_A, occurred_on=date(2026, 9, 2))
    placement = world.post(
        "pupil.ap_placement_started",
        LA,
        {
            "commissioner": LA,
            "setting": PROVIDER,
            "setting_type": "UKPRN",
            "tier": 3,
            "reason": "BEHAVIOUR",
            "hours_per_week": 25,
            "dual_registered": False,
        },
        upn=UPN,
        occurred_on=date(2026, 9, 7),
    ).event_id
    assert rejected(
        lambda: world.post("funding.band_assigned", LA, band_for_placement(placement), upn=UPN, occurred_on=date(2026, 9, 8))
    ) == [("no_tariff_in_force", "$.payload.data.band")]
    post_tariff(world, tariff("2026-04-01"))
    stored = world.ledger.store.max_sequence()
    assert rejected(
        lambda: world.post("funding.band_assigned", LA, band_for_placement(placement, band="B5"), upn=UPN, occurred_on=date(2026, 9, 8))
    ) == [("band_not_in_tariff", "$.payload.data.band")]
    assert world.ledger.store.max_sequence() == stored
    receipt = world.post("funding.band_assigned", LA, band_for_placement(placement), upn=UPN, occurred_on=date(2026, 9, 8))
    assert receipt.event_id
    # a new tariff from 1 October prices B5 in AP: from then on, and only from then on, B5 may be assigned for AP
    post_tariff(world, tariff("2026-10-01", B5_alternative_provision=3_000_000))
    assert rejected(
        lambda: world.post("funding.band_assigned", LA, band_for_placement(placement, band="B5"), upn=UPN, occurred_on=date(2026, 9, 30))
    ) == [("band_not_in_tariff", "$.payload.data.band")]
    world.post("funding.band_assigned", LA, band_for_placement(placement, band="B5"), upn=UPN, occurred_on=date(2026, 10, 1))


def test_band_rules_on_the_pupil(world: World) -> None:
    post_tariff(world, tariff("2026-04-01"))
    world.admit(UPN, SCHOOL_A, occurred_on=date(2026, 9, 2))
    assert rejected(lambda: world.post("funding.band_assigned", LA, band_for_placement(str(uuid.uuid4())), upn=UPN)) == [
        ("placement_not_open", "$.payload.data.placement_event_id")
    ]
    assert rejected(lambda: world.post("funding.band_assigned", LA, band_for_ehcp(SPECIAL, la="la:802"), upn=UPN)) == [
        ("not_submitter", "$.payload.data.la")
    ]
    world.post("funding.band_assigned", LA, band_for_ehcp(SPECIAL), upn=UPN)  # the pupil's school is in LA 801


def test_budget_twice_and_plan_overlap_through_the_ledger(world: World) -> None:
    first = world.post("funding.ap_budget_allocated", LA, budget(), occurred_on=date(2026, 4, 1))
    assert rejected(lambda: world.post("funding.ap_budget_allocated", LA, budget(tiers=(1, 2, 3)))) == [
        ("budget_exists", "$.payload.data.financial_year")
    ]
    world.post("funding.ap_budget_allocated", LA, budget(tiers=(1, 2, 3)), corrects=first.event_id)
    world.post("inclusion_plan.published", LA, plan(1, "2026-09-01", "2027-08-31"), occurred_on=date(2026, 9, 1))
    assert rejected(lambda: world.post("inclusion_plan.published", LA, plan(2, "2026-09-01", "2027-08-31"))) == [
        ("plan_overlap", "$.payload.data.valid_from")
    ]
    world.post("inclusion_plan.published", LA, plan(2, "2027-01-01", "2027-08-31"))
    assert rejected(lambda: world.post("inclusion_plan.published", LA, plan(), org=SCHOOL_A)) == [
        ("not_submitter", "$.payload.subject.org")
    ]
    assert rejected(
        lambda: world.post(
            "funding.programme_joined", LA, {**programme(), "deficit_path": [{"financial_year": "2026-28", "deficit_pence": 1}]}
        )
    ) == [("financial_year", "$.payload.data.deficit_path[0].financial_year")]
    world.post("funding.programme_joined", LA, programme())


def test_a_school_token_cannot_post_funding_events(world: World) -> None:
    from ledger.core.policy import Principal

    envelope = world.sign(world.event("funding.ap_budget_allocated", LA, budget()))
    with pytest.raises(LedgerError) as caught:
        world.ledger.submit(envelope, Principal(SCHOOL_A, "school"))
    assert caught.value.problems[0].code == "submitter_mismatch"


# -- over HTTP: careless and hostile clients ------------------------------------------------------


def test_funding_events_over_http_bad_input_is_4xx_with_its_path_and_stores_nothing(world: World) -> None:
    import json

    from fastapi.testclient import TestClient

    from api.app import create_app

    def post(client: TestClient, envelope: dict[str, Any]) -> Any:
        return client.post("/events", content=json.dumps(envelope), headers={"content-type": "application/json"})

    world.keys["dfe:admin"] = world.ledger.secrets.signing_key
    with TestClient(create_app(world.ledger)) as la, TestClient(create_app(world.ledger)) as operator:
        la.headers["authorization"] = f"Bearer {world.ledger.issue_token(LA, 'la')}"
        operator.headers["authorization"] = f"Bearer {world.admin_token}"
        assert (
            post(operator, world.sign(world.event("funding.tariff_published", "dfe:admin", tariff(), org="dfe:admin"))).status_code == 201
        )
        stored = world.ledger.store.max_sequence()
        cases = [
            (la, world.event("funding.ap_budget_allocated", LA, {**budget(), "amount_pence": 1.5}), 422, "$.payload.data.amount_pence"),
            (la, world.event("funding.ap_budget_allocated", LA, {**budget(), "amount_pence": 7}), 422, "$.payload.data.tiers"),
            (la, world.event("funding.ap_budget_allocated", LA, budget("2026-28")), 422, "$.payload.data.financial_year"),
            (
                la,
                world.event("inclusion_plan.published", LA, {**plan(), "settings": [{**plan()["settings"][0], "places": -1}]}),
                422,
                "$.payload.data.settings[0].places",
            ),
            (la, world.event("funding.tariff_published", LA, tariff("2026-05-01"), org="dfe:admin"), 422, "$.payload.submitter"),
            (operator, world.event("funding.ap_budget_allocated", "dfe:admin", budget(), org=LA), 422, "$.payload.submitter"),
            (la, world.event("funding.band_assigned", LA, band_for_ehcp(SPECIAL, band="B9"), upn=UPN), 422, "$.payload.data.band"),
        ]
        for client, body, status, path in cases:
            answer = post(client, world.sign(body))
            assert answer.status_code == status, (path, answer.text)
            assert path in [e["path"] for e in answer.json()["errors"]], answer.json()
        forged = world.sign(world.event("funding.ap_budget_allocated", LA, budget()), signer=SCHOOL_A)  # signed by another organisation
        assert post(la, forged).status_code == 403
        school = TestClient(la.app, headers={"authorization": f"Bearer {world.ledger.issue_token(SCHOOL_A, 'school')}"})
        assert post(school, world.sign(world.event("funding.ap_budget_allocated", LA, budget()))).status_code == 403
        assert world.ledger.store.max_sequence() == stored


# -- band rules on the pupil (pure, with tests/rules_support.py) -----------------------------------


def test_band_rules_for_placements_and_ehc_plans() -> None:
    from ledger.core.funding_rules import check_band
    from tests import rules_support as rs

    pupil = rs.Pupil()
    pupil.admit(rs.SCHOOL_A, date(2026, 9, 2))
    placement = pupil.place(rs.SCHOOL_A, date(2026, 9, 7))  # commissioned by a school in LA 801
    far = rs.Pupil()
    far.admit(rs.FAR_SCHOOL, date(2026, 9, 2))  # a school in LA 802
    tariff_records = [record("funding.tariff_published", tariff("2026-04-01"), subject="dfe:admin")]

    def band(p: rs.Pupil, data: dict[str, Any], on: date = date(2026, 9, 8), submitter: str = LA) -> list[str]:
        new = Record(str(uuid.uuid4()), "funding.band_assigned", submitter, rs.UPN, on, NOW, data)
        return [p.code for p in check_band(p.records, new, tariff_records, pupil.facts)]

    assert band(pupil, band_for_placement(placement)) == []
    assert band(pupil, band_for_placement(placement, la="la:802"), submitter="la:802") == ["writer_not_related"]
    assert band(pupil, {**band_for_placement(placement), "setting": rs.PRU}) == ["setting_mismatch"]
    assert band(pupil, band_for_placement(placement), on=date(2026, 9, 6)) == ["placement_not_open"]
    assert band(pupil, {k: v for k, v in band_for_placement(placement).items() if k != "placement_event_id"}) == ["required"]
    assert band(pupil, band_for_placement(placement, band="B1", provision_type="mainstream")) == []
    assert band(pupil, band_for_placement(placement, band="B1")) == ["band_not_in_tariff"]  # B1 is priced for mainstream only
    assert band(pupil, band_for_ehcp(SPECIAL)) == []
    assert band(far, band_for_ehcp(SPECIAL)) == ["implausible_claim"]  # LA 801 has no link to a pupil at a school in LA 802
    assert band(far, band_for_ehcp(SPECIAL, la="la:802"), submitter="la:802") == []
    assert band(pupil, {k: v for k, v in band_for_ehcp(SPECIAL).items() if k != "setting"}) == ["required"]
    pupil.post("pupil.ap_placement_ended", rs.SCHOOL_A, {"placement_event_id": placement, "outcome": "mainstream"}, date(2026, 10, 1))
    assert band(pupil, band_for_placement(placement), on=date(2026, 10, 1)) == ["placement_not_open"]
    assert band(pupil, band_for_placement(placement), on=date(2026, 9, 30)) == []
