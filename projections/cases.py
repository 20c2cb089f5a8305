"""Accountability cases view: ``accountability.*`` events from ``dfe:regions`` per LA, trust or school,
each case linked to the metric snapshot that prompted it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .facts import LogEvent, Moment, Table, View

CASE_FACTS = Table(
    "pv_case_facts",
    (
        ("concern_event_id", "TEXT"),
        ("category", "TEXT"),
        ("metric", "TEXT"),
        ("metric_value", "DOUBLE PRECISION"),
        ("national_value", "DOUBLE PRECISION"),
        ("metric_as_of", "TEXT"),
        ("metric_known_at", "TEXT"),
        ("decision", "TEXT"),
        ("due_on", "TEXT"),
        ("action", "TEXT"),
        ("outcome", "TEXT"),
    ),
    indexes=("subject",),
)


def rows(ev: LogEvent) -> Iterable[tuple[Table, dict[str, Any]]]:
    r = ev.record
    if not r.type.startswith("accountability."):
        return
    values = {name: r.data.get(name) for name, _ in CASE_FACTS.columns}
    if r.type == "accountability.concern_raised":
        values["concern_event_id"] = r.event_id
    yield CASE_FACTS, values


VIEW = View("cases", 1, (CASE_FACTS,), rows)


LEVEL_OF_SCHEME = {"la": "la", "trust": "trust"}


def snapshot_link(org: str, as_of: str | None, known_at: str | None) -> str:
    """The accountabilityMetrics request that reproduces the figure the concern cites."""
    level = LEVEL_OF_SCHEME.get(org.split(":", 1)[0], "school")
    query = f"level={level}&org={org}" + (f"&as_of={as_of}" if as_of else "") + (f"&known_at={known_at}" if known_at else "")
    return f"/views/metrics?{query}"


@dataclass
class Case:
    concern_event_id: str
    org: str
    opened_on: str
    category: str
    snapshot: dict[str, Any]
    status: str = "open"
    decisions: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    closed_on: str | None = None
    outcome: str | None = None


def cases(db: Any, moment: Moment) -> list[Case]:
    """Cases as of ``moment``; an update whose concern is not in force is ignored."""
    found: dict[str, Case] = {}
    for (
        etype,
        subject,
        occurred_on,
        concern,
        category,
        metric,
        value,
        national,
        m_as_of,
        m_known,
        decision,
        due_on,
        action,
        outcome,
    ) in db.facts(
        CASE_FACTS.name,
        moment,
        order="occurred_on, seq",
        columns="type, subject, occurred_on, concern_event_id, category, metric, metric_value, national_value, metric_as_of, "
        "metric_known_at, decision, due_on, action, outcome",
    ):
        if etype == "accountability.concern_raised":
            snapshot = {
                "metric": metric,
                "value": value,
                "national_value": national,
                "as_of": m_as_of,
                "known_at": m_known,
                "link": snapshot_link(subject, m_as_of, m_known),
            }
            found[concern] = Case(concern, subject, occurred_on, category, snapshot)
            continue
        case = found.get(concern)
        if case is None:
            continue
        if etype == "accountability.decision_recorded":
            case.decisions.append({"decision": decision, "on": occurred_on, "due_on": due_on})
            case.status = "decided"
        elif etype == "accountability.action_completed":
            case.actions.append({"action": action, "on": occurred_on})
        elif etype == "accountability.case_closed":
            case.status, case.closed_on, case.outcome = "closed", occurred_on, outcome
    return sorted(found.values(), key=lambda c: (c.opened_on, c.concern_event_id))
