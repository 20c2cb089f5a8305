"""Claims that create a reading relationship must be plausible (issue 18, item 5 part a, docs/item5-design), and
no rejection says where else the pupil is or since when (item 3)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import own_events
from ledger.config import Settings
from ledger.core import rules
from ledger.core.errors import LedgerError
from ledger.tools import admin

from .conftest import UPN, World, upn
from .rules_support import (
    ACADEMY,
    ACADEMY_801,
    FAR_SCHOOL,
    LA,
    OTHER_LA,
    PROVIDER,
    PRU,
    SCHOOL_A,
    SCHOOL_B,
    TRUST,
    UPROV,
    Pupil,
    attendance,
    placement,
    registration,
)

SEPT, OCT = date(2026, 9, 3), date(2026, 10, 1)
EHE = "pupil.home_education_notified"
CME = "pupil.missing_education_recorded"


def notice(la: str) -> dict[str, Any]:
    return {"la": la}


# -- subsidiary (dual) registrations ----------------------------------------------------------------


@pytest.mark.parametrize(
    "school,plausible",
    [
        (SCHOOL_B, True),  # same LA as the main school
        (ACADEMY_801, True),  # same LA (in a trust)
        (FAR_SCHOOL, False),  # another LA, no trust
        (ACADEMY, False),  # another LA, a trust the main school is not in
        (PRU, True),  # an AP setting
    ],
)
def test_a_subsidiary_registration_needs_a_link_to_the_pupil(school: str, plausible: bool) -> None:
    pupil = Pupil()
    pupil.admit(SCHOOL_A, SEPT, "M")
    outcome = pupil.check("pupil.registered", school, registration(school, "S"), OCT)
    if plausible:
        assert outcome.codes == [] and outcome.flag_codes == [], outcome.problems
    else:
        (problem,) = outcome.problems
        assert (problem.code, problem.path) == ("implausible_claim", "$.payload.data.enrolment_status")
        assert SCHOOL_A not in problem.message and "2026-09-03" not in problem.message


def test_a_subsidiary_registration_by_a_school_of_the_same_trust_in_another_la() -> None:
    pupil = Pupil()
    pupil.admit(ACADEMY_801, SEPT, "M")
    assert pupil.check("pupil.registered", ACADEMY, registration(ACADEMY, "S"), OCT).codes == []


def test_a_subsidiary_registration_by_the_setting_of_an_open_placement() -> None:
    pupil = Pupil()
    pupil.admit(SCHOOL_A, SEPT, "M")
    pupil.refuse("implausible_claim", "pupil.registered", FAR_SCHOOL, registration(FAR_SCHOOL, "S"), date(2026, 9, 14))
    pupil.place(SCHOOL_A, date(2026, 9, 14), FAR_SCHOOL)  # a special school far away takes the pupil part time
    pupil.post("pupil.registered", FAR_SCHOOL, registration(FAR_SCHOOL, "S"), date(2026, 9, 14))


def test_an_ap_setting_may_register_a_pupil_without_a_main_registration_flagged() -> None:
    pupil = Pupil()
    outcome = pupil.post("pupil.registered", PRU, registration(PRU, "S"), SEPT)
    assert outcome.flag_codes == ["subsidiary_without_main"]
    pupil.refuse("implausible_claim", "pupil.registered", SCHOOL_B, registration(SCHOOL_B, "S"), SEPT)


def test_without_a_lookup_nothing_is_known_and_a_subsidiary_claim_needs_a_placement() -> None:
    records = Pupil()
    records.admit(SCHOOL_A, SEPT, "M")
    bare = rules.Record("e", "pupil.registered", SCHOOL_B, UPN, OCT, records.records[0].received_at, registration(SCHOOL_B, "S"))
    problems, _ = rules.check_pupil(records.records, bare)
    assert [p.code for p in problems] == ["implausible_claim"]


# -- an LA's notices and placements ---------------------------------------------------------------------


@pytest.mark.parametrize("event_type", [EHE, CME, "pupil.ap_placement_started"])
def test_an_la_claim_is_plausible_for_the_la_of_the_pupils_school(event_type: str) -> None:
    pupil = Pupil()
    pupil.admit(SCHOOL_A, SEPT)
    data = placement(LA) if event_type.startswith("pupil.ap") else notice(LA)
    assert pupil.check(event_type, LA, data, OCT).flags == []
    other = placement(OTHER_LA) if event_type.startswith("pupil.ap") else notice(OTHER_LA)
    problem = pupil.refuse("implausible_claim", event_type, OTHER_LA, other, OCT)
    assert problem.path == "$.payload" and SCHOOL_A not in problem.message and LA not in problem.message


@pytest.mark.parametrize(
    "destination,plausible",
    [
        ("moved_away", "new_area"),
        ("unknown", "new_area"),
        ("cme", "new_area"),
        ("ehe", "new_area"),
        ("school", None),
        ("custody", None),
    ],
)
def test_after_a_removal_another_la_may_claim_only_if_the_pupil_may_have_moved(destination: str, plausible: str | None) -> None:
    pupil = Pupil()
    pupil.admit(SCHOOL_A, SEPT)
    pupil.leave(SCHOOL_A, date(2026, 9, 25), destination)
    assert pupil.check(EHE, LA, notice(LA), OCT).flags == []  # the LA of the last school
    outcome = pupil.check(CME, OTHER_LA, notice(OTHER_LA), OCT)
    if plausible:
        assert outcome.codes == [] and outcome.flag_codes == ["claim_new_area"]
    else:
        assert outcome.codes == ["implausible_claim"]


def test_a_first_contact_is_accepted_and_flagged_and_an_earlier_link_needs_no_flag() -> None:
    pupil = Pupil()
    assert pupil.post(CME, OTHER_LA, notice(OTHER_LA), SEPT).flag_codes == ["claim_new_area"]
    pupil.admit(FAR_SCHOOL, date(2026, 9, 14))  # a school in that LA admits the pupil
    pupil.leave(FAR_SCHOOL, date(2026, 9, 28), "ehe")
    assert pupil.post(EHE, OTHER_LA, notice(OTHER_LA), OCT).flags == []
    pupil.admit(SCHOOL_A, date(2026, 10, 2))
    assert (
        pupil.check("pupil.ap_placement_started", OTHER_LA, placement(OTHER_LA, UPROV), date(2026, 10, 5)).flags == []
    )  # its earlier record


def test_a_third_la_claim_while_the_pupil_is_on_roll_elsewhere_is_implausible_whatever_came_before() -> None:
    pupil = Pupil()
    pupil.admit(SCHOOL_A, SEPT)
    pupil.leave(SCHOOL_A, date(2026, 9, 10), "moved_away")
    pupil.admit(FAR_SCHOOL, date(2026, 9, 14))  # the pupil moved to LA 802 and is on roll there
    pupil.refuse("implausible_claim", EHE, "la:803", notice("la:803"), OCT)  # a third LA: the move away does not help it now
    assert pupil.check(EHE, OTHER_LA, notice(OTHER_LA), OCT).flags == []  # the LA of the school the pupil is on roll at
    assert pupil.check(EHE, LA, notice(LA), OCT).flags == []  # the LA of the school the pupil last left


def test_the_lookup_is_asked_only_by_the_rules_that_weigh_another_organisation() -> None:
    """A registration, exclusion or removal asks only about its submitter; an LA's claim about the schools."""
    pupil = Pupil()
    pupil.admit(SCHOOL_A, SEPT)
    pupil.post("pupil.excluded", SCHOOL_A, {"school": SCHOOL_A, "kind": "SUSP", "sessions": 2, "reasons": ["PP"]}, date(2026, 9, 14))
    assert set(pupil.asked) == {SCHOOL_A}
    pupil.asked.clear()
    pupil.post(EHE, LA, notice(LA), OCT)
    assert pupil.asked == [LA, SCHOOL_A]


