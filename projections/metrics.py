"""Every metric, defined once (docs/metrics.md uses the same names), and its roll-up to school, trust,
LA and England with national comparison and rank among peers.

A metric yields ``Contribution``s: an item (a placement, a removal, a pupil on roll...) that belongs to
a unit (the organisation it is attributed to) with a numerator and denominator part. A scope's value
is folded from the distinct items of the units in that scope, so a pupil or provider counted under
two schools of one trust is counted once for the trust.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from ledger.identifiers import org_scheme
from ledger.rules import MAIN_STATUSES, SUSPENSION_CAP_DAYS, Record
from ledger.schooltime import academic_year

from .config import ViewSettings
from .facts import Moment
from .orgs import Directory, directory
from .pupils import Pupil, pupils

LEVELS = ("school", "trust", "la", "national")
ENGLAND = "england"
GAP_EXEMPT_DESTINATIONS = ("died", "moved_away", "ehe", "post16", "custody")
UNEXPLAINED_DESTINATIONS = ("unknown", "cme")
UNREGISTERED_SETTING_TYPES = ("NFE", "OOT", "OTH", "WBP")
TRAILING_DAYS = 365


@dataclass(frozen=True)
class Contribution:
    unit: str
    key: str
    num: float
    den: float = 0.0
    label: str = ""


@dataclass(frozen=True)
class Placement:
    event_id: str
    pupil: str
    commissioner: str
    setting: str
    setting_type: str
    tier: int
    start: date
    planned_end: date | None
    hours: float
    end: date | None
    outcome: str | None

    def is_open(self) -> bool:
        return self.end is None


@dataclass
class Context:
    """Everything the metrics read, at one moment."""

    moment: Moment
    settings: ViewSettings
    directory: Directory
    pupils: list[Pupil]
    _placements: list[Placement] | None = field(default=None, repr=False)
    _contributions: dict[str, list[Contribution]] = field(default_factory=dict, repr=False)

    def contributions(self, metric: Metric) -> list[Contribution]:
        """The metric's items at this moment (computed once per context)."""
        if metric.name not in self._contributions:
            self._contributions[metric.name] = list(metric.compute(self))
        return self._contributions[metric.name]

    @property
    def day(self) -> date:
        return self.moment.as_of

    @property
    def year_start(self) -> date:
        """First day of the academic year containing the as-of date (the window of yearly metrics)."""
        return date(int(academic_year(self.day)[:4]), 9, 1)

    @property
    def trailing_start(self) -> date:
        return self.day - timedelta(days=TRAILING_DAYS - 1)

    def in_year(self, r: Record) -> bool:
        return self.year_start <= r.occurred_on <= self.day

    @property
    def placements(self) -> list[Placement]:
        if self._placements is None:
            self._placements = [p for pupil in self.pupils for p in placements_of(pupil)]
        return self._placements


def placements_of(pupil: Pupil) -> list[Placement]:
    """The pupil's AP placements, folded by ``ledger.rules`` (reviews move the planned end and hours)."""
    outcomes = {r.data["placement_event_id"]: r.data["outcome"] for r in pupil.of_type("pupil.ap_placement_ended")}
    hours: dict[str, float] = {}
    for r in pupil.of_type("pupil.ap_placement_reviewed"):
        if "hours_per_week" in r.data:
            hours[r.data["placement_event_id"]] = float(r.data["hours_per_week"])
    out = []
    for ep in pupil.state.episodes.values():
        if ep.kind != "placement":
            continue
        d = ep.details
        planned = d.get("planned_end")
        out.append(Placement(
            ep.start_event_id, pupil.key, d["commissioner"], d["setting"], d["setting_type"], int(d["tier"]), ep.start,
            date.fromisoformat(planned) if planned else None, hours.get(ep.start_event_id, float(d["hours_per_week"])), ep.end,
            outcomes.get(ep.start_event_id) if ep.end else None,
        ))
    return out


def context(db: Any, moment: Moment, settings: ViewSettings) -> Context:
    return Context(moment, settings, directory(db, moment), pupils(db, moment))


# -- placements -------------------------------------------------------------------------------


def open_ap_placements(ctx: Context) -> Iterator[Contribution]:
    for p in ctx.placements:
        if p.is_open():
            yield Contribution(p.commissioner, p.event_id, 1)


