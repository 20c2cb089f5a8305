"""Placements register: open AP placements, overdue time-limited ones, placement lengths (docs/metrics.md)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from . import weighted
from .context import Context, Contribution, Metric, Placement
from .published import ap_placements_by_setting_type


def open_ap_placements(ctx: Context) -> Iterator[Contribution]:
    for p in ctx.placements:
        if p.is_open():
            yield Contribution(p.commissioner, p.event_id, 1)


def overdue_time_limited_placements(ctx: Context) -> Iterator[Contribution]:
    for p in ctx.placements:
        if p.is_overdue(ctx.day):
            yield Contribution(p.commissioner, p.event_id, 1)


def _open_by(ctx: Context, label: Callable[[Placement], str]) -> Iterator[Contribution]:
    for p in ctx.placements:
        if p.is_open():
            yield Contribution(p.commissioner, p.event_id, 1, label=label(p))


def _started_by(ctx: Context, field: str) -> Iterator[Contribution]:
    """Placements started in the academic year to D (movements into AP), by a field of the start event."""
    for pupil in ctx.pupils:
        for r in pupil.of_type("pupil.ap_placement_started"):
            if ctx.in_year(r):
                yield Contribution(r.data["commissioner"], r.event_id, 1, label=str(r.data[field]))


def placements_ended_by_outcome(ctx: Context) -> Iterator[Contribution]:
    """Placements ended in the academic year to D (movements out of AP), by outcome, under the placement's commissioner."""
    commissioner = {p.event_id: p.commissioner for p in ctx.placements}
    for pupil in ctx.pupils:
        for r in pupil.of_type("pupil.ap_placement_ended"):
            unit = commissioner.get(r.data["placement_event_id"])
            if unit is not None and ctx.in_year(r):
                yield Contribution(unit, r.event_id, 1, label=r.data["outcome"])


def _lengths(days: Counter[int]) -> dict[str, Any]:
    """The count, mean and median of lengths in days, each with its number of placements."""
    mean = weighted.mean(days.items())
    return {"count": sum(days.values()), "mean": None if mean is None else round(mean, 1), "median": weighted.median(days.items())}


def placements_register(ctx: Context, level: str, scope: str) -> dict[str, Any]:
    """Open AP placements commissioned within the scope, by setting type and tier; overdue time-limited
    placements; lengths of open placements so far and of placements ended in the last 365 days."""
    tally = ctx.placement_tally(level, scope)
    by_type: Counter[str] = Counter()
    by_tier: Counter[int] = Counter()
    pairs: Counter[tuple[str, int]] = Counter()
    so_far: Counter[int] = Counter()
    overdue = 0
    for (setting_type, tier, is_overdue, start), n in tally.open.items():
        by_type[setting_type] += n
        by_tier[tier] += n
        pairs[(setting_type, tier)] += n
        so_far[(ctx.day - start).days] += n
        overdue += n if is_overdue else 0
    published_scope = scope if level in ("la", "national") else None
    return {
        "open_placements": sum(tally.open.values()),
        "by_setting_type": dict(sorted(by_type.items())),
        "by_tier": {str(k): v for k, v in sorted(by_tier.items())},
        "by_setting_type_and_tier": [{"setting_type": s, "tier": t, "open_placements": n} for (s, t), n in sorted(pairs.items())],
        "overdue_time_limited_placements": overdue,
        "open_placement_days_so_far": _lengths(so_far),
        "ended_placement_days": _lengths(tally.ended),
        "published": ap_placements_by_setting_type(published_scope) if published_scope else None,
    }


METRICS: tuple[Metric, ...] = (
    Metric("open_ap_placements", "placements", "count", open_ap_placements, unit="commissioner"),
    Metric("overdue_time_limited_placements", "placements", "count", overdue_time_limited_placements, unit="commissioner"),
    Metric(
        "open_ap_placements_by_setting_type",
        "placements",
        "breakdown",
        lambda ctx: _open_by(ctx, lambda p: p.setting_type),
        unit="commissioner",
    ),
    Metric("open_ap_placements_by_tier", "placements", "breakdown", lambda ctx: _open_by(ctx, lambda p: str(p.tier)), unit="commissioner"),
    Metric(
        "placements_started_by_setting_type", "placements", "breakdown", lambda ctx: _started_by(ctx, "setting_type"), unit="commissioner"
    ),
    Metric("placements_started_by_tier", "placements", "breakdown", lambda ctx: _started_by(ctx, "tier"), unit="commissioner"),
    Metric("placements_started_by_reason", "placements", "breakdown", lambda ctx: _started_by(ctx, "reason"), unit="commissioner"),
    Metric("placements_ended_by_outcome", "placements", "breakdown", placements_ended_by_outcome, unit="commissioner"),
)
