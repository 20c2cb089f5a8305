"""Main registrations never overlap, however they are dated (issue 18, item 6), and corrections chain
(item 8): E1 <- E2 <- E3 is judged as if the whole chain before E3 had never been posted."""

from __future__ import annotations

from datetime import date

import pytest

from ledger.core.errors import LedgerError
from ledger.core.rules import PupilState, fold_pupil

from .conftest import PROVIDER, SCHOOL_A, SCHOOL_B, UPN, World
from .rules_support import FAR_SCHOOL, Pupil, placement, registration, removal

SEPT, OCT = date(2026, 9, 3), date(2026, 10, 1)


# -- item 6: a second main registration, however dated ----------------------------------------------


def test_a_registration_backdated_before_another_schools_open_admission_is_refused() -> None:
    pupil = Pupil()
    pupil.admit(SCHOOL_A, date(2026, 9, 10))
    problem = pupil.refuse("second_main_registration", "pupil.registered", SCHOOL_B, registration(SCHOOL_B), date(2026, 9, 3))
    assert problem.path == "$.payload.data.enrolment_status"
    pupil.refuse("second_main_registration", "pupil.registered", SCHOOL_B, registration(SCHOOL_B, "M"), date(2025, 1, 6))
    assert pupil.on_roll(date(2026, 10, 1)) == [(SCHOOL_A, "C")]


def test_a_registration_overlapping_an_ended_one_is_refused_and_one_from_the_removal_day_is_not() -> None:
    pupil = Pupil()
    pupil.admit(SCHOOL_A, SEPT)
    pupil.leave(SCHOOL_A, OCT)
    for day in (date(2026, 9, 1), SEPT, date(2026, 9, 30)):  # open on some day before the removal
        pupil.refuse("second_main_registration", "pupil.registered", SCHOOL_B, registration(SCHOOL_B), day)
    pupil.admit(SCHOOL_B, OCT)  # the day the pupil left A: no overlap
    assert pupil.on_roll(OCT) == [(SCHOOL_B, "C")] and pupil.on_roll(date(2026, 9, 30)) == [(SCHOOL_A, "C")]


def test_a_school_cannot_register_again_into_its_own_earlier_registration() -> None:
    pupil = Pupil()
    pupil.admit(SCHOOL_A, SEPT)
    pupil.leave(SCHOOL_A, OCT)
    pupil.refuse("already_registered", "pupil.registered", SCHOOL_A, registration(SCHOOL_A, "S"), date(2026, 9, 20))
    pupil.admit(SCHOOL_A, date(2026, 10, 2))  # after its removal: a new admission


def test_a_subsidiary_registration_beside_a_main_one_is_still_lawful() -> None:
    pupil = Pupil()
    pupil.admit(SCHOOL_A, date(2026, 9, 10), "M")
    pupil.admit(SCHOOL_B, date(2026, 9, 14), "S")  # dual: a school in the main school's LA
    pupil.refuse("second_main_registration", "pupil.registered", FAR_SCHOOL, registration(FAR_SCHOOL, "M"), SEPT)


def test_through_the_ledger_a_backdated_admission_is_refused_and_on_roll_lists_one_school(world: World) -> None:
    world.admit(UPN, SCHOOL_A, occurred_on=date(2026, 9, 23))
    store = world.ledger.store
    before = store.count_events()
    with pytest.raises(LedgerError) as exc:
        world.admit(UPN, SCHOOL_B, occurred_on=date(2026, 9, 7))
    (problem,) = exc.value.problems
    assert (problem.code, problem.path) == ("second_main_registration", "$.payload.data.enrolment_status")
    assert SCHOOL_A not in problem.message and "2026-09-23" not in problem.message  # neither where nor since when (item 3)
    assert store.count_events() == before
    assert [r["school"] for r in world.ledger.pupil_history(UPN)["on_roll"]] == [SCHOOL_A]


# -- item 8: chains of corrections -----------------------------------------------------------------------


def test_a_registration_corrected_twice_then_retracted() -> None:
    pupil = Pupil()
    first = pupil.admit(SCHOOL_A, SEPT)
    second = pupil.post("pupil.registered", SCHOOL_A, registration(SCHOOL_A, sen="K"), date(2026, 9, 4), corrects=first).record.event_id
    third = pupil.post("pupil.registered", SCHOOL_A, registration(SCHOOL_A, sen="E"), date(2026, 9, 7), corrects=second).record.event_id
    state_regs = [(r.school, r.start, r.sen_status) for r in _state(pupil).registrations]
    assert state_regs == [(SCHOOL_A, date(2026, 9, 7), "E")]
    pupil.refuse("already_corrected", "pupil.registered", SCHOOL_A, registration(SCHOOL_A), SEPT, corrects=first)
    pupil.refuse("already_corrected", "pupil.registered", SCHOOL_A, registration(SCHOOL_A), SEPT, corrects=second)
    retraction = pupil.post("pupil.record_retracted", SCHOOL_A, {"reason": "wrong_pupil"}, date(2026, 9, 8), corrects=third).record.event_id
    assert _state(pupil).registrations == []
    pupil.refuse("correction_type", "pupil.record_retracted", SCHOOL_A, {"reason": "duplicate"}, date(2026, 9, 8), corrects=retraction)
    pupil.refuse("correction_type", "pupil.registered", SCHOOL_A, registration(SCHOOL_A), SEPT, corrects=retraction)
    pupil.admit(SCHOOL_A, date(2026, 9, 14))  # the right pupil, afresh


