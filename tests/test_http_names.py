"""The core knows no HTTP parameter names (issue 19): a use case names the values it was handed as ``$.<name>``, and
the API answers a problem with one at ``query:<name>``, where the caller put it."""

from __future__ import annotations

import re
from datetime import date, datetime

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from ledger.core.errors import LedgerError
from ledger.service import Principal, Reader

from .conftest import SCHOOL_A, SCHOOL_B, UPN, World
from .error_scan import ROOT


def test_no_module_of_the_core_names_a_query_parameter() -> None:
    named = sorted(
        str(path.relative_to(ROOT)) for path in (ROOT / "ledger").rglob("*.py") if re.search(r"[\"']query:", path.read_text("utf-8"))
    )
    assert named == []


def test_a_bad_reference_is_the_readers_in_the_core_and_the_query_parameters_over_http(world: World) -> None:
    world.admit(UPN, occurred_on=date(2026, 9, 3))
    school = Principal(SCHOOL_A, "school", "t1")
    with pytest.raises(LedgerError) as caught:
        world.ledger.pupil_history(UPN, reader=Reader(school, None, "x" * 65))  # longer than the recorded reference may be
    assert [p.path for p in caught.value.problems] == ["$.reference"]
    before = world.ledger.store.count_events()
    with pytest.raises(LedgerError):
        world.ledger.access_log(school, viewer_org=SCHOOL_B)
    assert world.ledger.store.count_events() == before  # nothing recorded for a refused look


def test_over_http_the_problem_is_at_the_query_parameter(world: World) -> None:
    school = TestClient(create_app(world.ledger), headers={"authorization": f"Bearer {world.ledger.issue_token(SCHOOL_A, 'school')}"})
    refused = school.get("/access-log", params={"org": SCHOOL_B})
    assert refused.status_code == 403
    assert [(e["code"], e["path"]) for e in refused.json()["errors"]] == [("access_log_scope", "query:org")]
    operator = TestClient(create_app(world.ledger), headers={"authorization": f"Bearer {world.admin_token}"})
    backwards = operator.get("/operator/claims", params={"since": "2026-10-02", "until": "2026-10-01"})
    assert backwards.status_code == 422 and backwards.json()["errors"][0]["path"] == "query:until"
    with pytest.raises(LedgerError) as caught:
        world.ledger.claims_report(None, datetime(2026, 10, 2), datetime(2026, 10, 1))
    assert caught.value.problems[0].path == "$.until"


def test_a_purpose_is_the_readers_in_the_core_and_the_query_parameter_over_http(world: World) -> None:
    world.admit(UPN, occurred_on=date(2026, 9, 3))
    with pytest.raises(LedgerError) as caught:
        world.ledger.pupil_history(UPN, reader=Reader(Principal(SCHOOL_A, "school", "t1"), "marketing"))
    assert [(p.code, p.path) for p in caught.value.problems] == [("unknown_code", "$.purpose")]
    school = TestClient(create_app(world.ledger), headers={"authorization": f"Bearer {world.ledger.issue_token(SCHOOL_A, 'school')}"})
    for path in (f"/pupils/{UPN}/history", "/access-log"):
        wrong = school.get(path, params={"purpose": "marketing", **({"upn": UPN} if path == "/access-log" else {})})
        assert [(e["code"], e["path"]) for e in wrong.json()["errors"]] == [("unknown_code", "query:purpose")], path
