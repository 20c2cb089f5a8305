"""Area SEND inspection rules: the ``inspection.*`` events about an LA, by Ofsted and the CQC (domain.md 6.2). Pure.

``ledger.core.orgs.check_org`` calls :func:`check_inspection` for the ``inspection.*`` events about an LA, with the
inspections recorded for it (:func:`inspection_of`); ``ledger.core.policy`` reads them for the inspectorates' access.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from ledger.core.errors import Category, Problem
from ledger.core.identifiers import org_scheme
from ledger.core.records import Record


def _problem(code: str, path: str, message: str, category: Category = Category.INVALID) -> Problem:
    return Problem(code, f"$.payload.data.{path}" if path else "$.payload", message, category)


@dataclass(frozen=True)
class Inspection:
    event_id: str
    inspectorate: str
    kind: str
    start: date
    end: date


def check_inspection(org_id: str, inspections: dict[str, Inspection], new: Record) -> list[Problem]:
    """Problems with an ``inspection.*`` event about ``org_id``, given the inspections recorded for it."""
    d = new.data
    if org_scheme(org_id) != "la":
        return [
            Problem(
                "not_an_area", "$.payload.subject.org", "an area SEND inspection is about a local area partnership: subject.org is la:NNN"
            )
        ]
    if new.type == "inspection.started":
        if d["to"] < d["from"]:
            return [_problem("end_before_start", "to", f"to ({d['to']}) is before from ({d['from']})")]
        return []
    if "inspection_event_id" in d:
        inspection = inspections.get(d["inspection_event_id"])
        if inspection is None:
            return [
                _problem("inspection_unknown", "inspection_event_id", f"no inspection.started with that event_id is recorded for {org_id}")
            ]
        old = inspection.kind == "framework_2016"
        if old != (d["outcome"] in ("wsoa", "no_wsoa")):
            return [
                _problem(
                    "outcome_framework",
                    "outcome",
                    "a 2016-framework inspection has outcome wsoa or no_wsoa; a 2023-framework one "
                    "positive, inconsistent or widespread_failings",
                )
            ]
    return []


def inspection_of(r: Record) -> Inspection:
    return Inspection(r.event_id, r.submitter, r.data["kind"], date.fromisoformat(r.data["from"]), date.fromisoformat(r.data["to"]))
