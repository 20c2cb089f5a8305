"""Who may write about a pupil (issue 18, item 13; the table at the end of docs/access.md): one test per row, each
with a write the row allows and one it refuses. Also item 18: concurrent placements at one setting."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from ledger import own_events
from ledger.core.errors import Category, LedgerError
from ledger.core.rules import Episode, OrgFacts, fold_pupil

from .conftest import UPN, World, upn
from .rules_support import (
    ACADEMY,
    CLOSED_ON,
    CLOSED_SCHOOL,
    FACTS,
    FAR_SCHOOL,
    LA,
    OTHER_LA,
    PROVIDER,
    PRU,
    SCHOOL_A,
    SCHOOL_B,
    UPROV,
    Pupil,
    attendance,
    placement,
    registration,
    removal,
)

SEPT, OCT = date(2026, 9, 3), date(2026, 10, 1)
SUSPENSION = {"kind": "SUSP", "sessions": 2, "reasons": ["PP"]}
POST16 = {"destination": "education", "sustained": True}


def review(school: str, exclusion: str) -> dict[str, Any]:
    return {"school": school, "exclusion_event_id": exclusion, "review_body": "independent_review_panel", "outcome": "upheld"}


# -- row: any pupil event, by a closed organisation ------------------------------------------------------


def test_row_closed_organisation_records_only_its_past_and_starts_nothing() -> None:
    pupil = Pupil(orgs={**FACTS, CLOSED_SCHOOL: OrgFacts("school", LA, registered=True)})
    admitted = pupil.admit(CLOSED_SCHOOL, SEPT)  # while it was open
    pupil.orgs = FACTS  # then it closed, on CLOSED_ON
    pupil.refuse("org_closed", "pupil.registered", CLOSED_SCHOOL, registration(CLOSED_SCHOOL), SEPT)  # a late admission: refused too
    pupil.refuse("org_closed", "pupil.registered", CLOSED_SCHOOL, registration(CLOSED_SCHOOL), date(2026, 10, 2))
    problem = pupil.refuse("org_closed", "pupil.excluded", CLOSED_SCHOOL, {"school": CLOSED_SCHOOL, **SUSPENSION}, date(2026, 10, 2))
    assert problem.path == "$.payload.occurred_on"
    for event_type, data in (
        ("pupil.registered", registration(CLOSED_SCHOOL, "S")),
        ("pupil.ap_placement_started", placement(CLOSED_SCHOOL)),
        ("pupil.part_time_timetable_started", {"school": CLOSED_SCHOOL, "hours_per_week": 10}),
        ("pupil.managed_move_started", {"school": CLOSED_SCHOOL, "host_school": SCHOOL_A}),
    ):
        assert pupil.refuse("org_closed", event_type, CLOSED_SCHOOL, data, date(2026, 9, 20)).path == "$.payload.type"
    pupil.post("pupil.excluded", CLOSED_SCHOOL, {"school": CLOSED_SCHOOL, **SUSPENSION}, date(2026, 9, 21))  # reported late: allowed
    pupil.post("pupil.registered", CLOSED_SCHOOL, registration(CLOSED_SCHOOL, sen="K"), SEPT, corrects=admitted)  # its own correction
    pupil.refuse("org_closed", "pupil.deregistered", CLOSED_SCHOOL, removal(CLOSED_SCHOOL), date(2026, 10, 2))
    pupil.post("pupil.deregistered", CLOSED_SCHOOL, removal(CLOSED_SCHOOL), CLOSED_ON)  # removal on the day it closed
    pupil.admit(SCHOOL_A, CLOSED_ON)


# -- rows: registrations ----------------------------------------------------------------------------


def test_row_main_registration() -> None:
    pupil = Pupil()
    pupil.admit(SCHOOL_A, date(2026, 9, 14))
    pupil.refuse("second_main_registration", "pupil.registered", SCHOOL_B, registration(SCHOOL_B), SEPT)
    pupil.refuse("already_registered", "pupil.registered", SCHOOL_A, registration(SCHOOL_A), OCT)
    assert pupil.refuse("not_submitter", "pupil.registered", SCHOOL_B, registration(SCHOOL_A), OCT).category is Category.FORBIDDEN
    pupil.leave(SCHOOL_A, OCT)
    pupil.admit(SCHOOL_B, OCT)


def test_row_subsidiary_registration() -> None:
    pupil = Pupil()
    pupil.admit(SCHOOL_A, SEPT, "M")
    pupil.refuse("implausible_claim", "pupil.registered", FAR_SCHOOL, registration(FAR_SCHOOL, "S"), OCT)
    pupil.post("pupil.registered", PRU, registration(PRU, "S"), OCT)


def test_row_removal() -> None:
    pupil = Pupil()
    pupil.refuse("unknown_pupil", "pupil.deregistered", SCHOOL_A, removal(SCHOOL_A), OCT)
    pupil.admit(SCHOOL_A, SEPT)
    pupil.refuse("removal_before_admission", "pupil.deregistered", SCHOOL_A, removal(SCHOOL_A), date(2026, 9, 1))
    pupil.refuse("unknown_pupil", "pupil.deregistered", SCHOOL_B, removal(SCHOOL_B), OCT)
    pupil.leave(SCHOOL_A, OCT)
    pupil.refuse("not_on_roll", "pupil.deregistered", SCHOOL_A, removal(SCHOOL_A), date(2026, 10, 2))


# -- rows: exclusions ---------------------------------------------------------------------------------


def test_row_exclusion() -> None:
    pupil = Pupil()
    pupil.admit(SCHOOL_A, date(2026, 9, 14))
    pupil.refuse("not_on_roll", "pupil.excluded", SCHOOL_A, {"school": SCHOOL_A, **SUSPENSION}, SEPT)
    pupil.refuse("unknown_pupil", "pupil.excluded", SCHOOL_B, {"school": SCHOOL_B, **SUSPENSION}, OCT)
    pupil.post("pupil.excluded", SCHOOL_A, {"school": SCHOOL_A, **SUSPENSION}, OCT)


def test_row_exclusion_review_by_the_school_or_its_la_only() -> None:
    pupil = Pupil()
    pupil.admit(SCHOOL_A, SEPT)
    exclusion = pupil.post("pupil.excluded", SCHOOL_A, {"school": SCHOOL_A, "kind": "PERM", "reasons": ["PA"]}, OCT).record.event_id
    pupil.refuse("writer_not_related", "pupil.exclusion_reviewed", OTHER_LA, review(SCHOOL_A, exclusion), date(2026, 10, 12))
    pupil.refuse("not_submitter", "pupil.exclusion_reviewed", SCHOOL_B, review(SCHOOL_A, exclusion), date(2026, 10, 12))
    pupil.refuse("exclusion_school", "pupil.exclusion_reviewed", SCHOOL_B, review(SCHOOL_B, exclusion), date(2026, 10, 12))
    pupil.refuse("exclusion_unknown", "pupil.exclusion_reviewed", LA, review(SCHOOL_A, UPN), date(2026, 10, 12))
    pupil.post("pupil.exclusion_reviewed", LA, review(SCHOOL_A, exclusion), date(2026, 10, 12))
    pupil.post("pupil.exclusion_reviewed", SCHOOL_A, {**review(SCHOOL_A, exclusion), "review_body": "governors"}, date(2026, 10, 12))


def test_an_academys_exclusion_is_reviewed_by_the_la_it_is_in() -> None:
    pupil = Pupil()
    pupil.admit(ACADEMY, SEPT)
    exclusion = pupil.post("pupil.excluded", ACADEMY, {"school": ACADEMY, "kind": "PERM", "reasons": ["PA"]}, OCT).record.event_id
    pupil.refuse("writer_not_related", "pupil.exclusion_reviewed", LA, review(ACADEMY, exclusion), date(2026, 10, 12))
    pupil.post("pupil.exclusion_reviewed", OTHER_LA, review(ACADEMY, exclusion), date(2026, 10, 12))


# -- rows: placements, moves, timetables, LA notices ------------------------------------------------


def test_row_placement_by_a_school() -> None:
    pupil = Pupil()
    pupil.admit(SCHOOL_A, SEPT)
    pupil.refuse("unknown_pupil", "pupil.ap_placement_started", SCHOOL_B, placement(SCHOOL_B), OCT)
    pupil.refuse("not_on_roll", "pupil.ap_placement_started", SCHOOL_A, placement(SCHOOL_A), date(2026, 9, 1))
    pupil.place(SCHOOL_A, OCT)


def test_row_placement_by_an_la() -> None:
    pupil = Pupil()
    pupil.admit(SCHOOL_A, SEPT)
    pupil.refuse("implausible_claim", "pupil.ap_placement_started", OTHER_LA, placement(OTHER_LA), OCT)
    pupil.refuse("not_submitter", "pupil.ap_placement_started", LA, placement(OTHER_LA), OCT)
    pupil.place(LA, OCT, UPROV)


def test_row_la_notices() -> None:
    pupil = Pupil()
    pupil.admit(SCHOOL_A, SEPT)
    for event_type in ("pupil.home_education_notified", "pupil.missing_education_recorded"):
        pupil.refuse("implausible_claim", event_type, OTHER_LA, {"la": OTHER_LA}, OCT)
        pupil.refuse("not_submitter", event_type, LA, {"la": OTHER_LA}, OCT)
    pupil.leave(SCHOOL_A, OCT, "unknown")
    pupil.post("pupil.missing_education_recorded", LA, {"la": LA}, OCT)


def test_row_placement_review_and_end() -> None:
    pupil = Pupil()
    pupil.admit(SCHOOL_A, SEPT)
    start = pupil.place(LA, date(2026, 9, 14), PROVIDER)
    assert (
        pupil.refuse(
            "not_owner", "pupil.ap_placement_reviewed", SCHOOL_A, {"placement_event_id": start, "outcome": "continue"}, OCT
        ).category
        is Category.FORBIDDEN
    )
    pupil.refuse("not_owner", "pupil.ap_placement_ended", SCHOOL_B, {"placement_event_id": start, "outcome": "mainstream"}, OCT)
    pupil.post("pupil.ap_placement_reviewed", LA, {"placement_event_id": start, "outcome": "continue"}, OCT)
    pupil.post("pupil.ap_placement_ended", PROVIDER, {"placement_event_id": start, "outcome": "mainstream"}, OCT)  # the setting
    pupil.refuse("placement_not_open", "pupil.ap_placement_ended", LA, {"placement_event_id": start, "outcome": "mainstream"}, OCT)


def test_an_update_by_another_organisation_learns_none_of_the_episodes_dates() -> None:
    pupil = Pupil()
    pupil.admit(SCHOOL_A, SEPT)
    start = pupil.place(LA, date(2026, 9, 14), PROVIDER)
    problem = pupil.refuse("not_owner", "pupil.ap_placement_reviewed", SCHOOL_A, {"placement_event_id": start, "outcome": "continue"}, SEPT)
    assert "2026-09-14" not in problem.message and LA not in problem.message
    pupil.refuse("end_before_start", "pupil.ap_placement_reviewed", LA, {"placement_event_id": start, "outcome": "continue"}, SEPT)


def test_row_managed_move_and_part_time_timetable() -> None:
    pupil = Pupil()
    pupil.admit(SCHOOL_A, SEPT)
    move = {"school": SCHOOL_A, "host_school": SCHOOL_B}
    pupil.refuse("not_on_roll", "pupil.managed_move_started", SCHOOL_A, move, date(2026, 9, 1))
    pupil.refuse("unknown_pupil", "pupil.part_time_timetable_started", SCHOOL_B, {"school": SCHOOL_B, "hours_per_week": 10}, OCT)
    started = pupil.post("pupil.managed_move_started", SCHOOL_A, move, OCT).record.event_id
    pupil.refuse(
        "not_owner", "pupil.managed_move_ended", SCHOOL_B, {"managed_move_event_id": started, "outcome": "returned"}, date(2026, 11, 2)
    )
    pupil.post("pupil.managed_move_ended", SCHOOL_A, {"managed_move_event_id": started, "outcome": "returned"}, date(2026, 11, 2))
    timetable = pupil.post("pupil.part_time_timetable_started", SCHOOL_A, {"school": SCHOOL_A, "hours_per_week": 10}, OCT).record.event_id
    pupil.post("pupil.part_time_timetable_ended", SCHOOL_A, {"timetable_event_id": timetable}, date(2026, 10, 20))


def test_row_cme_resolved_by_the_la_that_recorded_it() -> None:
    pupil = Pupil()
    case = pupil.post("pupil.missing_education_recorded", LA, {"la": LA}, SEPT).record.event_id
    resolved = {"la": LA, "cme_event_id": case, "resolution": "registered_at_school"}
    pupil.refuse("not_owner", "pupil.missing_education_resolved", OTHER_LA, {**resolved, "la": OTHER_LA}, OCT)
    pupil.refuse("not_submitter", "pupil.missing_education_resolved", LA, {**resolved, "la": OTHER_LA}, OCT)
    pupil.post("pupil.missing_education_resolved", LA, resolved, OCT)


# -- rows: attendance and post-16 destinations ---------------------------------------------------


def test_row_attendance() -> None:
    pupil = Pupil()
    pupil.admit(SCHOOL_A, SEPT)
    pupil.refuse("writer_not_related", "pupil.attendance_summary_recorded", PROVIDER, attendance(PROVIDER), OCT)  # never had the pupil
    pupil.refuse("writer_not_related", "pupil.attendance_summary_recorded", SCHOOL_B, attendance(SCHOOL_B), OCT)
    pupil.refuse("writer_not_related", "pupil.attendance_summary_recorded", LA, attendance(PROVIDER), OCT)
    pupil.refuse("writer_not_related", "pupil.attendance_summary_recorded", SCHOOL_A, attendance(PROVIDER), OCT)  # no placement there
    pupil.post("pupil.attendance_summary_recorded", SCHOOL_A, attendance(SCHOOL_A), OCT)  # its own roll
    pupil.place(LA, date(2026, 9, 14), PROVIDER)
    pupil.post("pupil.attendance_summary_recorded", PROVIDER, attendance(PROVIDER), OCT)  # the placement's setting
    pupil.post("pupil.attendance_summary_recorded", LA, attendance(PROVIDER), OCT)  # the placement's commissioner
    pupil.refuse("writer_not_related", "pupil.attendance_summary_recorded", PROVIDER, attendance(SCHOOL_A), OCT)  # not its setting
    pupil.refuse("writer_not_related", "pupil.attendance_summary_recorded", SCHOOL_A, attendance(PROVIDER), OCT)  # LA's placement


def test_row_post16_destination() -> None:
    pupil = Pupil()
    pupil.admit(SCHOOL_A, SEPT)
    pupil.leave(SCHOOL_A, OCT, "post16")
    for writer in (OTHER_LA, SCHOOL_B, PROVIDER):
        pupil.refuse("writer_not_related", "pupil.post16_destination_recorded", writer, POST16, date(2026, 10, 20))
    for writer in (LA, SCHOOL_A):
        pupil.post("pupil.post16_destination_recorded", writer, POST16, date(2026, 10, 20))
    other = Pupil()
    other.post("pupil.missing_education_recorded", OTHER_LA, {"la": OTHER_LA}, SEPT)  # a first contact: OTHER_LA has a record
    other.place(OTHER_LA, OCT, PROVIDER)
    for writer in (OTHER_LA, PROVIDER):
        other.post("pupil.post16_destination_recorded", writer, POST16, date(2026, 10, 20))
    other.refuse("writer_not_related", "pupil.post16_destination_recorded", LA, POST16, date(2026, 10, 20))


def test_row_corrections_and_retractions() -> None:
    pupil = Pupil()
    admitted = pupil.admit(SCHOOL_A, SEPT)
    pupil.refuse("corrects_required", "pupil.record_retracted", SCHOOL_A, {"reason": "duplicate"}, OCT)
    pupil.refuse("correction_target_unknown", "pupil.record_retracted", SCHOOL_A, {"reason": "duplicate"}, OCT, corrects=UPN)
    assert (
        pupil.refuse("correction_not_own", "pupil.record_retracted", SCHOOL_B, {"reason": "duplicate"}, OCT, corrects=admitted).category
        is Category.FORBIDDEN
    )
    pupil.refuse("correction_type", "pupil.deregistered", SCHOOL_A, removal(SCHOOL_A), OCT, corrects=admitted)
    pupil.post("pupil.record_retracted", SCHOOL_A, {"reason": "duplicate"}, OCT, corrects=admitted)


# -- item 18: concurrent placements at one setting --------------------------------------------------


def test_two_commissioners_may_place_a_pupil_at_one_setting_but_not_one_twice() -> None:
    pupil = Pupil()
    pupil.admit(SCHOOL_A, SEPT)
    pupil.place(SCHOOL_A, date(2026, 9, 14), UPROV, hours=10)
    pupil.place(LA, date(2026, 9, 21), UPROV, hours=16)  # the LA's own commission at the same provider: hours are summed per pupil
    problem = pupil.refuse("placement_already_open", "pupil.ap_placement_started", LA, placement(LA, UPROV), OCT)
    assert problem.path == "$.payload.data.setting"
    assert sorted((e.owner, e.details["hours_per_week"]) for e in _open_placements(pupil)) == [(LA, 16), (SCHOOL_A, 10)]


def _open_placements(pupil: Pupil) -> list[Episode]:
    return [e for e in fold_pupil(pupil.records).episodes.values() if e.kind == "placement" and e.end is None]


# -- through the ledger, on both backends -------------------------------------------------------------


def test_through_the_ledger_a_closed_school_registers_no_one_and_may_still_remove(world: World) -> None:
    world.admit(UPN, occurred_on=SEPT)
    world.ledger.submit(own_events.admin_event(world.ledger, "org.closed", SCHOOL_A, {}))  # closes today, 2026-10-05
    before = world.ledger.store.count_events()
    with pytest.raises(LedgerError) as exc:
        world.admit(upn(3), SCHOOL_A)
    assert [(p.code, p.path) for p in exc.value.problems] == [("org_closed", "$.payload.type")]
    assert world.ledger.store.count_events() == before
    world.post("pupil.deregistered", SCHOOL_A, removal(SCHOOL_A, "moved_away", "moved_away"), upn=UPN)  # on the day it closed
    world.clock.advance(days=1)
    with pytest.raises(LedgerError) as exc:
        world.post("pupil.excluded", SCHOOL_A, {"school": SCHOOL_A, **SUSPENSION}, upn=UPN, occurred_on=date(2026, 10, 6))
    assert [p.code for p in exc.value.problems] == ["org_closed"]


def test_through_the_ledger_a_second_commissioner_places_at_the_same_setting(world: World) -> None:
    world.admit(UPN, occurred_on=SEPT)
    data = {**placement(SCHOOL_A, PROVIDER), "tier": 2, "planned_end": "2026-12-18"}
    world.post("pupil.ap_placement_started", SCHOOL_A, data, upn=UPN, occurred_on=date(2026, 9, 14))
    world.post("pupil.ap_placement_started", "la:801", {**data, "commissioner": "la:801"}, upn=UPN, occurred_on=date(2026, 9, 21))
    with pytest.raises(LedgerError) as exc:
        world.post("pupil.ap_placement_started", SCHOOL_A, data, upn=UPN)
    assert [p.code for p in exc.value.problems] == ["placement_already_open"]
    assert len(world.ledger.pupil_history(UPN)["open"]) == 2
