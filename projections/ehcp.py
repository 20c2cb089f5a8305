"""EHCP timeliness, redress and area SEND inspections (issue 24; docs/metrics.md "EHCP and redress" and "Area SEND
inspections"): the view of ``ehcp.*``, ``dispute.*`` and ``inspection.*`` facts and the metrics read from it.

A pupil's EHCP state as of a moment is folded with ``ledger.core.ehcp_rules.fold_ehcp``, the fold the write side's
rules use, so the figures and the rules agree on which request a plan answers and which LA made a decision.
Every figure is attributed to the LA that made the decision (the request's LA, the plan's LA, the disputed
decision's LA): unit ``la:NNN``, so it rolls up to LA and England. Yearly figures count SEN2's period, the
calendar year to the as-of date. Each figure carries the SEN2 figure DfE published for the same LA (or England)
and year, or the latest year before it (``published``; ``data/dfe/sen2_mi.csv``).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

from ledger import dfe
from ledger.core.catalogue import parse_timestamp
from ledger.core.ehcp_rules import FINAL_PLAN_WEEKS, SEN2_CEASE_COLUMNS, EhcpState, add_months, fold_ehcp
from ledger.core.rules import Record

from .context import ENGLAND, Context, Contribution, Metric
from .facts import LogEvent, Table, View

FAMILIES = ("ehcp.", "dispute.", "inspection.")
EHCP_FACTS = Table("pv_ehcp_facts", (("submitter", "TEXT NOT NULL"), ("data", "TEXT NOT NULL")), indexes=("subject, seq",))


def rows(ev: LogEvent) -> Iterable[tuple[Table, dict[str, Any]]]:
    r = ev.record
    if r.type.startswith(FAMILIES):
        yield EHCP_FACTS, {"submitter": r.submitter, "data": json.dumps(r.data, sort_keys=True)}


VIEW = View("ehcp", 1, (EHCP_FACTS,), rows)

# Appealable decisions (the denominator of appeals per 1,000, DfE's method): refusals to assess or to issue, new
# plans, amendments and cessations. Reviews are decisions too, but SEN2 does not count them.
APPEALABLE = frozenset({"ehcp.assessment_decided", "ehcp.refused_to_issue", "ehcp.final_issued", "ehcp.amended", "ehcp.ceased"})
# Follow-up of an area SEND outcome where the inspectorate states no date (domain.md 6.2): months to the next
# monitoring inspection and to the next full inspection.
FOLLOW_UP_MONTHS: dict[str, tuple[int | None, int | None]] = {
    "positive": (None, 60),
    "inconsistent": (None, 36),
    "widespread_failings": (18, 36),
    "wsoa": (None, None),
    "no_wsoa": (None, None),
}


@dataclass(frozen=True)
class Journey:
    """One pupil's EHCP and redress facts in force at a moment, and the state folded from them."""

    key: str
    records: tuple[Record, ...]
    state: EhcpState


@dataclass(frozen=True)
class AreaInspection:
    """The latest area SEND inspection outcome of an LA, as of a moment, and its follow-up."""

    la: str
    inspectorate: str
    outcome: str
    published_on: date
    monitoring_inspection_due: date | None
    next_full_inspection_due: date | None
    inspected_since: bool  # an inspection.started after the outcome (the follow-up has begun)

    def overdue(self, day: date) -> bool:
        due = [d for d in (self.monitoring_inspection_due, self.next_full_inspection_due) if d is not None]
        return not self.inspected_since and bool(due) and min(due) < day

    def as_dict(self) -> dict[str, Any]:
        return {
            "la": self.la,
            "inspectorate": self.inspectorate,
            "outcome": self.outcome,
            "published_on": self.published_on.isoformat(),
            "monitoring_inspection_due": _iso(self.monitoring_inspection_due),
            "next_full_inspection_due": _iso(self.next_full_inspection_due),
            "follow_up_started": self.inspected_since,
        }


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


