"""The catalogue of metrics (docs/metrics.md uses the same names), one group per view module, and their
roll-up to school, trust, LA and England with national comparison and rank among peers.

A metric yields ``Contribution``s: an item (a placement, a removal, a pupil on roll...) that belongs to
a unit (the organisation it is attributed to) with a numerator and denominator part. A scope's value
is folded from the distinct items of the units in that scope, so a pupil or provider counted under
two schools of one trust is counted once for the trust.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from . import ap_performance, ehcp, exclusions, funding, placements, roll, unregistered
from .context import ENGLAND, Context, Contribution, Metric, scope_of
from .orgs import Directory

METRICS: tuple[Metric, ...] = (
    *placements.METRICS,
    *unregistered.METRICS,
    *roll.METRICS,
    *exclusions.METRICS,
    *ap_performance.METRICS,
    *ehcp.METRICS,
    *funding.METRICS,
)
METRICS_BY_NAME = {m.name: m for m in METRICS}


@dataclass(frozen=True, slots=True)
class Figure:
    value: Any
    numerator: float | None = None
    denominator: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "numerator": self.numerator, "denominator": self.denominator}


def _figure(metric: Metric, items: dict[str, Contribution]) -> Figure:
    num = sum(c.num for c in items.values())
    den = sum(c.den for c in items.values())
    if metric.kind == "count":
        return Figure(int(num), num, None)
    if metric.kind == "breakdown":
        labels: dict[str, int] = defaultdict(int)
        for c in items.values():
            labels[c.label] += int(c.num)
        return Figure(dict(sorted(labels.items())), num, None)
    if metric.kind == "median":
        values = [c.num for c in items.values()]
        return Figure(statistics.median(values) if values else None, None, len(values))
    if not den:
        return Figure(None, num, den)
    return Figure(round(num / den * metric.scale, 2), num, den)


def figures(metric: Metric, contributions: Iterable[Contribution], level: str, orgs: Directory) -> dict[str, Figure]:
    """The metric's figure for every scope at ``level``."""
    items: dict[str, dict[str, Contribution]] = defaultdict(dict)
    for c in contributions:
        scope = scope_of(c.unit, level, orgs)
        if scope is not None:
            items[scope].setdefault(c.key, c)
    return {scope: _figure(metric, found) for scope, found in items.items()}


def rank(values: dict[str, Figure], scope: str) -> tuple[int | None, int]:
    """Rank of ``scope`` among peers with a value (1 = highest value; ties share a rank)."""
    numbers = {k: f.value for k, f in values.items() if isinstance(f.value, (int, float))}
    if scope not in numbers:
        return None, len(numbers)
    return 1 + sum(1 for v in numbers.values() if v > numbers[scope]), len(numbers)


def empty_figure(metric: Metric) -> Figure:
    return _figure(metric, {})


PEER_KINDS = {"school": ("school", "ap_setting"), "trust": ("trust",), "la": ("la",)}


def report(ctx: Context, level: str, scope: str, only: Collection[str] | None = None) -> dict[str, dict[str, Any]]:
    """Every metric (or those named in ``only``) for one scope, with the national value and the scope's rank among its
    peers (every registered organisation of the level is a peer, with 0 for counts where it has no items)."""
    out: dict[str, dict[str, Any]] = {}
    baseline = ctx.directory.of_kind(*PEER_KINDS.get(level, ()))
    for metric in METRICS if only is None else [m for m in METRICS if m.name in only]:
        contributions = ctx.contributions(metric)
        empty = empty_figure(metric)  # one for every peer without items (a school read has some thousands)
        national = figures(metric, contributions, "national", ctx.directory).get(ENGLAND, empty)
        peers = figures(metric, contributions, level, ctx.directory) if level != "national" else {ENGLAND: national}
        for peer in baseline:
            peers.setdefault(peer, empty)
        mine = peers.get(scope, empty)
        position, of = rank(peers, scope) if metric.kind != "breakdown" else (None, len(peers))
        out[metric.name] = {
            "group": metric.group,
            "kind": metric.kind,
            **mine.as_dict(),
            "national_value": national.value,
            "rank": position,
            "peers": of,
        }
        if metric.published is not None:  # the published figure beside the live one (docs/metrics.md)
            out[metric.name]["published"] = metric.published(scope, ctx.day)
    return out
