"""Research projects folded from a researcher organisation's ``research.*`` records, and the rules for new ones. Pure.

Five Safes (domain.md 8.2): the operator's ``research.project_approved`` makes a safe project for safe people (the
researcher organisation the event is about), and states what safe data means for it (unit, variables, which are
quasi-identifiers and sensitive, population, period, k, l); ``research.project_revoked`` withdraws it; every
``research.export_released`` (written by the ledger) is a safe output on the record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from ledger.core.errors import Category, Problem
from ledger.core.rules import Record

DEFAULT_K = 10
DEFAULT_L = 2
DEFAULT_MAX_SUPPRESSED = 0.05
DEFAULT_ESTABLISHMENT_LEVEL = "la"
DEFAULT_DATE_DETAIL = "month"


@dataclass(frozen=True)
class Release:
    """One ``research.export_released``: what was released, from which checkpoint, with what anonymity."""

    event_id: str
    received_at: datetime
    manifest_digest: str
    tree_size: int
    root: str
    spec: dict[str, Any]
    rows: int
    suppressed_rows: int
    k: int | None
    l: int | None  # noqa: E741 - the name the literature uses

    def as_dict(self) -> dict[str, Any]:
        return {
            "release_id": self.event_id,
            "released_at": self.received_at.isoformat().replace("+00:00", "Z"),
            "manifest_digest": self.manifest_digest,
            "checkpoint": {"tree_size": self.tree_size, "root": self.root},
            "spec": self.spec,
            "rows": self.rows,
            "suppressed_rows": self.suppressed_rows,
            "k": self.k,
            "l": self.l,
        }


@dataclass
class Project:
    """An approved project, as the researcher organisation's records say now."""

    project_id: str
    researcher: str
    purpose: str
    unit: str
    variables: tuple[str, ...]
    quasi_identifiers: tuple[str, ...]
    sensitive: tuple[str, ...]
    population: dict[str, tuple[str, ...]]
    period: tuple[date, date]
    expires_on: date
    establishment_level: str = DEFAULT_ESTABLISHMENT_LEVEL
    date_detail: str = DEFAULT_DATE_DETAIL
    k: int = DEFAULT_K
    l: int = DEFAULT_L  # noqa: E741
    max_suppressed: float = DEFAULT_MAX_SUPPRESSED
    reference: str | None = None
    approved_event_id: str = ""
    approved_on: date | None = None
    revoked_on: date | None = None
    revocation_reason: str | None = None
    releases: list[Release] = field(default_factory=list)

    def standing(self, today: date) -> str:
        """active, revoked or expired (on ``today``)."""
        if self.revoked_on is not None:
            return "revoked"
        return "expired" if today > self.expires_on else "active"

    def as_dict(self, today: date) -> dict[str, Any]:
        return {
            "project": self.project_id,
            "researcher": self.researcher,
            "purpose": self.purpose,
            "reference": self.reference,
            "status": self.standing(today),
            "unit": self.unit,
            "variables": list(self.variables),
            "quasi_identifiers": list(self.quasi_identifiers),
            "sensitive": list(self.sensitive),
            "population": {k: list(v) for k, v in self.population.items()},
            "period": {"from": self.period[0].isoformat(), "to": self.period[1].isoformat()},
            "expires_on": self.expires_on.isoformat(),
            "establishment_level": self.establishment_level,
            "date_detail": self.date_detail,
            "k": self.k,
            "l": self.l,
            "max_suppressed": self.max_suppressed,
            "approved_event_id": self.approved_event_id,
            "approved_on": self.approved_on.isoformat() if self.approved_on else None,
            "revoked_on": self.revoked_on.isoformat() if self.revoked_on else None,
            "revocation_reason": self.revocation_reason,
            "releases": [r.as_dict() for r in self.releases],
        }


def _project(researcher: str, r: Record) -> Project:
    d = r.data
    return Project(
        d["project"],
        researcher,
        d["purpose"],
        d["unit"],
        tuple(d["variables"]),
        tuple(d["quasi_identifiers"]),
        tuple(d["sensitive"]),
        {name: tuple(values) for name, values in sorted(d.get("population", {}).items())},
        (date.fromisoformat(d["period"]["from"]), date.fromisoformat(d["period"]["to"])),
        date.fromisoformat(d["expires_on"]),
        d.get("establishment_level", DEFAULT_ESTABLISHMENT_LEVEL),
        d.get("date_detail", DEFAULT_DATE_DETAIL),
        int(d.get("k", DEFAULT_K)),
        int(d.get("l", DEFAULT_L)),
        float(d.get("max_suppressed", DEFAULT_MAX_SUPPRESSED)),
        d.get("reference"),
        r.event_id,
        r.occurred_on,
    )


