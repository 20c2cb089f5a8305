"""What every metric reads: the folded state of the ledger at one moment, and the item type
(``Contribution``) a metric yields. A metric is one function from a ``Context`` to contributions;
``projections.metrics`` rolls them up to school, trust, LA and England.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, NamedTuple, TypeVar

from ledger.core.identifiers import org_scheme
from ledger.core.rules import Record
from ledger.core.schooltime import academic_year

from .config import ViewSettings
from .facts import Moment
from .orgs import Directory, directory
from .plans import Funding
from .plans import funding as funding_facts
from .pupils import Pupil, pupils

LEVELS = ("school", "trust", "la", "national")
T = TypeVar("T")

ENGLAND = "england"
TRAILING_DAYS = 365


class Contribution(NamedTuple):
    """An item of a metric under its unit (docs/metrics.md). A named tuple: a national read builds one per unit and
    label of every metric, tens of thousands, and a frozen dataclass took twice as long to make."""

    unit: str
    key: str
    num: float
    den: float = 0.0
    label: str = ""


@dataclass(frozen=True, slots=True)
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

    def is_overdue(self, day: date) -> bool:
        """An open time-limited (tier 2) placement past its planned end (docs/metrics.md)."""
        return self.is_open() and self.tier == 2 and self.planned_end is not None and self.planned_end < day


@dataclass(frozen=True)
class PlacementTally:
    """A scope's placements as the register counts them (``placements.placements_register``): the open ones by setting
    type, tier, whether overdue and start day, and the lengths in days of those ended in the trailing year, each with
    its number of placements. An England register at 1 M pupils counts 9,750 placements in 279 such groups."""

    open: Counter[tuple[str, int, bool, date]]
    ended: Counter[int]

    @staticmethod
    def of(placements: Iterable[Placement], day: date, trailing_start: date) -> PlacementTally:
        open_now: Counter[tuple[str, int, bool, date]] = Counter()
        ended: Counter[int] = Counter()
        for p in placements:
            if p.end is None:
                open_now[(p.setting_type, p.tier, p.is_overdue(day), p.start)] += 1
            elif p.end >= trailing_start:
                ended[(p.end - p.start).days] += 1
        return PlacementTally(open_now, ended)


@dataclass
class Context:
    """Everything the metrics read, at one moment."""

    moment: Moment
    settings: ViewSettings
    directory: Directory
    pupils: list[Pupil]
    funding: Funding = field(default_factory=Funding)  # plans, tariffs, budgets and bands (issue 25)
    _placements: list[Placement] | None = field(default=None, repr=False)
    _contributions: dict[str, list[Contribution]] = field(default_factory=dict, repr=False)
    _derived: dict[str, Any] = field(default_factory=dict, repr=False)
    db: Any = field(default=None, repr=False)  # the fact tables (``runner.Reader``), for metrics that read a view of their own

    def derived(self, name: str, compute: Callable[[Context], T]) -> T:
        """A value several metrics and views read at this moment, computed once per context."""
        if name not in self._derived:
            self._derived[name] = compute(self)
        return self._derived[name]  # type: ignore[no-any-return]

    def weight(self) -> int:
        """How many items this state holds: its metrics' items (a cache of states counts them, ``state_cache``). The lists
        derived from them are left out: they are mostly the same items (the pupils counted for four metrics), and counted
        again they made a state look 30% heavier than the items it holds; a folded state's pupils are not counted either,
        only what it has made of them. The request that reads a kept state may be filling it meanwhile: its dictionary
        is copied at once (``list`` of its values, in one step under the GIL), not iterated while it may grow."""
        return sum(map(len, list(self._contributions.values())))

    def serves(self, level: str, scope: str | None = None) -> bool:
        """Whether figures at ``level`` may be rolled up from this state's contributions: of ``scope`` alone when given,
        else of every scope (a rank's peers). A folded state: every level and scope."""
        return True

    def contributions(self, metric: Metric) -> list[Contribution]:
        """The metric's items at this moment (computed once per context)."""
        if metric.name not in self._contributions:
            self._contributions[metric.name] = list(metric.compute(self))
        return self._contributions[metric.name]

    def national_contributions(self, metric: Metric) -> list[Contribution]:
        """The items England's figure of the metric is folded from: this state's own (a read model state may take them
        from England's numbers kept)."""
        return self.contributions(metric)

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

    @property
    def open_placements(self) -> list[Placement]:
        """The placements open on D (the provider watch's and the funding's)."""
        return self.derived("open_placements", lambda ctx: [p for p in ctx.placements if p.is_open()])

    def open_placements_by_id(self, ids: Collection[str]) -> dict[str, Placement]:
        """The placements of ``ids`` open on D, by id (the funding's banded placements)."""
        return {p.event_id: p for p in self.open_placements if p.event_id in ids}

    def placement_tally(self, level: str, scope: str) -> PlacementTally:
        """The placements commissioned within ``scope`` at ``level``, as the register counts them."""
        mine = [p for p in self.placements if scope_of(p.commissioner, level, self.directory) == scope]
        return PlacementTally.of(mine, self.day, self.trailing_start)


def placements_of(pupil: Pupil) -> list[Placement]:
    """The pupil's AP placements, folded by ``ledger.core.rules`` (reviews move the planned end and hours)."""
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
        out.append(
            Placement(
                ep.start_event_id,
                pupil.key,
                d["commissioner"],
                d["setting"],
                d["setting_type"],
                int(d["tier"]),
                ep.start,
                date.fromisoformat(planned) if planned else None,
                hours.get(ep.start_event_id, float(d["hours_per_week"])),
                ep.end,
                outcomes.get(ep.start_event_id) if ep.end else None,
            )
        )
    return out


def context(db: Any, moment: Moment, settings: ViewSettings) -> Context:
    return Context(moment, settings, directory(db, moment), pupils(db, moment), funding_facts(db, moment), db=db)


@dataclass(frozen=True)
class Metric:
    name: str
    group: str
    kind: str  # count | rate | mean | median | breakdown
    compute: Callable[[Context], Iterable[Contribution]]
    scale: float = 1.0
    unit: str = ""
    published: Callable[[str, date], dict[str, Any] | None] | None = None  # the published figure for (scope, as-of date)


def scope_of(unit: str, level: str, orgs: Directory) -> str | None:
    """The scope at ``level`` that a unit's items count towards."""
    if level == "national":
        return ENGLAND
    if level == "la":
        return orgs.la_of(unit)
    if level == "trust":
        return orgs.trust_of(unit)
    return unit if org_scheme(unit) not in ("la", "trust") else None