@dataclass(frozen=True)
class Facts:
    journeys: tuple[Journey, ...]
    inspections: dict[str, AreaInspection]  # LA -> latest outcome


def _load(ctx: Context) -> Facts:
    by_subject: dict[str, list[Record]] = {}
    for subject, event_id, etype, submitter, occurred_on, received_at, data in ctx.db.facts(
        EHCP_FACTS.name,
        ctx.moment,
        columns="subject, event_id, type, submitter, occurred_on, received_at, data",
        order="subject, seq",
    ):
        when = parse_timestamp(received_at)
        assert when is not None
        by_subject.setdefault(subject, []).append(
            Record(event_id, etype, submitter, subject, date.fromisoformat(occurred_on), when, json.loads(data))
        )
    journeys, inspections = [], {}
    for subject, records in by_subject.items():
        if subject.startswith("la:"):
            latest = _latest_inspection(subject, records)
            if latest is not None:
                inspections[subject] = latest
        else:
            journeys.append(Journey(subject, tuple(records), fold_ehcp(records)))
    return Facts(tuple(journeys), inspections)


def _latest_inspection(la: str, records: list[Record]) -> AreaInspection | None:
    outcomes = [r for r in records if r.type == "inspection.area_send_outcome_recorded"]
    if not outcomes:
        return None
    last = max(outcomes, key=lambda r: r.occurred_on)  # in ledger order among the same day: the later posted
    d = last.data
    monitoring, full = FOLLOW_UP_MONTHS[d["outcome"]]
    stated_monitoring, stated_full = d.get("monitoring_inspection_due"), d.get("next_full_inspection_due")
    started_since = any(r.type == "inspection.started" and r.occurred_on > last.occurred_on for r in records)
    return AreaInspection(
        la,
        last.submitter,
        d["outcome"],
        last.occurred_on,
        date.fromisoformat(stated_monitoring) if stated_monitoring else add_months(last.occurred_on, monitoring) if monitoring else None,
        date.fromisoformat(stated_full) if stated_full else add_months(last.occurred_on, full) if full else None,
        started_since,
    )


def facts(ctx: Context) -> Facts:
    """The EHCP facts in force at the context's moment (read once per context)."""
    return ctx.derived("ehcp", _load)


def year_start(day: date) -> date:
    """SEN2's period: the calendar year."""
    return date(day.year, 1, 1)


def _in_year(ctx: Context, day: date) -> bool:
    return year_start(ctx.day) <= day <= ctx.day


def _records(ctx: Context, event_type: str) -> Iterator[tuple[Journey, Record]]:
    for journey in facts(ctx).journeys:
        for r in journey.records:
            if r.type == event_type and _in_year(ctx, r.occurred_on):
                yield journey, r


# -- the metrics -----------------------------------------------------------------------------------------------------


def _plans_within_20_weeks(ctx: Context, excluding_exceptions: bool) -> Iterator[Contribution]:
    for journey, r in _records(ctx, "ehcp.final_issued"):
        if excluding_exceptions and r.data.get("exceptions"):
            continue
        request = journey.state.assessments.get(r.data["request_event_id"])
        if request is not None:
            within = (r.occurred_on - request.requested_on).days <= 7 * FINAL_PLAN_WEEKS
            yield Contribution(r.submitter, r.event_id, 1 if within else 0, 1)


def plans_within_20_weeks(ctx: Context) -> Iterator[Contribution]:
    return _plans_within_20_weeks(ctx, excluding_exceptions=False)


def plans_within_20_weeks_excluding_exceptions(ctx: Context) -> Iterator[Contribution]:
    return _plans_within_20_weeks(ctx, excluding_exceptions=True)


def assessment_refusal_rate(ctx: Context) -> Iterator[Contribution]:
    for journey, r in _records(ctx, "ehcp.assessment_requested"):
        refused = journey.state.assessments[r.event_id].decision == "refuse"
        yield Contribution(r.submitter, r.event_id, 1 if refused else 0, 1)


