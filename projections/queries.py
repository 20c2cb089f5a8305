"""The read models the API serves, each for a school, trust, LA or England at a moment."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from .cases import cases
from .config import ViewSettings
from .context import ENGLAND, Context
from .ehcp import area_send_inspections
from .facts import Moment
from .metrics import report
from .placements import placements_register
from .read_model_ahead import REPORT
from .read_model_queries import read_model_context, state_level
from .unregistered import unregistered_providers


def case_list(db: Any, moment: Moment, level: str, scope: str) -> list[dict[str, Any]]:
    return [asdict(c) for c in cases(db, moment) if level == "national" or c.org == scope]


def accountability_metrics(db: Any, settings: ViewSettings, moment: Moment, level: str, scope: str) -> dict[str, Any]:
    return metrics_report(read_model_context(db, moment, settings, state_level(level), REPORT), db, level, scope)


def metrics_report(ctx: Context, db: Any, level: str, scope: str) -> dict[str, Any]:
    """Everything for one scope: metrics with national value and rank, register, provider watch, cases."""
    return {
        "metrics": report(ctx, level, scope),
        "placements": placements_register(ctx, level, scope),
        "unregistered_providers": unregistered_providers(ctx, level, scope),
        "cases": case_list(db, ctx.moment, level, scope),
        "area_send_inspections": area_send_inspections(ctx, level, scope),
    }


def scope_for(level: str, org: str | None) -> str:
    return ENGLAND if level == "national" else str(org)
