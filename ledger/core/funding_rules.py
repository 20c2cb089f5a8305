"""Local inclusion plans, the national tariff, band assignments, AP budgets and deficit programmes (issue 25). Pure.

The plans, budgets and programme of an LA are records of the LA itself (subject: the LA); tariffs are records of
``dfe:admin``; a band assignment is a record of the pupil whose AP placement or EHC plan placement it costs. The
folds here (``tariff_in_force``, ``plans_in_force``, ``budget_for``) are the ones the views use too, so a view never
disagrees with the rules about which plan version or tariff was in force.

Rules:

- a plan version with a number already published is rejected (``plan_version_exists``: correct it instead); a new
  version must be numbered after the latest and start after the latest's start (``plan_overlap``): it supersedes the
  latest from its own start;
- a second AP budget for the same LA and financial year is rejected (``budget_exists``) unless it corrects the one
  recorded (``corrects``); its split by tier sums to the total;
- a tariff dated like one in force already is rejected (``tariff_exists``: correct it); one price per band and
  provision type;
- a band assignment names a band and provision type that the tariff in force on its date prices
  (``band_not_in_tariff``, ``no_tariff_in_force``) and a placement of the pupil open that day.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from ledger.core.errors import Category, Problem
from ledger.core.la_claims import la_link
from ledger.core.pupil_case import OrgLookup, PupilCase
from ledger.core.pupil_state import fold_pupil
from ledger.core.records import Record, check_correction, effective, without_corrected

TARIFF_ORG = "dfe:admin"
PLAN = "inclusion_plan.published"
TARIFF = "funding.tariff_published"
BAND = "funding.band_assigned"
BUDGET = "funding.ap_budget_allocated"
PROGRAMME = "funding.programme_joined"
LA_TYPES = frozenset({PLAN, BUDGET, PROGRAMME})
ORG_TYPES = LA_TYPES | {TARIFF}
DATA = "$.payload.data"

_FINANCIAL_YEAR = re.compile(r"(20[0-9]{2})-([0-9]{2})")


def financial_year_ok(label: str) -> bool:
    """``2025-26``: April 2025 to March 2026 (the second year is the one after the first)."""
    found = _FINANCIAL_YEAR.fullmatch(label)
    return found is not None and (int(found.group(1)) + 1) % 100 == int(found.group(2))


def financial_year_of(day: date) -> str:
    start = day.year if day.month >= 4 else day.year - 1
    return f"{start}-{(start + 1) % 100:02d}"


def financial_year_bounds(label: str) -> tuple[date, date]:
    start = int(label[:4])
    return date(start, 4, 1), date(start + 1, 3, 31)


# -- folds the views share ------------------------------------------------------------------------


@dataclass(frozen=True)
class Tariff:
    event_id: str
    effective_from: date
    prices: dict[tuple[str, str], int]  # (band, provision type) -> annual price in pence


def tariffs(records: Sequence[Record]) -> list[Tariff]:
    """The tariffs in force (not superseded by a correction), in effective order."""
    found = [
        Tariff(
            r.event_id,
            date.fromisoformat(r.data["effective_from"]),
            {(p["band"], p["provision_type"]): int(p["annual_price_pence"]) for p in r.data["prices"]},
        )
        for r in effective(records)
        if r.type == TARIFF
    ]
    return sorted(found, key=lambda t: t.effective_from)


def tariff_in_force(known: Sequence[Tariff], day: date) -> Tariff | None:
    """Of the tariffs ``known``, the one with the latest ``effective_from`` on or before ``day``."""
    current = [t for t in known if t.effective_from <= day]
    return max(current, key=lambda t: t.effective_from) if current else None


@dataclass(frozen=True)
class PlanVersion:
    event_id: str
    la: str
    version: int
    valid_from: date
    valid_to: date
    data: dict[str, Any]

    def settings(self) -> list[dict[str, Any]]:
        return list(self.data["settings"])


def plan_versions(la: str, records: Sequence[Record]) -> list[PlanVersion]:
    """The LA's plan versions in force (corrections applied), by version number."""
    found = [
        PlanVersion(
            r.event_id, la, int(r.data["version"]), date.fromisoformat(r.data["valid_from"]), date.fromisoformat(r.data["valid_to"]), r.data
        )
        for r in effective(records)
        if r.type == PLAN
    ]
    return sorted(found, key=lambda p: p.version)


def plan_in_force(versions: Sequence[PlanVersion], day: date) -> PlanVersion | None:
    """The version in force on ``day``: the latest started by then, within its period. A later version supersedes an
    earlier one from its start, so the earlier one's period is cut there."""
    started = [p for p in versions if p.valid_from <= day]
    if not started:
        return None
    latest = max(started, key=lambda p: p.valid_from)
    return latest if day <= latest.valid_to else None