def test_a_removal_corrected_twice() -> None:
    pupil = Pupil()
    pupil.admit(SCHOOL_A, SEPT)
    first = pupil.leave(SCHOOL_A, OCT, "moved_away")
    second = pupil.post("pupil.deregistered", SCHOOL_A, removal(SCHOOL_A, "ehe", "ehe_written_notice"), date(2026, 10, 2), corrects=first)
    third = pupil.post(
        "pupil.deregistered", SCHOOL_A, removal(SCHOOL_A, "ehe", "ehe_written_notice"), date(2026, 10, 5), corrects=second.record.event_id
    )
    assert [(r.end, r.destination) for r in _state(pupil).registrations] == [(date(2026, 10, 5), "ehe")]
    assert "backdated_removal" not in third.flag_codes
    pupil.post("pupil.record_retracted", SCHOOL_A, {"reason": "entered_in_error"}, date(2026, 10, 5), corrects=third.record.event_id)
    assert pupil.on_roll(date(2026, 10, 5)) == [(SCHOOL_A, "C")]  # the removal never happened: still on roll


def test_a_placement_corrected_twice_then_ended() -> None:
    pupil = Pupil()
    pupil.admit(SCHOOL_A, SEPT)
    first = pupil.place(SCHOOL_A, date(2026, 9, 14))
    second = pupil.post(
        "pupil.ap_placement_started", SCHOOL_A, placement(SCHOOL_A, hours=10), date(2026, 9, 14), corrects=first
    ).record.event_id
    third = pupil.post(
        "pupil.ap_placement_started", SCHOOL_A, placement(SCHOOL_A, hours=12), date(2026, 9, 15), corrects=second
    ).record.event_id
    assert [(e.start_event_id, e.details["hours_per_week"]) for e in _state(pupil).episodes.values()] == [(third, 12)]
    pupil.refuse("placement_not_open", "pupil.ap_placement_ended", SCHOOL_A, {"placement_event_id": second, "outcome": "mainstream"}, OCT)
    pupil.post("pupil.ap_placement_ended", SCHOOL_A, {"placement_event_id": third, "outcome": "mainstream"}, OCT)
    assert [e.end for e in _state(pupil).episodes.values()] == [OCT]


def _state(pupil: Pupil) -> PupilState:
    return fold_pupil(pupil.records)


def test_through_the_ledger_history_shows_every_link_of_a_chain(world: World) -> None:
    first = world.admit(UPN, SCHOOL_A, occurred_on=SEPT)
    links = [first.event_id]
    for day, sen in ((date(2026, 9, 4), "K"), (date(2026, 9, 7), "E")):
        body = world.event("pupil.registered", SCHOOL_A, registration(SCHOOL_A, sen=sen), upn=UPN, occurred_on=day, corrects=links[-1])
        links.append(world.ledger.submit(world.sign(body)).event_id)
    start = world.post(
        "pupil.ap_placement_started",
        SCHOOL_A,
        {**placement(SCHOOL_A, PROVIDER), "tier": 2, "planned_end": "2026-12-18"},
        upn=UPN,
        occurred_on=date(2026, 9, 21),
    )
    fixed = world.ledger.submit(
        world.sign(
            world.event(
                "pupil.ap_placement_started",
                SCHOOL_A,
                {**placement(SCHOOL_A, PROVIDER, 20), "tier": 2, "planned_end": "2026-12-18"},
                upn=UPN,
                occurred_on=date(2026, 9, 21),
                corrects=start.event_id,
            )
        )
    )
    history = world.ledger.pupil_history(UPN)
    assert [(e["event_id"], e["corrects"], e["superseded_by"]) for e in history["events"]] == [
        (links[0], None, links[1]),
        (links[1], links[0], links[2]),
        (links[2], links[1], None),
        (start.event_id, None, fixed.event_id),
        (fixed.event_id, start.event_id, None),
    ]
    assert history["on_roll"] == [{"school": SCHOOL_A, "enrolment_status": "C", "since": "2026-09-07", "sen_status": "E"}]
    assert [(o["started_by"], o["details"]["hours_per_week"]) for o in history["open"]] == [(fixed.event_id, 20)]
    retraction = world.ledger.submit(
        world.sign(world.event("pupil.record_retracted", SCHOOL_A, {"reason": "wrong_pupil"}, upn=UPN, corrects=links[2]))
    )
    history = world.ledger.pupil_history(UPN)
    assert [e["superseded_by"] for e in history["events"][:3]] == [links[1], links[2], retraction.event_id]
    assert history["on_roll"] == []