# -- nothing is said about other organisations (item 3) ---------------------------------------------


def _cross_org_rejections() -> list[tuple[str, Any]]:
    """One rejection of each code in CROSS_ORG_CODES, decided from records of SCHOOL_A (another organisation)."""
    out = []
    pupil = Pupil()
    pupil.admit(SCHOOL_A, date(2026, 9, 4), "M")
    exclusion = pupil.post(
        "pupil.excluded", SCHOOL_A, {"school": SCHOOL_A, "kind": "SUSP", "sessions": 2, "reasons": ["PP"]}, date(2026, 9, 8)
    ).record.event_id
    start = pupil.place(SCHOOL_A, date(2026, 9, 9), PROVIDER)
    out.append(("second_main_registration", pupil.check("pupil.registered", SCHOOL_B, registration(SCHOOL_B), date(2026, 9, 1))))
    out.append(("implausible_claim", pupil.check("pupil.registered", FAR_SCHOOL, registration(FAR_SCHOOL, "S"), OCT)))
    out.append(("implausible_claim", pupil.check(EHE, OTHER_LA, notice(OTHER_LA), OCT)))
    out.append(
        ("correction_not_own", pupil.check("pupil.registered", SCHOOL_B, registration(SCHOOL_B), OCT, corrects=pupil.records[0].event_id))
    )
    out.append(
        (
            "exclusion_school",
            pupil.check(
                "pupil.exclusion_reviewed",
                SCHOOL_B,
                {"school": SCHOOL_B, "exclusion_event_id": exclusion, "review_body": "governors", "outcome": "upheld"},
                OCT,
            ),
        )
    )
    out.append(
        (
            "not_owner",
            pupil.check("pupil.ap_placement_reviewed", SCHOOL_B, {"placement_event_id": start, "outcome": "continue"}, date(2026, 9, 1)),
        )
    )
    out.append(("writer_not_related", pupil.check("pupil.attendance_summary_recorded", SCHOOL_B, attendance(PROVIDER), OCT)))
    out.append(
        (
            "writer_not_related",
            pupil.check(
                "pupil.exclusion_reviewed",
                OTHER_LA,
                {"school": SCHOOL_A, "exclusion_event_id": exclusion, "review_body": "independent_review_panel", "outcome": "upheld"},
                OCT,
            ),
        )
    )
    return out


