"""The checks of exclusions: a suspension or permanent exclusion (``pupil.excluded``) and its review
(``pupil.exclusion_reviewed``). Which run for which event, and in what order: ``ledger.core.rules.PUPIL_CHECKS``. Pure.
"""

from __future__ import annotations

from ledger.core.errors import Category
from ledger.core.pupil_case import PupilCase
from ledger.core.schooltime import academic_year

SUSPENSION_CAP_DAYS = 45  # a pupil's suspensions in one academic year (two sessions a day)


def suspension_cap(case: PupilCase) -> None:
    """A suspension that takes the pupil past the year's cap is flagged (the cap counts every school's suspensions)."""
    if case.d["kind"] != "SUSP":
        return
    year = academic_year(case.day)
    if case.state.suspension_sessions.get(year, 0) + case.d["sessions"] > 2 * SUSPENSION_CAP_DAYS:
        # the total counts other schools' suspensions (the cap is the pupil's): it is not given
        case.flag("suspension_cap_exceeded", f"more than {SUSPENSION_CAP_DAYS} suspension days in {year}, counting every school's")


def exclusion_review(case: PupilCase) -> None:
    """A review names an exclusion of the pupil by the school it names, and is recorded by that school or its LA."""
    d, who = case.d, case.who
    exclusion = case.state.exclusions.get(d["exclusion_event_id"])
    if exclusion is None:
        case.reject("exclusion_unknown", "exclusion_event_id", "no exclusion with that event_id is recorded for this pupil")
    elif exclusion.data["school"] != d["school"]:
        case.reject("exclusion_school", "school", f"that exclusion was not recorded by {d['school']}")
    elif case.scheme == "urn" and who != d["school"]:
        case.reject("not_submitter", "school", f"school must be the submitter ({who})", Category.FORBIDDEN)
    elif case.scheme == "la" and case.orgs(d["school"]).la != who:
        case.reject("writer_not_related", "school", "a review of an exclusion is recorded by the excluding school or the LA it is in")
