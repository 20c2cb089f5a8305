"""The whole access matrix of docs/access.md, table-driven, over HTTP on SQLite and PostgreSQL.

Every role x identified-read endpoint x relationship (current, recent = ended within the window,
lapsed = ended longer ago, none): the status, the error code, and exactly one access.record_viewed
per allowed read and none per refused one.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from api.app import create_app
from ledger.core.errors import LedgerError
from ledger.tools import admin

from .conftest import LA, PROVIDER, SCHOOL_A, World, upn
from .inspection_support import start_inspection

TRUST, ACADEMY, OTHER_LA = "trust:TR00001", "urn:100007", "la:802"
LEAVE = {"ground": "moved_away", "destination": "moved_away"}


@dataclass
class Pupil:
    upn: str
    registration: str = ""  # event ids, to read one back with getEvent
    placement: str = ""


def register(w: World, pupil: Pupil, school: str, on: date) -> None:
    pupil.registration = w.post(
        "pupil.registered",
        school,
        {"school": school, "enrolment_status": "C", "year_group": "9", "sen_status": "N", "looked_after": False},
        upn=pupil.upn,
        occurred_on=on,
    ).event_id


def place(w: World, pupil: Pupil, start: date, end: date | None) -> None:
    pupil.placement = w.post(
        "pupil.ap_placement_started",
        LA,
        {
            "commissioner": LA,
            "setting": PROVIDER,
            "setting_type": "UKPRN",
            "tier": 2,
            "reason": "BEHAVIOUR",
            "planned_end": "2026-12-18",
            "hours_per_week": 15,
            "dual_registered": False,
        },
        upn=pupil.upn,
        occurred_on=start,
    ).event_id
    if end:
        w.post(
            "pupil.ap_placement_ended", LA, {"placement_event_id": pupil.placement, "outcome": "mainstream"}, upn=pupil.upn, occurred_on=end
        )


def leave(w: World, pupil: Pupil, school: str, on: date) -> None:
    w.post("pupil.deregistered", school, {"school": school, **LEAVE}, upn=pupil.upn, occurred_on=on)


@pytest.fixture
def scene(world: World) -> dict[str, Any]:
    """Pupils whose relationships with each organisation are current, recent (ended 7 days ago),
    lapsed (ended 218 days ago; 808 for the inspector's 730-day window) or none. Today is 2026-10-05."""
    w, ledger = world, world.ledger
    admin.add_org(ledger, TRUST, "trust", "Test trust")
    admin.add_org(ledger, ACADEMY, "school", "Test academy", OTHER_LA, trust=TRUST)
    admin.add_org(ledger, "dfe:regions", "regions", "Regions Group")
    start_inspection(w, LA, date(2026, 9, 14), date(2026, 11, 13))  # Ofsted inspects LA 801's area this autumn
    w.keys[ACADEMY] = Ed25519PrivateKey.generate()
    admin.add_key(ledger, ACADEMY, w.keys[ACADEMY].public_key())
    p = {name: Pupil(upn(n)) for n, name in enumerate(("cur", "rec", "lap", "ancient", "acad", "acad_rec", "acad_lap"), start=1)}
    register(w, p["cur"], SCHOOL_A, date(2026, 9, 3))
    place(w, p["cur"], date(2026, 9, 10), None)
    register(w, p["rec"], SCHOOL_A, date(2026, 9, 3))
    place(w, p["rec"], date(2026, 9, 7), date(2026, 9, 28))
    leave(w, p["rec"], SCHOOL_A, date(2026, 9, 28))
    register(w, p["lap"], SCHOOL_A, date(2025, 9, 3))
    place(w, p["lap"], date(2026, 1, 5), date(2026, 3, 1))
    leave(w, p["lap"], SCHOOL_A, date(2026, 3, 1))
    register(w, p["ancient"], SCHOOL_A, date(2023, 9, 4))
    leave(w, p["ancient"], SCHOOL_A, date(2024, 7, 19))
    register(w, p["acad"], ACADEMY, date(2026, 9, 3))
    register(w, p["acad_rec"], ACADEMY, date(2026, 9, 1))
    leave(w, p["acad_rec"], ACADEMY, date(2026, 9, 28))
    register(w, p["acad_lap"], ACADEMY, date(2025, 9, 3))
    leave(w, p["acad_lap"], ACADEMY, date(2026, 3, 1))
    tokens = {
        "school": ledger.issue_token(SCHOOL_A, "school"),
        "la": ledger.issue_token(LA, "la"),
        "trust": ledger.issue_token(TRUST, "trust"),
        "ap_setting": ledger.issue_token(PROVIDER, "ap_setting"),
        "inspector": ledger.issue_token("ofsted", "inspector"),
        "regions": ledger.issue_token("dfe:regions", "regions"),
        "researcher": ledger.issue_token(LA, "researcher"),
        "admin": world.admin_token,
    }
    return {"pupils": p, "tokens": tokens, "world": w}


# role -> relationship -> pupil with that relationship to the role's organisation
PUPIL_FOR = {
    "school": {"current": "cur", "recent": "rec", "lapsed": "lap", "none": "acad"},
    "la": {"current": "cur", "recent": "rec", "lapsed": "lap", "none": "acad"},
    "ap_setting": {"current": "cur", "recent": "rec", "lapsed": "lap", "none": "acad"},
    "trust": {"current": "acad", "recent": "acad_rec", "lapsed": "acad_lap", "none": "cur"},
    "inspector": {"current": "cur", "recent": "lap", "lapsed": "ancient", "none": "acad"},
    "regions": {"current": "cur", "recent": "rec", "lapsed": "lap", "none": "acad"},
    "researcher": {"current": "cur", "recent": "rec", "lapsed": "lap", "none": "acad"},
    "admin": {"current": "cur", "recent": "rec", "lapsed": "lap", "none": "acad"},
}
PURPOSE = {"inspector": "inspection", "admin": "subject_access_request"}
ALLOWED = {"current", "recent"}
REFUSAL = {"regions": "role_cannot_read_pupils", "researcher": "role_cannot_read_pupils"}
ENDPOINTS = ("pupilHistory", "getEvent", "accessLog")

MATRIX = [
    (
        role,
        endpoint,
        relation,
        200 if role == "admin" or (role not in REFUSAL and relation in ALLOWED) else 403,
        None if role == "admin" or (role not in REFUSAL and relation in ALLOWED) else REFUSAL.get(role, "not_related"),
    )
    for role in PUPIL_FOR
    for endpoint in ENDPOINTS
    for relation in ("current", "recent", "lapsed", "none")
]


def views(w: World) -> int:
    return int(w.ledger.store.query("SELECT COUNT(*) FROM ledger_index WHERE type = 'access.record_viewed'")[0][0])


def request(client: TestClient, endpoint: str, pupil: Pupil, reader_org: str, params: dict[str, str]) -> Any:
    if endpoint == "pupilHistory":
        return client.get(f"/pupils/{pupil.upn}/history", params=params)
    if endpoint == "accessLog":
        return client.get("/access-log", params={**params, "upn": pupil.upn})
    # an event of the pupil that the reader's organisation did not post itself (it may always read back its own)
    event_id = pupil.placement if pupil.placement and reader_org != LA else pupil.registration
    return client.get(f"/events/{event_id}", params=params)


def test_the_access_matrix(scene: dict[str, Any]) -> None:
    w: World = scene["world"]
    app = create_app(w.ledger)
    orgs = {
        "school": SCHOOL_A,
        "la": LA,
        "trust": TRUST,
        "ap_setting": PROVIDER,
        "inspector": "ofsted",
        "regions": "dfe:regions",
        "researcher": LA,
        "admin": "dfe:admin",
    }
    outcomes = []
    for role, endpoint, relation, _status, _code in MATRIX:
        client = TestClient(app, headers={"authorization": f"Bearer {scene['tokens'][role]}"})
        pupil = scene["pupils"][PUPIL_FOR[role][relation]]
        before = views(w)
        response = request(client, endpoint, pupil, orgs[role], {"purpose": PURPOSE[role]} if role in PURPOSE else {})
        got_code = None if response.status_code == 200 else response.json()["errors"][0]["code"]
        recorded = views(w) - before
        outcomes.append((role, endpoint, relation, response.status_code, got_code, recorded))
    expected = [(role, endpoint, relation, status, code, 1 if status == 200 else 0) for role, endpoint, relation, status, code in MATRIX]
    assert outcomes == expected
    assert len(expected) == 8 * 3 * 4


def test_purpose_is_required_of_inspectors_and_the_operator(scene: dict[str, Any]) -> None:
    w: World = scene["world"]
    app = create_app(w.ledger)
    cur = scene["pupils"]["cur"]
    before = views(w)
    for role in ("inspector", "admin"):
        client = TestClient(app, headers={"authorization": f"Bearer {scene['tokens'][role]}"})
        for response in (
            client.get(f"/pupils/{cur.upn}/history"),
            client.get(f"/events/{cur.registration}"),
            client.get("/access-log", params={"upn": cur.upn}),
        ):
            assert response.status_code == 400 and response.json()["errors"][0]["code"] == "purpose_required", response.text
    inspector = TestClient(app, headers={"authorization": f"Bearer {scene['tokens']['inspector']}"})
    wrong = inspector.get(f"/pupils/{cur.upn}/history", params={"purpose": "direct_education"})
    assert wrong.status_code == 403 and wrong.json()["errors"][0]["code"] == "purpose_not_allowed"
    unknown = inspector.get(f"/pupils/{cur.upn}/history", params={"purpose": "curiosity"})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["code"] == "unknown_code"
    assert views(w) == before


def test_a_school_reading_another_schools_pupil_is_403_and_so_is_an_unknown_upn(scene: dict[str, Any]) -> None:
    w: World = scene["world"]
    school = TestClient(create_app(w.ledger), headers={"authorization": f"Bearer {scene['tokens']['school']}"})
    for target in (scene["pupils"]["acad"].upn, upn(999)):  # no oracle: unknown and unrelated answer alike
        response = school.get(f"/pupils/{target}/history")
        assert response.status_code == 403 and response.json()["errors"][0]["code"] == "not_related"
    operator = TestClient(create_app(w.ledger), headers={"authorization": f"Bearer {w.admin_token}"})
    assert operator.get(f"/pupils/{upn(999)}/history", params={"purpose": "data_correction"}).status_code == 404


def test_the_window_is_a_setting(scene: dict[str, Any]) -> None:
    w: World = scene["world"]
    ledger = w.ledger
    ledger.settings = type(ledger.settings)(**{**ledger.settings.__dict__, "access_window_days": 5})
    school = TestClient(create_app(ledger), headers={"authorization": f"Bearer {scene['tokens']['school']}"})
    assert school.get(f"/pupils/{scene['pupils']['rec'].upn}/history").status_code == 403  # left 7 days ago
    assert school.get(f"/pupils/{scene['pupils']['cur'].upn}/history").status_code == 200


def test_submission_rules(scene: dict[str, Any]) -> None:
    w: World = scene["world"]
    app = create_app(w.ledger)
    body = w.event(
        "pupil.registered",
        SCHOOL_A,
        {"school": SCHOOL_A, "enrolment_status": "S", "year_group": "9", "sen_status": "N", "looked_after": False},
        upn=upn(50),
    )
    for role, token, status, code in (
        ("researcher", w.ledger.issue_token(SCHOOL_A, "researcher"), 403, "role_cannot_submit"),
        ("school", w.ledger.issue_token("urn:100006", "school"), 403, "submitter_mismatch"),
    ):
        response = TestClient(app, headers={"authorization": f"Bearer {token}"}).post("/events", json=w.sign(body))
        assert (role, response.status_code, response.json()["errors"][0]["code"]) == (role, status, code)
    forged = w.event(
        "access.record_viewed",
        SCHOOL_A,
        {
            "principal": {"org": SCHOOL_A, "role": "school", "token_id": ""},
            "purpose": "direct_education",
            "endpoint": "pupilHistory",
            "basis": "x",
        },
    )
    forged["subject"] = {"pupil": "00000000-0000-4000-8000-000000000000"}
    school = TestClient(app, headers={"authorization": f"Bearer {scene['tokens']['school']}"})
    response = school.post("/events", json=w.sign(forged))
    assert response.status_code == 422 and response.json()["errors"][0]["code"] == "submitter_not_allowed"


# -- what a relationship shows: self-asserted links read from their start (issue 18, item 5; docs/access.md) -------

OTHER_SCHOOL = "urn:100006"  # the pupil's main school, maintained by LA
EXCLUSION = {"school": OTHER_SCHOOL, "kind": "SUSP", "sessions": 2, "reasons": ["PP"]}


def history(w: World, token: str, pupil: str, **params: str) -> dict[str, Any]:
    response = TestClient(create_app(w.ledger), headers={"authorization": f"Bearer {token}"}).get(f"/pupils/{pupil}/history", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.fixture
def claims(world: World) -> dict[str, Any]:
    """Today is 2026-10-08. Pupil ``moved``: on roll at the other school since 2025 (suspended in January, read by
    the operator on 5 October), registered as subsidiary at school A from 7 October, placed by the LA at the
    provider from 8 October. Pupil ``left``: left the other school for another area in July; that area's LA
    notified home education on 1 October. Pupil ``hosted``: on a managed move from the other school to school A."""
    w, ledger = world, world.ledger
    admin.add_org(ledger, OTHER_LA, "la", "Another LA")
    start_inspection(w, LA, date(2026, 9, 14), date(2026, 11, 13))
    w.keys[OTHER_LA] = Ed25519PrivateKey.generate()
    admin.add_key(ledger, OTHER_LA, w.keys[OTHER_LA].public_key())
    moved, left, hosted = upn(70), upn(71), upn(72)
    w.admit(moved, OTHER_SCHOOL, occurred_on=date(2025, 9, 3))
    suspension = w.post("pupil.excluded", OTHER_SCHOOL, EXCLUSION, upn=moved, occurred_on=date(2026, 1, 12)).event_id
    tokens = {
        "school": ledger.issue_token(SCHOOL_A, "school"),
        "la": ledger.issue_token(LA, "la"),
        "other_la": ledger.issue_token(OTHER_LA, "la"),
        "ap_setting": ledger.issue_token(PROVIDER, "ap_setting"),
        "inspector": ledger.issue_token("ofsted", "inspector"),
        "admin": world.admin_token,
        "other_school": ledger.issue_token(OTHER_SCHOOL, "school"),
    }
    history(w, tokens["admin"], moved, purpose="data_correction")  # a view on 5 October, before school A's link
    w.admit(left, OTHER_SCHOOL, occurred_on=date(2025, 9, 3))
    w.post("pupil.deregistered", OTHER_SCHOOL, {"school": OTHER_SCHOOL, **LEAVE}, upn=left, occurred_on=date(2026, 7, 20))
    w.post("pupil.home_education_notified", OTHER_LA, {"la": OTHER_LA}, upn=left, occurred_on=date(2026, 10, 1))
    w.admit(hosted, OTHER_SCHOOL, occurred_on=date(2025, 9, 3))
    w.post(
        "pupil.managed_move_started",
        OTHER_SCHOOL,
        {"school": OTHER_SCHOOL, "host_school": SCHOOL_A, "planned_end": "2026-12-18"},
        upn=hosted,
        occurred_on=date(2026, 9, 14),
    )
    w.clock.advance(days=3)
    w.admit(moved, SCHOOL_A, status="S", occurred_on=date(2026, 10, 7))
    w.post(
        "pupil.ap_placement_started",
        LA,
        {
            "commissioner": LA,
            "setting": PROVIDER,
            "setting_type": "UKPRN",
            "tier": 2,
            "reason": "BEHAVIOUR",
            "planned_end": "2026-12-18",
            "hours_per_week": 15,
            "dual_registered": False,
        },
        upn=moved,
        occurred_on=date(2026, 10, 8),
    )
    return {"world": w, "tokens": tokens, "moved": moved, "left": left, "hosted": hosted, "suspension": suspension}


WHOLE = None
# reader, pupil, the day the view is limited from (None: whole history), events shown (types), the basis recorded
SHOWS = [
    (
        "school",
        "moved",
        "2026-10-07",
        ["pupil.registered", "pupil.ap_placement_started"],
        f"on_roll {SCHOOL_A} current, self-asserted: from 2026-10-07",
    ),
    (
        "la",
        "moved",
        WHOLE,
        ["pupil.registered", "pupil.excluded", "pupil.registered", "pupil.ap_placement_started"],
        f"maintained_school {LA} current",
    ),  # commissioned the placement itself, but maintains the main school: the widest wins
    (
        "ap_setting",
        "moved",
        WHOLE,
        ["pupil.registered", "pupil.excluded", "pupil.registered", "pupil.ap_placement_started"],
        f"placement_setting {PROVIDER} current",
    ),  # named by the commissioner
    (
        "inspector",
        "moved",
        WHOLE,
        ["pupil.registered", "pupil.excluded", "pupil.registered", "pupil.ap_placement_started"],
        f"on_roll {OTHER_SCHOOL} current",
    ),
    ("admin", "moved", WHOLE, ["pupil.registered", "pupil.excluded", "pupil.registered", "pupil.ap_placement_started"], "operator"),
    ("other_la", "left", "2026-10-01", ["pupil.home_education_notified"], f"resident {OTHER_LA} current, self-asserted: from 2026-10-01"),
    ("school", "hosted", WHOLE, ["pupil.registered", "pupil.managed_move_started"], f"managed_move_host {SCHOOL_A} current"),
]


@pytest.mark.parametrize("reader, pupil, since, types, basis", SHOWS, ids=[f"{r}-{p}" for r, p, *_ in SHOWS])
def test_a_self_asserted_link_shows_what_occurred_from_its_start_and_the_setting_before(
    claims: dict[str, Any], reader: str, pupil: str, since: str | None, types: list[str], basis: str
) -> None:
    w: World = claims["world"]
    params = {"purpose": PURPOSE[reader]} if reader in PURPOSE else {}
    shown = history(w, claims["tokens"][reader], claims[pupil], **params)
    assert shown["limited_from"] == since
    assert [e["type"] for e in shown["events"]] == types
    view = w.ledger.get_event(shown["access_event_id"])["envelope"]
    assert json.loads(base64.b64decode(view["payload"]))["data"]["basis"] == basis
    if since is not None:
        assert all(e["occurred_on"] >= since for e in shown["events"])
    else:
        assert shown["previous_setting"] == []


def test_the_summary_of_the_setting_before_is_all_a_new_subsidiary_school_sees_of_the_past(claims: dict[str, Any]) -> None:
    w: World = claims["world"]
    shown = history(w, claims["tokens"]["school"], claims["moved"])
    assert shown["previous_setting"] == [{"school": OTHER_SCHOOL, "enrolment_status": "C", "sen_status": "N", "since": "2025-09-03"}]
    assert sorted(r["school"] for r in shown["on_roll"]) == [SCHOOL_A, OTHER_SCHOOL]
    assert [o["kind"] for o in shown["open"]] == ["placement"]
    assert history(w, claims["tokens"]["other_la"], claims["left"])["previous_setting"] == []  # left in July: nothing open the day before
    as_of_past = history(w, claims["tokens"]["school"], claims["moved"], as_of="2026-02-01")
    assert as_of_past["events"] == [] and [r["school"] for r in as_of_past["on_roll"]] == [OTHER_SCHOOL]  # the summary, no more


def test_get_event_through_a_self_asserted_link_refuses_what_occurred_before_it_and_records_nothing(claims: dict[str, Any]) -> None:
    w: World = claims["world"]
    school = TestClient(create_app(w.ledger), headers={"authorization": f"Bearer {claims['tokens']['school']}"})
    before = views(w)
    refused = school.get(f"/events/{claims['suspension']}")
    assert refused.status_code == 403 and refused.json()["errors"][0]["code"] == "before_relationship"
    assert views(w) == before
    la = TestClient(create_app(w.ledger), headers={"authorization": f"Bearer {claims['tokens']['la']}"})
    assert la.get(f"/events/{claims['suspension']}").status_code == 200 and views(w) == before + 1
    own = TestClient(create_app(w.ledger), headers={"authorization": f"Bearer {claims['tokens']['other_school']}"})
    assert own.get(f"/events/{claims['suspension']}").status_code == 200  # its own submission, always


def test_the_access_log_through_a_self_asserted_link_shows_views_from_its_start(claims: dict[str, Any]) -> None:
    w: World = claims["world"]
    history(w, claims["tokens"]["la"], claims["moved"])  # a view on 8 October
    school = TestClient(create_app(w.ledger), headers={"authorization": f"Bearer {claims['tokens']['school']}"})
    seen = school.get("/access-log", params={"upn": claims["moved"]}).json()["views"]
    assert [v["principal"]["org"] for v in seen] == [LA, SCHOOL_A]  # not the operator's view of 5 October (this look is one)
    la = TestClient(create_app(w.ledger), headers={"authorization": f"Bearer {claims['tokens']['la']}"})
    assert [v["principal"]["org"] for v in la.get("/access-log", params={"upn": claims["moved"]}).json()["views"]][:2] == ["dfe:admin", LA]


# -- inspectors: scope from inspections, not tokens (issue 24; docs/access.md) ------------------------------------


def inspector_reads(w: World, token: str, pupil: str) -> tuple[int, str | None]:
    response = TestClient(create_app(w.ledger), headers={"authorization": f"Bearer {token}"}).get(
        f"/pupils/{pupil}/history", params={"purpose": "inspection"}
    )
    return response.status_code, None if response.status_code == 200 else response.json()["errors"][0]["code"]


def la_figures(w: World, token: str, la: str) -> int:
    response = TestClient(create_app(w.ledger), headers={"authorization": f"Bearer {token}"}).get(
        "/views/metrics", params={"level": "la", "org": la}
    )
    return response.status_code


@pytest.fixture
def inspected(world: World) -> dict[str, Any]:
    """Today is 2026-10-05. A pupil on roll at school A (LA 801) since September, with a placement the LA commissioned;
    another at an academy in LA 802. No inspection yet."""
    w = world
    admin.add_org(w.ledger, OTHER_LA, "la", "Another LA")
    admin.add_org(w.ledger, TRUST, "trust", "Test trust")
    admin.add_org(w.ledger, ACADEMY, "school", "Test academy", OTHER_LA, trust=TRUST)
    w.keys[ACADEMY] = Ed25519PrivateKey.generate()
    admin.add_key(w.ledger, ACADEMY, w.keys[ACADEMY].public_key())
    here, there = Pupil(upn(80)), Pupil(upn(81))
    register(w, here, SCHOOL_A, date(2026, 9, 3))
    place(w, here, date(2026, 9, 10), None)
    register(w, there, ACADEMY, date(2026, 9, 3))
    for name, org in (("ofsted", "ofsted"), ("cqc", "cqc")):
        admin.add_org(w.ledger, org, "inspectorate", name.upper())
    return {"world": w, "here": here.upn, "there": there.upn}


def test_an_inspector_reads_nothing_without_an_inspection_of_the_area(inspected: dict[str, Any]) -> None:
    w: World = inspected["world"]
    token = w.ledger.issue_token("ofsted", "inspector")  # a token names no scope: it comes from inspections
    before = views(w)
    assert inspector_reads(w, token, inspected["here"]) == (403, "not_related")
    assert la_figures(w, token, LA) == 403
    assert w.ledger.authenticate(token).scope == frozenset()  # type: ignore[union-attr]
    assert views(w) == before


def test_an_inspection_gives_its_inspectorate_the_area_from_its_first_to_its_last_day(inspected: dict[str, Any]) -> None:
    w: World = inspected["world"]
    ofsted, cqc = w.ledger.issue_token("ofsted", "inspector"), w.ledger.issue_token("cqc", "inspector")
    start_inspection(w, LA, date(2026, 10, 12), date(2026, 10, 23))  # announced today, on site next week
    assert inspector_reads(w, ofsted, inspected["here"]) == (403, "not_related")  # not yet
    w.clock.advance(days=7)  # 12 October: the first day
    assert w.ledger.authenticate(ofsted).scope == frozenset({LA})  # type: ignore[union-attr]
    assert inspector_reads(w, ofsted, inspected["here"]) == (200, None)
    assert la_figures(w, ofsted, LA) == 200
    assert inspector_reads(w, ofsted, inspected["there"]) == (403, "not_related")  # another area's pupil
    assert la_figures(w, ofsted, OTHER_LA) == 403
    assert inspector_reads(w, cqc, inspected["here"]) == (403, "not_related")  # Ofsted's inspection, not CQC's
    w.clock.advance(days=11)  # 23 October: the last day
    assert inspector_reads(w, ofsted, inspected["here"]) == (200, None)
    w.clock.advance(days=1)  # 24 October: over
    assert inspector_reads(w, ofsted, inspected["here"]) == (403, "not_related")
    assert la_figures(w, ofsted, LA) == 403


def test_a_token_scope_only_narrows_the_inspected_areas(inspected: dict[str, Any]) -> None:
    w: World = inspected["world"]
    start_inspection(w, LA, date(2026, 9, 28), date(2026, 10, 30))
    start_inspection(w, OTHER_LA, date(2026, 9, 28), date(2026, 10, 30), inspectorate="cqc")
    narrowed = w.ledger.issue_token("ofsted", "inspector", scope=[OTHER_LA])  # names an area Ofsted does not inspect
    assert w.ledger.authenticate(narrowed).scope == frozenset()  # type: ignore[union-attr]
    assert inspector_reads(w, narrowed, inspected["here"]) == (403, "not_related")
    school = w.ledger.issue_token("ofsted", "inspector", scope=[SCHOOL_A])  # a school in the inspected area
    assert w.ledger.authenticate(school).scope == frozenset({SCHOOL_A})  # type: ignore[union-attr]
    assert inspector_reads(w, school, inspected["here"]) == (200, None)
    assert la_figures(w, school, LA) == 403  # narrowed to the school: not the LA's figures
    cqc = w.ledger.issue_token("cqc", "inspector")
    assert inspector_reads(w, cqc, inspected["there"]) == (200, None) and inspector_reads(w, cqc, inspected["here"]) == (403, "not_related")
    with pytest.raises(LedgerError) as exc:
        w.ledger.issue_token(LA, "la", scope=[LA])
    assert exc.value.problems[0].code == "scope"


def test_only_an_inspectorate_starts_an_inspection_and_a_bad_one_changes_nothing(inspected: dict[str, Any]) -> None:
    w: World = inspected["world"]
    app = TestClient(create_app(w.ledger), headers={"authorization": f"Bearer {w.ledger.issue_token(LA, 'la')}"})
    body = w.event("inspection.started", LA, {"kind": "full", "from": "2026-10-05", "to": "2026-12-18"}, org=LA)
    response = app.post("/events", json=w.sign(body))
    assert response.status_code == 422 and response.json()["errors"][0]["code"] == "submitter_not_allowed", response.text
    start_inspection(w, OTHER_LA, date(2026, 9, 28), date(2026, 10, 30))  # registers Ofsted's key
    inverted = w.event("inspection.started", "ofsted", {"kind": "full", "from": "2026-10-20", "to": "2026-10-10"}, org=LA)
    ofsted = TestClient(create_app(w.ledger), headers={"authorization": f"Bearer {w.ledger.issue_token('ofsted', 'inspector')}"})
    refused = ofsted.post("/events", json=w.sign(inverted))
    assert refused.status_code == 422, refused.text
    assert [(e["code"], e["path"]) for e in refused.json()["errors"]] == [("end_before_start", "$.payload.data.to")]
    assert w.ledger.org_state(LA).inspections == {}
    assert inspector_reads(w, w.ledger.issue_token("ofsted", "inspector"), inspected["here"]) == (403, "not_related")


# -- EHCP: the LA assessing or maintaining a plan reads the pupil; the tribunal and mediators post, never read ----


def ehcp_request(la: str) -> dict[str, str]:
    return {"la": la, "requested_by": "parent"}


def test_an_la_asked_to_assess_reads_the_pupil_from_the_request(inspected: dict[str, Any]) -> None:
    """The pupil at the academy in LA 802 lives in LA 801 (the LA that assesses is the home LA, wherever the school is)."""
    w: World = inspected["world"]
    pupil = inspected["there"]
    la = w.ledger.issue_token(LA, "la")
    client = TestClient(create_app(w.ledger), headers={"authorization": f"Bearer {la}"})
    assert client.get(f"/pupils/{pupil}/history").status_code == 403
    receipt = w.post("ehcp.assessment_requested", LA, ehcp_request(LA), upn=pupil, occurred_on=date(2026, 10, 1))
    assert [f["code"] for f in receipt.flags] == ["claim_new_area"]  # no earlier link: shown to the operator
    shown = client.get(f"/pupils/{pupil}/history")
    assert shown.status_code == 200, shown.text
    assert shown.json()["limited_from"] == "2026-10-01"  # self-asserted: from the request on
    assert [e["type"] for e in shown.json()["events"]] == ["ehcp.assessment_requested"]
    w.post(
        "ehcp.assessment_decided",
        LA,
        {"request_event_id": receipt.event_id, "decision": "refuse"},
        upn=pupil,
        occurred_on=date(2026, 10, 2),
    )
    w.clock.advance(days=40)  # the refusal ended the link more than 30 days ago
    refused = client.get(f"/pupils/{pupil}/history")
    assert refused.status_code == 403 and refused.json()["errors"][0]["code"] == "not_related"


def test_the_tribunal_and_mediators_post_disputes_but_read_no_pupil(inspected: dict[str, Any]) -> None:
    w: World = inspected["world"]
    pupil = inspected["here"]
    for org, kind in (("tribunal:send", "tribunal"), ("mediation:kids", "mediation")):
        admin.add_org(w.ledger, org, kind, org)
        w.keys[org] = Ed25519PrivateKey.generate()
        admin.add_key(w.ledger, org, w.keys[org].public_key())
    request_id = w.post("ehcp.assessment_requested", LA, ehcp_request(LA), upn=pupil, occurred_on=date(2026, 9, 21)).event_id
    refusal = w.post(
        "ehcp.assessment_decided", LA, {"request_event_id": request_id, "decision": "refuse"}, upn=pupil, occurred_on=date(2026, 9, 28)
    ).event_id
    tribunal = TestClient(create_app(w.ledger), headers={"authorization": f"Bearer {w.ledger.issue_token('tribunal:send', 'tribunal')}"})
    appeal = w.event(
        "dispute.appeal_registered", "tribunal:send", {"decision_event_id": refusal, "grounds": ["refusal_to_assess"]}, upn=pupil
    )
    posted = tribunal.post("/events", json=w.sign(appeal))
    assert posted.status_code in (200, 201), posted.text
    assert [f["code"] for f in posted.json()["flags"]] == ["appeal_without_mediation_certificate"]
    read = tribunal.get(f"/pupils/{pupil}/history")
    assert read.status_code == 403 and read.json()["errors"][0]["code"] == "role_cannot_read_pupils"
    assert tribunal.get("/views/metrics", params={"level": "la", "org": LA}).status_code == 403
    mediator = TestClient(create_app(w.ledger), headers={"authorization": f"Bearer {w.ledger.issue_token('mediation:kids', 'mediation')}"})
    own_appeal = w.event(
        "dispute.appeal_registered", "mediation:kids", {"decision_event_id": refusal, "grounds": ["refusal_to_assess"]}, upn=pupil
    )
    refused = mediator.post("/events", json=w.sign(own_appeal))
    assert refused.status_code == 422 and refused.json()["errors"][0]["code"] == "submitter_not_allowed"
    school = TestClient(create_app(w.ledger), headers={"authorization": f"Bearer {w.ledger.issue_token(SCHOOL_A, 'school')}"})
    by_school = w.event("ehcp.assessment_requested", SCHOOL_A, ehcp_request(LA), upn=pupil)
    assert school.post("/events", json=w.sign(by_school)).status_code in (403, 422)


def test_an_oidc_inspector_is_scoped_by_inspections_too(inspected: dict[str, Any], tmp_path: Any) -> None:
    import dataclasses
    import time

    import jwt

    w: World = inspected["world"]
    key = Ed25519PrivateKey.generate()
    public = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**public, "kid": "idp-1", "use": "sig", "alg": "EdDSA"}]}))
    issuer = "https://idp.example.gov.uk"
    w.ledger.settings = dataclasses.replace(w.ledger.settings, oidc_jwks=str(jwks), oidc_issuer=issuer)

    def token(**claims: Any) -> str:
        body = {
            "iss": issuer,
            "aud": "pupil-ledger",
            "exp": int(time.time()) + 300,
            "org": "ofsted",
            "role": "inspector",
            "sub": "hmi-3",
            **claims,
        }
        return jwt.encode(body, key, algorithm="EdDSA", headers={"kid": "idp-1"})

    assert inspector_reads(w, token(), inspected["here"]) == (403, "not_related")  # a JWT names no inspection either
    start_inspection(w, LA, date(2026, 9, 28), date(2026, 10, 30))
    assert inspector_reads(w, token(), inspected["here"]) == (200, None)
    assert inspector_reads(w, token(scope=OTHER_LA), inspected["here"]) == (403, "not_related")  # its scope claim only narrows
    school = TestClient(create_app(w.ledger), headers={"authorization": f"Bearer {token(role='school', org=SCHOOL_A, scope=LA)}"})
    assert school.get(f"/pupils/{inspected['here']}/history").status_code == 401  # a scope claim is for inspectors only
