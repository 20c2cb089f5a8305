"""Comparisons LA benchmarking users expect, and every metric as a series (``accountabilityMetricSeries``).

Beside each figure of a scope (``projections.metrics.report``: value, ``national_value``, ``rank`` among
``peers``) this adds:

* ``region`` and ``region_value``: the same metric over every unit in the scope's region (the DfE region of
  its LA, from ``data/dfe/spc_ap_setting.csv``; none for England and for trusts, which span regions);
* ``quartile``: 1 for the quarter of peers with the highest values (rank 1) to 4 for the lowest, by rank
  (``1 + (4 × (rank − 1)) // peers``); none where the rank is none;
* ``last_year_value`` and ``change_since_last_year``: the figure at the same date a year before (29 February:
  the 28th), as known at the same time, and the difference (numbers only; none for breakdowns).

A series asks the same at each step from ``start`` to ``end``: the last day of each month (``month``) or of
each term of the term calendar (``term``) in the range, and ``end`` itself when it is not one. Each date's
figures come from one state (``states_at``: the read model, or the fold where it cannot answer).
"""

from __future__ import annotations

import csv
from collections import deque
from collections.abc import Callable, Collection, Generator, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from itertools import islice
from typing import Any

from ledger import dfe

from .config import ViewSettings
from .context import Context
from .facts import Moment
from .metrics import METRICS_BY_NAME, figure_of, report, require_level
from .orgs import Directory
from .read_model_queries import own_scope, state_level, states_at

STEPS = ("month", "term")
MAX_POINTS = 120


@cache
def _regions() -> dict[str, tuple[str, str]]:
    """``la:NNN`` -> (region code, region name), from the published file the repository ships."""
    out: dict[str, tuple[str, str]] = {}
    with dfe.data_file(dfe.AP_PLACEMENTS_BY_SETTING).open(encoding="utf-8-sig", newline="") as f:
        for row in csv.DictReader(f):
            if row["geographic_level"] == "Local authority" and row["region_code"]:
                out[f"la:{row['old_la_code']}"] = (f"region:{row['region_code']}", row["region_name"])
    return out


def region_of(la: str | None) -> str | None:
    found = _regions().get(la or "")
    return found[0] if found else None


@dataclass
class RegionDirectory(Directory):
    """The directory with each unit's LA replaced by its region (so the LA roll-up rolls up to regions)."""

    def la_of(self, org: str) -> str | None:
        return region_of(super().la_of(org))


def region_for(level: str, scope: str, orgs: Directory) -> str | None:
    if level == "la":
        return region_of(scope)
    if level == "school":
        return region_of(orgs.la_of(scope))
    return None


def a_year_before(day: date) -> date:
    return day.replace(year=day.year - 1, day=28) if (day.month, day.day) == (2, 29) else day.replace(year=day.year - 1)


def quartile(rank: int | None, peers: int) -> int | None:
    return None if rank is None or peers <= 0 else 1 + (4 * (rank - 1)) // peers


def _change(now: Any, before: Any) -> Any:
    if isinstance(now, bool) or isinstance(before, bool) or not isinstance(now, (int, float)) or not isinstance(before, (int, float)):
        return None
    return now - before if isinstance(now, int) and isinstance(before, int) else round(now - before, 2)


def values_of(ctx: Context, level: str, scope: str, names: Iterable[str]) -> dict[str, Any]:
    """The scope's value of each metric of ``names`` in ``ctx``: all that a later date's comparison reads of it (a state of
    that school's, trust's or LA's items alone serves its own: ``ReadModelContext``'s ``only``)."""
    require_level(ctx, level, scope)
    out: dict[str, Any] = {}
    for name in names:
        metric = METRICS_BY_NAME[name]
        out[name] = figure_of(metric, ctx.contributions(metric), level, ctx.directory, scope).value
    return out


def compare(ctx: Context, last_year: dict[str, Any], level: str, scope: str, found: dict[str, dict[str, Any]]) -> str | None:
    """Add the region's value, the quartile band and the change since the same date last year to ``found``
    (``report``'s figures for the scope); returns the region compared with. ``last_year``: the scope's value of each
    metric a year before (``values_of`` of that date's state)."""
    require_level(ctx, level)
    region = region_for(level, scope, ctx.directory)
    regions = RegionDirectory(ctx.directory.orgs) if region else None
    for name, figure in found.items():
        metric = METRICS_BY_NAME[name]
        region_value = None
        if regions is not None and region is not None:
            region_value = figure_of(metric, ctx.contributions(metric), "la", regions, region).value
        before = last_year[name]
        figure.update(
            region_value=region_value,
            quartile=quartile(figure["rank"], figure["peers"]),
            last_year_value=before,
            change_since_last_year=_change(figure["value"], before),
        )
    return region


