"""Simulated EHCP journeys, redress and area SEND inspections for ``simulate`` and ``demo`` (issue 24), added to an
area made by the movement generator (``ledger/tools/simulate.py``), calibrated per LA on SEN2 (``data/dfe/sen2_mi.csv``,
the LA's latest published year, England's where the LA has no figure): how often a request is refused, how many
plans are issued within 20 weeks and with exceptions, how often an assessment ends without a plan, how many
decisions go to mediation and how many mediations to appeal. Every journey keeps to the ledger's rules
(``ledger/core/ehcp_rules.py``); steps that would fall after today are not taken yet.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger import dfe, own_events
from ledger.core.ehcp_rules import SEN2_CEASE_COLUMNS
from ledger.tools.simulate import Area, Org, _key, _uuid, _weekday

if TYPE_CHECKING:
    from ledger.service import Ledger, Receipt

REQUESTS_PER_PUPIL_YEAR = 114_482 / 9_092_073  # SEN2 2022 requests for assessment / pupils in England, January 2024
MEDIATION, TRIBUNAL, ICB = "mediation:send-mediation-service", "tribunal:send", "icb:QUY"
# Appeal outcomes, 2021/22: about 96% at least partly in the appellant's favour (domain.md 5.3)
APPEAL_OUTCOMES = {"upheld": 55, "partly_upheld": 21, "conceded": 12, "withdrawn": 8, "dismissed": 4}
AREA_SEND_OUTCOMES = {"positive": 7, "inconsistent": 11, "widespread_failings": 8}  # 26 inspections in 2023 (domain.md 6.2)
NEEDS = {"ASD": 33, "SLCN": 21, "SEMH": 15, "MLD": 8, "SLD": 6, "PD": 4, "SPLD": 4, "HI": 2, "VI": 1, "PMLD": 2, "MSI": 1, "OTH": 3}


@dataclass(frozen=True)
class Calibration:
    """One LA's rates from SEN2 (each a probability), and the year they come from."""

    year: int
    refused: float  # requests refused (ass_refused_ehc / inreq_ehc)
    not_issued: float  # assessments ending without a plan (ass_none_ehc / new_all_ehc_ass_none_ehc_sum)
    within_20_weeks: float  # plans issued within 20 weeks, exceptions included (inc_exc_20week_rate)
    exceptions: float  # plans with an exception to the 20 weeks (1 - tot_no_exc_ehc / tot_inc_exc_ehc)
    mediation: float  # mediation requests per appealable decision (total_mediation / refusals, plans and not-issued)
    appeal_after_mediation: float  # total_tribunal_followed_mediation / total_mediation
    cease_reasons: dict[str, float]  # plans ceased by reason (discontinued_*), as weights


ENGLAND_2021_FOLLOWED = 1_302 / 5_097  # the latest year England published mediations followed by appeals


@cache
def _sen2_rows(path: Path) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    with path.open(encoding="utf-8-sig", newline="") as f:
        for row in csv.DictReader(f):
            where = {"National": "england", "Local authority": row["old_la_code"]}.get(row["geographic_level"])
            if where:
                out.setdefault(where, []).append(row)
    return out


def _num(row: dict[str, str], column: str) -> float | None:
    try:
        return float(row.get(column, "").strip())
    except ValueError:
        return None


def _share(row: dict[str, str], num: str, den: str | tuple[str, ...]) -> float | None:
    top = _num(row, num)
    bottoms = [_num(row, c) for c in ((den,) if isinstance(den, str) else den)]
    if top is None or any(b is None for b in bottoms):
        return None
    total = sum(b for b in bottoms if b is not None)
    return min(1.0, top / total) if total > 0 else None