def test_every_cross_organisation_rejection_is_listed_and_names_no_one_else() -> None:
    produced = set()
    for code, outcome in _cross_org_rejections():
        assert outcome.codes == [code], (code, outcome.problems)
        (problem,) = outcome.problems
        produced.add(code)
        for secret in (SCHOOL_A, PROVIDER, "2026-09-04", "2026-09-08", "2026-09-09"):
            assert secret not in problem.message, (code, problem.message)
    assert produced == rules.CROSS_ORG_CODES


def test_the_suspension_cap_flag_does_not_count_out_other_schools_days() -> None:
    pupil = Pupil()
    pupil.admit(SCHOOL_A, SEPT)
    pupil.post("pupil.excluded", SCHOOL_A, {"school": SCHOOL_A, "kind": "SUSP", "sessions": 80, "reasons": ["PP"]}, date(2026, 9, 7))
    pupil.leave(SCHOOL_A, date(2026, 9, 20))
    pupil.admit(SCHOOL_B, date(2026, 9, 20))
    outcome = pupil.post("pupil.excluded", SCHOOL_B, {"school": SCHOOL_B, "kind": "SUSP", "sessions": 12, "reasons": ["PP"]}, OCT)
    (flag,) = [f for f in outcome.flags if f["code"] == "suspension_cap_exceeded"]
    assert "46" not in flag["message"] and "40" not in flag["message"]


# -- through the ledger, on both backends ---------------------------------------------------------------


