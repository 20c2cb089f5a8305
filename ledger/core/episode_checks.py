"""The checks of open-ended episodes: AP placements, managed moves, part-time timetables and children missing
education (CME), each started by one event and reviewed or ended by others (``pupil_state.EPISODE_STARTS`` /
``EPISODE_ENDS``). Which run for which event, and in what order: ``ledger.core.rules.PUPIL_CHECKS``. Pure.
"""

from __future__ import annotations

from ledger.core.errors import Category
from ledger.core.identifiers import org_scheme
from ledger.core.la_claims import la_claim
from ledger.core.pupil_case import PupilCase, on_roll
from ledger.core.pupil_state import EPISODE_ENDS

SETTING_TYPES = {"urn": ("URN",), "ukprn": ("UKPRN",), "uprov": ("NFE", "OOT", "OTH", "WBP")}  # by the setting's id scheme


def commissioner_link(case: PupilCase) -> None:
    """A school commissions a placement of a pupil on its roll; an LA one it has a plausible link to."""
    if case.scheme == "urn":
        on_roll(case)
    elif not case.problems:
        la_claim(case)


def no_second_placement(case: PupilCase) -> None:
    """A second placement at the same setting by another commissioner is lawful (hours are summed per pupil); the
    same commissioner's is a duplicate: it reviews or ends the one it has."""
    setting = case.d["setting"]
    if any(
        e.kind == "placement" and e.end is None and e.owner == case.who and e.details.get("setting") == setting
        for e in case.state.episodes.values()
    ):
        case.reject(
            "placement_already_open",
            "setting",
            f"{case.who} already has an open placement of this pupil at {setting}; review it (hours, planned end) or end it first",
        )


def setting_type_matches(case: PupilCase) -> None:
    """The placement's setting_type fits its setting's id (a URN is a school, a UKPRN a provider...)."""
    expected = SETTING_TYPES[org_scheme(case.d["setting"]) or ""]
    if case.d["setting_type"] not in expected:
        case.reject("setting_type_mismatch", "setting_type", f"a setting {case.d['setting']} has setting_type {' or '.join(expected)}")


def episode_open_and_owned(case: PupilCase) -> None:
    """A review or end names an open episode of its kind, is by the organisation that started it (or, ending a
    placement, its setting), and is dated on or after its start."""
    t = case.new.type
    kind, ref = EPISODE_ENDS.get(t, ("placement", "placement_event_id"))
    episode = case.state.episodes.get(case.d[ref])
    what = kind.replace("_", " ")
    if episode is None or episode.kind != kind or episode.end is not None:
        case.reject(f"{kind}_not_open", ref, f"no open {what} started by event {case.d[ref]}")
    elif episode.owner != case.who and not (t == "pupil.ap_placement_ended" and episode.details.get("setting") == case.who):
        # before any of its dates are compared: they are another organisation's
        case.reject(
            "not_owner",
            ref,
            f"only the organisation that started this {what}" + (" (or its setting)" if kind == "placement" else "") + " may update it",
            Category.FORBIDDEN,
        )
    elif case.day < episode.start:
        case.reject("end_before_start", "", f"{case.day} is before the start on {episode.start}")
