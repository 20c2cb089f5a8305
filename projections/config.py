"""Settings of the views (environment-driven, read in one place)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .calendar import DEFAULT_CALENDAR, TermCalendar, load_calendar


@dataclass(frozen=True)
class ViewSettings:
    full_time_hours: float = 18.0  # unregistered provision: hours per week counted as full-time education
    registration_pupils: int = 5  # ... to this many pupils, or to one with SEN / EHCP / looked after
    gap_school_days: int = 20  # roll integrity: no setting this many school days after leaving
    late_school_days: int = 5  # a report received more than this many school days after occurred_on is late
    reintegration_terms: int = 2  # AP performance: back to mainstream within this many terms
    calendar_path: Path = field(default=DEFAULT_CALENDAR)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ViewSettings:
        env = os.environ if environ is None else environ
        return cls(
            full_time_hours=float(env.get("PUPIL_LEDGER_FULL_TIME_HOURS", cls.full_time_hours)),
            registration_pupils=int(env.get("PUPIL_LEDGER_REGISTRATION_PUPILS", cls.registration_pupils)),
            gap_school_days=int(env.get("PUPIL_LEDGER_GAP_SCHOOL_DAYS", cls.gap_school_days)),
            late_school_days=int(env.get("PUPIL_LEDGER_LATE_SCHOOL_DAYS", cls.late_school_days)),
            reintegration_terms=int(env.get("PUPIL_LEDGER_REINTEGRATION_TERMS", cls.reintegration_terms)),
            calendar_path=Path(env.get("PUPIL_LEDGER_TERM_CALENDAR", str(DEFAULT_CALENDAR))),
        )

    @property
    def calendar(self) -> TermCalendar:
        return load_calendar(self.calendar_path)
