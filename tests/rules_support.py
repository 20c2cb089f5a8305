"""A pupil's records built event by event through the pure rules (``ledger.rules.check_pupil``), each accepted
only if the rules accept it, with organisations' facts from a small table: for the tests of the rules."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from ledger.core.errors import Problem
from ledger.core.rules import OrgFacts, Record, check_pupil, fold_pupil

UPN = "H801200001001"
LA, OTHER_LA, TRUST = "la:801", "la:802", "trust:TR00001"
SCHOOL_A, SCHOOL_B = "urn:100005", "urn:100006"  # maintained schools in LA 801
ACADEMY = "urn:100007"  # in LA 802, in TRUST
ACADEMY_801 = "urn:100008"  # in LA 801, in TRUST
FAR_SCHOOL = "urn:100009"  # in LA 802, no trust
PRU = "urn:100010"  # an AP setting with a URN, in LA 801
PROVIDER = "ukprn:10000047"  # a registered AP provider, in LA 801
UPROV = "uprov:801-7"
CLOSED_SCHOOL = "urn:100011"  # in LA 801, closed on CLOSED_ON
CLOSED_ON = date(2026, 9, 30)

FACTS: dict[str, OrgFacts] = {
    LA: OrgFacts("la", registered=True),
    OTHER_LA: OrgFacts("la", registered=True),
    SCHOOL_A: OrgFacts("school", LA, registered=True),
    SCHOOL_B: OrgFacts("school", LA, registered=True),
    ACADEMY: OrgFacts("school", OTHER_LA, TRUST, registered=True),
    ACADEMY_801: OrgFacts("school", LA, TRUST, registered=True),
    FAR_SCHOOL: OrgFacts("school", OTHER_LA, registered=True),
    PRU: OrgFacts("ap_setting", LA, registered=True),
    PROVIDER: OrgFacts("ap_setting", LA, registered=True),
    UPROV: OrgFacts("unregistered_provider", LA, registered=True),
    CLOSED_SCHOOL: OrgFacts("school", LA, closed=CLOSED_ON, registered=True),
}


def registration(school: str, status: str = "C", sen: str = "N") -> dict[str, Any]:
    return {"school": school, "enrolment_status": status, "year_group": "9", "sen_status": sen, "looked_after": False}


def removal(school: str, destination: str = "school", ground: str = "registered_elsewhere") -> dict[str, Any]:
    return {"school": school, "ground": ground, "destination": destination}


def placement(commissioner: str, setting: str = PROVIDER, hours: int = 15) -> dict[str, Any]:
    setting_type = {"urn": "URN", "ukprn": "UKPRN", "uprov": "OTH"}[setting.split(":")[0]]
    return {
        "commissioner": commissioner,
        "setting": setting,
        "setting_type": setting_type,
        "tier": 3,
        "reason": "BEHAVIOUR",
        "hours_per_week": hours,
        "dual_registered": False,
    }


def attendance(setting: str) -> dict[str, Any]:
    return {"setting": setting, "academic_year": "2026/27", "term": "autumn", "possible_sessions": 40, "attended_sessions": 30}


@dataclass
class Outcome:
    problems: list[Problem]
    flags: list[dict[str, str]]
    record: Record

    @property
    def codes(self) -> list[str]:
        return [p.code for p in self.problems]

    @property
    def flag_codes(self) -> list[str]:
        return [f["code"] for f in self.flags]


@dataclass
class Pupil:
    """One pupil's accepted records; ``orgs``: the organisations' facts the rules may ask for."""

    orgs: Mapping[str, OrgFacts] = field(default_factory=lambda: FACTS)
    records: list[Record] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)  # the organisations the rules asked about, in order

    def facts(self, org: str) -> OrgFacts:
        self.asked.append(org)
        return self.orgs.get(org, OrgFacts())

    def check(
        self, event_type: str, submitter: str, data: dict[str, Any], on: date, corrects: str | None = None, received: datetime | None = None
    ) -> Outcome:
        """``received``: by default the day after ``on`` (reported in time, so no ``late_report``)."""
        received = received or datetime.combine(on + timedelta(days=1), time(10), tzinfo=UTC)
        record = Record(str(uuid.uuid4()), event_type, submitter, UPN, on, received, data, corrects)
        problems, flags = check_pupil(self.records, record, self.facts)
        return Outcome(problems, flags, record)

    def post(
        self, event_type: str, submitter: str, data: dict[str, Any], on: date, corrects: str | None = None, received: datetime | None = None
    ) -> Outcome:
        """Check and, if accepted, keep the record (as the ledger would); fail the test if rejected."""
        outcome = self.check(event_type, submitter, data, on, corrects, received)
        assert not outcome.problems, [(p.code, p.message) for p in outcome.problems]
        self.records.append(outcome.record)
        return outcome

    def refuse(self, code: str, event_type: str, submitter: str, data: dict[str, Any], on: date, corrects: str | None = None) -> Problem:
        """Check an event the rules must reject with ``code``; nothing is kept."""
        outcome = self.check(event_type, submitter, data, on, corrects)
        assert code in outcome.codes, [(p.code, p.message) for p in outcome.problems]
        return next(p for p in outcome.problems if p.code == code)

    def admit(self, school: str, on: date, status: str = "C") -> str:
        return self.post("pupil.registered", school, registration(school, status), on).record.event_id

    def leave(self, school: str, on: date, destination: str = "school") -> str:
        ground = {"school": "registered_elsewhere", "ehe": "ehe_written_notice", "unknown": "continuous_absence_20_days"}.get(
            destination, "moved_away"
        )
        return self.post("pupil.deregistered", school, removal(school, destination, ground), on).record.event_id

    def place(self, commissioner: str, on: date, setting: str = PROVIDER, hours: int = 15) -> str:
        return self.post("pupil.ap_placement_started", commissioner, placement(commissioner, setting, hours), on).record.event_id

    def on_roll(self, day: date) -> list[tuple[str, str]]:
        return [(r.school, r.status) for r in fold_pupil(self.records).registrations if r.open_on(day)]
