"""Costed placements, AP budgets and plan capacity per LA and England (issue 25; docs/metrics.md "Plans and funding").

Every placement with a band in force on D (``funding.band_assigned``: an AP placement open on D, or a pupil's EHC plan
placement) is costed at the annual price the national tariff in force on D gives its band and provision type. The
unit is the LA that assigned the band; money is integer pence.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

from ledger.core.funding_rules import financial_year_of

from .context import Context, Contribution, Metric
from .plans import Band


@dataclass(frozen=True)
class Costed:
    """A placement with a band in force on D, as the metrics count it."""

    band: Band
    setting: str
    tier: int | None  # AP placements only
    price: int | None  # annual pence from the tariff in force on D; None when that tariff does not price the band

    @property
    def la(self) -> str:
        return self.band.la

    @property
    def is_ap(self) -> bool:
        return bool(self.band.data["basis"] == "ap_placement")


def _costed(ctx: Context) -> list[Costed]:
    day: date = ctx.day
    bands = ctx.funding.bands_on(day)
    banded = {str(band.data.get("placement_event_id")) for band in bands if band.data["basis"] == "ap_placement"}
    # the banded placements open on D (a state at D has no end after D), not every open placement
    placements = {i: p for i, p in ctx.open_placements_by_id(banded).items() if p.start <= day}
    tariff = ctx.funding.tariff_on(day)
    out = []
    for band in bands:
        d = band.data
        price = tariff.prices.get((d["band"], d["provision_type"])) if tariff else None
        if d["basis"] == "ap_placement":
            placement = placements.get(str(d.get("placement_event_id")))
            if placement is None:  # ended (or not open) on D: nothing is committed for it
                continue
            out.append(Costed(band, placement.setting, placement.tier, price))
        else:
            out.append(Costed(band, str(d["setting"]), None, price))
    return sorted(out, key=lambda c: c.band.event_id)


def costed(ctx: Context) -> list[Costed]:
    return ctx.derived("funding_costed", _costed)


def _spend(ctx: Context, ap: bool, label: str = "") -> Iterator[Contribution]:
    for c in costed(ctx):
        if c.is_ap is ap and c.price is not None:
            text = {"tier": str(c.tier), "provision_type": c.band.data["provision_type"]}.get(label, "")
            yield Contribution(c.la, c.band.event_id, c.price, 0, text)


def funding_committed_ap_pence(ctx: Context) -> Iterator[Contribution]:
    return _spend(ctx, True)


def funding_committed_ap_by_tier(ctx: Context) -> Iterator[Contribution]:
    return _spend(ctx, True, "tier")


def funding_committed_ap_by_provision_type(ctx: Context) -> Iterator[Contribution]:
    return _spend(ctx, True, "provision_type")


def funding_committed_high_needs_pence(ctx: Context) -> Iterator[Contribution]:
    return _spend(ctx, False)


def funding_committed_high_needs_by_provision_type(ctx: Context) -> Iterator[Contribution]:
    return _spend(ctx, False, "provision_type")


def _budgets(ctx: Context) -> Iterator[Contribution]:
    year = financial_year_of(ctx.day)
    for la, by_year in sorted(ctx.funding.budgets.items()):
        found = by_year.get(year)
        if found is not None:
            yield Contribution(la, f"{la}:ap_budget:{year}", 0, int(found["amount_pence"]))


def ap_budget_pence(ctx: Context) -> Iterator[Contribution]:
    for c in _budgets(ctx):
        yield Contribution(c.unit, c.key, c.den)


def ap_budget_committed_rate(ctx: Context) -> Iterator[Contribution]:
    yield from _spend(ctx, True)
    yield from _budgets(ctx)


def _plan_settings(ctx: Context) -> Iterator[tuple[str, dict[str, Any]]]:
    for la in sorted(ctx.funding.plans):
        plan = ctx.funding.plan_on(la, ctx.day)
        if plan is not None:
            for setting in plan.settings():
                yield la, setting


def plan_places_by_need(ctx: Context) -> Iterator[Contribution]:
    for la, s in _plan_settings(ctx):
        for need in s["needs"]:
            yield Contribution(la, f"{la}:{s['setting']}:{need}", int(s["places"]), 0, str(need))


def plan_placements_by_need(ctx: Context) -> Iterator[Contribution]:
    for c in costed(ctx):
        yield Contribution(c.la, c.band.event_id, 1, 0, c.band.data["need"])


def plan_places_used_rate(ctx: Context) -> Iterator[Contribution]:
    for c in costed(ctx):
        yield Contribution(c.la, c.band.event_id, 1, 0)
    for la, s in _plan_settings(ctx):
        yield Contribution(la, f"{la}:{s['setting']}:places", 0, int(s["places"]))


def placements_outside_plan(ctx: Context) -> Iterator[Contribution]:
    for c in costed(ctx):
        plan = ctx.funding.plan_on(c.la, ctx.day)
        if plan is None or c.setting not in {s["setting"] for s in plan.settings()}:
            yield Contribution(c.la, c.band.event_id, 1)


def ap_service_capacity_by_tier(ctx: Context) -> Iterator[Contribution]:
    for la in sorted(ctx.funding.plans):
        plan = ctx.funding.plan_on(la, ctx.day)
        if plan is not None:
            for tier in plan.data["ap_service"]["tiers"]:
                yield Contribution(la, f"{la}:ap_service:{tier['tier']}", int(tier["capacity"]), 0, str(tier["tier"]))


def programme_deficit_agreed_pence(ctx: Context) -> Iterator[Contribution]:
    year = financial_year_of(ctx.day)
    for la, joined in sorted(ctx.funding.programmes.items()):
        for programme in joined:
            step = next((s for s in programme["deficit_path"] if s["financial_year"] == year), None)
            if step is not None:
                yield Contribution(la, f"{la}:{programme['programme']}:{year}", int(step["deficit_pence"]))


# Spend is a sum of tariff prices, so a total (or its share of a budget) gives away how many placements it is made of
# wherever they share a price: small counts would be disclosed through money. These figures are for signed-in readers
# (dashboards, accountabilityMetrics) and are left out of the public transparency reports.
NOT_PUBLIC = frozenset(
    {
        "funding_committed_ap_pence",
        "funding_committed_ap_by_tier",
        "funding_committed_ap_by_provision_type",
        "funding_committed_high_needs_pence",
        "funding_committed_high_needs_by_provision_type",
        "ap_budget_committed_rate",
    }
)

METRICS: tuple[Metric, ...] = (
    Metric("funding_committed_ap_pence", "funding", "count", funding_committed_ap_pence, unit="LA"),
    Metric("funding_committed_ap_by_tier", "funding", "breakdown", funding_committed_ap_by_tier, unit="LA"),
    Metric("funding_committed_ap_by_provision_type", "funding", "breakdown", funding_committed_ap_by_provision_type, unit="LA"),
    Metric("funding_committed_high_needs_pence", "funding", "count", funding_committed_high_needs_pence, unit="LA"),
    Metric(
        "funding_committed_high_needs_by_provision_type", "funding", "breakdown", funding_committed_high_needs_by_provision_type, unit="LA"
    ),
    Metric("ap_budget_pence", "funding", "count", ap_budget_pence, unit="LA"),
    Metric("ap_budget_committed_rate", "funding", "rate", ap_budget_committed_rate, 100.0, unit="LA"),
    Metric("plan_places_by_need", "funding", "breakdown", plan_places_by_need, unit="LA"),
    Metric("plan_placements_by_need", "funding", "breakdown", plan_placements_by_need, unit="LA"),
    Metric("plan_places_used_rate", "funding", "rate", plan_places_used_rate, 100.0, unit="LA"),
    Metric("placements_outside_plan", "funding", "count", placements_outside_plan, unit="LA"),
    Metric("ap_service_capacity_by_tier", "funding", "breakdown", ap_service_capacity_by_tier, unit="LA"),
    Metric("programme_deficit_agreed_pence", "funding", "count", programme_deficit_agreed_pence, unit="LA"),
)
