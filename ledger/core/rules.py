"""Domain rules for pupil events: what is checked for each event type, in order (``PUPIL_CHECKS``). Pure.

A rule either rejects (the event cannot be true given what the ledger knows) or flags (lawful but concerning, or
late), see README "What the ledger checks". ``check_pupil`` judges a new event against the state folded from the
pupil's records in force (``ledger.core.pupil_state``; a correction as if what it supersedes had never been posted):

1. the correction itself, if the event corrects or retracts one (``ledger.core.records.check_correction``);
   a problem here is the only answer;
2. the submitter is open (a closed organisation records only what happened before it closed, and starts nothing
   new); a problem here is the only answer;
3. the event type's checks from ``PUPIL_CHECKS``, in their order: each adds problems or flags, and a check wrapped in
   ``unless_rejected`` runs only if those before it found no problem;
4. if nothing rejected it, a report more than ``LATE_AFTER_SCHOOL_DAYS`` school days late is flagged.

The checks live with their concept: ``roll_checks`` (admissions, removals), ``exclusion_checks``,
``episode_checks`` (placements, managed moves, part-time timetables, CME), ``la_claims`` (an LA's link to the
pupil), ``report_checks`` (attendance, post-16 destinations), ``ehcp_rules`` (the EHCP timeline),
``redress_rules`` (mediation and appeals) and ``funding_rules`` (bands), with the shared pieces in ``pupil_case``.
Who may write what about a pupil is the table in docs/access.md ("Who may write about a pupil").

Rules that weigh an organisation's own facts (its kind, LA, trust, closure) ask an ``OrgLookup`` the service passes
in, and only when they need them, so that most events never ask; a band reads the national tariffs the same way. A
rejection message never says where else the pupil is or since when: what is decided from other organisations'
records (``CROSS_ORG_CODES``) is said without naming them.

This module is the rules' public entry: the names below (``__all__``) are what the service, the views and the tests
import from it.
"""

from __future__ import annotations

from collections.abc import Sequence

from ledger.core import ehcp_rules, funding_rules, redress_rules
from ledger.core.episode_checks import commissioner_link, episode_open_and_owned, no_second_placement, setting_type_matches
from ledger.core.errors import Problem
from ledger.core.exclusion_checks import SUSPENSION_CAP_DAYS, exclusion_review, suspension_cap
from ledger.core.la_claims import la_claim, la_link
from ledger.core.pupil_case import (
    Check,
    OrgFacts,
    OrgLookup,
    PupilCase,
    Tariffs,
    no_org_facts,
    no_tariffs,
    on_roll,
    submitter_is,
    unless_rejected,
)
from ledger.core.pupil_state import EPISODE_STARTS, MAIN_STATUSES, Episode, PupilState, Registration, fold_pupil
from ledger.core.records import Record, check_correction, effective, without_corrected
from ledger.core.report_checks import attendance_writer, attended_within_possible, destination_writer
from ledger.core.roll_checks import admission, removal, removal_flags
from ledger.core.schooltime import school_days_between

__all__ = [
    "CROSS_ORG_CODES",
    "LATE_AFTER_SCHOOL_DAYS",
    "MAIN_STATUSES",
    "PUPIL_CHECKS",
    "SUSPENSION_CAP_DAYS",
    "Episode",
    "OrgFacts",
    "OrgLookup",
    "PupilState",
    "Record",
    "Registration",
    "Tariffs",
    "check_pupil",
    "effective",
    "fold_pupil",
    "la_link",
    "no_org_facts",
]

LATE_AFTER_SCHOOL_DAYS = 5

# Rejections decided from records other organisations submitted (their registrations, placements, exclusions,
# events): each answer says something about the pupil's relationships elsewhere, so the service records and limits
# them (issue 18, items 3 and 5). The messages say that a conflict exists, never where or since when.
CROSS_ORG_CODES = frozenset(
    {
        "second_main_registration",  # another school's main registration overlaps
        "implausible_claim",  # no registration, placement or earlier record links the claimant to the pupil
        "writer_not_related",  # the writer's relationship (placements, registrations, the excluding school's LA)
        "correction_not_own",  # the corrected event is another organisation's
        "exclusion_school",  # the exclusion reviewed is another school's
        "not_owner",  # the placement, move, timetable or CME case is another organisation's
    }
)

# Event types that start a relationship with the pupil (a closed organisation starts none).
STARTS = frozenset({"pupil.registered", "pupil.home_education_notified", *EPISODE_STARTS})