def plans_ceased_by_reason(ctx: Context) -> Iterator[Contribution]:
    for _, r in _records(ctx, "ehcp.ceased"):
        yield Contribution(r.submitter, r.event_id, 1, label=r.data["reason"])


def mediation_requests(ctx: Context) -> Iterator[Contribution]:
    for journey, r in _records(ctx, "dispute.mediation_requested"):
        mediation = journey.state.mediations.get(r.event_id)
        if mediation is not None:
            yield Contribution(mediation.decision.la, r.event_id, 1)


def mediations_followed_by_appeal(ctx: Context) -> Iterator[Contribution]:
    for journey, r in _records(ctx, "dispute.mediation_requested"):
        mediation = journey.state.mediations.get(r.event_id)
        if mediation is not None:
            appealed = any(a.decision.event_id == mediation.decision.event_id for a in journey.state.appeals.values())
            yield Contribution(mediation.decision.la, r.event_id, 1 if appealed else 0, 1)


def appeals_per_1000_decisions(ctx: Context) -> Iterator[Contribution]:
    for journey in facts(ctx).journeys:
        for decision in journey.state.decisions.values():
            if decision.type in APPEALABLE and _in_year(ctx, decision.on):
                yield Contribution(decision.la, f"d:{decision.event_id}", 0, 1)
        for appeal in journey.state.appeals.values():
            if _in_year(ctx, appeal.on):
                yield Contribution(appeal.decision.la, f"a:{appeal.event_id}", 1, 0)


def appeal_outcomes(ctx: Context) -> Iterator[Contribution]:
    for journey, r in _records(ctx, "dispute.appeal_decided"):
        appeal = journey.state.appeals.get(r.data["appeal_event_id"])
        if appeal is not None:
            yield Contribution(appeal.decision.la, r.event_id, 1, label=r.data["outcome"])


def area_send_outcomes(ctx: Context) -> Iterator[Contribution]:
    for la, inspection in facts(ctx).inspections.items():
        yield Contribution(la, la, 1, label=inspection.outcome)


def area_send_follow_ups_overdue(ctx: Context) -> Iterator[Contribution]:
    for la, inspection in facts(ctx).inspections.items():
        if inspection.overdue(ctx.day):
            yield Contribution(la, la, 1)


def area_send_inspections(ctx: Context, level: str, scope: str) -> list[dict[str, Any]]:
    """The latest outcome and follow-up due dates of each LA in the scope (one for an LA; every LA for England)."""
    found = facts(ctx).inspections
    return [i.as_dict() for la, i in sorted(found.items()) if level == "national" or la == scope]


# -- the published SEN2 figure beside each -----------------------------------------------------------------------

SEN2_SOURCE = "DfE, Education, health and care plans (SEN2), calendar years 2014 to 2022"


@cache
def _sen2(path: Path) -> dict[str, dict[int, dict[str, str]]]:
    """``la:NNN`` or ``england`` -> calendar year -> the published row."""
    out: dict[str, dict[int, dict[str, str]]] = {}
    with path.open(encoding="utf-8-sig", newline="") as f:
        for row in csv.DictReader(f):
            where = {"National": ENGLAND, "Local authority": f"la:{row['old_la_code']}"}.get(row["geographic_level"])
            if where is not None:
                out.setdefault(where, {})[int(row["time_period"])] = row
    return out


def _number(text: str | None) -> float | None:
    try:
        return float(text.strip()) if text else None
    except ValueError:
        return None  # z (not available), x (not applicable), c (suppressed)


def _rate(column: str) -> Callable[[dict[str, str]], Any]:
    def value(row: dict[str, str]) -> Any:
        found = _number(row.get(column))
        return round(found, 2) if found is not None else None

    return value


