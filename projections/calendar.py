"""The term calendar that school days are counted by (schemas/calendars/*.json). Pure."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from pathlib import Path

from ledger.core.codes import SCHEMAS_DIR
from ledger.core.schooltime import school_days_between

DEFAULT_CALENDAR = SCHEMAS_DIR / "calendars" / "england.json"


@dataclass(frozen=True)
class Term:
    year: str
    name: str
    start: date
    end: date


@dataclass(frozen=True)
class TermCalendar:
    """Terms and in-term closures. Weekdays outside every term of a covered academic year are holidays;
    outside the covered years every weekday counts as a school day."""

    terms: tuple[Term, ...]
    holidays: frozenset[date]

    def is_school_day(self, day: date) -> bool:
        return day.weekday() < 5 and day not in self.holidays

    def school_days_between(self, start: date, end: date) -> int:
        """School days after ``start`` up to and including ``end``."""
        return school_days_between(start, end, self.holidays)

    def add_school_days(self, start: date, days: int) -> date:
        """The ``days``-th school day after ``start``."""
        day = start
        while days > 0:
            day += timedelta(days=1)
            if self.is_school_day(day):
                days -= 1
        return day

    def term_index(self, day: date) -> int | None:
        """Index of the term containing ``day``, or of the next term to start after it."""
        for i, term in enumerate(self.terms):
            if day <= term.end:
                return i
        return None

    def end_of_term_after(self, day: date, terms: int) -> date | None:
        """Last day of the ``terms``-th term counting the one that contains (or follows) ``day`` as the first."""
        i = self.term_index(day)
        if i is None or i + terms - 1 >= len(self.terms):
            return None
        return self.terms[i + terms - 1].end


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


@cache
def load_calendar(path: Path = DEFAULT_CALENDAR) -> TermCalendar:
    raw = json.loads(path.read_text("utf-8"))
    terms = tuple(
        sorted(
            (Term(t["year"], t["term"], date.fromisoformat(t["start"]), date.fromisoformat(t["end"])) for t in raw["terms"]),
            key=lambda t: t.start,
        )
    )
    in_term: set[date] = set()
    closed: set[date] = set()
    for t in raw["terms"]:
        in_term.update(_days(date.fromisoformat(t["start"]), date.fromisoformat(t["end"])))
        for first, last in t.get("closures", []):
            closed.update(_days(date.fromisoformat(first), date.fromisoformat(last)))
    holidays: set[date] = set()
    if terms:
        first_day = date(terms[0].start.year, 9, 1) if terms[0].start.month >= 9 else date(terms[0].start.year - 1, 9, 1)
        last_day = date(terms[-1].end.year, 8, 31)
        holidays = {d for d in _days(first_day, last_day) if d.weekday() < 5 and (d not in in_term or d in closed)}
    return TermCalendar(terms, frozenset(holidays))