def budgets(records: Sequence[Record]) -> dict[str, Record]:
    """The LA's AP budget in force per financial year (the latest correction)."""
    return {r.data["financial_year"]: r for r in effective(records) if r.type == BUDGET}


# -- checks ---------------------------------------------------------------------------------------


def _bad(code: str, path: str, message: str, category: Category = Category.INVALID) -> Problem:
    return Problem(code, path, message, category)


def check_org_event(records: Sequence[Record], new: Record) -> list[Problem]:
    """Problems that reject ``new`` (a plan, budget, programme or tariff) about the organisation whose ``records``
    these are (judged, if it corrects an earlier record, as if that record had never been posted)."""
    problems = check_correction(records, new)
    if problems:
        return problems
    rest = without_corrected(records, new)
    if new.type == TARIFF:
        if new.subject != TARIFF_ORG:
            return [_bad("tariff_subject", "$.payload.subject.org", f"the national tariff is a record of {TARIFF_ORG}")]
        return _check_tariff(rest, new)
    if new.subject != new.submitter:
        return [
            _bad(
                "not_submitter",
                "$.payload.subject.org",
                f"{new.submitter} publishes its own plans, budgets and programmes (subject.org must be {new.submitter})",
                Category.FORBIDDEN,
            )
        ]
    if new.type == PLAN:
        return _check_plan(rest, new)
    if new.type == BUDGET:
        corrected = next((r for r in records if r.event_id == new.corrects), None)
        return _check_budget(rest, new, corrected)
    return _check_programme(rest, new)


def _check_tariff(records: Sequence[Record], new: Record) -> list[Problem]:
    problems = []
    seen: set[tuple[str, str]] = set()
    for i, price in enumerate(new.data["prices"]):
        key = (price["band"], price["provision_type"])
        if key in seen:
            problems.append(_bad("duplicate_price", f"{DATA}.prices[{i}]", f"band {key[0]} for {key[1]} is priced twice"))
        seen.add(key)
    day = date.fromisoformat(new.data["effective_from"])
    same = next((t for t in tariffs(records) if t.effective_from == day), None)
    if same is not None:
        problems.append(
            _bad(
                "tariff_exists",
                f"{DATA}.effective_from",
                f"a tariff effective from {day} is recorded (event {same.event_id}): to change it, post a correction naming it in corrects",
            )
        )
    return problems


def _check_plan(records: Sequence[Record], new: Record) -> list[Problem]:
    d = new.data
    problems = []
    start, end = date.fromisoformat(d["valid_from"]), date.fromisoformat(d["valid_to"])
    if end < start:
        problems.append(_bad("end_before_start", f"{DATA}.valid_to", f"the plan's period ends ({end}) before it starts ({start})"))
    seen: set[str] = set()
    for i, setting in enumerate(d["settings"]):
        if setting["setting"] in seen:
            problems.append(_bad("duplicate_setting", f"{DATA}.settings[{i}].setting", f"{setting['setting']} is listed twice"))
        seen.add(setting["setting"])
    tiers = [t["tier"] for t in d["ap_service"]["tiers"]]
    for i, tier in enumerate(tiers):
        if tier in tiers[:i]:
            problems.append(_bad("duplicate_tier", f"{DATA}.ap_service.tiers[{i}].tier", f"tier {tier} is listed twice"))
    versions = plan_versions(new.subject, records)
    same = next((p for p in versions if p.version == d["version"]), None)
    if same is not None:
        problems.append(
            _bad(
                "plan_version_exists",
                f"{DATA}.version",
                f"version {d['version']} is published (event {same.event_id}): "
                "to change it, post a correction naming it in corrects; a new version takes the next number",
            )
        )
    elif versions:
        latest = max(versions, key=lambda p: p.version)
        if d["version"] < latest.version:
            problems.append(
                _bad("plan_version_order", f"{DATA}.version", f"version {latest.version} is published: a new version is numbered after it")
            )
        elif start <= latest.valid_from:
            problems.append(
                _bad(
                    "plan_overlap",
                    f"{DATA}.valid_from",
                    f"version {latest.version} is in force from {latest.valid_from}: "
                    "a new version starts after that and supersedes it from its start; this one would overlap all of it",
                )
            )
    return problems


def _check_financial_year(label: str, path: str) -> list[Problem]:
    if financial_year_ok(label):
        return []
    return [_bad("financial_year", path, f"{label!r} is no financial year: write the year it starts and the next, e.g. 2025-26")]