def overdue_time_limited_placements(ctx: Context) -> Iterator[Contribution]:
    for p in ctx.placements:
        if p.is_open() and p.tier == 2 and p.planned_end is not None and p.planned_end < ctx.day:
            yield Contribution(p.commissioner, p.event_id, 1)


# -- unregistered provision ---------------------------------------------------------------------


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
    by_provider: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    commissioners: dict[str, set[str]] = defaultdict(set)
    vulnerable = {pupil.key for pupil in ctx.pupils if pupil.sen_or_looked_after_on(ctx.day)}
    for p in ctx.placements:
        if p.is_open() and p.setting_type in UNREGISTERED_SETTING_TYPES:
            by_provider[p.setting][p.pupil] += p.hours
            commissioners[p.setting].add(p.commissioner)
    out = []
    for provider, hours in sorted(by_provider.items()):
        full_time = [k for k, h in hours.items() if h >= ctx.settings.full_time_hours]
        out.append(ProviderWatch(
            provider, ctx.directory.la_of(provider), len(hours), sum(hours.values()), len(full_time),
            sum(1 for k in full_time if k in vulnerable), sorted(commissioners[provider]),
        ))
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


# -- roll integrity -----------------------------------------------------------------------------


def _removals(ctx: Context, in_year: bool = True) -> Iterator[tuple[Pupil, Record]]:
    for pupil in ctx.pupils:
        for r in pupil.of_type("pupil.deregistered"):
            if not in_year or ctx.in_year(r):
                yield pupil, r


def _gap_check_day(ctx: Context, removal: Record) -> date:
    return ctx.settings.calendar.add_school_days(removal.occurred_on, ctx.settings.gap_school_days)


def _without_setting(ctx: Context, pupil: Pupil, removal: Record) -> bool:
    """No registration or AP placement in the N school days after leaving (once that many have passed)."""
    if removal.data["destination"] in GAP_EXEMPT_DESTINATIONS:
        return False
    check_day = _gap_check_day(ctx, removal)
    return check_day <= ctx.day and not pupil.has_setting_between(removal.occurred_on, check_day)


def removals_unknown_destination(ctx: Context) -> Iterator[Contribution]:
    for _, r in _removals(ctx):
        if r.data["destination"] == "unknown":
            yield Contribution(r.data["school"], r.event_id, 1)


def children_without_setting_after_leaving(ctx: Context) -> Iterator[Contribution]:
    for pupil, r in _removals(ctx, in_year=False):
        if ctx.year_start <= _gap_check_day(ctx, r) and _without_setting(ctx, pupil, r):
            yield Contribution(r.data["school"], r.event_id, 1)


def sen_exits(ctx: Context) -> Iterator[Contribution]:
    for pupil, r in _removals(ctx):
        ended = [g for g in pupil.state.registrations if g.school == r.data["school"] and g.end == r.occurred_on]
        if ended and ended[-1].sen_status != "N":
            yield Contribution(r.data["school"], r.event_id, 1, label=ended[-1].sen_status)


def backdated_removals(ctx: Context) -> Iterator[Contribution]:
    for pupil, r in _removals(ctx):
        if "backdated_removal" in pupil.flags.get(r.event_id, ()):
            yield Contribution(r.data["school"], r.event_id, 1)


def late_report_rate(ctx: Context) -> Iterator[Contribution]:
    calendar, limit = ctx.settings.calendar, ctx.settings.late_school_days
    for pupil in ctx.pupils:
        for r in pupil.records:
            if ctx.in_year(r):
                late = calendar.school_days_between(r.occurred_on, r.received_at.date()) > limit
                yield Contribution(r.submitter, r.event_id, 1 if late else 0, 1)


def unexplained_exit_rate(ctx: Context) -> Iterator[Contribution]:
    for pupil in ctx.pupils:
        for g in pupil.state.registrations:
            if g.start <= ctx.day and (g.end is None or g.end >= ctx.year_start):
                yield Contribution(g.school, f"p:{pupil.key}", 0, 1)
    for pupil, r in _removals(ctx):
        if r.data["destination"] in UNEXPLAINED_DESTINATIONS or _without_setting(ctx, pupil, r):
            yield Contribution(r.data["school"], f"x:{r.event_id}", 1, 0)


# -- exclusions -------------------------------------------------------------------------------


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


# -- AP performance framework (unit: the AP setting) ----------------------------------------------


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


