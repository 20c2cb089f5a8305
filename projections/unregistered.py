"""Unregistered provision watch: pupils and weekly hours per unregistered provider; providers that appear to need registration."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from .config import ViewSettings
from .context import Context, Contribution, Metric, Placement, scope_of
from .published import ap_placements_by_setting_type

UNREGISTERED_SETTING_TYPES = ("NFE", "OOT", "OTH", "WBP")


@dataclass
class ProviderWatch:
    provider: str
    la: str | None
    pupils: int
    weekly_hours: float
    full_time_pupils: int
    full_time_pupils_with_sen_or_looked_after: int
    commissioners: list[str]

    def needs_registration(self, settings: ViewSettings) -> bool:
        return self.full_time_pupils >= settings.registration_pupils or self.full_time_pupils_with_sen_or_looked_after >= 1


def provider_watch(ctx: Context) -> list[ProviderWatch]:
    """Open placements at unregistered providers on the as-of date, per provider (whoever commissioned them)."""
    return ctx.derived("provider_watch", _provider_watch)


def _provider_watch(ctx: Context) -> list[ProviderWatch]:
    vulnerable = {pupil.key for pupil in ctx.pupils if pupil.sen_or_looked_after_on(ctx.day)}
    return watch_of(ctx.open_placements, vulnerable, ctx)


def watch_of(placements: Iterable[Placement], vulnerable: set[str], ctx: Context) -> list[ProviderWatch]:
    """The watch from the placements (those open at unregistered providers count) and the pupils with SEN or
    looked after on the day (the fold and the read model, ``projections/read_model_queries.py``, share it)."""
    by_provider: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    commissioners: dict[str, set[str]] = defaultdict(set)
    for p in placements:
        if p.is_open() and p.setting_type in UNREGISTERED_SETTING_TYPES:
            by_provider[p.setting][p.pupil] += p.hours
            commissioners[p.setting].add(p.commissioner)
    out = []
    for provider, hours in sorted(by_provider.items()):
        full_time = [k for k, h in hours.items() if h >= ctx.settings.full_time_hours]
        out.append(
            ProviderWatch(
                provider,
                ctx.directory.la_of(provider),
                len(hours),
                sum(hours.values()),
                len(full_time),
                sum(1 for k in full_time if k in vulnerable),
                sorted(commissioners[provider]),
            )
        )
    return out


def pupils_in_unregistered_provision(ctx: Context) -> Iterator[Contribution]:
    for p in ctx.placements:
        if p.is_open() and p.setting_type in UNREGISTERED_SETTING_TYPES:
            yield Contribution(p.commissioner, p.pupil, 1)


def unregistered_providers_needing_registration(ctx: Context) -> Iterator[Contribution]:
    for watch in provider_watch(ctx):
        if watch.needs_registration(ctx.settings):
            for unit in (watch.provider, *watch.commissioners):
                yield Contribution(unit, watch.provider, 1)


def unregistered_providers(ctx: Context, level: str, scope: str) -> dict[str, Any]:
    """Unregistered providers used within the scope (or in the scope's area), with their whole-provider
    pupils and weekly hours, flagged when they appear to need registration as a school."""
    providers = []
    for watch in provider_watch(ctx):
        units = (watch.provider, *watch.commissioners)
        if level == "national" or any(scope_of(u, level, ctx.directory) == scope for u in units):
            providers.append({**asdict(watch), "needs_registration": watch.needs_registration(ctx.settings)})
    published = ap_placements_by_setting_type(scope) if level in ("la", "national") else None
    if published is not None:
        counts = {k: v for k, v in published["by_setting_type"].items() if k in UNREGISTERED_SETTING_TYPES}
        published = {**published, "by_setting_type": counts, "total": sum(counts.values())}
    return {
        "full_time_hours": ctx.settings.full_time_hours,
        "registration_pupils": ctx.settings.registration_pupils,
        "providers": providers,
        "flagged": sum(1 for p in providers if p["needs_registration"]),
        "published": published,
    }


METRICS: tuple[Metric, ...] = (
    Metric("pupils_in_unregistered_provision", "unregistered_provision", "count", pupils_in_unregistered_provision, unit="commissioner"),
    Metric(
        "unregistered_providers_needing_registration",
        "unregistered_provision",
        "count",
        unregistered_providers_needing_registration,
        unit="provider and commissioners",
    ),
)
