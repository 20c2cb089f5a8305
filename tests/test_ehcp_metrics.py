"""Issue 24: every EHCP, redress and area SEND inspection figure, computed by hand from the story below (not from the
code), at LA and England level, as of two dates, with a late-reported correction; and erasure of a pupil with a
plan keeps the log's proofs valid. SQLite and PostgreSQL, through the real ledger and projector.

Orgs (registered 2024-12-02): LA 801 (Bristol in SEN2) and LA 802 (North Somerset), mediation:kids, tribunal:send,
ofsted, cqc. Every event is received on its date at 10:00 unless stated. Window: the calendar year (2026).

LA 801
  P1 request 01-05, agreed 02-09, draft 04-20, final 05-18 (133 days: within 20 weeks), names urn:100005
  P2 request 01-12, agreed 02-16, draft 04-27, final posted as 06-15 (154 days: late) and CORRECTED on 10-02 to 05-25
     (133 days: within): before 10-02 the ledger knew the late date
  P3 request 01-19, agreed 02-23, draft 05-26, final 07-13 (175 days: late) with exception missed_appointment
  P4 request 02-02, refused 03-09; mediation requested 03-20, certificate 03-25; appeal 04-10, decided upheld 09-01
  P5 request 03-02, refused 04-06; mediation requested 04-15; no appeal
  P6 request 09-07, undecided
  P7 request 2025-01-06, agreed 2025-02-10, draft 2025-04-07, final 2025-05-12 (last year); reviewed 2026-05-05;
     ceased 08-03 (needs_met); mediation about the cessation 08-10, certificate 08-12; appeal 08-20
  Ofsted inspected the area 03-02..03-13; outcome widespread_failings published 04-20 (follow-up: monitoring by
  2027-10-20, full by 2029-04-20: not overdue)
LA 802
  P8 request 01-05, agreed 02-02, draft 03-30, final 04-27 (112 days: within); ceased 09-14 (moved_abroad)
  CQC outcome inconsistent published 2023-02-01 (full reinspection due 2026-02-01, none since: overdue)

As of D1 = 2026-06-30 and D2 = 2026-10-05 (today), known now (with the correction) and known at 2026-10-01 (without).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from api.app import create_app
from ledger.config import Settings
from ledger.core import merkle, notes
from ledger.tools import admin
from ledger.transparency import verify
from ledger.transparency.tlog import Log
from projections.config import ViewSettings
from projections.context import context
from projections.ehcp import area_send_inspections
from projections.facts import Moment
from projections.queries import accountability_metrics
from projections.runner import VIEWS, Projector, Reader

from .conftest import Clock, World, upn

LA, LA2, MEDIATOR, TRIBUNAL, SCHOOL = "la:801", "la:802", "mediation:kids", "tribunal:send", "urn:100005"
D1, D2 = date(2026, 6, 30), date(2026, 10, 5)
BEFORE_CORRECTION = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
SEN2 = Path(__file__).resolve().parent.parent / "data" / "dfe" / "sen2_mi.csv"


def d(month: int, day: int, year: int = 2026) -> date:
    return date(year, month, day)


class Story(World):
    ids: dict[str, str]

    def on(
        self,
        day: date,
        event_type: str,
        submitter: str,
        data: dict[str, Any],
        *,
        n: int | None = None,
        org: str | None = None,
        received: date | None = None,
        corrects: str | None = None,
    ) -> str:
        when = received or day
        self.clock.now = datetime(when.year, when.month, when.day, 10, 0, tzinfo=UTC)
        receipt = self.post(event_type, submitter, data, upn=upn(n) if n is not None else None, org=org, occurred_on=day, corrects=corrects)
        return str(receipt.event_id)

    def journey(
        self, n: int, la: str, request: date, decided: date, draft: date | None = None, final: date | None = None, **final_data: Any
    ) -> dict[str, str]:
        out = {"request": self.on(request, "ehcp.assessment_requested", la, {"la": la, "requested_by": "parent"}, n=n)}
        decision = "agree" if draft else "refuse"
        out["decision"] = self.on(decided, "ehcp.assessment_decided", la, {"request_event_id": out["request"], "decision": decision}, n=n)
        if draft:
            self.on(draft, "ehcp.draft_issued", la, {"request_event_id": out["request"]}, n=n)
        if final:
            out["final"] = self.on(final, "ehcp.final_issued", la, self.plan(out["request"], **final_data), n=n)
        return out

    @staticmethod
    def plan(request: str, **more: Any) -> dict[str, Any]:
        return {
            "request_event_id": request,
            "named_setting": SCHOOL,
            "primary_need": "ASD",
            "sections": ["A", "B", "E", "F", "I"],
            "health_provision": False,
            "social_care_provision": False,
            **more,
        }


def tell_the_story(settings: Settings) -> Story:
    clock = Clock(datetime(2024, 12, 2, 9, 0, tzinfo=UTC))
    result = admin.initialise(settings, clock)
    w = Story(result.ledger, clock, result.admin_token)
    w.ids = {}
    for org, kind in (
        (LA, "la"),
        (LA2, "la"),
        (MEDIATOR, "mediation"),
        (TRIBUNAL, "tribunal"),
        ("ofsted", "inspectorate"),
        ("cqc", "inspectorate"),
    ):
        admin.add_org(w.ledger, org, kind, f"Test {org}")
        w.keys[org] = Ed25519PrivateKey.generate()
        admin.add_key(w.ledger, org, w.keys[org].public_key())
    w.on(d(2, 1, 2023), "inspection.area_send_outcome_recorded", "cqc", {"outcome": "inconsistent"}, org=LA2, received=d(12, 2, 2024))
    p7 = w.journey(7, LA, d(1, 6, 2025), d(2, 10, 2025), d(4, 7, 2025), d(5, 12, 2025))
    w.journey(1, LA, d(1, 5), d(2, 9), d(4, 20), d(5, 18))
    w.journey(8, LA2, d(1, 5), d(2, 2), d(3, 30), d(4, 27))
    p2 = w.journey(2, LA, d(1, 12), d(2, 16), d(4, 27))
    p3 = w.journey(3, LA, d(1, 19), d(2, 23), d(5, 26))
    p4 = w.journey(4, LA, d(2, 2), d(3, 9))
    started = w.on(d(3, 2), "inspection.started", "ofsted", {"kind": "full", "from": "2026-03-02", "to": "2026-03-13"}, org=LA)
    p5 = w.journey(5, LA, d(3, 2), d(4, 6))
    m4 = w.on(
        d(3, 20), "dispute.mediation_requested", MEDIATOR, {"decision_event_id": p4["decision"], "grounds": ["refusal_to_assess"]}, n=4
    )
    w.on(d(3, 25), "dispute.mediation_certificate_issued", MEDIATOR, {"mediation_event_id": m4, "mediation_held": False}, n=4)
    a4 = w.on(
        d(4, 10),
        "dispute.appeal_registered",
        TRIBUNAL,
        {"decision_event_id": p4["decision"], "grounds": ["refusal_to_assess"], "mediation_event_id": m4},
        n=4,
    )
    w.on(d(4, 15), "dispute.mediation_requested", MEDIATOR, {"decision_event_id": p5["decision"], "grounds": ["refusal_to_assess"]}, n=5)
    w.on(
        d(4, 20),
        "inspection.area_send_outcome_recorded",
        "ofsted",
        {"inspection_event_id": started, "outcome": "widespread_failings"},
        org=LA,
    )
    w.on(d(5, 5), "ehcp.annual_review_held", LA, {"outcome": "maintain"}, n=7)
    w.ids["p2_final"] = w.on(d(6, 15), "ehcp.final_issued", LA, w.plan(p2["request"]), n=2)
    w.on(d(7, 13), "ehcp.final_issued", LA, w.plan(p3["request"], exceptions=["missed_appointment"]), n=3)
    ceased = w.on(d(8, 3), "ehcp.ceased", LA, {"reason": "needs_met"}, n=7)
    m7 = w.on(d(8, 10), "dispute.mediation_requested", MEDIATOR, {"decision_event_id": ceased, "grounds": ["ceasing"]}, n=7)
    w.on(d(8, 12), "dispute.mediation_certificate_issued", MEDIATOR, {"mediation_event_id": m7, "mediation_held": True}, n=7)
    w.on(
        d(8, 20),
        "dispute.appeal_registered",
        TRIBUNAL,
        {"decision_event_id": ceased, "grounds": ["ceasing"], "mediation_event_id": m7},
        n=7,
    )
    w.on(d(9, 1), "dispute.appeal_decided", TRIBUNAL, {"appeal_event_id": a4, "outcome": "upheld"}, n=4)
    w.on(d(9, 7), "ehcp.assessment_requested", LA, {"la": LA, "requested_by": "school"}, n=6)
    w.on(d(9, 14), "ehcp.ceased", LA2, {"reason": "moved_abroad"}, n=8)
    # the late-reported correction: P2's plan was issued on 25 May, not 15 June
    w.on(d(5, 25), "ehcp.final_issued", LA, w.plan(p2["request"]), n=2, received=d(10, 2), corrects=w.ids["p2_final"])
    w.clock.now = datetime(2026, 10, 5, 12, 0, tzinfo=UTC)
    w.ids["p7_final"] = p7["final"]
    return w


@pytest.fixture
def story(settings: Settings) -> Iterator[Story]:
    w = tell_the_story(settings)
    Projector(w.ledger.store).catch_up()
    yield w
    w.ledger.store.close()


EHCP = (
    "ehcp_plans_within_20_weeks_rate",
    "ehcp_plans_within_20_weeks_excluding_exceptions_rate",
    "ehcp_assessment_refusal_rate",
    "ehcp_plans_ceased_by_reason",
    "ehcp_mediation_requests",
    "ehcp_mediations_followed_by_appeal_rate",
    "ehcp_appeals_per_1000_decisions",
    "ehcp_appeal_outcomes",
    "area_send_inspection_outcomes",
    "area_send_follow_ups_overdue",
)

# (scope, as-of, known at) -> every figure, by hand from the story
EXPECTED: dict[tuple[str, date, datetime | None], dict[str, Any]] = {
    (LA, D1, None): {
        "ehcp_plans_within_20_weeks_rate": 100.0,  # P1, P2 (corrected to 05-25): 2 of 2
        "ehcp_plans_within_20_weeks_excluding_exceptions_rate": 100.0,
        "ehcp_assessment_refusal_rate": 40.0,  # P4, P5 of P1-P5
        "ehcp_plans_ceased_by_reason": {},
        "ehcp_mediation_requests": 2,  # P4, P5
        "ehcp_mediations_followed_by_appeal_rate": 50.0,  # P4
        "ehcp_appeals_per_1000_decisions": 250.0,  # P4's appeal / refusals P4, P5 and plans P1, P2
        "ehcp_appeal_outcomes": {},
        "area_send_inspection_outcomes": {"widespread_failings": 1},
        "area_send_follow_ups_overdue": 0,
    },
    (LA, D1, BEFORE_CORRECTION): {"ehcp_plans_within_20_weeks_rate": 50.0, "ehcp_plans_within_20_weeks_excluding_exceptions_rate": 50.0},
    (LA, D2, None): {
        "ehcp_plans_within_20_weeks_rate": 66.67,  # P1, P2 of P1, P2, P3
        "ehcp_plans_within_20_weeks_excluding_exceptions_rate": 100.0,  # P1, P2 (P3 has an exception)
        "ehcp_assessment_refusal_rate": 33.33,  # 2 of P1-P6
        "ehcp_plans_ceased_by_reason": {"needs_met": 1},  # P7
        "ehcp_mediation_requests": 3,  # P4, P5, P7
        "ehcp_mediations_followed_by_appeal_rate": 66.67,  # P4, P7
        "ehcp_appeals_per_1000_decisions": 333.33,  # 2 appeals / P4, P5 refusals, P1-P3 plans, P7 cessation
        "ehcp_appeal_outcomes": {"upheld": 1},
        "area_send_inspection_outcomes": {"widespread_failings": 1},
        "area_send_follow_ups_overdue": 0,
    },
    (LA, D2, BEFORE_CORRECTION): {"ehcp_plans_within_20_weeks_rate": 33.33, "ehcp_plans_within_20_weeks_excluding_exceptions_rate": 50.0},
    (LA2, D2, None): {
        "ehcp_plans_within_20_weeks_rate": 100.0,
        "ehcp_plans_within_20_weeks_excluding_exceptions_rate": 100.0,
        "ehcp_assessment_refusal_rate": 0.0,
        "ehcp_plans_ceased_by_reason": {"moved_abroad": 1},
        "ehcp_mediation_requests": 0,
        "ehcp_mediations_followed_by_appeal_rate": None,
        "ehcp_appeals_per_1000_decisions": 0.0,
        "ehcp_appeal_outcomes": {},
        "area_send_inspection_outcomes": {"inconsistent": 1},
        "area_send_follow_ups_overdue": 1,
    },
    ("england", D1, None): {
        "ehcp_plans_within_20_weeks_rate": 100.0,  # P1, P2, P8
        "ehcp_plans_within_20_weeks_excluding_exceptions_rate": 100.0,
        "ehcp_assessment_refusal_rate": 33.33,  # 2 of 6 (P1-P5, P8)
        "ehcp_plans_ceased_by_reason": {},
        "ehcp_mediation_requests": 2,
        "ehcp_mediations_followed_by_appeal_rate": 50.0,
        "ehcp_appeals_per_1000_decisions": 200.0,  # 1 / 5
        "ehcp_appeal_outcomes": {},
        "area_send_inspection_outcomes": {"inconsistent": 1, "widespread_failings": 1},
        "area_send_follow_ups_overdue": 1,
    },
    ("england", D1, BEFORE_CORRECTION): {
        "ehcp_plans_within_20_weeks_rate": 66.67,
        "ehcp_plans_within_20_weeks_excluding_exceptions_rate": 66.67,
    },
    ("england", D2, None): {
        "ehcp_plans_within_20_weeks_rate": 75.0,  # P1, P2, P8 of P1, P2, P3, P8
        "ehcp_plans_within_20_weeks_excluding_exceptions_rate": 100.0,
        "ehcp_assessment_refusal_rate": 28.57,  # 2 of 7
        "ehcp_plans_ceased_by_reason": {"moved_abroad": 1, "needs_met": 1},
        "ehcp_mediation_requests": 3,
        "ehcp_mediations_followed_by_appeal_rate": 66.67,
        "ehcp_appeals_per_1000_decisions": 250.0,  # 2 / 8
        "ehcp_appeal_outcomes": {"upheld": 1},
        "area_send_inspection_outcomes": {"inconsistent": 1, "widespread_failings": 1},
        "area_send_follow_ups_overdue": 1,
    },
    ("england", D2, BEFORE_CORRECTION): {
        "ehcp_plans_within_20_weeks_rate": 50.0,
        "ehcp_plans_within_20_weeks_excluding_exceptions_rate": 66.67,
    },
}


def figures(w: Story, scope: str, as_of: date, known_at: datetime | None) -> dict[str, Any]:
    level = "national" if scope == "england" else "la"
    return dict(accountability_metrics(Reader(w.ledger.store), ViewSettings(), Moment(as_of, known_at), level, scope)["metrics"])


@pytest.mark.parametrize("scope,as_of,known_at", list(EXPECTED), ids=[f"{s}-{a}-{'before' if k else 'now'}" for s, a, k in EXPECTED])
def test_every_figure_by_hand(story: Story, scope: str, as_of: date, known_at: datetime | None) -> None:
    got = figures(story, scope, as_of, known_at)
    expected = EXPECTED[(scope, as_of, known_at)]
    assert {name: got[name]["value"] for name in expected} == expected


def test_national_value_and_published_sen2_figure_beside_the_live_one(story: Story) -> None:
    got = figures(story, LA, D2, None)
    assert got["ehcp_assessment_refusal_rate"]["national_value"] == 28.57
    assert (got["ehcp_assessment_refusal_rate"]["numerator"], got["ehcp_assessment_refusal_rate"]["denominator"]) == (2, 6)
    with SEN2.open(encoding="utf-8-sig") as f:
        bristol = next(r for r in csv.DictReader(f) if r["old_la_code"] == "801" and r["time_period"] == "2022")
    published = got["ehcp_plans_within_20_weeks_rate"]["published"]
    assert (published["period"], published["value"]) == ("2022", round(float(bristol["inc_exc_20week_rate"]), 2))
    assert got["ehcp_plans_within_20_weeks_excluding_exceptions_rate"]["published"]["value"] == round(
        float(bristol["no_exc_20week_rate"]), 2
    )
    assert got["ehcp_assessment_refusal_rate"]["published"]["value"] == round(float(bristol["ass_refused_ehc_pc"]), 2)
    assert got["ehcp_mediation_requests"]["published"]["value"] == int(bristol["total_mediation"])
    assert (
        got["ehcp_mediations_followed_by_appeal_rate"]["published"] is None
        or got["ehcp_mediations_followed_by_appeal_rate"]["published"]["period"] < "2022"
    )  # 2022 has no followed-by-appeal count ("z")
    assert "published" not in got["ehcp_appeal_outcomes"]  # SEN2 publishes no appeal outcomes
    england = figures(story, "england", D2, None)["ehcp_plans_within_20_weeks_rate"]["published"]
    assert (england["period"], england["value"]) == ("2022", 47.66)  # data/dfe/README.md: 47.7% including exceptions
    old = figures(story, LA, date(2019, 6, 30), None)["ehcp_plans_within_20_weeks_rate"]["published"]
    assert old["period"] == "2019"  # the same calendar year where SEN2 has it


def test_inspection_outcome_and_follow_up_due_dates(story: Story) -> None:
    ctx = context(Reader(story.ledger.store), Moment(D2), ViewSettings())
    assert area_send_inspections(ctx, "la", LA) == [
        {
            "la": LA,
            "inspectorate": "ofsted",
            "outcome": "widespread_failings",
            "published_on": "2026-04-20",
            "monitoring_inspection_due": "2027-10-20",
            "next_full_inspection_due": "2029-04-20",
            "follow_up_started": False,
        }
    ]
    everywhere = area_send_inspections(ctx, "national", "england")
    assert [(i["la"], i["outcome"], i["next_full_inspection_due"]) for i in everywhere] == [
        (LA, "widespread_failings", "2029-04-20"),
        (LA2, "inconsistent", "2026-02-01"),
    ]
    earlier = context(Reader(story.ledger.store), Moment(d(4, 19)), ViewSettings())
    assert area_send_inspections(earlier, "la", LA) == []  # published the next day


def test_erasing_a_pupil_with_a_plan_keeps_the_proofs_valid_and_drops_the_pupil(story: Story) -> None:
    ledger = story.ledger
    sealer = admin.sealer(ledger)
    sealer.seal_all()
    log = Log(ledger.store)
    before = log.checkpoint()
    assert before is not None
    ledger.erase(upn(7), "erasure_request")  # P7: a plan, a review, a cessation, a mediation and an appeal
    from projections.runner import forget_pupil

    forget_pupil(ledger.store, ledger.secrets.pupil_id(upn(7)))
    sealer.seal_all()
    vkey = admin.log_vkey(ledger)
    after = log.checkpoint()
    assert after is not None
    old, new = notes.open_checkpoint(before[1], vkey)[0], notes.open_checkpoint(after[1], vkey)[0]
    merkle.verify_consistency(old.size, new.size, log.tree.consistency_proof(old.size, new.size), old.root, new.root)
    report = verify.audit(log.fetch, vkey)
    assert report.entries == new.size
    got = figures(story, "england", D2, None)
    assert got["ehcp_plans_ceased_by_reason"]["value"] == {"moved_abroad": 1}  # P7's cessation is gone
    assert got["ehcp_mediation_requests"]["value"] == 2 and got["ehcp_appeals_per_1000_decisions"]["value"] == 142.86  # 1 / 7
    assert all(
        int(ledger.store.query(f"SELECT COUNT(*) FROM {t.name} WHERE subject = ?", (str(ledger.secrets.pupil_id(upn(7))),))[0][0]) == 0
        for view in VIEWS
        for t in view.tables
        if t.keyed_by_subject
    )


def test_the_figures_and_inspections_over_http_for_the_la_and_an_inspector(story: Story) -> None:
    ledger = story.ledger
    app = create_app(ledger, [Projector(ledger.store)])
    with TestClient(app) as client:
        la = {"authorization": f"Bearer {ledger.issue_token(LA, 'la')}"}
        got = client.get("/views/metrics", params={"level": "la", "org": LA, "as_of": D2.isoformat()}, headers=la)
        assert got.status_code == 200, got.text
        body = got.json()
        assert body["metrics"]["ehcp_appeals_per_1000_decisions"]["value"] == 333.33
        assert body["metrics"]["ehcp_plans_within_20_weeks_rate"]["published"]["period"] == "2022"
        assert body["area_send_inspections"] == [
            {
                "la": LA,
                "inspectorate": "ofsted",
                "outcome": "widespread_failings",
                "published_on": "2026-04-20",
                "monitoring_inspection_due": "2027-10-20",
                "next_full_inspection_due": "2029-04-20",
                "follow_up_started": False,
            }
        ]
        other = client.get("/views/metrics", params={"level": "la", "org": LA2}, headers=la)
        assert other.status_code == 403 and other.json()["errors"][0]["code"] == "forbidden_scope"
        inspector = {"authorization": f"Bearer {ledger.issue_token('ofsted', 'inspector')}"}
        # Ofsted's inspection of LA 801 ended on 13 March: today its inspectors read neither the LA's figures nor its pupils
        assert client.get("/views/metrics", params={"level": "la", "org": LA}, headers=inspector).status_code == 403
        national = client.get("/views/metrics", params={"level": "national"}, headers=inspector)
        assert national.status_code == 200 and [i["la"] for i in national.json()["area_send_inspections"]] == [LA, LA2]


def test_the_la_dashboard_shows_the_ehcp_figures(story: Story) -> None:
    from .test_web import sign_in

    ledger = story.ledger
    admin.sealer(ledger).seal_all()
    with TestClient(create_app(ledger, [Projector(ledger.store)]), base_url="https://testserver") as client:
        assert sign_in(client, ledger.issue_token(LA, "la")).status_code == 303
        page = client.get(f"/dashboards/la/{LA}", params={"as_of": D2.isoformat()})
        assert page.status_code == 200, page.text[:500]
        for title in ("EHCP plans within 20 weeks rate", "EHCP appeals per 1000 decisions", "Area SEND inspection outcomes"):
            assert title in page.text, title
        assert "66.67" in page.text and "333.33" in page.text  # this LA's figures as of D2 (by hand, above)