def step_dates(start: date, end: date, step: str, settings: ViewSettings) -> list[date]:
    """The series' dates: each month's (or term's) last day in [start, end], then ``end`` if it is not one."""
    if step == "term":
        points = [t.end for t in settings.calendar.terms if start <= t.end <= end]
    else:
        points = []
        first = start.replace(day=1)
        while True:
            last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
            if last > end:
                break
            if last >= start:
                points.append(last)
            first = last + timedelta(days=1)
    if not points or points[-1] != end:
        points.append(end)
    return points


SERIES_WORKERS = 2  # states asked of the database at once: each is SQL-bound, and the database answers them side by side


def series(
    db: Any,
    settings: ViewSettings,
    level: str,
    scope: str,
    start: date,
    end: date,
    step: str,
    names: Collection[str] | None = None,
    known_at: Any = None,
) -> dict[str, Any]:
    """Every metric of ``names`` (default all) for the scope at each step, with its comparisons.

    The states of the dates and of the year before each are made in order by ``in_order`` (two at once, so the
    database answers two side by side); a year before that is not itself a point is a state of the scope's items alone
    (``own_scope``: a school's, a trust's or an LA's), as its values are all that is read of it. A state is kept only
    until its own point is reported; of a date a later point compares with, only the scope's values are kept
    (``values_of``): a dozen states at 1 M pupils held about 300 MB, their values a few kilobytes."""
    days = step_dates(start, end, step, settings)
    order = list(dict.fromkeys(d for day in days for d in (day, a_year_before(day))))  # each state made once
    wanted = list(METRICS_BY_NAME) if names is None else [n for n in METRICS_BY_NAME if n in names]
    compared = {a_year_before(day) for day in days}
    reported = set(days)
    states: dict[date, Context] = {}
    before: dict[date, dict[str, Any]] = {}
    points = []
    region = None
    made_for = state_level(level)  # a national series needs England's sums only, an LA series the LAs' sums
    state_at = states_at(db, settings, made_for, Moment(order[0], known_at))  # (the facts every date reads, read once)
    # a date only a later point compares with needs the scope's values alone: a state of its items (a school's, a trust's,
    # an LA's), not of every unit (a school's about 300 ms at 1 M pupils against 50)
    own = own_scope(level, scope)

    def make(day: date) -> Context:
        return prepared(state_at(day, own if day not in reported else None), names)

    with closing(in_order(make, order)) as making:
        made = zip(order, making, strict=True)
        for i, day in enumerate(days):
            while day not in states or a_year_before(day) not in before:
                done, state = next(made)
                if done in compared:
                    before[done] = values_of(state, level, scope, wanted)
                if done in reported:
                    states[done] = state
            state = states.pop(day)
            found = report(state, level, scope, only=names)
            region = compare(state, before[a_year_before(day)], level, scope, found)
            points.append({"as_of": day, "metrics": found})
            if i + 1 < len(days):  # keep only the values later points still compare with
                for old in [d for d in before if d < a_year_before(days[i + 1])]:
                    del before[old]
    return {"region": region, "points": points}


def in_order(make: Callable[[date], Context], days: Iterable[date], workers: int = SERIES_WORKERS) -> Generator[Context, None, None]:
    """``make(day)`` for each day, in order, made by ``workers`` threads at most ``workers`` days ahead of the caller."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="states") as pool:
        remaining = iter(days)
        pending = deque(pool.submit(make, day) for day in islice(remaining, workers))
        while pending:
            made = pending.popleft().result()
            for day in islice(remaining, 1):
                pending.append(pool.submit(make, day))
            yield made


def prepared(ctx: Context, names: Collection[str] | None = None) -> Context:
    """``ctx`` with the contributions of every metric of ``names`` (default all) asked of the database already, so
    that it can be prepared in one thread while another reports (the database answers both at once)."""
    for metric in METRICS_BY_NAME.values():
        if names is None or metric.name in names:
            ctx.contributions(metric)
    return ctx
