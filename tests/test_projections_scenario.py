"""A small local area, posted event by event with a controlled clock, and every metric's figure
computed by hand from the story below (not from the code). SQLite and PostgreSQL.

Orgs (registered 2026-08-20): schools A urn:100005 and B urn:100006 in LA 801, school C urn:100007
in LA 202, AP setting ukprn:10000047 (LA 801), unregistered provider uprov:801-1 (recorded by LA 801),
trust TR00001 (C from registration, A joins on 2026-09-01), dfe:regions.

Pupils (all events received on their effective date unless stated):
  P1  A from 09-02, SEN support (K); suspended 09-10 (2 sessions, PP)
  P2  A from 09-02; suspended 09-14 (50 sessions, VP) and 09-21 (50 sessions, PP) -> over 90 sessions
  P3  A from 09-02, EHCP (E); removed 09-04, destination unknown
  P4  B from 09-02; removed 09-07 to school A; on A's roll from 09-09
  P5  A from 09-02; permanently excluded 09-15 (BU); removed 09-16, destination CME;
      LA 801 places them at ukprn:10000047 (tier 3, 25 h) from 09-17
  P6  B from 09-02, looked after; B places at uprov:801-1 (OTH, tier 2, 20 h, planned end 09-28)
  P7  B from 09-02; B places at uprov:801-1 (OTH, tier 1, 10 h) from 09-08
  P8  A from 09-02; A places at ukprn:10000047 (tier 2, 15 h, planned end 09-25) from 09-08;
      reviewed 09-24: planned end moved to 10-20
  P9  A from 09-02; suspended 09-10 (1 session, PP); removal dated 09-09 (to EHE) received 09-22
  P10 C from 09-02; suspended 09-11 (4 sessions, VP)
  P11 A from 2025-09-03; A places at ukprn:10000047 2026-01-12, ended 2026-03-20 -> mainstream
  P12 A from 2025-09-03; A places at ukprn:10000047 2026-02-02, ended 2026-09-30 -> special
  ukprn:10000047 records on 10-02 autumn attendance for P5 (15 of 20) and P8 (18 of 20), on
  2026-03-20 spring attendance for P11 (90 of 100, last academic year), and on 09-30 post-16
  destinations: P12 education (sustained), P11 NEET (not sustained).
  dfe:regions: concern about LA 801 on 10-01 (decision 10-02: monitor, due 11-30); concern about
  the trust on 09-25, closed 10-03 (resolved).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import own_events
from ledger.config import Settings
from ledger.tools import admin
from projections.config import ViewSettings
from projections.facts import Moment
from projections.queries import accountability_metrics
from projections.runner import Projector, Reader

from .conftest import Clock, World, upn
from .funding_support import NO_FUNDING_FIGURES

A, B, C, LA, LA2, AP, UPROV, TRUST, REGIONS = (
    "urn:100005",
    "urn:100006",
    "urn:100007",
    "la:801",
    "la:202",
    "ukprn:10000047",
    "uprov:801-1",
    "trust:TR00001",
    "dfe:regions",
)
AS_OF = date(2026, 10, 5)


class Area(World):
    marks: dict[str, str]  # event ids the tests refer to

    def at(self, day: date, hour: int = 10) -> None:
        self.clock.now = datetime(day.year, day.month, day.day, hour, 0, tzinfo=UTC)

    def on(self, day: date, event_type: str, submitter: str, data: dict[str, Any], *, received: date | None = None, **kw: Any) -> Any:
        self.at(received or day)
        return self.post(event_type, submitter, data, occurred_on=day, **kw)

    def admin(self, day: date, event_type: str, org: str, data: dict[str, Any]) -> Any:
        self.at(day)
        body = own_events.event_body(event_type, admin.ADMIN_ORG, {"org": org}, data, day, self.clock.now)
        return self.ledger.submit(own_events.signed(body, self.ledger.secrets.signing_key))

    def register(self, n: int, school: str, day: date, sen: str = "N", looked_after: bool = False) -> Any:
        data = {"school": school, "enrolment_status": "C", "year_group": "9", "sen_status": sen, "looked_after": looked_after}
        return self.on(day, "pupil.registered", school, data, upn=upn(n))

    def leave(self, n: int, school: str, day: date, ground: str, destination: str, received: date | None = None, **extra: str) -> Any:
        data = {"school": school, "ground": ground, "destination": destination, **extra}
        return self.on(day, "pupil.deregistered", school, data, upn=upn(n), received=received)

    def exclude(self, n: int, school: str, day: date, kind: str, reason: str, sessions: int | None = None) -> Any:
        data: dict[str, Any] = {"school": school, "kind": kind, "reasons": [reason]}
        if sessions:
            data["sessions"] = sessions
        return self.on(day, "pupil.excluded", school, data, upn=upn(n))

    def place(
        self, n: int, by: str, setting: str, setting_type: str, tier: int, hours: float, day: date, planned_end: date | None = None
    ) -> str:
        data: dict[str, Any] = {
            "commissioner": by,
            "setting": setting,
            "setting_type": setting_type,
            "tier": tier,
            "reason": "BEHAVIOUR",
            "hours_per_week": hours,
            "dual_registered": False,
        }
        if planned_end:
            data["planned_end"] = planned_end.isoformat()
        return str(self.on(day, "pupil.ap_placement_started", by, data, upn=upn(n)).event_id)


def d(month: int, day: int, year: int = 2026) -> date:
    return date(year, month, day)


def build_area(settings: Settings) -> Area:
    clock = Clock(datetime(2025, 8, 20, 9, 0, tzinfo=UTC))
    result = admin.initialise(settings, clock)
    w = Area(result.ledger, clock, result.admin_token)
    w.marks = {}
    for org, kind, la, extra in (
        (LA, "la", None, {}),
        (LA2, "la", None, {}),
        (TRUST, "trust", None, {}),
        (REGIONS, "regions", None, {}),
        (A, "school", LA, {}),
        (B, "school", LA, {}),
        (C, "school", LA2, {"trust": TRUST}),
        (AP, "ap_setting", LA, {}),
    ):
        admin.add_org(w.ledger, org, kind, f"Test {org}", la, **extra)
        w.keys[org] = Ed25519PrivateKey.generate()
        admin.add_key(w.ledger, org, w.keys[org].public_key())
    w.on(d(8, 20, 2025), "provider.unregistered_recorded", LA, {"name": "Tuition provider", "postcode": "BS1 4DJ"}, org=UPROV)

    for n in (11, 12):
        w.register(n, A, d(9, 3, 2025))
    p11 = w.place(11, A, AP, "UKPRN", 3, 25, d(1, 12))
    p12 = w.place(12, A, AP, "UKPRN", 3, 25, d(2, 2))
    w.on(d(3, 20), "pupil.ap_placement_ended", A, {"placement_event_id": p11, "outcome": "mainstream"}, upn=upn(11))
    w.on(
        d(3, 20),
        "pupil.attendance_summary_recorded",
        AP,
        {"setting": AP, "academic_year": "2025/26", "term": "spring", "possible_sessions": 100, "attended_sessions": 90},
        upn=upn(11),
    )

    w.admin(d(9, 1), "org.joined_trust", A, {"trust": TRUST})
    for n, school, sen, lac in (
        (1, A, "K", False),
        (2, A, "N", False),
        (3, A, "E", False),
        (4, B, "N", False),
        (5, A, "N", False),
        (6, B, "N", True),
        (7, B, "N", False),
        (8, A, "N", False),
        (9, A, "N", False),
        (10, C, "N", False),
    ):
        w.register(n, school, d(9, 2), sen, lac)
    w.marks["p3_removal"] = w.leave(3, A, d(9, 4), "failed_to_return_after_leave", "unknown").event_id
    w.leave(4, B, d(9, 7), "registered_elsewhere", "school", destination_school=A)
    w.place(6, B, UPROV, "OTH", 2, 20, d(9, 7), planned_end=d(9, 28))
    p8 = w.place(8, A, AP, "UKPRN", 2, 15, d(9, 8), planned_end=d(9, 25))
    w.place(7, B, UPROV, "OTH", 1, 10, d(9, 8))
    w.register(4, A, d(9, 9))
    w.exclude(1, A, d(9, 10), "SUSP", "PP", 2)
    w.exclude(9, A, d(9, 10), "SUSP", "PP", 1)
    w.marks["p10_suspension"] = w.exclude(10, C, d(9, 11), "SUSP", "VP", 4).event_id
    w.exclude(2, A, d(9, 14), "SUSP", "VP", 50)
    w.exclude(5, A, d(9, 15), "PERM", "BU")
    w.leave(5, A, d(9, 16), "permanently_excluded", "cme")
    w.place(5, LA, AP, "UKPRN", 3, 25, d(9, 17))
    w.exclude(2, A, d(9, 21), "SUSP", "PP", 50)
    w.leave(9, A, d(9, 9), "ehe_written_notice", "ehe", received=d(9, 22))
    w.on(
        d(9, 24),
        "pupil.ap_placement_reviewed",
        A,
        {"placement_event_id": p8, "outcome": "extend", "new_planned_end": "2026-10-20"},
        upn=upn(8),
    )
    trust_case = w.on(
        d(9, 25),
        "accountability.concern_raised",
        REGIONS,
        {"category": "exclusions", "metric": "suspension_rate", "metric_value": 71.43, "metric_as_of": "2026-09-24"},
        org=TRUST,
    ).event_id
    w.on(d(9, 30), "pupil.ap_placement_ended", A, {"placement_event_id": p12, "outcome": "special"}, upn=upn(12))
    w.on(d(9, 30), "pupil.post16_destination_recorded", AP, {"destination": "education", "sustained": True}, upn=upn(12))
    w.on(d(9, 30), "pupil.post16_destination_recorded", AP, {"destination": "neet", "sustained": False}, upn=upn(11))
    la_case = w.on(
        d(10, 1),
        "accountability.concern_raised",
        REGIONS,
        {
            "category": "unexplained_exits",
            "metric": "unexplained_exit_rate",
            "metric_value": 18.18,
            "national_value": 16.67,
            "metric_as_of": "2026-09-30",
            "metric_known_at": "2026-10-01T09:00:00Z",
        },
        org=LA,
    ).event_id
    w.on(
        d(10, 2),
        "accountability.decision_recorded",
        REGIONS,
        {"concern_event_id": la_case, "decision": "monitor", "due_on": "2026-11-30"},
        org=LA,
    )
    for n, attended in ((5, 15), (8, 18)):
        w.on(
            d(10, 2),
            "pupil.attendance_summary_recorded",
            AP,
            {"setting": AP, "academic_year": "2026/27", "term": "autumn", "possible_sessions": 20, "attended_sessions": attended},
            upn=upn(n),
        )
    w.on(d(10, 3), "accountability.case_closed", REGIONS, {"concern_event_id": trust_case, "outcome": "resolved"}, org=TRUST)
    w.at(AS_OF, 12)
    return w


@pytest.fixture
def area(settings: Settings) -> Iterator[Area]:
    w = build_area(settings)
    Projector(w.ledger.store).catch_up()
    yield w
    w.ledger.store.close()


def metrics_for(area: Area, level: str, scope: str, moment: Moment | None = None) -> dict[str, Any]:
    return accountability_metrics(Reader(area.ledger.store), ViewSettings(), moment or Moment(AS_OF), level, scope)


def values(report: dict[str, Any]) -> dict[str, Any]:
    return {name: figure["value"] for name, figure in report["metrics"].items()}


# Expected values, by hand from the story above (see the module docstring).
NO_EHCP = {
    "ehcp_plans_within_20_weeks_rate": None,
    "ehcp_plans_within_20_weeks_excluding_exceptions_rate": None,
    "ehcp_assessment_refusal_rate": None,
    "ehcp_plans_ceased_by_reason": {},
    "ehcp_mediation_requests": 0,
    "ehcp_mediations_followed_by_appeal_rate": None,
    "ehcp_appeals_per_1000_decisions": None,
    "ehcp_appeal_outcomes": {},
    "area_send_inspection_outcomes": {},
    "area_send_follow_ups_overdue": 0,
}
SCHOOL_A = {
    "open_ap_placements": 1,  # P8
    "overdue_time_limited_placements": 0,  # P8's planned end moved to 10-20
    "open_ap_placements_by_setting_type": {"UKPRN": 1},
    "open_ap_placements_by_tier": {"2": 1},  # P8
    "placements_started_by_setting_type": {"UKPRN": 1},
    "placements_started_by_tier": {"2": 1},  # P8 (P11, P12: last year)
    "placements_started_by_reason": {"BEHAVIOUR": 1},
    "placements_ended_by_outcome": {"special": 1},  # P12 on 09-30 (P11 ended last year)
    "pupils_in_unregistered_provision": 0,
    "unregistered_providers_needing_registration": 0,
    "removals_unknown_destination": 1,  # P3
    "children_without_setting_after_leaving": 1,  # P3: 20 school days after 09-04 is 10-02, nothing since
    "sen_exits": 1,  # P3 (EHCP)
    "backdated_removals": 1,  # P9: dated 09-09, before A's suspension report dated 09-10
    "late_report_rate": 5.56,  # 1 late (P9's removal, 9 school days) of A's 18 reports since 1 September
    "unexplained_exit_rate": 22.22,  # P3 (unknown) and P5 (CME) of 9 pupils on A's roll this year
    "pupils_on_roll": 6,  # P1, P2, P4, P8, P11, P12
    "suspension_rate": 66.67,  # 4 suspensions / 6 on roll
    "permanent_exclusion_rate": 16.67,  # 1 / 6
    "suspensions_by_reason": {"PP": 3, "VP": 1},
    "permanent_exclusions_by_reason": {"BU": 1},
    "suspension_cap_breaches": 1,  # P2: 100 sessions > 90
    "ap_attendance_rate": None,
    "ap_reintegration_rate": None,
    "ap_sustained_post16_rate": None,
    "ap_placement_length_mean_days": None,
    "ap_placement_length_median_days": None,  # A is not an AP setting
    **NO_EHCP,
    **NO_FUNDING_FIGURES,  # issue 25: this story has no plans, tariffs, budgets or bands
}
ENGLAND = {
    "open_ap_placements": 4,  # P5, P6, P7, P8
    "overdue_time_limited_placements": 1,  # P6: tier 2, planned end 09-28
    "open_ap_placements_by_setting_type": {"OTH": 2, "UKPRN": 2},
    "open_ap_placements_by_tier": {"1": 1, "2": 2, "3": 1},
    "placements_started_by_setting_type": {"OTH": 2, "UKPRN": 2},  # P5, P6, P7, P8 started this year
    "placements_started_by_tier": {"1": 1, "2": 2, "3": 1},
    "placements_started_by_reason": {"BEHAVIOUR": 4},
    "placements_ended_by_outcome": {"special": 1},
    "pupils_in_unregistered_provision": 2,  # P6, P7
    "unregistered_providers_needing_registration": 1,  # uprov:801-1: P6 full time (20 h) and looked after
    "removals_unknown_destination": 1,
    "children_without_setting_after_leaving": 1,
    "sen_exits": 1,
    "backdated_removals": 1,
    "late_report_rate": 3.23,  # 1 late of 31: A 18, B 6, C 2, LA 1, AP setting 4
    "unexplained_exit_rate": 16.67,  # 2 of the 12 pupils on any roll this year
    "pupils_on_roll": 9,  # A 6, B 2 (P6, P7), C 1 (P10)
    "suspension_rate": 55.56,  # 5 / 9
    "permanent_exclusion_rate": 11.11,  # 1 / 9
    "suspensions_by_reason": {"PP": 3, "VP": 2},
    "permanent_exclusions_by_reason": {"BU": 1},
    "suspension_cap_breaches": 1,
    "ap_attendance_rate": 82.5,  # (15 + 18) / (20 + 20); P11's spring record is last year's
    "ap_reintegration_rate": 50.0,  # P11 back to mainstream by the end of summer 2026; P12 not
    "ap_sustained_post16_rate": 50.0,  # P12 yes, P11 no
    "ap_placement_length_mean_days": 153.5,  # P11 67 days, P12 240 days
    "ap_placement_length_median_days": 153.5,
    **NO_EHCP,  # no ehcp.*, dispute.* or inspection.* events in this story (tests/test_ehcp_metrics.py has them)
    **NO_FUNDING_FIGURES,  # issue 25: this story has no plans, tariffs, budgets or bands
}


def test_every_metric_for_a_school_matches_the_hand_count(area: Area) -> None:
    report = metrics_for(area, "school", A)
    assert values(report) == SCHOOL_A
    assert {k: v["national_value"] for k, v in report["metrics"].items()} == ENGLAND


def test_england(area: Area) -> None:
    assert values(metrics_for(area, "national", "england")) == ENGLAND


def test_la_and_trust_roll_ups(area: Area) -> None:
    la = values(metrics_for(area, "la", LA))
    assert la["pupils_on_roll"] == 8 and la["suspension_rate"] == 50.0  # A + B: 4 suspensions / 8
    assert la["unexplained_exit_rate"] == 18.18  # 2 of 11 pupils (all but P10)
    assert la["late_report_rate"] == 3.45  # 1 of 29 (A 18, B 6, LA 1, AP setting 4)
    assert la["open_ap_placements"] == 4 and la["ap_attendance_rate"] == 82.5
    trust = values(metrics_for(area, "trust", TRUST))
    assert trust["pupils_on_roll"] == 7 and trust["suspension_rate"] == 71.43  # A + C: 5 / 7
    assert trust["unexplained_exit_rate"] == 20.0  # 2 of 10 pupils at A or C
    assert trust["open_ap_placements"] == 1  # only A's P8; B is not in the trust


def test_ranks_among_peers(area: Area) -> None:
    school = metrics_for(area, "school", A)["metrics"]
    # suspension rate: C 100, A 66.67, B 0 (the AP setting has no pupils on roll, so no rate)
    assert (school["suspension_rate"]["rank"], school["suspension_rate"]["peers"]) == (2, 3)
    assert (school["pupils_on_roll"]["rank"], school["pupils_on_roll"]["peers"]) == (1, 4)  # A 6, B 2, C 1, AP 0
    # an unregistered provider is a peer only where it has items (docs/metrics.md): flagged uprov:801-1 and its
    # commissioner B have 1, A, C and the AP setting 0
    flagged = school["unregistered_providers_needing_registration"]
    assert (flagged["value"], flagged["rank"], flagged["peers"]) == (0, 3, 5)
    la = metrics_for(area, "la", LA2)["metrics"]
    assert (la["suspension_rate"]["value"], la["suspension_rate"]["rank"], la["suspension_rate"]["peers"]) == (100.0, 1, 2)


def test_ap_setting_framework(area: Area) -> None:
    report = values(metrics_for(area, "school", AP))
    assert {k: report[k] for k in ENGLAND if k.startswith("ap_")} == {k: v for k, v in ENGLAND.items() if k.startswith("ap_")}


def test_register_watch_and_cases(area: Area) -> None:
    report = metrics_for(area, "la", LA)
    register = report["placements"]
    assert register["by_setting_type"] == {"OTH": 2, "UKPRN": 2}
    assert register["by_tier"] == {"1": 1, "2": 2, "3": 1}
    assert register["overdue_time_limited_placements"] == 1
    assert register["open_placement_days_so_far"] == {"count": 4, "mean": 25.0, "median": 27.0}  # 18, 28, 27, 27 days
    assert register["ended_placement_days"] == {"count": 2, "mean": 153.5, "median": 153.5}
    watch = report["unregistered_providers"]
    assert [
        (
            p["provider"],
            p["pupils"],
            p["weekly_hours"],
            p["full_time_pupils"],
            p["full_time_pupils_with_sen_or_looked_after"],
            p["needs_registration"],
        )
        for p in watch["providers"]
    ] == [(UPROV, 2, 30.0, 1, 1, True)]
    assert register["published"]["period"] == "2022/23" and watch["published"]["by_setting_type"].keys() <= {"NFE", "OOT", "OTH", "WBP"}
    (case,) = report["cases"]
    assert (case["org"], case["status"], case["decisions"][0]["decision"], case["snapshot"]["metric"]) == (
        LA,
        "decided",
        "monitor",
        "unexplained_exit_rate",
    )
    assert case["snapshot"]["link"] == "/views/metrics?level=la&org=la:801&as_of=2026-09-30&known_at=2026-10-01T09:00:00Z"
    national_cases = metrics_for(area, "national", "england")["cases"]
    assert sorted((c["org"], c["status"], c["outcome"]) for c in national_cases) == [(LA, "decided", None), (TRUST, "closed", "resolved")]


def test_full_time_threshold_is_configurable(area: Area) -> None:
    strict = accountability_metrics(Reader(area.ledger.store), ViewSettings(full_time_hours=25), Moment(AS_OF), "national", "england")
    assert strict["unregistered_providers"]["flagged"] == 0  # P6's 20 hours are no longer full time
