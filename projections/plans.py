"""Plans and funding view (issue 25): local inclusion plans, national tariffs, AP budgets, deficit programmes and band
assignments as bitemporal facts, folded as of a moment with the write side's own folds (``ledger.core.funding_rules``),
and the tailored list of settings a parent can ask for (no child's data is needed or stored to ask).

A band assignment is a fact of the pupil (keyed by the pupil's pseudonym, erased with the pupil); everything else
is a fact of the LA or of ``dfe:admin``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from ledger.core import funding_rules as fr
from ledger.core.catalogue import parse_timestamp
from ledger.core.rules import Record

from .facts import LogEvent, Moment, Table, View

PLAN_FACTS = Table("pv_plan_facts", (("submitter", "TEXT NOT NULL"), ("data", "TEXT NOT NULL")), indexes=("type",))
TYPES = frozenset({fr.PLAN, fr.TARIFF, fr.BAND, fr.BUDGET, fr.PROGRAMME})


def rows(ev: LogEvent) -> Iterable[tuple[Table, dict[str, Any]]]:
    r = ev.record
    if r.type in TYPES:
        yield PLAN_FACTS, {"submitter": r.submitter, "data": json.dumps(r.data, sort_keys=True)}


VIEW = View("plans", 1, (PLAN_FACTS,), rows)


@dataclass(frozen=True)
class Band:
    """A band assignment: from ``start`` (its occurred_on) until ``until``, or until a later assignment for the same
    costed item (an AP placement, or the pupil's EHC plan placement) replaces it."""

    event_id: str
    pupil: str  # pseudonym
    la: str
    start: date
    data: dict[str, Any]

    @property
    def item(self) -> str:
        """What the band costs: the AP placement's event id, or the pupil's EHC plan placement."""
        return str(self.data["placement_event_id"]) if self.data["basis"] == "ap_placement" else f"{self.pupil}:ehcp"

    @property
    def until(self) -> date | None:
        return date.fromisoformat(self.data["until"]) if "until" in self.data else None


@dataclass
class Funding:
    """Plans, tariffs, budgets, programmes and band assignments known at a moment (any effective date: each has its own)."""

    tariffs: list[fr.Tariff] = field(default_factory=list)
    plans: dict[str, list[fr.PlanVersion]] = field(default_factory=dict)  # LA -> versions
    budgets: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # LA -> financial year -> data
    programmes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    bands: list[Band] = field(default_factory=list)

    def plan_on(self, la: str, day: date) -> fr.PlanVersion | None:
        return fr.plan_in_force(self.plans.get(la, []), day)

    def tariff_on(self, day: date) -> fr.Tariff | None:
        return fr.tariff_in_force(self.tariffs, day)

    def bands_on(self, day: date) -> list[Band]:
        """The band in force on ``day`` for each costed item: its latest assignment dated on or before ``day`` (ledger
        order breaks ties), unless that one's ``until`` has passed."""
        latest: dict[str, Band] = {}
        for band in self.bands:
            if band.start <= day:
                current = latest.get(band.item)
                if current is None or band.start >= current.start:
                    latest[band.item] = band
        return [b for b in latest.values() if b.until is None or day <= b.until]


def fold(records: Sequence[Record]) -> Funding:
    """``records`` (the view's facts in force, in ledger order) folded."""
    out = Funding()
    by_la: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        if r.type == fr.BAND:
            out.bands.append(Band(r.event_id, r.subject, r.submitter, r.occurred_on, r.data))
        elif r.type != fr.TARIFF:
            by_la[r.subject].append(r)
    out.tariffs = fr.tariffs([r for r in records if r.type == fr.TARIFF])
    for la, mine in by_la.items():
        out.plans[la] = fr.plan_versions(la, mine)
        out.budgets[la] = {year: r.data for year, r in fr.budgets(mine).items()}
        out.programmes[la] = [r.data for r in mine if r.type == fr.PROGRAMME]
    return out


def funding(db: Any, moment: Moment) -> Funding:
    """The plans and funding facts known at ``moment`` (every effective date: plans, tariffs and bands carry their own)."""
    records = []
    for event_id, etype, subject, submitter, occurred_on, received_at, data in db.facts(
        PLAN_FACTS.name,
        moment,
        columns="event_id, type, subject, submitter, occurred_on, received_at, data",
        effective_cut=False,
    ):
        when = parse_timestamp(received_at)
        assert when is not None
        records.append(Record(event_id, etype, submitter, subject, date.fromisoformat(occurred_on), when, json.loads(data)))
    return fold(records)


# -- the tailored list of settings (proposal 5) ---------------------------------------------------


def open_placement_settings(db: Any, moment: Moment) -> dict[str, str]:
    """The AP placements open on ``moment.as_of`` (started by then, not ended by then), event id -> setting, read from the
    pupils view's placement facts only (not every pupil's whole record, as the metrics fold them)."""
    from .pupils import PUPIL_FACTS

    started: dict[str, str] = {}
    ended: set[str] = set()
    for event_id, etype, setting, data in db.facts(
        PUPIL_FACTS.name,
        moment,
        columns="event_id, type, setting, data",
        where="type IN (?, ?)",
        params=("pupil.ap_placement_started", "pupil.ap_placement_ended"),
    ):
        if etype == "pupil.ap_placement_started":
            started[event_id] = setting
        else:
            ended.add(json.loads(data)["placement_event_id"])
    return {event_id: setting for event_id, setting in started.items() if event_id not in ended}


def places_taken(state: Funding, day: date, placement_settings: dict[str, str]) -> dict[str, int]:
    """Pupils with a band in force on ``day`` per setting: an AP placement's band counts at the placement's setting
    (``placement_settings``: the placements open that day, event id -> setting), an EHC plan's at the setting it names."""
    taken: dict[str, int] = defaultdict(int)
    for band in state.bands_on(day):
        setting = (
            placement_settings.get(str(band.data.get("placement_event_id")))
            if band.data["basis"] == "ap_placement"
            else band.data["setting"]
        )
        if setting is not None:
            taken[setting] += 1
    return taken


def tailored_list(state: Funding, la: str, need: str, phase: str, day: date, placement_settings: dict[str, str]) -> dict[str, Any]:
    """The settings of ``la``'s plan in force on ``day`` that meet ``need`` in ``phase``, with their provision type,
    phases, places and whether places are available (fewer pupils banded there that day than places)."""
    plan = state.plan_on(la, day)
    if plan is None:
        return {"plan": None, "settings": []}
    taken = places_taken(state, day, placement_settings)
    settings = []
    for s in plan.settings():
        if need in s["needs"] and phase in s["phases"]:
            used = taken.get(s["setting"], 0)
            # whether a place is free, not how many pupils are there: the list is public, and a count at one setting
            # would be a small number about children
            settings.append(
                {
                    "setting": s["setting"],
                    "name": s["name"],
                    "provision_type": s["provision_type"],
                    "phases": s["phases"],
                    "needs": s["needs"],
                    "places": s["places"],
                    "places_available": used < s["places"],
                    "bands": s.get("bands", []),
                }
            )
    settings.sort(key=lambda s: (s["provision_type"], s["name"]))
    return {
        "plan": {
            "event_id": plan.event_id,
            "version": plan.version,
            "valid_from": plan.valid_from.isoformat(),
            "valid_to": plan.valid_to.isoformat(),
        },
        "settings": settings,
    }
