"""The read models the API serves, each for a school, trust, LA or England at a moment."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import asdict
from typing import Any

from .cases import cases
from .config import ViewSettings
from .facts import Moment
from .metrics import ENGLAND, UNREGISTERED_SETTING_TYPES, Context, Placement, context, provider_watch, report, scope_of
from .published import ap_placements_by_setting_type


def _lengths(days: list[int]) -> dict[str, Any]:
    return {"count": len(days), "mean": round(statistics.mean(days), 1) if days else None,
            "median": statistics.median(days) if days else None}


def _in_scope(ctx: Context, unit: str, level: str, scope: str) -> bool:
    return scope_of(unit, level, ctx.directory) == scope


def placements_register(ctx: Context, level: str, scope: str) -> dict[str, Any]:
    """Open AP placements commissioned within the scope, by setting type and tier; overdue time-limited
    placements; lengths of open placements so far and of placements ended in the last 365 days."""
    mine: list[Placement] = [p for p in ctx.placements if _in_scope(ctx, p.commissioner, level, scope)]
    open_now = [p for p in mine if p.is_open()]
    overdue = [p for p in open_now if p.tier == 2 and p.planned_end is not None and p.planned_end < ctx.day]
    pairs = Counter((p.setting_type, p.tier) for p in open_now)
    published_scope = scope if level in ("la", "national") else None
    return {
        "open_placements": len(open_now),
        "by_setting_type": dict(sorted(Counter(p.setting_type for p in open_now).items())),
        "by_tier": {str(k): v for k, v in sorted(Counter(p.tier for p in open_now).items())},
        "by_setting_type_and_tier": [{"setting_type": s, "tier": t, "open_placements": n} for (s, t), n in sorted(pairs.items())],
        "overdue_time_limited_placements": len(overdue),
        "open_placement_days_so_far": _lengths([(ctx.day - p.start).days for p in open_now]),
        "ended_placement_days": _lengths([(p.end - p.start).days for p in mine if p.end is not None and p.end >= ctx.trailing_start]),
        "published": ap_placements_by_setting_type(published_scope) if published_scope else None,
    }


def unregistered_providers(ctx: Context, level: str, scope: str) -> dict[str, Any]:
    """Unregistered providers used within the scope (or in the scope's area), with their whole-provider
    pupils and weekly hours, flagged when they appear to need registration as a school."""
    providers = []
    for watch in provider_watch(ctx):
        units = (watch.provider, *watch.commissioners)
        if level == "national" or any(_in_scope(ctx, u, level, scope) for u in units):
            providers.append({**asdict(watch), "needs_registration": watch.needs_registration(ctx.settings)})
    published = ap_placements_by_setting_type(scope) if level in ("la", "national") else None
    if published is not None:
        counts = {k: v for k, v in published["by_setting_type"].items() if k in UNREGISTERED_SETTING_TYPES}
        published = {**published, "by_setting_type": counts, "total": sum(counts.values())}
    return {
        "full_time_hours": ctx.settings.full_time_hours, "registration_pupils": ctx.settings.registration_pupils,
        "providers": providers, "flagged": sum(1 for p in providers if p["needs_registration"]), "published": published,
    }


def case_list(db: Any, moment: Moment, level: str, scope: str) -> list[dict[str, Any]]:
    return [asdict(c) for c in cases(db, moment) if level == "national" or c.org == scope]


def accountability_metrics(db: Any, settings: ViewSettings, moment: Moment, level: str, scope: str) -> dict[str, Any]:
    return metrics_report(context(db, moment, settings), db, level, scope)


def metrics_report(ctx: Context, db: Any, level: str, scope: str) -> dict[str, Any]:
    """Everything for one scope: metrics with national value and rank, register, provider watch, cases."""
    return {
        "metrics": report(ctx, level, scope),
        "placements": placements_register(ctx, level, scope),
        "unregistered_providers": unregistered_providers(ctx, level, scope),
        "cases": case_list(db, ctx.moment, level, scope),
    }


def scope_for(level: str, org: str | None) -> str:
    return ENGLAND if level == "national" else str(org)