def calibration(la_code: str) -> Calibration:
    """The LA's rates from its latest SEN2 year with the figures (each rate falls back to England's)."""
    rows = _sen2_rows(dfe.data_file(dfe.SEN2))

    def latest(where: str, rate: Any) -> tuple[int, Any] | None:
        for row in sorted(rows.get(where, []), key=lambda r: int(r["time_period"]), reverse=True):
            value = rate(row)
            if value is not None:
                return int(row["time_period"]), value
        return None

    def pick(rate: Any, default: float) -> tuple[int, Any]:
        return latest(la_code, rate) or latest("england", rate) or (0, default)

    refused = pick(lambda r: _share(r, "ass_refused_ehc", "inreq_ehc"), 0.22)
    not_issued = pick(lambda r: _share(r, "ass_none_ehc", "new_all_ehc_ass_none_ehc_sum"), 0.06)
    within = pick(lambda r: rate / 100 if (rate := _num(r, "inc_exc_20week_rate")) is not None else None, 0.48)
    exceptions = pick(lambda r: 1 - s if (s := _share(r, "tot_no_exc_ehc", "tot_inc_exc_ehc")) is not None else None, 0.05)
    mediation = pick(lambda r: _share(r, "total_mediation", ("ass_refused_ehc", "new_all_ehc", "ass_none_ehc")), 0.056)
    followed = pick(lambda r: _share(r, "total_tribunal_followed_mediation", "total_mediation"), ENGLAND_2021_FOLLOWED)
    reasons = latest(la_code, _cease_reasons) or latest("england", _cease_reasons)
    return Calibration(
        refused[0],
        refused[1],
        not_issued[1],
        within[1],
        exceptions[1],
        mediation[1],
        followed[1],
        reasons[1] if reasons else {"needs_met": 1.0},
    )


def _cease_reasons(row: dict[str, str]) -> dict[str, float] | None:
    """Plans ceased by reason in one SEN2 row (``ehcp_rules.SEN2_CEASE_COLUMNS``), None if it has none."""
    found = {reason: sum(n for c in columns if (n := _num(row, c)) is not None) for reason, columns in SEN2_CEASE_COLUMNS.items()}
    return {reason: n for reason, n in found.items() if n > 0} or None


