"""Academic years and school days. Pure."""

from __future__ import annotations

from datetime import date, timedelta


def academic_year_start_of(day: date) -> int:
    """2025 for any date from 1 September 2025 to 31 August 2026: the calendar year its academic year starts in."""
    return day.year if day.month >= 9 else day.year - 1


def academic_year(day: date) -> str:
    """'2025/26' for any date from 1 September 2025 to 31 August 2026."""
    start = academic_year_start_of(day)
    return f"{start}/{(start + 1) % 100:02d}"


def academic_year_start(label: str) -> int:
    return int(label[:4])


def school_days_between(start: date, end: date, holidays: frozenset[date] = frozenset()) -> int:
    """School days after ``start`` up to and including ``end``: weekdays not in ``holidays``.

    The ledger counts weekdays by default; a term calendar (bank holidays, INSET, holidays)
    can be passed as ``holidays``.
    """
    if end <= start:
        return 0
    full_weeks, extra = divmod((end - start).days, 7)
    days = full_weeks * 5
    for i in range(1, extra + 1):
        if (start + timedelta(days=i)).weekday() < 5:
            days += 1
    if holidays:
        days -= sum(1 for h in holidays if start < h <= end and h.weekday() < 5)
    return days
