"""Roll integrity: unknown destinations, no setting N school days after leaving, SEN exits, backdated and late reports, unexplained exits."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

from ledger.core.rules import Record

from .context import Context, Contribution, Metric
from .pupils import Pupil

GAP_EXEMPT_DESTINATIONS = ("died", "moved_away", "ehe", "post16", "custody")
UNEXPLAINED_DESTINATIONS = ("unknown", "cme")


def _removals(ctx: Context, in_year: bool = True) -> Iterator[tuple[Pupil, Record]]:
    for pupil in ctx.pupils:
        for r in pupil.of_type("pupil.deregistered"):
            if not in_year or ctx.in_year(r):
                yield pupil, r


def _gap_check_day(ctx: Context, removal: Record) -> date:
    return ctx.settings.calendar.add_school_days(removal.occurred_on, ctx.settings.gap_school_days)


def _without_setting(ctx: Context, pupil: Pupil, removal: Record) -> bool:
    """No registration or AP placement in the N school days after leaving (once that many have passed)."""
    if removal.data["destination"] in GAP_EXEMPT_DESTINATIONS:
        return False
    check_day = _gap_check_day(ctx, removal)
    return check_day <= ctx.day and not pupil.has_setting_between(removal.occurred_on, check_day)


def removals_unknown_destination(ctx: Context) -> Iterator[Contribution]:
    for _, r in _removals(ctx):
        if r.data["destination"] == "unknown":
            yield Contribution(r.data["school"], r.event_id, 1)


def children_without_setting_after_leaving(ctx: Context) -> Iterator[Contribution]:
    for pupil, r in _removals(ctx, in_year=False):
        if ctx.year_start <= _gap_check_day(ctx, r) and _without_setting(ctx, pupil, r):
            yield Contribution(r.data["school"], r.event_id, 1)


def sen_exits(ctx: Context) -> Iterator[Contribution]:
    for pupil, r in _removals(ctx):
        ended = [g for g in pupil.state.registrations if g.school == r.data["school"] and g.end == r.occurred_on]
        if ended and ended[-1].sen_status != "N":
            yield Contribution(r.data["school"], r.event_id, 1, label=ended[-1].sen_status)


def backdated_removals(ctx: Context) -> Iterator[Contribution]:
    for pupil, r in _removals(ctx):
        if "backdated_removal" in pupil.flags.get(r.event_id, ()):
            yield Contribution(r.data["school"], r.event_id, 1)


def late_report_rate(ctx: Context) -> Iterator[Contribution]:
    calendar, limit = ctx.settings.calendar, ctx.settings.late_school_days
    for pupil in ctx.pupils:
        for r in pupil.records:
            if ctx.in_year(r):
                late = calendar.school_days_between(r.occurred_on, r.received_at.date()) > limit
                yield Contribution(r.submitter, r.event_id, 1 if late else 0, 1)


def unexplained_exit_rate(ctx: Context) -> Iterator[Contribution]:
    for pupil in ctx.pupils:
        for g in pupil.state.registrations:
            if g.start <= ctx.day and (g.end is None or g.end >= ctx.year_start):
                yield Contribution(g.school, f"p:{pupil.key}", 0, 1)
    for pupil, r in _removals(ctx):
        if r.data["destination"] in UNEXPLAINED_DESTINATIONS or _without_setting(ctx, pupil, r):
            yield Contribution(r.data["school"], f"x:{r.event_id}", 1, 0)


METRICS: tuple[Metric, ...] = (
    Metric("removals_unknown_destination", "roll_integrity", "count", removals_unknown_destination, unit="school left"),
    Metric("children_without_setting_after_leaving", "roll_integrity", "count", children_without_setting_after_leaving, unit="school left"),
    Metric("sen_exits", "roll_integrity", "count", sen_exits, unit="school left"),
    Metric("backdated_removals", "roll_integrity", "count", backdated_removals, unit="school left"),
    Metric("late_report_rate", "roll_integrity", "rate", late_report_rate, 100.0, unit="submitter"),
    Metric("unexplained_exit_rate", "roll_integrity", "rate", unexplained_exit_rate, 100.0, unit="school left"),
)
