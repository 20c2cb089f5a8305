"""The catalogue of metrics (docs/metrics.md uses the same names), one group per view module, and their
roll-up to school, trust, LA and England with national comparison and rank among peers.

A metric yields ``Contribution``s: an item (a placement, a removal, a pupil on roll...) that belongs to
a unit (the organisation it is attributed to) with a numerator and denominator part. A scope's value
is folded from the distinct items of the units in that scope, so a pupil or provider counted under
two schools of one trust is counted once for the trust.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from . import ap_performance, ehcp, exclusions, funding, placements, roll, unregistered, weighted
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


def _value(metric: Metric, items: dict[str, Contribution], num: float, den: float) -> Any:
    """The value of distinct ``items`` whose numerators and denominators sum to ``num`` and ``den`` (``_figure``'s,
    without the figure: a rank among every school reads thousands of them)."""
    if metric.kind == "count":
        return int(num)
    if metric.kind == "breakdown":
        labels: dict[str, int] = defaultdict(int)
        for c in items.values():
            labels[c.label] += int(c.num)
        return dict(sorted(labels.items()))
    if metric.kind == "median":  # an item is a value (num / den) held by den items: one placement, or a length's count
        return weighted.median([(int(c.num // c.den), int(c.den)) for c in items.values() if c.den > 0])
    if not den:
        return None
    return round(num / den * metric.scale, 2)


def _values(metric: Metric, items: dict[str, dict[str, Contribution]], sums: dict[str, list[float]]) -> dict[str, Any]:
    """Every scope's value (``_value``'s) from ``_grouped``'s items and sums: a count's and a rate's from the sums alone,
    in one comprehension (a school read ranks some 3,000 schools per metric at 1 M pupils: with a call per school its
    values took 28-32 ms of CPU, in one comprehension 13-16)."""
    if metric.kind == "count":
        return {scope: int(num) for scope, (num, _) in sums.items()}
    if metric.kind in ("rate", "mean"):
        scale = metric.scale
        return {scope: round(num / den * scale, 2) if den else None for scope, (num, den) in sums.items()}
    return {scope: _value(metric, found, *sums[scope]) for scope, found in items.items()}


def _figure(metric: Metric, items: dict[str, Contribution], num: float, den: float) -> Figure:
    """The figure of distinct ``items`` whose numerators and denominators sum to ``num`` and ``den``."""
    value = _value(metric, items, num, den)
    if metric.kind in ("count", "breakdown"):
        return Figure(value, num, None)
    if metric.kind == "median":
        return Figure(value, None, sum(int(c.den) for c in items.values() if c.den > 0))
    return Figure(value, num, den)


def _grouped(
    contributions: Iterable[Contribution], level: str, orgs: Directory
) -> tuple[dict[str, dict[str, Contribution]], dict[str, list[float]]]:
    """Each scope's distinct items (by key) at ``level``, and their numerators and denominators summed as they are met.

    A school read rolls up every metric to every school (tens of thousands of scopes at 1 M pupils), so the sums are
    made in the one pass that groups the items, and each unit's scope is looked up once per directory and level."""
    scopes = orgs.scopes(level)
    items: dict[str, dict[str, Contribution]] = {}
    sums: dict[str, list[float]] = {}
    for c in contributions:
        unit, key, num, den, _ = c
        scope = scopes[unit] if unit in scopes else scopes.setdefault(unit, scope_of(unit, level, orgs))
        if scope is None:
            continue
        found = items.get(scope)
        if found is None:
            items[scope] = {key: c}
            sums[scope] = [num, den]
        elif key not in found:
            found[key] = c
            total = sums[scope]
            total[0] += num
            total[1] += den
    return items, sums


def figures(metric: Metric, contributions: Iterable[Contribution], level: str, orgs: Directory) -> dict[str, Figure]:
    """The metric's figure for every scope at ``level``: each scope's distinct items (by key), summed (``_grouped``)."""
    items, sums = _grouped(contributions, level, orgs)
    return {scope: _figure(metric, found, *sums[scope]) for scope, found in items.items()}


def scopes_with_items(contributions: Iterable[Contribution], level: str, orgs: Directory) -> set[str]:
    """The scopes at ``level`` that ``figures`` makes a figure for, without making them (a breakdown has no rank: a
    school read needs only how many schools have one)."""
    scopes = orgs.scopes(level)
    out: set[str] = set()
    for unit in {c.unit for c in contributions}:
        scope = scopes[unit] if unit in scopes else scopes.setdefault(unit, scope_of(unit, level, orgs))
        if scope is not None:
            out.add(scope)
    return out