class _Journeys:
    """Builds the EHCP events of an area's pupils, in the order the rules need them."""

    def __init__(self, area: Area, rng: random.Random, today: date, cal: Calibration):
        self.area, self.rng, self.today, self.cal = area, rng, today, cal
        self.events: list[tuple[date, str, dict[str, Any]]] = []

    def add(self, day: date, submitter: str, event_type: str, subject: dict[str, str], data: dict[str, Any]) -> str | None:
        """An event of ``day`` reported the day after at 10:00 (at midnight today for yesterday's); None after today."""
        if day >= self.today:
            return None
        reported = min(datetime.combine(day + timedelta(days=1), time(10), tzinfo=UTC), datetime.combine(self.today, time(0), tzinfo=UTC))
        body = own_events.event_body(event_type, submitter, subject, data, day, reported, event_id=str(_uuid(self.rng)))
        self.events.append((day, submitter, body))
        return str(body["event_id"])

    def weeks_later(self, day: date, lo: float, hi: float) -> date:
        return _weekday(day + timedelta(days=round(self.rng.uniform(lo, hi) * 7)))

    def journey(self, upn: str, school: str, requested: date) -> None:
        la, rng, cal, pupil = self.area.la, self.rng, self.cal, {"upn": upn}
        request = self.add(
            requested,
            la,
            "ehcp.assessment_requested",
            pupil,
            {"la": la, "requested_by": rng.choices(("parent", "school", "young_person", "other"), (50, 42, 3, 5))[0]},
        )
        if request is None:
            return
        decided = self.weeks_later(requested, 3, 6.4) if rng.random() < 0.85 else self.weeks_later(requested, 6.2, 10)
        refuse = rng.random() < cal.refused
        decision = self.add(
            decided, la, "ehcp.assessment_decided", pupil, {"request_event_id": request, "decision": "refuse" if refuse else "agree"}
        )
        if decision is None:
            return
        if refuse:
            self.redress(pupil, decision, decided, ["refusal_to_assess"])
            return
        if rng.random() < cal.not_issued:
            day = max(self.weeks_later(requested, 12, 16), decided)
            if refused := self.add(day, la, "ehcp.refused_to_issue", pupil, {"request_event_id": request}):
                self.redress(pupil, refused, day, ["refusal_to_issue"])
            return
        late = rng.random() >= cal.within_20_weeks
        final_day = self.weeks_later(requested, 20.3, 32) if late else self.weeks_later(requested, 15, 19.8)
        draft_day = min(self.weeks_later(requested, 12, 16), final_day - timedelta(days=15))
        if self.add(max(draft_day, decided), la, "ehcp.draft_issued", pupil, {"request_event_id": request}) is None:
            return
        health = rng.random() < 0.3
        data: dict[str, Any] = {
            "request_event_id": request,
            "primary_need": rng.choices(list(NEEDS), list(NEEDS.values()))[0],
            "sections": ["A", "B", "C", "D", "E", "F", "G", "H2", "I", "J", "K"] if health else ["A", "B", "E", "F", "I", "K"],
            "health_provision": health,
            "social_care_provision": health and rng.random() < 0.5,
        }
        if health:
            data["icb"] = ICB
        if rng.random() > 0.02:
            data["named_setting"] = school
        if rng.random() < cal.exceptions:
            data["exceptions"] = [
                rng.choice(("exceptional_personal_circumstances", "absent_from_area", "missed_appointment", "setting_closure"))
            ]
        final = self.add(final_day, la, "ehcp.final_issued", pupil, data)
        if final is not None:
            self.redress(pupil, final, final_day, rng.choice((["section_f"], ["section_b", "section_f"], ["section_i"])))
            self.reviews(pupil, final_day)

    def reviews(self, pupil: dict[str, str], issued: date) -> None:
        """Annual reviews while the simulated time lasts (one in five late), and now and then the plan ceases."""
        la, rng, last = self.area.la, self.rng, issued
        while True:
            review = self.weeks_later(last, 44, 52) if rng.random() < 0.8 else self.weeks_later(last, 53, 60)
            outcome = rng.choices(("maintain", "amend", "cease"), (60, 32, 8))[0]
            if self.add(review, la, "ehcp.annual_review_held", pupil, {"outcome": outcome}) is None:
                return
            if outcome == "amend":
                amended = self.add(self.weeks_later(review, 2, 4), la, "ehcp.amended", pupil, {"sections_amended": ["F"]})
                if amended is not None:
                    self.redress(pupil, amended, self.weeks_later(review, 2, 4), ["section_f"])
            elif outcome == "cease":
                day = self.weeks_later(review, 2, 4)
                reasons = self.cal.cease_reasons
                ceased = self.add(day, la, "ehcp.ceased", pupil, {"reason": rng.choices(list(reasons), list(reasons.values()))[0]})
                if ceased is not None:
                    self.redress(pupil, ceased, day, ["ceasing"])
                return
            last = review

    def redress(self, pupil: dict[str, str], decision: str, decided: date, grounds: list[str]) -> None:
        rng, cal = self.rng, self.cal
        if rng.random() >= cal.mediation:
            return
        asked = self.weeks_later(decided, 1, 6)
        mediation = self.add(asked, MEDIATION, "dispute.mediation_requested", pupil, {"decision_event_id": decision, "grounds": grounds})
        if mediation is None:
            return
        certified = self.weeks_later(asked, 0.5, 4)
        if (
            self.add(
                certified,
                MEDIATION,
                "dispute.mediation_certificate_issued",
                pupil,
                {"mediation_event_id": mediation, "mediation_held": rng.random() < 0.6},
            )
            is None
        ):
            return
        if rng.random() >= cal.appeal_after_mediation:
            return
        registered = self.weeks_later(certified, 1, 4)
        appeal = self.add(
            registered,
            TRIBUNAL,
            "dispute.appeal_registered",
            pupil,
            {"decision_event_id": decision, "grounds": grounds, "mediation_event_id": mediation},
        )
        if appeal is not None:
            self.add(
                self.weeks_later(registered, 12, 30),
                TRIBUNAL,
                "dispute.appeal_decided",
                pupil,
                {"appeal_event_id": appeal, "outcome": rng.choices(list(APPEAL_OUTCOMES), list(APPEAL_OUTCOMES.values()))[0]},
            )

    def inspection(self, start: date) -> None:
        la, rng = self.area.la, self.rng
        begun = self.weeks_later(start, 4, 20)
        ends = begun + timedelta(days=11)
        inspection = self.add(
            begun,
            "ofsted",
            "inspection.started",
            {"org": la},
            {"kind": "full", "from": begun.isoformat(), "to": ends.isoformat(), "partners": [ICB]},
        )
        if inspection is not None:
            self.add(
                ends + timedelta(days=rng.randrange(35, 60)),
                "ofsted",
                "inspection.area_send_outcome_recorded",
                {"org": la},
                {
                    "inspection_event_id": inspection,
                    "partners": [ICB],
                    "outcome": rng.choices(list(AREA_SEND_OUTCOMES), list(AREA_SEND_OUTCOMES.values()))[0],
                },
            )


