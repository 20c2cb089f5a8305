"""The variables of a research extract and their generalisation hierarchies. Pure.

Every variable is a string column. Its values at the finest level come from ``extract``; each step of its
hierarchy maps a value to the next coarser one, and the last step suppresses it (``c``). The DfE symbols keep
their meaning at every level below the top: ``z`` not applicable, ``x`` not known; ``open`` is an episode not
ended by the checkpoint. ``other`` groups categories too rare to release (``anonymise.group_rare``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache

from ledger.core.codes import code_list

SUPPRESSED, NOT_APPLICABLE, NOT_KNOWN, OPEN, OTHER = "c", "z", "x", "open", "other"
SYMBOLS = frozenset({SUPPRESSED, NOT_APPLICABLE, NOT_KNOWN, OPEN, OTHER})
PSEUDONYM = "pseudonym"

Step = Callable[[str], str]


@dataclass(frozen=True)
class Hierarchy:
    """Named levels from the finest; ``steps[i]`` maps a value at level i to level i + 1 (the last level is ``suppressed``)."""

    levels: tuple[str, ...]
    steps: tuple[Step, ...]

    def at(self, value: str, start: int, end: int) -> str:
        """``value`` (at level ``start``) generalised to level ``end``."""
        for step in self.steps[start:end]:
            value = step(value)
        return value

    @property
    def top(self) -> int:
        return len(self.levels) - 1


def _keeping_symbols(step: Step) -> Step:
    return lambda value: value if value in SYMBOLS else step(value)


def _suppress(_: str) -> str:
    return SUPPRESSED


def _flat() -> Hierarchy:
    return Hierarchy(("value", "suppressed"), (_suppress,))


TERM_OF_MONTH = {
    9: "autumn",
    10: "autumn",
    11: "autumn",
    12: "autumn",
    1: "spring",
    2: "spring",
    3: "spring",
    4: "summer",
    5: "summer",
    6: "summer",
    7: "summer",
    8: "summer",
}


def month_to_term(month: str) -> str:
    """'2025-10' -> '2025/26 autumn' (autumn September-December, spring January-March, summer April-August)."""
    year, number = int(month[:4]), int(month[5:7])
    start = year if number >= 9 else year - 1
    return f"{start}/{(start + 1) % 100:02d} {TERM_OF_MONTH[number]}"


def term_to_year(term: str) -> str:
    return term.split(" ", 1)[0]


DATES = Hierarchy(
    ("month", "term", "academic_year", "suppressed"), (_keeping_symbols(month_to_term), _keeping_symbols(term_to_year), _suppress)
)

YEAR_GROUPS = ("N1", "N2", "R", *map(str, range(1, 15)))
KEY_STAGE = {
    "N1": "EY",
    "N2": "EY",
    "R": "EY",
    "1": "KS1",
    "2": "KS1",
    **{str(y): "KS2" for y in range(3, 7)},
    **{str(y): "KS3" for y in range(7, 10)},
    "10": "KS4",
    "11": "KS4",
    "12": "KS5",
    "13": "KS5",
    "14": "KS5",
}
PHASE = {"EY": "primary", "KS1": "primary", "KS2": "primary", "KS3": "secondary", "KS4": "secondary", "KS5": "post16"}
YEAR_GROUP = Hierarchy(
    ("year_group", "key_stage", "phase", "suppressed"),
    (_keeping_symbols(KEY_STAGE.__getitem__), _keeping_symbols(PHASE.__getitem__), _suppress),
)


def age_of_year_group(year_group: str) -> str:
    """Age in whole years on 31 August before the academic year: reception children are 4, year 1 children 5."""
    return str({"N1": 2, "N2": 3, "R": 4}.get(year_group) or int(year_group) + 4)


def _age_band(age: str) -> str:
    years = int(age)
    return "2-4" if years <= 4 else "5-10" if years <= 10 else "11-15" if years <= 15 else "16-18"


AGE = Hierarchy(("age", "age_band", "suppressed"), (_keeping_symbols(_age_band), _suppress))
SEN = Hierarchy(("sen_status", "any_sen", "suppressed"), (_keeping_symbols(lambda v: "N" if v == "N" else "any_sen"), _suppress))


KIND_GROUP = {
    "registration": "roll",
    "home_education": "roll",
    "missing_education": "roll",
    "managed_move": "roll",
    "placement": "provision",
    "part_time_timetable": "provision",
    "attendance_summary": "provision",
    "exclusion": "exclusion",
    "post16_destination": "destination",
    "pupil.registered": "roll",
    "pupil.deregistered": "roll",
    "pupil.home_education_notified": "roll",
    "pupil.missing_education_recorded": "roll",
    "pupil.missing_education_resolved": "roll",
    "pupil.managed_move_started": "roll",
    "pupil.managed_move_ended": "roll",
    "pupil.ap_placement_started": "provision",
    "pupil.ap_placement_reviewed": "provision",
    "pupil.ap_placement_ended": "provision",
    "pupil.part_time_timetable_started": "provision",
    "pupil.part_time_timetable_ended": "provision",
    "pupil.attendance_summary_recorded": "provision",
    "pupil.excluded": "exclusion",
    "pupil.exclusion_reviewed": "exclusion",
    "pupil.post16_destination_recorded": "destination",
}
KIND = Hierarchy(("kind", "kind_group", "suppressed"), (_keeping_symbols(lambda v: KIND_GROUP.get(v, OTHER)), _suppress))


@cache
def _regions() -> dict[str, str]:
    return {la: region for version in code_list("la_regions").versions for la, region in version.codes.items()}


def region_of_la(la: str) -> str:
    """'la:801' -> its region code (E12000009), or x if the LA has none."""
    return _regions().get(la.split(":", 1)[1], NOT_KNOWN)


def establishment_hierarchy(la_of: Mapping[str, str | None]) -> Hierarchy:
    """School (or setting) -> its LA (``la_of``, from the organisations' records; an LA stays itself) -> region."""

    def to_la(org: str) -> str:
        return org if org.startswith("la:") else la_of.get(org) or NOT_KNOWN

    return Hierarchy(("school", "la", "region", "suppressed"), (_keeping_symbols(to_la), _keeping_symbols(region_of_la), _suppress))


ESTABLISHMENT_LEVELS = {"school": 0, "la": 1, "region": 2}
DATE_DETAILS = {"month": 0, "term": 1}
DATE_VARIABLES = ("start", "end")
# Variables whose rare categories are not grouped (dates generalise instead; kinds are the rows' shape)
NOT_GROUPED = frozenset({"kind", "start", "end"})


def hierarchy(name: str, la_of: Mapping[str, str | None]) -> Hierarchy:
    if name in DATE_VARIABLES:
        return DATES
    if name == "establishment":
        return establishment_hierarchy(la_of)
    return {"year_group": YEAR_GROUP, "age": AGE, "sen_status": SEN, "kind": KIND}.get(name) or _flat()


def minimum_level(name: str, establishment_level: str, date_detail: str) -> int:
    """The finest level a project may see of ``name`` (its approval's establishment level and date detail)."""
    if name in DATE_VARIABLES:
        return DATE_DETAILS[date_detail]
    if name == "establishment":
        return ESTABLISHMENT_LEVELS[establishment_level]
    return 0


# -- bands ------------------------------------------------------------------------------------------


def duration_band(days: int) -> str:
    if days < 7:
        return "under 1 week"
    if days < 29:
        return "1-4 weeks"
    if days < 92:
        return "1-3 months"
    if days < 183:
        return "3-6 months"
    return "6-12 months" if days < 366 else "12 months+"


def hours_band(hours: float) -> str:
    return "0-9" if hours < 10 else "10-17" if hours < 18 else "18-25" if hours < 26 else "26+"


def sessions_band(sessions: int) -> str:
    return "1-2" if sessions <= 2 else "3-5" if sessions <= 5 else "6-10" if sessions <= 10 else "11+"


def attendance_band(attended: int, possible: int) -> str:
    if possible <= 0:
        return NOT_KNOWN
    share = attended / possible
    return "<50%" if share < 0.5 else "50-79%" if share < 0.8 else "80-89%" if share < 0.9 else "90%+"
