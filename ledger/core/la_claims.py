"""An LA's link to a pupil. An LA's notice, CME case or placement gives it a relationship with the pupil (and so a
reading relationship), so the link it claims must be plausible: a school of its area the pupil is (or was last) on
roll at, or an earlier record of its own. A first contact, or one after a removal to an unknown place, home
education, CME or out of the area, is accepted and flagged (``claim_new_area``). Pure.
"""

from __future__ import annotations

from ledger.core.pupil_case import OrgLookup, PupilCase, no_org_facts
from ledger.core.pupil_state import PupilState
from ledger.core.records import Record

# Removals after which the pupil may turn up in another area: a new LA's first claim is then plausible (flagged).
NEW_AREA_DESTINATIONS = frozenset({"moved_away", "unknown", "cme", "ehe"})


def la_link(state: PupilState, new: Record, orgs: OrgLookup = no_org_facts) -> str | None:
    """The link of the LA posting ``new`` to the pupil whose ``state`` this is: "linked", "new_area" (plausible,
    flagged) or None (implausible). Asked by the checks here, of an EHCP request and of an EHC plan's band."""
    la, day = new.submitter, new.occurred_on
    if la in state.submitters_seen:
        return "linked"  # it has an accepted record of the pupil already (a placement, a notice...)
    if not state.registrations:
        return "new_area"  # first contact: the ledger knows no school of the pupil
    open_then = [r for r in state.registrations if r.open_on(day)]
    ended = [r for r in state.registrations if r.end is not None and r.end <= day]
    latest = max(ended, key=lambda r: r.end or day) if ended else None
    if any(orgs(r.school).la == la for r in [*open_then, *([latest] if latest else [])]):
        return "linked"
    if not open_then and latest is not None and latest.destination in NEW_AREA_DESTINATIONS:
        return "new_area"
    return None


def la_claim(case: PupilCase) -> None:
    """The submitting LA's link to the pupil is plausible (a new area's is flagged)."""
    relation = la_link(case.state, case.new, case.orgs)
    if relation is None:
        case.reject(
            "implausible_claim",
            "",
            f"{case.who} has no recorded link to this pupil: the pupil is not on roll (nor was last) at a "
            "school in its area, it has no earlier record of the pupil, and the pupil's last removal was not to an unknown place, "
            "home education, CME or out of the area",
        )
    elif relation == "new_area":
        case.flag(
            "claim_new_area",
            f"{case.who} records this pupil without an earlier link (a first record, or after a move out of the "
            "pupil's last area); shown to the operator",
        )