def test_through_the_ledger_claims_are_judged_on_the_organisations_facts(world: World) -> None:
    ledger = world.ledger
    admin.add_org(ledger, OTHER_LA, "la", "Another LA")
    admin.add_org(ledger, FAR_SCHOOL, "school", "A school far away", OTHER_LA)
    for org in (OTHER_LA, FAR_SCHOOL):
        world.keys[org] = Ed25519PrivateKey.generate()
        admin.add_key(ledger, org, world.keys[org].public_key())
    world.admit(UPN, SCHOOL_A, status="M", occurred_on=SEPT)
    before = ledger.store.count_events()
    for event_type, submitter, data in ((EHE, OTHER_LA, {"la": OTHER_LA}), ("pupil.registered", FAR_SCHOOL, registration(FAR_SCHOOL, "S"))):
        with pytest.raises(LedgerError) as exc:
            world.post(event_type, submitter, data, upn=UPN)
        assert [p.code for p in exc.value.problems] == ["implausible_claim"] and SCHOOL_A not in exc.value.problems[0].message
    assert ledger.store.count_events() == before
    assert world.post("pupil.registered", SCHOOL_B, registration(SCHOOL_B, "S"), upn=UPN).flags == []  # same LA as the main school
    receipt = world.post(CME, OTHER_LA, {"la": OTHER_LA}, upn=upn(2))  # first contact
    assert [f["code"] for f in receipt.flags] == ["claim_new_area"]
    assert world.post(EHE, LA, {"la": LA}, upn=UPN).flags == []  # the LA of the pupil's school


def test_one_implausible_claim_among_good_submissions_fails_alone(world: World) -> None:
    admin.add_org(world.ledger, OTHER_LA, "la", "Another LA")
    world.keys[OTHER_LA] = Ed25519PrivateKey.generate()
    admin.add_key(world.ledger, OTHER_LA, world.keys[OTHER_LA].public_key())
    world.admit(UPN, SCHOOL_A, occurred_on=SEPT)
    group = [
        world.sign(world.event("pupil.registered", SCHOOL_A, registration(SCHOOL_A), upn=upn(5))),
        world.sign(world.event(EHE, OTHER_LA, {"la": OTHER_LA}, upn=UPN)),
        world.sign(world.event(EHE, OTHER_LA, {"la": OTHER_LA}, upn=upn(6))),
    ]  # a first contact: flagged
    outcomes = world.ledger.submit_each([(env, None) for env in group])
    assert [o.problems[0].code if isinstance(o, LedgerError) else [f["code"] for f in o.flags] for o in outcomes] == [
        [],
        "implausible_claim",
        ["claim_new_area"],
    ]


def test_facts_changed_by_another_process_are_read_again_before_a_claim_is_refused(world: World, settings: Settings) -> None:
    """This process has the main school cached (it submitted just now); another process then puts the school in a
    trust. A dual registration by a school of that trust in another LA is plausible: refused on the cached facts,
    it is judged again on fresh ones, in the same call."""
    other_process = admin.open_ledger(settings)
    other_process.clock = world.clock
    try:
        admin.add_org(other_process, TRUST, "trust", "A trust")
        admin.add_org(other_process, ACADEMY, "school", "An academy far away", OTHER_LA, trust=TRUST)  # never seen by this process
        world.keys[ACADEMY] = Ed25519PrivateKey.generate()
        admin.add_key(other_process, ACADEMY, world.keys[ACADEMY].public_key())
        world.admit(UPN, SCHOOL_A, status="M", occurred_on=SEPT)  # SCHOOL_A's state is now in this process's cache
        other_process.submit(own_events.admin_event(other_process, "org.joined_trust", SCHOOL_A, {"trust": TRUST}))
        batch = [
            world.sign(
                world.event("pupil.excluded", SCHOOL_A, {"school": SCHOOL_A, "kind": "SUSP", "sessions": 2, "reasons": ["PP"]}, upn=UPN)
            ),  # SCHOOL_A's state comes from the cache for this batch
            world.sign(world.event("pupil.registered", ACADEMY, registration(ACADEMY, "S"), upn=UPN)),
        ]
        receipts = world.ledger.submit_batch(batch)
        assert [r.created for r in receipts] == [True, True]
    finally:
        other_process.store.close()