def add_ehcp_journeys(area: Area, seed: int = 1, today: date | None = None) -> Area:
    """``area`` with EHCP journeys for some of its pupils (without a plan at the start), their mediation and appeals,
    and an area SEND inspection of its LA; the events merged in date order after the area's own of the same day."""
    firsts: dict[str, tuple[date, str, bool]] = {}  # each pupil's first registration: day, school, has a plan already
    for _, body in area.events:
        if body["type"] == "pupil.registered" and body["subject"]["upn"] not in firsts:
            firsts[body["subject"]["upn"]] = (
                date.fromisoformat(body["occurred_on"]),
                body["data"]["school"],
                body["data"]["sen_status"] == "E",
            )
    if not firsts:
        return area
    today = today or max(date.fromisoformat(b["occurred_on"]) for _, b in area.events) + timedelta(days=1)
    rng = random.Random(f"ehcp:{seed}:{area.la}")
    cal = calibration(area.la.split(":")[1])
    start = min(day for day, _, _ in firsts.values())
    journeys = _Journeys(area, rng, today, cal)
    years = (today - start).days / 365
    for upn, (registered, school, has_plan) in sorted(firsts.items()):
        if not has_plan and rng.random() < REQUESTS_PER_PUPIL_YEAR * years:
            journeys.journey(upn, school, _weekday(registered + timedelta(days=rng.randrange(1, max(2, (today - registered).days)))))
    journeys.inspection(start)
    orgs = dict(area.orgs)
    for org_id, kind, name in (
        (MEDIATION, "mediation", "SEND Mediation Service"),
        (TRIBUNAL, "tribunal", "First-tier Tribunal (SEND)"),
        (ICB, "icb", "Simulated Integrated Care Board"),
    ):
        orgs.setdefault(org_id, Org(org_id, kind, name, None, _key(seed, org_id)))
    merged = [(date.fromisoformat(body["occurred_on"]), 0, i, submitter, body) for i, (submitter, body) in enumerate(area.events)]
    merged += [(day, 1, i, submitter, body) for i, (day, submitter, body) in enumerate(journeys.events)]
    merged.sort(key=lambda e: (e[0], e[1], e[2]))
    return replace(area, orgs=orgs, events=[(submitter, body) for *_, submitter, body in merged])


def inspection_started(la: str, now: datetime, inspectorate: str = "ofsted") -> dict[str, Any]:
    """An area SEND inspection of ``la`` by ``inspectorate``, begun a fortnight ago and open for two months more: its
    inspectors read the area's pupils meanwhile (docs/access.md)."""
    start = now.date() - timedelta(days=14)
    data = {"kind": "full", "from": start.isoformat(), "to": (now.date() + timedelta(days=60)).isoformat()}
    return own_events.event_body("inspection.started", inspectorate, {"org": la}, data, start, now)


def start_demo_inspection(ledger: Ledger, area: Area) -> Receipt:
    """Ofsted's inspection of the simulated area's LA, signed with the simulation's Ofsted key."""
    return ledger.submit(own_events.signed(inspection_started(area.la, ledger.clock()), area.orgs["ofsted"].key))
