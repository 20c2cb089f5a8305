"""The checks of a school's roll: admissions (``pupil.registered``) and removals (``pupil.deregistered``).

A pupil has one main registration at a time; a subsidiary (dual) one needs a link to the pupil (its AP setting, or a
school near the main one); a removal is from the submitter's own open registration, on or after the admission.
Which of these run for which event, and in what order: ``ledger.core.rules.PUPIL_CHECKS``. Pure.
"""

from __future__ import annotations

from ledger.core.pupil_case import PupilCase
from ledger.core.pupil_state import MAIN_STATUSES


def admission(case: PupilCase) -> None:
    """A school admits a pupil not on its roll already; a main registration only if no other main registration is open
    at any time the new one covers; a subsidiary one only with a link to the pupil (flagged if no main is open)."""
    # Every registration open at any time the new one covers (from its date on): a backdated admission
    # overlaps an admission elsewhere that it predates.
    state, who, day = case.state, case.who, case.day
    covering = [r for r in state.registrations if r.end is None or r.end > day]
    status = case.d["enrolment_status"]
    if any(r.school == who for r in covering):
        case.reject("already_registered", "school", f"the pupil is on {who}'s roll on or after {day}")
    elif status in MAIN_STATUSES:
        if any(r.status in MAIN_STATUSES for r in covering):
            case.reject(
                "second_main_registration",
                "enrolment_status",
                "the pupil has a main registration at another school open on or after this date; that school must post "
                "pupil.deregistered first (dated on or before this admission), or register this one as S (subsidiary)",
            )
    elif not subsidiary_plausible(case):
        case.reject(
            "implausible_claim",
            "enrolment_status",
            "a subsidiary (S) registration is made by the pupil's AP setting (an ap_setting, or the setting of a placement open "
            "that day) or by a school in the same LA or trust as the pupil's main school that day; no such link is recorded",
        )
    elif not any(r.status == "M" for r in state.open_registrations()):
        case.flag("subsidiary_without_main", "dual (subsidiary) registration but no open main registration is recorded")


def subsidiary_plausible(case: PupilCase) -> bool:
    """A dual registration links a school to the pupil: its AP setting, or a school near the main one."""
    state, who, day = case.state, case.who, case.day
    if any(
        e.kind == "placement" and e.details.get("setting") == who and e.start <= day and (e.end is None or day < e.end)
        for e in state.episodes.values()
    ):
        return True
    me = case.orgs(who)
    if me.kind == "ap_setting":
        return True
    for reg in state.registrations:
        if reg.status in MAIN_STATUSES and reg.open_on(day):
            main = case.orgs(reg.school)
            if (me.la is not None and main.la == me.la) or (me.trust is not None and main.trust == me.trust):
                return True
    return False


def removal(case: PupilCase) -> None:
    """The pupil is on the submitting school's roll, admitted on or before the removal's date."""
    reg = case.state.registration_at(case.who)
    if reg is None:
        case.off_roll("school", "now, so cannot be removed from it")
    elif case.day < reg.start:
        case.reject("removal_before_admission", "", f"removal on {case.day} is before admission on {reg.start}")


def removal_flags(case: PupilCase) -> None:
    """A lawful removal that is backdated before the school's own later reports, to an unknown destination, or of a
    pupil with SEN is flagged. (Run once ``removal`` found the registration.)"""
    reg = case.state.registration_at(case.who)
    assert reg is not None  # removal rejects the event otherwise
    latest = case.state.latest_by_submitter.get(case.who)
    if latest is not None and case.day < latest:
        case.flag("backdated_removal", f"removal dated {case.day}, before {case.who}'s earlier report dated {latest}")
    if case.d["destination"] == "unknown":
        case.flag("unknown_destination", "removed from roll with no known destination")
    if reg.sen_status != "N":
        case.flag("sen_exit", f"a pupil with SEN status {reg.sen_status} left the roll")
