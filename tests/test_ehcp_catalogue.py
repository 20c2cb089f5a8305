"""Issue 24: the ehcp.*, dispute.* and inspection.* event types, their code lists and the new organisation kinds
(icb, tribunal, mediation) in the catalogue (pure)."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime
from typing import Any

import pytest

from ledger.core import catalogue
from ledger.core.codes import code_list, la_codes
from ledger.core.identifiers import check_org_id, org_scheme
from ledger.core.inspection_rules import inspection_of
from ledger.core.orgs import KINDS_BY_SCHEME, OrgState, check_org, fold_org
from ledger.core.rules import Record

NOW = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)
EID = "6f1c2f3e-0000-4000-8000-00000000000"
UPN = {"upn": "H801200001001"}

# One valid body per new type: (type, submitter, subject, data).
VALID: dict[str, tuple[str, dict[str, str], dict[str, Any]]] = {
    "ehcp.assessment_requested": ("la:801", UPN, {"la": "la:801", "requested_by": "parent"}),
    "ehcp.assessment_decided": ("la:801", UPN, {"request_event_id": EID + "1", "decision": "agree"}),
    "ehcp.draft_issued": ("la:801", UPN, {"request_event_id": EID + "1", "comments_due_on": "2026-09-25"}),
    "ehcp.final_issued": (
        "la:801",
        UPN,
        {
            "request_event_id": EID + "1",
            "named_setting": "urn:100005",
            "primary_need": "ASD",
            "sections": ["A", "B", "C", "E", "F", "G", "I"],
            "health_provision": True,
            "social_care_provision": False,
            "icb": "icb:QE1",
            "exceptions": ["absent_from_area"],
        },
    ),
    "ehcp.refused_to_issue": ("la:801", UPN, {"request_event_id": EID + "1"}),
    "ehcp.annual_review_held": ("la:801", UPN, {"outcome": "amend"}),
    "ehcp.amended": ("la:801", UPN, {"sections_amended": ["F", "I"], "named_setting": "ukprn:10000047"}),
    "ehcp.ceased": ("la:801", UPN, {"reason": "needs_met"}),
    "ehcp.transferred": ("la:801", UPN, {"to_la": "la:802"}),
    "dispute.mediation_requested": ("mediation:global-mediation", UPN, {"decision_event_id": EID + "2", "grounds": ["section_f"]}),
    "dispute.mediation_certificate_issued": ("mediation:global-mediation", UPN, {"mediation_event_id": EID + "3", "mediation_held": False}),
    "dispute.appeal_registered": (
        "tribunal:send",
        UPN,
        {"decision_event_id": EID + "2", "grounds": ["section_b", "section_f"], "mediation_event_id": EID + "3"},
    ),
    "dispute.appeal_decided": ("tribunal:send", UPN, {"appeal_event_id": EID + "4", "outcome": "partly_upheld"}),
    "inspection.started": (
        "ofsted",
        {"org": "la:801"},
        {"kind": "full", "from": "2026-09-14", "to": "2026-11-13", "partners": ["icb:QE1"]},
    ),
    "inspection.area_send_outcome_recorded": (
        "cqc",
        {"org": "la:801"},
        {
            "inspection_event_id": EID + "5",
            "outcome": "widespread_failings",
            "partners": ["icb:QE1"],
            "monitoring_inspection_due": "2028-03-01",
            "next_full_inspection_due": "2029-09-01",
        },
    ),
}


def body(type_name: str, **over: Any) -> dict[str, Any]:
    submitter, subject, data = VALID[type_name]
    b = {
        "event_id": EID + "9",
        "type": type_name,
        "schema_version": 1,
        "submitter": submitter,
        "subject": subject,
        "occurred_on": "2026-09-10",
        "reported_at": "2026-09-11T10:00:00Z",
        "data": copy.deepcopy(data),
    }
    b.update(over)
    return b


def with_data(type_name: str, **changes: Any) -> dict[str, Any]:
    b = body(type_name)
    for name, value in changes.items():
        if value is None:
            b["data"].pop(name)
        else:
            b["data"][name] = value
    return b


def problems(b: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p.code, p.path) for p in catalogue.validate(b, NOW).problems]


def test_design_section_8_types_are_in_the_catalogue() -> None:
    assert set(VALID) <= set(catalogue.event_types())


@pytest.mark.parametrize("type_name", sorted(VALID))
def test_valid_event_has_no_problems(type_name: str) -> None:
    assert problems(body(type_name)) == []


@pytest.mark.parametrize(
    "type_name,over,expected",
    [
        # who may post
        ("ehcp.final_issued", {"submitter": "urn:100005"}, ("submitter_not_allowed", "$.payload.submitter")),
        ("ehcp.assessment_requested", {"submitter": "tribunal:send"}, ("submitter_not_allowed", "$.payload.submitter")),
        ("dispute.appeal_registered", {"submitter": "mediation:global-mediation"}, ("submitter_not_allowed", "$.payload.submitter")),
        ("dispute.mediation_requested", {"submitter": "tribunal:send"}, ("submitter_not_allowed", "$.payload.submitter")),
        ("dispute.appeal_decided", {"submitter": "la:801"}, None),
        ("inspection.started", {"submitter": "la:801"}, ("submitter_not_allowed", "$.payload.submitter")),
        ("dispute.appeal_registered", {"submitter": "tribunal:other"}, ("submitter_not_allowed", "$.payload.submitter")),
        # subjects
        ("ehcp.ceased", {"subject": {"org": "la:801"}}, ("subject_kind", "$.payload.subject")),
        ("inspection.started", {"subject": UPN}, ("subject_kind", "$.payload.subject")),
    ],
)
def test_who_posts_and_about_what(type_name: str, over: dict[str, Any], expected: tuple[str, str] | None) -> None:
    found = problems(body(type_name, **over))
    assert (expected in found) if expected else found == []


@pytest.mark.parametrize(
    "type_name,changes,expected",
    [
        ("ehcp.assessment_requested", {"requested_by": "grandparent"}, ("unknown_code", "$.payload.data.requested_by")),
        ("ehcp.assessment_decided", {"decision": "maybe"}, ("unknown_code", "$.payload.data.decision")),
        ("ehcp.assessment_decided", {"request_event_id": "nope"}, ("schema_pattern", "$.payload.data.request_event_id")),
        ("ehcp.draft_issued", {"comments_due_on": "2026-09-01"}, ("end_before_start", "$.payload.data.comments_due_on")),
        ("ehcp.final_issued", {"primary_need": "DYSLEXIA"}, ("unknown_code", "$.payload.data.primary_need")),
        ("ehcp.final_issued", {"sections": ["B", "Z"]}, ("unknown_code", "$.payload.data.sections[1]")),
        ("ehcp.final_issued", {"sections": ["B", "B"]}, ("schema_uniqueItems", "$.payload.data.sections")),
        ("ehcp.final_issued", {"sections": []}, ("schema_minItems", "$.payload.data.sections")),
        ("ehcp.final_issued", {"icb": None}, ("required", "$.payload.data.icb")),  # health provision names the ICB
        ("ehcp.final_issued", {"icb": "icb:ABC"}, ("org_id", "$.payload.data.icb")),
        ("ehcp.final_issued", {"icb": "la:801"}, ("org_id", "$.payload.data.icb")),
        ("ehcp.final_issued", {"named_setting": "la:801"}, ("org_id", "$.payload.data.named_setting")),
        ("ehcp.final_issued", {"exceptions": ["holiday"]}, ("unknown_code", "$.payload.data.exceptions[0]")),
        ("ehcp.final_issued", {"health_provision": "yes"}, ("schema_type", "$.payload.data.health_provision")),
        ("ehcp.final_issued", {"primary_need": None}, ("required", "$.payload.data.primary_need")),
        ("ehcp.annual_review_held", {"outcome": "continue"}, ("unknown_code", "$.payload.data.outcome")),
        ("ehcp.ceased", {"reason": "bored"}, ("unknown_code", "$.payload.data.reason")),
        ("ehcp.transferred", {"to_la": "la:999"}, ("org_id", "$.payload.data.to_la")),
        ("ehcp.transferred", {"child_name": "x"}, ("unknown_field", "$.payload.data")),
        ("dispute.mediation_requested", {"grounds": ["section_z"]}, ("unknown_code", "$.payload.data.grounds[0]")),
        ("dispute.mediation_requested", {"grounds": []}, ("schema_minItems", "$.payload.data.grounds")),
        ("dispute.appeal_decided", {"outcome": "won"}, ("unknown_code", "$.payload.data.outcome")),
        ("dispute.mediation_certificate_issued", {"mediation_held": None}, ("required", "$.payload.data.mediation_held")),
        ("inspection.started", {"to": None}, ("required", "$.payload.data.to")),
        ("inspection.started", {"from": "2026-09-01"}, ("end_before_start", "$.payload.data.from")),
        ("inspection.started", {"kind": "surprise"}, ("unknown_code", "$.payload.data.kind")),
        ("inspection.started", {"partners": ["icb:Q1"]}, ("org_id", "$.payload.data.partners[0]")),
        ("inspection.area_send_outcome_recorded", {"outcome": "good"}, ("unknown_code", "$.payload.data.outcome")),
        (
            "inspection.area_send_outcome_recorded",
            {"next_full_inspection_due": "2026-13-01"},
            ("impossible_date", "$.payload.data.next_full_inspection_due"),
        ),
    ],
)
def test_invalid_events_name_code_and_path(type_name: str, changes: dict[str, Any], expected: tuple[str, str]) -> None:
    assert expected in problems(with_data(type_name, **changes))


def test_health_provision_false_needs_no_icb() -> None:
    assert problems(with_data("ehcp.final_issued", health_provision=False, icb=None)) == []


def test_plan_without_named_setting_is_valid_for_the_catalogue() -> None:
    """The rules flag it (no_named_setting); the catalogue accepts it."""
    assert problems(with_data("ehcp.final_issued", named_setting=None)) == []


@pytest.mark.parametrize(
    "org_id,scheme",
    [
        ("icb:QE1", "icb"),
        ("icb:QHG", "icb"),
        ("icb:qe1", None),
        ("icb:QE12", None),
        ("icb:E1Q", None),
        ("tribunal:send", "tribunal"),
        ("tribunal:employment", None),
        ("mediation:kids-mediation", "mediation"),
        ("mediation:", None),
    ],
)
def test_new_organisation_id_schemes(org_id: str, scheme: str | None) -> None:
    assert org_scheme(org_id) == scheme


def test_new_kinds_register_only_with_their_scheme() -> None:
    assert {"icb", "tribunal", "mediation"} <= code_list("org_kinds").all_codes()
    for org_id, kind in (("icb:QE1", "icb"), ("tribunal:send", "tribunal"), ("mediation:kids", "mediation")):
        assert kind in KINDS_BY_SCHEME[org_scheme(org_id) or ""]
        assert (
            problems(
                body("ehcp.ceased", type="org.registered", submitter="dfe:admin", subject={"org": org_id}, data={"kind": kind, "name": "X"})
            )
            == []
        )
        new = record("org.registered", "dfe:admin", {"kind": kind, "name": "X"})
        assert check_org(OrgState(org_id), new) == []
        assert [p.code for p in check_org(OrgState("la:801"), new)] == ["kind_mismatch"]
    assert check_org_id("icb:QE1", {"la"}, la_codes()) is not None


def record(type_name: str, submitter: str, data: dict[str, Any], event_id: str = EID + "9") -> Record:
    return Record(event_id, type_name, submitter, "la:801", date(2026, 9, 10), NOW, data)


LA_STATE = [record("org.registered", "dfe:admin", {"kind": "la", "name": "Kirklees"}, EID + "0")]


def test_inspection_rules_about_an_area() -> None:
    started = record("inspection.started", "ofsted", VALID["inspection.started"][2], EID + "5")
    state = fold_org("la:801", [*LA_STATE, started])
    assert state.inspections[EID + "5"] == inspection_of(started)
    assert check_org(fold_org("la:801", LA_STATE), started) == []
    inverted = record("inspection.started", "ofsted", {"kind": "full", "from": "2026-10-01", "to": "2026-09-30"})
    assert [(p.code, p.path) for p in check_org(state, inverted)] == [("end_before_start", "$.payload.data.to")]
    school = OrgState("urn:100005", registered=True, kind="school")
    assert [p.code for p in check_org(school, started)] == ["not_an_area"]
    outcome = record("inspection.area_send_outcome_recorded", "ofsted", {"inspection_event_id": EID + "5", "outcome": "inconsistent"})
    assert check_org(state, outcome) == []
    assert [p.code for p in check_org(state, record(outcome.type, "ofsted", {"inspection_event_id": EID + "5", "outcome": "wsoa"}))] == [
        "outcome_framework"
    ]
    assert [
        p.code for p in check_org(state, record(outcome.type, "ofsted", {"inspection_event_id": EID + "6", "outcome": "positive"}))
    ] == ["inspection_unknown"]
    old = record("inspection.started", "ofsted", {"kind": "framework_2016", "from": "2026-09-10", "to": "2026-09-20"}, EID + "7")
    old_state = fold_org("la:801", [*LA_STATE, old])
    assert check_org(old_state, record(outcome.type, "cqc", {"inspection_event_id": EID + "7", "outcome": "wsoa"})) == []
    assert [
        p.code for p in check_org(old_state, record(outcome.type, "cqc", {"inspection_event_id": EID + "7", "outcome": "positive"}))
    ] == ["outcome_framework"]
    assert [p.code for p in check_org(OrgState("la:801"), started)] == ["org_unknown"]