# -- the catalogue of metrics -------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    name: str
    group: str
    kind: str  # count | rate | mean | median | breakdown
    compute: Callable[[Context], Iterable[Contribution]]
    scale: float = 1.0
    unit: str = ""


METRICS: tuple[Metric, ...] = (
    Metric("open_ap_placements", "placements", "count", open_ap_placements, unit="commissioner"),
    Metric("overdue_time_limited_placements", "placements", "count", overdue_time_limited_placements, unit="commissioner"),
    Metric("pupils_in_unregistered_provision", "unregistered_provision", "count", pupils_in_unregistered_provision, unit="commissioner"),
    Metric("unregistered_providers_needing_registration", "unregistered_provision", "count", unregistered_providers_needing_registration, unit="provider and commissioners"),
    Metric("removals_unknown_destination", "roll_integrity", "count", removals_unknown_destination, unit="school left"),
    Metric("children_without_setting_after_leaving", "roll_integrity", "count", children_without_setting_after_leaving, unit="school left"),
    Metric("sen_exits", "roll_integrity", "count", sen_exits, unit="school left"),
    Metric("backdated_removals", "roll_integrity", "count", backdated_removals, unit="school left"),
    Metric("late_report_rate", "roll_integrity", "rate", late_report_rate, 100.0, unit="submitter"),
    Metric("unexplained_exit_rate", "roll_integrity", "rate", unexplained_exit_rate, 100.0, unit="school left"),
    Metric("pupils_on_roll", "exclusions", "count", pupils_on_roll, unit="school"),
    Metric("suspension_rate", "exclusions", "rate", suspension_rate, 100.0, unit="school"),
    Metric("permanent_exclusion_rate", "exclusions", "rate", permanent_exclusion_rate, 100.0, unit="school"),
    Metric("suspensions_by_reason", "exclusions", "breakdown", suspensions_by_reason, unit="school"),
    Metric("permanent_exclusions_by_reason", "exclusions", "breakdown", permanent_exclusions_by_reason, unit="school"),
    Metric("suspension_cap_breaches", "exclusions", "count", suspension_cap_breaches, unit="school"),
    Metric("ap_attendance_rate", "ap_performance", "rate", ap_attendance_rate, 100.0, unit="AP setting"),
    Metric("ap_reintegration_rate", "ap_performance", "rate", ap_reintegration_rate, 100.0, unit="AP setting"),
    Metric("ap_sustained_post16_rate", "ap_performance", "rate", ap_sustained_post16_rate, 100.0, unit="AP setting"),
    Metric("ap_placement_length_mean_days", "ap_performance", "mean", ap_placement_length_mean_days, unit="AP setting"),
    Metric("ap_placement_length_median_days", "ap_performance", "median", ap_placement_length_median_days, unit="AP setting"),
)
METRICS_BY_NAME = {m.name: m for m in METRICS}


def scope_of(unit: str, level: str, orgs: Directory) -> str | None:
    """The scope at ``level`` that a unit's items count towards."""
    if level == "national":
        return ENGLAND
    if level == "la":
        return orgs.la_of(unit)
    if level == "trust":
        return orgs.trust_of(unit)
    return unit if org_scheme(unit) not in ("la", "trust") else None


@dataclass(frozen=True)
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


def report(ctx: Context, level: str, scope: str) -> dict[str, dict[str, Any]]:
    """Every metric for one scope, with the national value and the scope's rank among its peers
    (every registered organisation of the level is a peer, with 0 for counts where it has no items)."""
    out: dict[str, dict[str, Any]] = {}
    baseline = ctx.directory.of_kind(*PEER_KINDS.get(level, ()))
    for metric in METRICS:
        contributions = ctx.contributions(metric)
        national = figures(metric, contributions, "national", ctx.directory).get(ENGLAND, empty_figure(metric))
        peers = figures(metric, contributions, level, ctx.directory) if level != "national" else {ENGLAND: national}
        for peer in baseline:
            peers.setdefault(peer, empty_figure(metric))
        mine = peers.get(scope, empty_figure(metric))
        position, of = rank(peers, scope) if metric.kind != "breakdown" else (None, len(peers))
        out[metric.name] = {"group": metric.group, "kind": metric.kind, **mine.as_dict(), "national_value": national.value,
                            "rank": position, "peers": of}
    return out
