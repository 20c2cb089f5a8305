"""Exclusions: suspensions and permanent exclusions per 100 pupils on roll, by reason, 45-day cap breaches."""

from __future__ import annotations

from collections.abc import Iterator

from ledger.core.rules import MAIN_STATUSES, SUSPENSION_CAP_DAYS, Record

from .context import Context, Contribution, Metric


def _on_roll(ctx: Context) -> Iterator[tuple[str, str]]:
    for pupil in ctx.pupils:
        for g in pupil.state.registrations:
            if g.open_on(ctx.day) and g.status in MAIN_STATUSES:
                yield g.school, pupil.key


def pupils_on_roll(ctx: Context) -> Iterator[Contribution]:
    for school, key in _on_roll(ctx):
        yield Contribution(school, key, 1)


def _exclusions(ctx: Context, kind: str) -> Iterator[Record]:
    for pupil in ctx.pupils:
        for r in pupil.of_type("pupil.excluded"):
            if r.data["kind"] == kind and ctx.in_year(r):
                yield r


def _rate_per_100_on_roll(ctx: Context, kind: str) -> Iterator[Contribution]:
    for school, key in _on_roll(ctx):
        yield Contribution(school, f"p:{key}", 0, 1)
    for r in _exclusions(ctx, kind):
        yield Contribution(r.data["school"], f"x:{r.event_id}", 1, 0)


def suspension_rate(ctx: Context) -> Iterator[Contribution]:
    return _rate_per_100_on_roll(ctx, "SUSP")


def permanent_exclusion_rate(ctx: Context) -> Iterator[Contribution]:
    return _rate_per_100_on_roll(ctx, "PERM")


def suspensions_by_reason(ctx: Context) -> Iterator[Contribution]:
    for r in _exclusions(ctx, "SUSP"):
        yield Contribution(r.data["school"], r.event_id, 1, label=r.data["reasons"][0])


def permanent_exclusions_by_reason(ctx: Context) -> Iterator[Contribution]:
    for r in _exclusions(ctx, "PERM"):
        yield Contribution(r.data["school"], r.event_id, 1, label=r.data["reasons"][0])


def suspension_cap_breaches(ctx: Context) -> Iterator[Contribution]:
    for pupil in ctx.pupils:
        sessions = 0
        for r in pupil.of_type("pupil.excluded"):
            if r.data["kind"] == "SUSP" and ctx.in_year(r):
                sessions += r.data["sessions"]
                if sessions > 2 * SUSPENSION_CAP_DAYS:
                    yield Contribution(r.data["school"], pupil.key, 1)
                    break


METRICS: tuple[Metric, ...] = (
    Metric("pupils_on_roll", "exclusions", "count", pupils_on_roll, unit="school"),
    Metric("suspension_rate", "exclusions", "rate", suspension_rate, 100.0, unit="school"),
    Metric("permanent_exclusion_rate", "exclusions", "rate", permanent_exclusion_rate, 100.0, unit="school"),
    Metric("suspensions_by_reason", "exclusions", "breakdown", suspensions_by_reason, unit="school"),
    Metric("permanent_exclusions_by_reason", "exclusions", "breakdown", permanent_exclusions_by_reason, unit="school"),
    Metric("suspension_cap_breaches", "exclusions", "count", suspension_cap_breaches, unit="school"),
)