def _count(column: str) -> Callable[[dict[str, str]], Any]:
    def value(row: dict[str, str]) -> Any:
        found = _number(row.get(column))
        return int(found) if found is not None else None

    return value


def _ceased(row: dict[str, str]) -> Any:
    by_reason = {}
    for reason, columns in SEN2_CEASE_COLUMNS.items():
        numbers = [n for n in (_number(row.get(c)) for c in columns) if n is not None]
        if numbers:
            by_reason[reason] = int(sum(numbers))
    return dict(sorted(by_reason.items())) or None


def _mediations_followed_by_appeal(row: dict[str, str]) -> Any:
    appeals, mediations = _number(row.get("total_tribunal_followed_mediation")), _number(row.get("total_mediation"))
    return round(appeals / mediations * 100, 2) if appeals is not None and mediations else None


SEN2_FIGURES: dict[str, tuple[str, Callable[[dict[str, str]], Any]]] = {
    "ehcp_plans_within_20_weeks_rate": ("inc_exc_20week_rate", _rate("inc_exc_20week_rate")),
    "ehcp_plans_within_20_weeks_excluding_exceptions_rate": ("no_exc_20week_rate", _rate("no_exc_20week_rate")),
    "ehcp_assessment_refusal_rate": ("ass_refused_ehc_pc", _rate("ass_refused_ehc_pc")),
    "ehcp_plans_ceased_by_reason": ("discontinued_*", _ceased),
    "ehcp_mediation_requests": ("total_mediation", _count("total_mediation")),
    "ehcp_mediations_followed_by_appeal_rate": ("total_tribunal_followed_mediation / total_mediation", _mediations_followed_by_appeal),
}


def published_sen2(metric: str, scope: str, day: date) -> dict[str, Any] | None:
    """The SEN2 figure DfE published for ``scope`` (an LA or England) for the calendar year of ``day``, else for the
    latest year before it that has one; None where SEN2 publishes no such figure."""
    if metric not in SEN2_FIGURES:
        return None
    column, value_of = SEN2_FIGURES[metric]
    years = _sen2(dfe.data_file(dfe.SEN2)).get(scope, {})
    for year in sorted((y for y in years if y <= day.year), reverse=True):
        value = value_of(years[year])
        if value is not None:
            return {"period": str(year), "source": SEN2_SOURCE, "column": column, "value": value}
    return None


def _published(metric: str) -> Callable[[str, date], dict[str, Any] | None]:
    return lambda scope, day: published_sen2(metric, scope, day)


def _metric(name: str, kind: str, compute: Callable[[Context], Iterable[Contribution]], scale: float = 1.0) -> Metric:
    return Metric(name, "ehcp", kind, compute, scale, unit="la", published=_published(name) if name in SEN2_FIGURES else None)


METRICS: tuple[Metric, ...] = (
    _metric("ehcp_plans_within_20_weeks_rate", "rate", plans_within_20_weeks, 100.0),
    _metric("ehcp_plans_within_20_weeks_excluding_exceptions_rate", "rate", plans_within_20_weeks_excluding_exceptions, 100.0),
    _metric("ehcp_assessment_refusal_rate", "rate", assessment_refusal_rate, 100.0),
    _metric("ehcp_plans_ceased_by_reason", "breakdown", plans_ceased_by_reason),
    _metric("ehcp_mediation_requests", "count", mediation_requests),
    _metric("ehcp_mediations_followed_by_appeal_rate", "rate", mediations_followed_by_appeal, 100.0),
    _metric("ehcp_appeals_per_1000_decisions", "rate", appeals_per_1000_decisions, 1000.0),
    _metric("ehcp_appeal_outcomes", "breakdown", appeal_outcomes),
    Metric("area_send_inspection_outcomes", "area_send_inspections", "breakdown", area_send_outcomes, unit="la"),
    Metric("area_send_follow_ups_overdue", "area_send_inspections", "count", area_send_follow_ups_overdue, unit="la"),
)