def _check_budget(records: Sequence[Record], new: Record, corrected: Record | None) -> list[Problem]:
    d = new.data
    problems = _check_financial_year(d["financial_year"], f"{DATA}.financial_year")
    tiers = [t["tier"] for t in d["tiers"]]
    for i, tier in enumerate(tiers):
        if tier in tiers[:i]:
            problems.append(_bad("duplicate_tier", f"{DATA}.tiers[{i}].tier", f"tier {tier} is listed twice"))
    split = sum(t["amount_pence"] for t in d["tiers"])
    if d["tiers"] and split != d["amount_pence"]:
        problems.append(
            _bad("budget_split_mismatch", f"{DATA}.tiers", f"the split by tier sums to {split} pence, not amount_pence {d['amount_pence']}")
        )
    if corrected is not None:
        if corrected.data["financial_year"] != d["financial_year"]:
            problems.append(
                _bad(
                    "correction_year",
                    f"{DATA}.financial_year",
                    f"the budget corrected is for {corrected.data['financial_year']}: a correction keeps the year",
                )
            )
    else:
        existing = budgets(records).get(d["financial_year"])
        if existing is not None:
            problems.append(
                _bad(
                    "budget_exists",
                    f"{DATA}.financial_year",
                    f"{new.subject} has an AP budget for {d['financial_year']} "
                    f"(event {existing.event_id}): a change is a correction naming it in corrects, not a second budget",
                )
            )
    return problems


def _check_programme(records: Sequence[Record], new: Record) -> list[Problem]:
    d = new.data
    problems = []
    years = [step["financial_year"] for step in d["deficit_path"]]
    for i, year in enumerate(years):
        problems.extend(_check_financial_year(year, f"{DATA}.deficit_path[{i}].financial_year"))
        if year in years[:i]:
            problems.append(_bad("duplicate_year", f"{DATA}.deficit_path[{i}].financial_year", f"{year} is listed twice"))
    if new.corrects is None and any(r.type == PROGRAMME and r.data["programme"] == d["programme"] for r in effective(records)):
        problems.append(
            _bad(
                "programme_exists",
                f"{DATA}.programme",
                f"{new.subject} has joined {d['programme']}: a change to the "
                "agreed path is a correction naming the earlier event in corrects",
            )
        )
    return problems


def costed_band(case: PupilCase) -> None:
    """``funding.band_assigned`` (the entry in ``ledger.core.rules.PUPIL_CHECKS``): ``check_band`` with the national
    tariffs the case reads."""
    case.problems.extend(check_band(case.records, case.new, case.tariffs(), case.orgs))


def check_band(records: Sequence[Record], new: Record, tariff_records: Sequence[Record], orgs: OrgLookup) -> list[Problem]:
    """Problems that reject a ``funding.band_assigned`` about the pupil whose ``records`` these are, given the
    national tariffs (``tariff_records``) and organisations' facts: by the LA it names, for a placement open that
    day that it or a school of its area commissioned (or a pupil it is linked to, for an EHC plan), at a band and
    provision type the tariff in force prices."""
    d, day = new.data, new.occurred_on
    if d["la"] != new.submitter:
        return [_bad("not_submitter", f"{DATA}.la", f"la must be the submitter ({new.submitter})", Category.FORBIDDEN)]
    state = fold_pupil(without_corrected(records, new))
    problems: list[Problem] = []
    if d["basis"] == "ap_placement":
        ref = d.get("placement_event_id")
        episode = state.episodes.get(ref) if ref else None
        if ref is None:
            return [_bad("required", f"{DATA}.placement_event_id", "a band for an AP placement names the placement (placement_event_id)")]
        if episode is None or episode.kind != "placement" or not (episode.start <= day and (episode.end is None or day < episode.end)):
            return [_bad("placement_not_open", f"{DATA}.placement_event_id", f"no AP placement started by event {ref} is open on {day}")]
        commissioner = str(episode.details.get("commissioner"))
        if commissioner != new.submitter and orgs(commissioner).la != new.submitter:
            return [
                _bad(
                    "writer_not_related",
                    f"{DATA}.placement_event_id",
                    "an LA bands the AP placements it commissioned or that schools in its area commissioned",
                )
            ]
        if "setting" in d and d["setting"] != episode.details.get("setting"):
            problems.append(_bad("setting_mismatch", f"{DATA}.setting", "the setting is the placement's own (or leave it out)"))
    else:
        if "setting" not in d:
            return [_bad("required", f"{DATA}.setting", "a band for an EHC plan names the setting the plan names")]
        if la_link(state, new, orgs) != "linked":
            return [
                _bad(
                    "implausible_claim",
                    DATA,
                    f"{new.submitter} has no recorded link to this pupil (a school in its area, or an earlier record of its own)",
                )
            ]
    tariff = tariff_in_force(tariffs(tariff_records), day)
    if tariff is None:
        problems.append(_bad("no_tariff_in_force", f"{DATA}.band", f"no national tariff is in force on {day}"))
    elif (d["band"], d["provision_type"]) not in tariff.prices:
        problems.append(
            _bad(
                "band_not_in_tariff",
                f"{DATA}.band",
                f"the tariff in force on {day} (from {tariff.effective_from}) has no price for band {d['band']} in {d['provision_type']}",
            )
        )
    return problems
