"""Issue 24: the statutory EHCP timeline and redress as rules (ledger/core/ehcp_rules.py and redress_rules.py through ledger.rules.check_pupil):
every rejection and flag valid / invalid / late."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest

from ledger.core.ehcp_rules import add_months, fold_ehcp
from ledger.core.rules import effective
from tests.rules_support import LA, OTHER_LA, SCHOOL_A, Pupil

D0 = date(2026, 1, 5)  # the request (a Monday)
MEDIATOR, TRIBUNAL = "mediation:kids", "tribunal:send"


def final(request: str, setting: str | None = SCHOOL_A, **more: Any) -> dict[str, Any]:
    data = {
        "request_event_id": request,
        "primary_need": "SEMH",
        "sections": ["A", "B", "E", "F", "I"],
        "health_provision": False,
        "social_care_provision": False,
        **more,
    }
    if setting:
        data["named_setting"] = setting
    return data


class Journey(Pupil):
    def request(self, on: date = D0, la: str = LA) -> str:
        return self.post("ehcp.assessment_requested", la, {"la": la, "requested_by": "parent"}, on).record.event_id

    def decide(self, request: str, decision: str = "agree", on: date = D0 + timedelta(weeks=5), la: str = LA) -> str:
        return self.post("ehcp.assessment_decided", la, {"request_event_id": request, "decision": decision}, on).record.event_id

    def draft(self, request: str, on: date = D0 + timedelta(weeks=15)) -> str:
        return self.post("ehcp.draft_issued", LA, {"request_event_id": request}, on).record.event_id

    def plan(self, on: date = D0 + timedelta(weeks=19), **more: Any) -> str:
        """A whole journey to a final plan, issued ``on``."""
        request = self.request()
        self.decide(request)
        self.draft(request)
        return self.post("ehcp.final_issued", LA, final(request, **more), on).record.event_id


def flags_of(p: Pupil, *args: Any) -> list[str]:
    outcome = p.check(*args)
    assert not outcome.problems, [(x.code, x.message) for x in outcome.problems]
    return outcome.flag_codes


# -- assessment -----------------------------------------------------------------------------------------------------


def test_request_by_another_la_than_the_submitter_is_forbidden() -> None:
    p = Journey()
    p.refuse("not_submitter", "ehcp.assessment_requested", LA, {"la": OTHER_LA, "requested_by": "school"}, D0)


def test_first_request_is_accepted_and_shown_as_a_claim_then_linked() -> None:
    p = Journey()
    assert flags_of(p, "ehcp.assessment_requested", LA, {"la": LA, "requested_by": "parent"}, D0) == ["claim_new_area"]
    p.admit(SCHOOL_A, D0 - timedelta(days=300))  # a school in LA 801: the LA is linked
    assert flags_of(p, "ehcp.assessment_requested", LA, {"la": LA, "requested_by": "parent"}, D0) == []


def test_a_second_request_while_one_is_open_is_rejected() -> None:
    p = Journey()
    request = p.request()
    p.refuse("assessment_open", "ehcp.assessment_requested", LA, {"la": LA, "requested_by": "school"}, D0 + timedelta(days=3))
    p.decide(request, "refuse")
    p.request(D0 + timedelta(weeks=30))  # a new request after a refusal
    # another LA's open request is neither a reason to refuse nor disclosed (the child may have moved)
    assert flags_of(p, "ehcp.assessment_requested", OTHER_LA, {"la": OTHER_LA, "requested_by": "parent"}, D0 + timedelta(weeks=31)) == [
        "claim_new_area"
    ]


def test_decision_within_6_weeks_is_not_flagged_and_later_is() -> None:
    p = Journey()
    request = p.request()
    data = {"request_event_id": request, "decision": "agree"}
    assert flags_of(p, "ehcp.assessment_decided", LA, data, D0 + timedelta(weeks=6)) == []
    assert flags_of(p, "ehcp.assessment_decided", LA, data, D0 + timedelta(weeks=6, days=1)) == ["late_assessment_decision"]


def test_decision_steps_name_a_recorded_request_of_the_same_la() -> None:
    p = Journey()
    request = p.request()
    p.refuse(
        "assessment_unknown",
        "ehcp.assessment_decided",
        LA,
        {"request_event_id": "00000000-0000-4000-8000-000000000000", "decision": "agree"},
        D0 + timedelta(days=9),
    )
    problem = p.refuse(
        "not_owner", "ehcp.assessment_decided", OTHER_LA, {"request_event_id": request, "decision": "agree"}, D0 + timedelta(days=9)
    )
    assert problem.path == "$.payload.data.request_event_id" and problem.category == "forbidden"
    p.refuse("before_request", "ehcp.assessment_decided", LA, {"request_event_id": request, "decision": "agree"}, D0 - timedelta(days=1))
    p.decide(request)
    p.refuse("already_decided", "ehcp.assessment_decided", LA, {"request_event_id": request, "decision": "refuse"}, D0 + timedelta(weeks=6))


# -- draft and final plan -------------------------------------------------------------------------------------------


def test_no_draft_before_an_agreed_assessment() -> None:
    p = Journey()
    request = p.request()
    p.refuse("no_agreed_assessment", "ehcp.draft_issued", LA, {"request_event_id": request}, D0 + timedelta(weeks=4))
    p.decide(request, "refuse")
    problem = p.refuse("no_agreed_assessment", "ehcp.draft_issued", LA, {"request_event_id": request}, D0 + timedelta(weeks=8))
    assert "refused" in problem.message
    p.refuse("no_agreed_assessment", "ehcp.refused_to_issue", LA, {"request_event_id": request}, D0 + timedelta(weeks=8))


def test_no_final_before_a_draft() -> None:
    p = Journey()
    request = p.request()
    p.decide(request)
    p.refuse("no_draft", "ehcp.final_issued", LA, final(request), D0 + timedelta(weeks=10))
    p.draft(request)
    p.post("ehcp.final_issued", LA, final(request), D0 + timedelta(weeks=19))
    # the assessment ended with the plan: no second final, draft or refusal on it
    p.refuse("assessment_closed", "ehcp.final_issued", LA, final(request), D0 + timedelta(weeks=21))
    p.refuse("assessment_closed", "ehcp.refused_to_issue", LA, {"request_event_id": request}, D0 + timedelta(weeks=21))


def test_refusal_to_issue_closes_the_assessment() -> None:
    p = Journey()
    request = p.request()
    p.decide(request)
    p.post("ehcp.refused_to_issue", LA, {"request_event_id": request}, D0 + timedelta(weeks=15))
    p.refuse("assessment_closed", "ehcp.draft_issued", LA, {"request_event_id": request}, D0 + timedelta(weeks=16))


@pytest.mark.parametrize(
    "weeks,days,exceptions,expected",
    [
        (20, 0, [], []),
        (20, 1, [], ["late_final_plan"]),
        (26, 0, ["missed_appointment"], ["late_final_plan_excepted"]),
        (19, 0, ["missed_appointment"], []),
    ],
)
def test_final_plan_after_20_weeks_is_flagged_with_or_without_exceptions(
    weeks: int, days: int, exceptions: list[str], expected: list[str]
) -> None:
    p = Journey()
    request = p.request()
    p.decide(request)
    p.draft(request)
    data = final(request, **({"exceptions": exceptions} if exceptions else {}))
    assert flags_of(p, "ehcp.final_issued", LA, data, D0 + timedelta(weeks=weeks, days=days)) == expected


def test_plan_with_no_named_setting_is_flagged() -> None:
    p = Journey()
    request = p.request()
    p.decide(request)
    p.draft(request)
    assert flags_of(p, "ehcp.final_issued", LA, final(request, setting=None), D0 + timedelta(weeks=18)) == ["no_named_setting"]
    p.post("ehcp.final_issued", LA, final(request, setting=None), D0 + timedelta(weeks=18))
    assert fold_ehcp(p.records).plan is not None
    assert flags_of(p, "ehcp.amended", LA, {"sections_amended": ["I"], "named_setting": SCHOOL_A}, D0 + timedelta(weeks=30)) == []


def test_a_late_reported_final_plan_is_also_a_late_report() -> None:
    p = Journey()
    request = p.request()
    p.decide(request)
    p.draft(request)
    on = D0 + timedelta(weeks=22)
    outcome = p.check("ehcp.final_issued", LA, final(request), on, received=datetime.combine(on + timedelta(days=30), time(9), tzinfo=UTC))
    assert outcome.flag_codes == ["late_final_plan", "late_report"]


# -- reviews, amendments, transfer, cessation ----------------------------------------------------------------------


def test_review_within_12_months_then_late() -> None:
    p = Journey()
    issued = D0 + timedelta(weeks=19)
    p.plan(issued)
    review = {"outcome": "maintain"}
    assert flags_of(p, "ehcp.annual_review_held", LA, review, add_months(issued, 12)) == []
    assert flags_of(p, "ehcp.annual_review_held", LA, review, add_months(issued, 12) + timedelta(days=1)) == ["late_annual_review"]
    p.post("ehcp.annual_review_held", LA, review, add_months(issued, 11))
    # the next review is due 12 months after the last one, not after the plan
    assert flags_of(p, "ehcp.annual_review_held", LA, review, add_months(issued, 23)) == []
    assert flags_of(p, "ehcp.annual_review_held", LA, review, add_months(issued, 23) + timedelta(days=1)) == ["late_annual_review"]


def test_no_review_without_a_plan_or_of_a_ceased_plan() -> None:
    p = Journey()
    p.refuse("no_plan", "ehcp.annual_review_held", LA, {"outcome": "maintain"}, D0)
    p.refuse("no_plan", "ehcp.ceased", LA, {"reason": "needs_met"}, D0)
    issued = D0 + timedelta(weeks=19)
    p.plan(issued)
    p.refuse("before_plan", "ehcp.annual_review_held", LA, {"outcome": "maintain"}, issued - timedelta(days=1))
    p.refuse("not_owner", "ehcp.annual_review_held", OTHER_LA, {"outcome": "maintain"}, issued + timedelta(days=100))
    p.post("ehcp.annual_review_held", LA, {"outcome": "cease"}, issued + timedelta(days=300))
    p.post("ehcp.ceased", LA, {"reason": "needs_met"}, issued + timedelta(days=330))
    p.refuse("plan_ceased", "ehcp.annual_review_held", LA, {"outcome": "maintain"}, issued + timedelta(days=400))
    p.refuse("plan_ceased", "ehcp.amended", LA, {"sections_amended": ["F"]}, issued + timedelta(days=400))
    p.refuse("plan_ceased", "ehcp.ceased", LA, {"reason": "other"}, issued + timedelta(days=400))


def test_transfer_moves_the_plan_to_the_new_la() -> None:
    p = Journey()
    issued = D0 + timedelta(weeks=19)
    p.plan(issued)
    p.refuse("transfer_to_self", "ehcp.transferred", LA, {"to_la": LA}, issued + timedelta(days=50))
    p.post("ehcp.transferred", LA, {"to_la": OTHER_LA}, issued + timedelta(days=60))
    p.refuse("not_owner", "ehcp.annual_review_held", LA, {"outcome": "maintain"}, issued + timedelta(days=200))
    p.post("ehcp.annual_review_held", OTHER_LA, {"outcome": "maintain"}, issued + timedelta(days=200))


def test_a_corrected_cessation_no_longer_ends_the_plan() -> None:
    p = Journey()
    issued = D0 + timedelta(weeks=19)
    p.plan(issued)
    ceased = p.post("ehcp.ceased", LA, {"reason": "needs_met"}, issued + timedelta(days=30)).record.event_id
    p.post("pupil.record_retracted", LA, {"reason": "entered_in_error"}, issued + timedelta(days=31), corrects=ceased)
    assert fold_ehcp(effective(p.records)).active_plan() is not None
    p.post("ehcp.annual_review_held", LA, {"outcome": "maintain"}, issued + timedelta(days=200))


# -- redress --------------------------------------------------------------------------------------------------------


def refused(p: Journey) -> str:
    return p.decide(p.request(), "refuse")


def test_mediation_and_appeal_name_an_appealable_decision_of_the_pupil() -> None:
    p = Journey()
    request = p.request()
    agreed = p.decide(request)
    later = D0 + timedelta(weeks=8)
    p.refuse(
        "decision_unknown", "dispute.mediation_requested", MEDIATOR, {"decision_event_id": agreed, "grounds": ["refusal_to_assess"]}, later
    )
    p.refuse(
        "decision_unknown", "dispute.appeal_registered", TRIBUNAL, {"decision_event_id": request, "grounds": ["refusal_to_assess"]}, later
    )
    p.draft(request)
    plan = p.post("ehcp.final_issued", LA, final(request), D0 + timedelta(weeks=19)).record.event_id
    problem = p.refuse(
        "grounds_not_decision",
        "dispute.mediation_requested",
        MEDIATOR,
        {"decision_event_id": plan, "grounds": ["section_f", "ceasing"]},
        D0 + timedelta(weeks=20),
    )
    assert problem.path == "$.payload.data.grounds" and "ceasing" in problem.message
    p.refuse(
        "before_decision",
        "dispute.mediation_requested",
        MEDIATOR,
        {"decision_event_id": plan, "grounds": ["section_f"]},
        D0 + timedelta(weeks=18),
    )
    p.refuse(
        "not_owner",
        "dispute.mediation_requested",
        OTHER_LA,
        {"decision_event_id": plan, "grounds": ["section_f"]},
        D0 + timedelta(weeks=20),
    )
    p.post("dispute.mediation_requested", LA, {"decision_event_id": plan, "grounds": ["section_f"]}, D0 + timedelta(weeks=20))


def test_mediation_certificate_then_appeal_then_decision() -> None:
    p = Journey()
    decision = refused(p)
    on = D0 + timedelta(weeks=6)
    mediation = p.post(
        "dispute.mediation_requested", MEDIATOR, {"decision_event_id": decision, "grounds": ["refusal_to_assess"]}, on
    ).record.event_id
    p.refuse(
        "mediation_unknown", "dispute.mediation_certificate_issued", MEDIATOR, {"mediation_event_id": decision, "mediation_held": False}, on
    )
    p.refuse(
        "before_request",
        "dispute.mediation_certificate_issued",
        MEDIATOR,
        {"mediation_event_id": mediation, "mediation_held": False},
        on - timedelta(days=1),
    )
    p.post(
        "dispute.mediation_certificate_issued", MEDIATOR, {"mediation_event_id": mediation, "mediation_held": False}, on + timedelta(days=3)
    )
    p.refuse(
        "already_settled",
        "dispute.mediation_certificate_issued",
        MEDIATOR,
        {"mediation_event_id": mediation, "mediation_held": True},
        on + timedelta(days=4),
    )
    appeal_data = {"decision_event_id": decision, "grounds": ["refusal_to_assess"], "mediation_event_id": mediation}
    assert flags_of(p, "dispute.appeal_registered", TRIBUNAL, appeal_data, on + timedelta(days=20)) == []
    appeal = p.post("dispute.appeal_registered", TRIBUNAL, appeal_data, on + timedelta(days=20)).record.event_id
    p.refuse(
        "appeal_unknown", "dispute.appeal_decided", TRIBUNAL, {"appeal_event_id": mediation, "outcome": "upheld"}, on + timedelta(weeks=20)
    )
    p.refuse("not_owner", "dispute.appeal_decided", OTHER_LA, {"appeal_event_id": appeal, "outcome": "conceded"}, on + timedelta(weeks=20))
    p.post("dispute.appeal_decided", TRIBUNAL, {"appeal_event_id": appeal, "outcome": "upheld"}, on + timedelta(weeks=20))
    p.refuse(
        "already_settled", "dispute.appeal_decided", TRIBUNAL, {"appeal_event_id": appeal, "outcome": "dismissed"}, on + timedelta(weeks=21)
    )


def test_appeal_without_a_certificate_is_flagged_unless_placement_only() -> None:
    p = Journey()
    plan = p.plan()
    on = D0 + timedelta(weeks=25)
    assert flags_of(p, "dispute.appeal_registered", TRIBUNAL, {"decision_event_id": plan, "grounds": ["section_b", "section_f"]}, on) == [
        "appeal_without_mediation_certificate"
    ]
    assert flags_of(p, "dispute.appeal_registered", TRIBUNAL, {"decision_event_id": plan, "grounds": ["section_i"]}, on) == []
    other = p.post("ehcp.ceased", LA, {"reason": "needs_met"}, on).record.event_id
    mediation = p.post("dispute.mediation_requested", MEDIATOR, {"decision_event_id": other, "grounds": ["ceasing"]}, on).record.event_id
    # a mediation about another decision is not this appeal's
    p.refuse(
        "mediation_unknown",
        "dispute.appeal_registered",
        TRIBUNAL,
        {"decision_event_id": plan, "grounds": ["section_i"], "mediation_event_id": mediation},
        on,
    )


def test_dispute_events_by_services_need_no_link_but_the_decision() -> None:
    p = Journey()
    decision = refused(p)
    outcome = p.check(
        "dispute.mediation_requested", MEDIATOR, {"decision_event_id": decision, "grounds": ["refusal_to_assess"]}, D0 + timedelta(weeks=7)
    )
    assert outcome.problems == [] and outcome.flag_codes == []


def test_add_months_keeps_the_day_or_takes_the_months_last() -> None:
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2027, 2, 28), 12) == date(2028, 2, 28)
    assert add_months(date(2026, 11, 15), 18) == date(2028, 5, 15)


def test_the_la_links_an_ehcp_gives_for_reading(  # ledger.policy.pupil_links: docs/access.md, ehcp_la
) -> None:
    from ledger.core.policy import Link, pupil_links

    p = Journey()
    issued = D0 + timedelta(weeks=19)
    p.plan(issued)
    moved = issued + timedelta(days=60)
    p.post("ehcp.transferred", LA, {"to_la": OTHER_LA}, moved)
    refused_elsewhere = p.post("ehcp.assessment_requested", OTHER_LA, {"la": OTHER_LA, "requested_by": "parent"}, moved + timedelta(days=5))
    links = [(lk.org, lk.start, lk.end, lk.asserted_by) for lk in pupil_links(p.records, {}) if lk.kind is Link.EHCP]
    assert links == [
        (LA, D0, issued, LA),  # the assessment, until the plan
        (OTHER_LA, moved + timedelta(days=5), None, OTHER_LA),  # the new LA's own (re)assessment request, open
        (LA, issued, moved, LA),  # the plan while LA 801 maintained it
        (OTHER_LA, moved, None, LA),  # then LA 802's, named by LA 801: the whole history
    ]
    assert refused_elsewhere.flag_codes == []  # LA 802 maintains the plan: it is linked