def figure_of(metric: Metric, contributions: Iterable[Contribution], level: str, orgs: Directory, scope: str) -> Figure:
    """``figures(...).get(scope, empty_figure(metric))`` without making every other scope's figure: the contributions
    of the scope's units rolled up alone (a school read's own, national and regional figures need one scope each, not
    30,000 schools')."""
    if level != "national":  # (at national level every unit's items are England's: nothing to leave out)
        scopes = orgs.scopes(level)
        contributions = [
            c
            for c in contributions
            if (scopes[c.unit] if c.unit in scopes else scopes.setdefault(c.unit, scope_of(c.unit, level, orgs))) == scope
        ]
    return figures(metric, contributions, level, orgs).get(scope, empty_figure(metric))


def national_figure(ctx: Context, metric: Metric) -> Figure:
    """England's figure of the metric at ``ctx``'s moment."""
    return figure_of(metric, ctx.national_contributions(metric), "national", ctx.directory, ENGLAND)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float))


def rank(values: dict[str, Any], scope: str, empty: Any = None, without_items: int = 0) -> tuple[int | None, int]:
    """Rank of ``scope`` among peers with a value (1 = highest value; ties share a rank): ``values`` (each peer's value),
    and ``without_items`` more peers whose value is ``empty`` (a school read has thousands: they are counted, not made)."""
    numbers = [v for v in values.values() if _number(v)]
    empties = without_items if _number(empty) else 0
    if scope not in values or not _number(values[scope]):
        return None, len(numbers) + empties
    mine = values[scope]
    above = sum(1 for v in numbers if v > mine) + (empties if empties and empty > mine else 0)
    return 1 + above, len(numbers) + empties


def empty_figure(metric: Metric) -> Figure:
    return _figure(metric, {}, 0, 0)


PEER_KINDS = {"school": ("school", "ap_setting"), "trust": ("trust",), "la": ("la",)}


def require_level(ctx: Context, level: str, scope: str | None = None) -> None:
    """Refuse to roll up figures at ``level`` (of ``scope`` alone, when given; else of every scope, as a rank needs) from
    a state made for others (a national state holds England's sums only, an LA state the LAs' sums, a state of one school's
    or trust's items that scope's only)."""
    if not ctx.serves(level, scope):
        only = getattr(ctx, "only", None)
        made_for = getattr(ctx, "level", None)
        if only is not None:
            holds = f"the items of {only[1]} only"
        else:
            holds = "national figures only" if made_for == "national" else f"{made_for} and national figures only"
        wanted = f"figures of {scope} at level {level!r}" if scope is not None else f"figures at level {level!r}"
        raise ValueError(f"this state holds {holds}; {wanted} need a state of every unit")


def report(ctx: Context, level: str, scope: str, only: Collection[str] | None = None) -> dict[str, dict[str, Any]]:
    """Every metric (or those named in ``only``) for one scope, with the national value and the scope's rank among its
    peers (every registered organisation of the level is a peer, with 0 for counts where it has no items)."""
    require_level(ctx, level)
    out: dict[str, dict[str, Any]] = {}
    baseline = set(ctx.directory.of_kind(*PEER_KINDS.get(level, ())))
    for metric in METRICS if only is None else [m for m in METRICS if m.name in only]:
        contributions = ctx.contributions(metric)
        empty = empty_figure(metric)  # the figure of every peer without items (a school read has some thousands)
        national = national_figure(ctx, metric)
        if metric.kind == "breakdown":  # no rank: the peers are counted, their figures not made
            if level == "national":
                mine, with_items = national, {ENGLAND}
            else:
                mine, with_items = (
                    figure_of(metric, contributions, level, ctx.directory, scope),
                    scopes_with_items(contributions, level, ctx.directory),
                )
            position, of = None, len(baseline.union(with_items))
        else:
            if level == "national":
                mine, peers = (national if scope == ENGLAND else empty), {ENGLAND: national.value}
            else:  # every peer's value for the rank, and the scope's own figure: one pass over the items
                items, sums = _grouped(contributions, level, ctx.directory)
                peers = _values(metric, items, sums)
                mine = _figure(metric, items[scope], *sums[scope]) if scope in items else empty
            if scope in baseline and scope not in peers:
                peers[scope] = empty.value
            without_items = len(baseline) - len(baseline.intersection(peers))  # every other peer: its value is ``empty``'s
            position, of = rank(peers, scope, empty.value, without_items)
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
