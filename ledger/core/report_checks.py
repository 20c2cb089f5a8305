"""The checks of what a setting or LA reports about a pupil it had: attendance summaries
(``pupil.attendance_summary_recorded``) and post-16 destinations (``pupil.post16_destination_recorded``). The writer
must have had a relationship with the pupil. Which run for which event: ``ledger.core.rules.PUPIL_CHECKS``. Pure.
"""

from __future__ import annotations

from ledger.core.pupil_case import PupilCase


def had_at_placement(case: PupilCase, setting: str) -> bool:
    """``setting`` was the setting of a placement of the pupil (open or ended)."""
    return any(e.kind == "placement" and e.details.get("setting") == setting for e in case.state.episodes.values())


def attended_within_possible(case: PupilCase) -> None:
    """The sessions attended are no more than the sessions possible."""
    if case.d["attended_sessions"] > case.d["possible_sessions"]:
        case.reject("attended_over_possible", "attended_sessions", "attended_sessions exceeds possible_sessions")


def attendance_writer(case: PupilCase) -> None:
    """Attendance at a setting is recorded by that setting, if it had the pupil, or by a commissioner of a placement there."""
    who, setting = case.who, case.d["setting"]
    commissioned = any(
        e.kind == "placement" and e.owner == who and e.details.get("setting") == setting for e in case.state.episodes.values()
    )
    own_setting = setting == who and (case.state.ever_at(who) or had_at_placement(case, who))
    if not (commissioned or own_setting):
        case.reject(
            "writer_not_related",
            "setting",
            f"{who} records attendance at a setting where it had the pupil (on roll, or as "
            "the setting of a placement) or at the setting of a placement it commissioned",
        )


def destination_writer(case: PupilCase) -> None:
    """A destination is recorded by a setting that had the pupil, or an LA with a school of the pupil or a record of its own."""
    state, who = case.state, case.who
    if case.scheme == "la":
        related = who in state.submitters_seen or any(case.orgs(r.school).la == who for r in state.registrations)
    else:
        related = state.ever_at(who) or had_at_placement(case, who)
    if not related:
        case.reject(
            "writer_not_related",
            "",
            f"{who} has had no relationship with this pupil (on roll, as a placement's setting, or "
            "as the LA of a school the pupil attended or with an earlier record of the pupil)",
        )