def fold_projects(researcher: str, records: Sequence[Record]) -> dict[str, Project]:
    """Every project of the researcher organisation ``researcher``, by project id."""
    projects: dict[str, Project] = {}
    for r in records:
        if r.type == "research.project_approved":
            projects[r.data["project"]] = _project(researcher, r)
        elif r.type == "research.project_revoked" and r.data["project"] in projects:
            project = projects[r.data["project"]]
            project.revoked_on, project.revocation_reason = r.occurred_on, r.data["reason"]
        elif r.type == "research.export_released" and r.data["project"] in projects:
            d = r.data
            projects[d["project"]].releases.append(
                Release(
                    r.event_id,
                    r.received_at,
                    d["manifest_digest"],
                    int(d["checkpoint"]["tree_size"]),
                    d["checkpoint"]["root"],
                    d["spec"],
                    int(d["rows"]),
                    int(d["suppressed_rows"]),
                    d["k"],
                    d["l"],
                )
            )
    return projects


def _kind(records: Sequence[Record]) -> str:
    kinds = [r.data["kind"] for r in records if r.type == "org.registered"]
    return str(kinds[0]) if kinds else ""


def export_problems(project: Project, unit: str, variables: Sequence[str], today: date, path: str = "$.payload.data") -> list[Problem]:
    """Why ``project`` may not release an extract of ``unit`` with ``variables`` on ``today`` (none: it may)."""
    standing = project.standing(today)
    if standing == "revoked":
        return [
            Problem(
                "project_revoked",
                f"{path}.project",
                f"project {project.project_id} was revoked on {project.revoked_on}",
                Category.FORBIDDEN,
            )
        ]
    if standing == "expired":
        return [
            Problem(
                "project_expired",
                f"{path}.project",
                f"project {project.project_id}'s approval expired on {project.expires_on}",
                Category.FORBIDDEN,
            )
        ]
    problems = []
    if unit != project.unit:
        problems.append(
            Problem(
                "unit_not_approved",
                f"{path}.spec.unit",
                f"project {project.project_id} is approved for unit {project.unit}",
                Category.FORBIDDEN,
            )
        )
    for i, name in enumerate(variables):
        if name not in project.variables:
            problems.append(
                Problem(
                    "variable_not_approved",
                    f"{path}.spec.variables[{i}]",
                    f"{name} is not among project {project.project_id}'s approved variables ({', '.join(project.variables)})",
                    Category.FORBIDDEN,
                )
            )
    return problems


def check_research(records: Sequence[Record], new: Record) -> list[Problem]:
    """Problems that reject ``new`` (a ``research.*`` record) about the researcher organisation whose ``records`` these are."""
    d, path = new.data, "$.payload.data"
    projects = fold_projects(new.subject, records)
    project = projects.get(d["project"])
    if new.type == "research.project_approved":
        if _kind(records) != "researcher":
            return [Problem("not_researcher", "$.payload.subject.org", f"{new.subject} is not a researcher organisation")]
        if project is not None:
            return [
                Problem(
                    "project_exists",
                    f"{path}.project",
                    f"project {d['project']} is already approved (revoke it, or approve a new id)",
                    Category.CONFLICT,
                )
            ]
        problems = []
        for name in ("quasi_identifiers", "sensitive"):
            for i, variable in enumerate(d[name]):
                if variable not in d["variables"]:
                    problems.append(Problem("not_in_variables", f"{path}.{name}[{i}]", f"{variable} is not among the approved variables"))
        for i, variable in enumerate(d["sensitive"]):
            if variable in d["quasi_identifiers"]:
                problems.append(
                    Problem(
                        "sensitive_and_quasi_identifier",
                        f"{path}.sensitive[{i}]",
                        f"{variable} cannot be both a quasi-identifier and a sensitive attribute",
                    )
                )
        if d["period"]["to"] < d["period"]["from"]:
            problems.append(Problem("end_before_start", f"{path}.period.to", "the period ends before it starts"))
        return problems
    if project is None:
        return [Problem("project_unknown", f"{path}.project", f"{new.subject} has no project {d['project']}", Category.NOT_FOUND)]
    if new.type == "research.project_revoked":
        if project.revoked_on is not None:
            return [
                Problem(
                    "project_revoked",
                    f"{path}.project",
                    f"project {d['project']} was already revoked on {project.revoked_on}",
                    Category.CONFLICT,
                )
            ]
        return []
    if new.type == "research.export_released":
        return export_problems(project, d["spec"]["unit"], d["spec"]["variables"], new.received_at.date(), path)
    return []