# What is checked for each pupil event type, in order (after the correction and the submitter's closure, before
# lateness: see the module's docstring). Every pupil event type of the catalogue has an entry.
PUPIL_CHECKS: dict[str, tuple[Check, ...]] = {
    # the roll (roll_checks)
    "pupil.registered": (submitter_is("school"), unless_rejected(admission)),
    "pupil.deregistered": (submitter_is("school"), removal, unless_rejected(removal_flags)),
    # exclusions (exclusion_checks)
    "pupil.excluded": (submitter_is("school"), on_roll, unless_rejected(suspension_cap)),
    "pupil.exclusion_reviewed": (exclusion_review,),
    # placements, managed moves, part-time timetables, CME (episode_checks)
    "pupil.ap_placement_started": (submitter_is("commissioner"), commissioner_link, no_second_placement, setting_type_matches),
    "pupil.ap_placement_reviewed": (episode_open_and_owned,),
    "pupil.ap_placement_ended": (episode_open_and_owned,),
    "pupil.managed_move_started": (submitter_is("school"), on_roll),
    "pupil.managed_move_ended": (episode_open_and_owned,),
    "pupil.part_time_timetable_started": (submitter_is("school"), on_roll),
    "pupil.part_time_timetable_ended": (episode_open_and_owned,),
    "pupil.missing_education_recorded": (submitter_is("la"), unless_rejected(la_claim)),
    "pupil.missing_education_resolved": (episode_open_and_owned, unless_rejected(submitter_is("la"))),
    # an LA's notice (la_claims)
    "pupil.home_education_notified": (submitter_is("la"), unless_rejected(la_claim)),
    # reports of a setting that had the pupil (report_checks)
    "pupil.attendance_summary_recorded": (attended_within_possible, attendance_writer),
    "pupil.post16_destination_recorded": (destination_writer,),
    # a retraction: only the correction's own checks (step 1)
    "pupil.record_retracted": (),
    # the EHCP timeline (ehcp_rules)
    "ehcp.assessment_requested": (submitter_is("la"), unless_rejected(ehcp_rules.assessment_request)),
    "ehcp.assessment_decided": (ehcp_rules.assessment_step,),
    "ehcp.draft_issued": (ehcp_rules.assessment_step,),
    "ehcp.refused_to_issue": (ehcp_rules.assessment_step,),
    "ehcp.final_issued": (ehcp_rules.assessment_step,),
    "ehcp.annual_review_held": (ehcp_rules.plan_step,),
    "ehcp.amended": (ehcp_rules.plan_step,),
    "ehcp.transferred": (ehcp_rules.plan_step,),
    "ehcp.ceased": (ehcp_rules.plan_step,),
    # mediation and appeals (redress_rules)
    "dispute.mediation_requested": (redress_rules.decision_disputed,),
    "dispute.appeal_registered": (redress_rules.decision_disputed,),
    "dispute.mediation_certificate_issued": (redress_rules.dispute_settled,),
    "dispute.appeal_decided": (redress_rules.dispute_settled,),
    # funding (funding_rules)
    "funding.band_assigned": (funding_rules.costed_band,),
}


def check_pupil(
    records: Sequence[Record], new: Record, orgs: OrgLookup = no_org_facts, tariffs: Tariffs = no_tariffs
) -> tuple[list[Problem], list[dict[str, str]]]:
    """Problems that reject ``new`` and flags to record with it, given the pupil's ``records`` and, for the rules
    that weigh them, organisations' facts (``orgs``) and the national tariffs (``tariffs``), in the order of the
    module's docstring."""
    problems = check_correction(records, new)
    if problems:
        return problems, []
    kept = without_corrected(records, new)
    case = PupilCase(kept, fold_pupil(kept), new, orgs, tariffs)
    submitter_open(case)
    if case.problems:
        return case.problems, []
    for check in PUPIL_CHECKS.get(new.type, ()):
        check(case)
    if not case.problems:
        late = school_days_between(new.occurred_on, new.received_at.date())
        if late > LATE_AFTER_SCHOOL_DAYS:
            case.flag("late_report", f"received {late} school days after occurred_on (limit {LATE_AFTER_SCHOOL_DAYS})")
    return case.problems, case.flags


def submitter_open(case: PupilCase) -> None:
    """A closed organisation records only what happened before it closed, and starts nothing new (a correction of
    its own earlier event is not new)."""
    closed = case.orgs(case.who).closed
    if closed is None:
        return
    if case.day > closed:
        case.problems.append(
            Problem(
                "org_closed",
                "$.payload.occurred_on",
                f"{case.who} closed on {closed}: it may post only events dated on or before its closure",
            )
        )
    elif case.new.type in STARTS and case.new.corrects is None:
        case.problems.append(
            Problem(
                "org_closed",
                "$.payload.type",
                f"{case.who} has closed: it starts no new registration, placement "
                "or case (it may still record removals, ends and corrections dated on or before its closure)",
            )
        )
