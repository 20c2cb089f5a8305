"""AP performance framework per AP setting: attendance, reintegration to mainstream, sustained post-16 destinations, placement length."""

from __future__ import annotations

from collections.abc import Iterator

from ledger.core.rules import Record
from ledger.core.schooltime import academic_year

from .context import Context, Contribution, Metric


def ap_attendance_rate(ctx: Context) -> Iterator[Contribution]:
    year = academic_year(ctx.day)
    for pupil in ctx.pupils:
        for r in pupil.of_type("pupil.attendance_summary_recorded"):
            if r.data["academic_year"] == year:
                yield Contribution(r.data["setting"], r.event_id, r.data["attended_sessions"], r.data["possible_sessions"])


def ap_reintegration_rate(ctx: Context) -> Iterator[Contribution]:
    calendar, terms = ctx.settings.calendar, ctx.settings.reintegration_terms
    for p in ctx.placements:
        deadline = calendar.end_of_term_after(p.start, terms)
        if deadline is None or not ctx.trailing_start <= deadline <= ctx.day:
            continue
        back = p.outcome == "mainstream" and p.end is not None and p.end <= deadline
        yield Contribution(p.setting, p.event_id, 1 if back else 0, 1)


def ap_sustained_post16_rate(ctx: Context) -> Iterator[Contribution]:
    for pupil in ctx.pupils:
        latest: dict[str, Record] = {}
        for r in pupil.of_type("pupil.post16_destination_recorded"):
            if r.occurred_on >= ctx.trailing_start:
                latest[r.submitter] = r
        for setting, r in latest.items():
            yield Contribution(setting, f"{pupil.key}:{setting}", 1 if r.data["sustained"] else 0, 1)


def _ended_lengths(ctx: Context) -> Iterator[Contribution]:
    for p in ctx.placements:
        if p.end is not None and p.end >= ctx.trailing_start:
            yield Contribution(p.setting, p.event_id, (p.end - p.start).days, 1)


def ap_placement_length_mean_days(ctx: Context) -> Iterator[Contribution]:
    return _ended_lengths(ctx)


def ap_placement_length_median_days(ctx: Context) -> Iterator[Contribution]:
    return _ended_lengths(ctx)


METRICS: tuple[Metric, ...] = (
    Metric("ap_attendance_rate", "ap_performance", "rate", ap_attendance_rate, 100.0, unit="AP setting"),
    Metric("ap_reintegration_rate", "ap_performance", "rate", ap_reintegration_rate, 100.0, unit="AP setting"),
    Metric("ap_sustained_post16_rate", "ap_performance", "rate", ap_sustained_post16_rate, 100.0, unit="AP setting"),
    Metric("ap_placement_length_mean_days", "ap_performance", "mean", ap_placement_length_mean_days, unit="AP setting"),
    Metric("ap_placement_length_median_days", "ap_performance", "median", ap_placement_length_median_days, unit="AP setting"),
)
