"""The pages in a real browser: Debian's Chromium driven by Playwright, against a real `pupil-ledger serve`
process, on SQLite and PostgreSQL. Each page type loads under the pages' CSP with no console error; axe-core
finds no serious or critical violation; the keyboard alone reaches every control; sign-in works; the figures
shown equal the API's for the same moment; a CSV download equals its table; an inspector reads a pupil's
history. Screenshots of the main pages are written to docs/screenshots/ (from the SQLite run)."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.web import catalogue
from ledger.config import Settings

from .conftest import LA, World
from .processes import Server
from .test_web import AS_OF, TRUST, Scene, build_scene

pytestmark = pytest.mark.slow
SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
FOCUSABLE = 'a[href], button, input:not([type="hidden"]), select, textarea, summary, [tabindex]:not([tabindex="-1"])'


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("the browser tests need Debian's Chromium: apt-get install -y --no-install-recommends chromium (.ci/run does)")
    return found


@pytest.fixture
def served(world: World, settings: Settings) -> Iterator[tuple[Scene, Server]]:
    scene = build_scene(world)
    server = Server(settings).start()
    try:
        yield scene, server
    finally:
        server.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class Visit:
    """One browser tab on the served ledger that records console errors and failed requests."""

    def __init__(self, browser: Any, base: str, screenshots: bool):
        self.context = browser.new_context(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
        self.page = self.context.new_page()
        self.base, self.screenshots = base, screenshots
        self.problems: list[str] = []
        self.page.on("console", lambda m: self.problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
        # a request the browser itself abandons when the page navigates away (a favicon, say) is not a failure
        self.page.on(
            "requestfailed",
            lambda r: None if "ERR_ABORTED" in (r.failure or "") else self.problems.append(f"request failed: {r.url} {r.failure}"),
        )
        self.page.on(
            "response", lambda r: self.problems.append(f"{r.status} {r.url}") if r.status >= 400 and not r.url.endswith("/la/999") else None
        )

    def open(self, path: str, shot: str | None = None) -> Any:
        self.page.goto(self.base + path)
        self.page.wait_for_load_state("load")
        self.shot(shot)
        self.check()
        self.page.evaluate("window.scrollTo(0, 0); document.activeElement && document.activeElement.blur()")
        return self.page

    def shot(self, name: str | None, scroll_to: str | None = None) -> None:
        """A screenshot of the viewport for docs/screenshots/ (taken before the keyboard check moves the focus)."""
        if not name or not self.screenshots:
            return
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        if scroll_to:
            self.page.locator(scroll_to).first.scroll_into_view_if_needed()
            self.page.evaluate("window.scrollBy(0, 150)")
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
        self.page.evaluate("window.scrollTo(0, 0)")

    def check(self) -> None:
        """No CSP violation or other console error, axe clean of serious and critical issues, every control
        reachable by the keyboard."""
        from axe_playwright_python.sync_playwright import Axe

        assert not self.problems, (self.page.url, self.problems)
        assert self.page.evaluate("document.body.classList.contains('govuk-frontend-supported')"), (
            "GOV.UK Frontend's JavaScript did not start"
        )
        results = Axe().run(self.page)
        bad = [
            (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
            for v in results.response["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        assert not bad, (self.page.url, bad)
        reach_every_control(self.page)


def reach_every_control(page: Any) -> None:
    """Tab from the top of the page through every control: each visible focusable element gets the focus."""
    count = page.evaluate(f"""() => {{
        const all = [...document.querySelectorAll('{FOCUSABLE}')].filter(e => e.offsetParent !== null || e.getClientRects().length);
        all.forEach((e, i) => e.setAttribute('data-kbd', String(i)));
        document.activeElement && document.activeElement.blur();
        window.scrollTo(0, 0);
        return all.length;
    }}""")
    assert count > 5, (page.url, count)  # the header, navigation and footer links at least
    reached: set[str] = set()
    page.keyboard.press("Tab")  # from the document start
    for _ in range(count + 5):
        found = page.evaluate("document.activeElement && document.activeElement.getAttribute('data-kbd')")
        if found is not None:
            reached.add(found)
        if len(reached) == count:
            break
        page.keyboard.press("Tab")
    missing = page.evaluate(
        """(reached) => [...document.querySelectorAll('[data-kbd]')].filter(e => !reached.includes(e.getAttribute('data-kbd')))
        .slice(0, 5).map(e => e.outerHTML.slice(0, 120))""",
        sorted(reached),
    )
    assert len(reached) == count, (page.url, f"{count - len(reached)} controls not reached by Tab", missing)


def table_rows(page: Any, selector: str) -> list[list[str]]:
    return page.evaluate(
        """(sel) => [...document.querySelectorAll(sel + ' tr')].map(tr => [...tr.children].map(c => {
        const copy = c.cloneNode(true); copy.querySelectorAll('.govuk-visually-hidden').forEach(h => h.remove());
        return copy.textContent.trim().replace(/\\s+/g, ' ');
    }))""",
        selector,
    )


def sign_in(visit: Visit, token: str, next_path: str) -> Any:
    page = visit.open("/sign-in?" + str(httpx.QueryParams({"next": next_path})), shot="sign-in")
    page.fill("#token", token)
    page.click("button:has-text('Sign in')")
    page.wait_for_load_state("load")
    return page


def test_every_page_type_in_a_real_browser(served: tuple[Scene, Server], browser: Any, settings: Settings) -> None:
    scene, server = served
    q = f"as_of={AS_OF.isoformat()}"
    visit = Visit(browser, server.url, screenshots=settings.database_url is None and not os.environ.get("PUPIL_LEDGER_NO_SCREENSHOTS"))
    # public: start page, reports, definitions; navigation by links
    start = visit.open("/", shot="start")
    start.click("a.govuk-button--start")
    assert start.url.endswith("/reports/england")
    visit.open(f"/reports/england?{q}", shot="report-england")
    la_page = visit.open(f"/reports/la/801?{q}", shot="report-la")
    visit.shot("report-la-figures", scroll_to="#fig-placements_started_by_reason")
    with la_page.expect_download() as download:
        la_page.click(f"a[href='/reports/la/801.csv?{q}']")
    public_csv = Path(download.value.path()).read_text("utf-8")
    rows = {(r["metric"], r["category"]): r["value"] for r in csv.DictReader(io.StringIO(public_csv))}
    reason_rows = table_rows(la_page, "table[data-metric='placements_started_by_reason'] tbody")
    assert reason_rows and all(
        rows[("placements_started_by_reason", re.search(r"\((\w+)\)$", r[0]).group(1))] == r[1].replace(",", "")  # type: ignore[union-attr]
        for r in reason_rows
    )
    visit.open(f"/reports/trust/{TRUST[6:]}?{q}")
    definitions = visit.open("/reports/definitions", shot="definitions")
    assert definitions.locator("tr#open_ap_placements").count() == 1
    la_page = visit.open(f"/reports/la/801?{q}")  # a figure links to its definition's anchor
    la_page.click("a[href='/reports/definitions#suspension_rate']")
    assert la_page.url.endswith("/reports/definitions#suspension_rate")
    # signed in as the LA: the summary's figures are the API's
    page = sign_in(visit, scene.tokens["la"], f"/dashboards/la/{LA}?{q}")
    assert page.url.endswith(f"/dashboards/la/{LA}?{q}"), page.url
    visit.shot("dashboard")
    visit.shot("dashboard-figures", scroll_to="table[data-table='summary-placements']")
    visit.check()
    api = httpx.get(
        f"{server.url}/views/metrics",
        params={"level": "la", "org": LA, "as_of": AS_OF.isoformat()},
        headers={"authorization": f"Bearer {scene.tokens['la']}"},
    ).json()["metrics"]
    titles = {e.title: e.name for e in catalogue.catalogue()}
    compared = 0
    for group, _, _ in catalogue.groups():
        for row in table_rows(page, f"table[data-table='summary-{group}'] tbody"):
            figure = api[titles[row[0]]]
            assert row[1] == shown_text(figure["value"]) and row[2] == shown_text(figure["national_value"]), (row, figure)
            compared += 1
    assert compared >= 15
    for sub, shot in (("trends", "trends"), ("units", "units"), ("placements", "placements"), ("providers", None), ("cases", "cases")):
        visit.open(f"/dashboards/la/{LA}/{sub}?{q}", shot=shot)
        if sub == "trends":
            visit.shot("trends-chart", scroll_to="figure.app-chart")
    # sort, filter and download a table: the CSV holds exactly the rows shown
    units = visit.open(f"/dashboards/la/{LA}/units?{q}&group=exclusions")
    units.click("table[data-table='units'] th >> text=Pupils on roll")
    units.wait_for_load_state("load")
    units.fill("#filter-units", "Test")
    units.click("#table-units button:has-text('Filter')")
    units.wait_for_load_state("load")
    shown_rows = table_rows(units, "table[data-table='units']")
    with units.expect_download() as download:
        units.click("#table-units a.app-filter__csv")
    downloaded = list(csv.reader(io.StringIO(Path(download.value.path()).read_text("utf-8"))))
    assert downloaded[0] == shown_rows[0]
    assert [[c or "–" for c in r] for r in downloaded[1:]] == [[c.replace(",", "") for c in r] for r in shown_rows[1:]]
    assert len(downloaded) > 2
    # signing out and in as an inspector, who reads a pupil's history with a stated purpose
    page.goto(f"{server.url}/dashboards/la/{LA}?{q}")
    page.click("button:has-text('Sign out')")
    page.wait_for_load_state("load")
    assert page.url.rstrip("/") == server.url
    page = sign_in(visit, scene.tokens["inspector"], "/dashboards/")
    assert "Your inspections" in page.content()
    visit.check()
    page = visit.open("/dashboards/pupil")
    page.fill("#upn", scene.pupils[0])
    page.select_option("#purpose", "inspection")
    page.fill("#reference", "INSP-2026-14")
    page.click("button:has-text('Read the history')")
    page.wait_for_load_state("load")
    assert "pupil.registered" in page.content() and "recorded in the ledger as event" in page.content()
    visit.shot("pupil-history", scroll_to="table.govuk-table")
    visit.check()
    views = httpx.get(f"{server.url}/access-log", headers={"authorization": f"Bearer {scene.tokens['admin']}"}).json()["views"]
    assert views[-1]["purpose"] == "inspection" and views[-1]["reference"] == "INSP-2026-14"
    # pages work without JavaScript too
    plain = browser.new_context(java_script_enabled=False).new_page()
    plain.goto(f"{server.url}/reports/la/801?{q}")
    assert plain.locator("table[data-metric='placements_started_by_reason']").count() == 1
    plain.goto(f"{server.url}/sign-in")
    plain.fill("#token", scene.tokens["la"])
    plain.click("button:has-text('Sign in')")
    assert plain.url.endswith(f"/dashboards/la/{LA}")


def shown_text(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "–" if value is None else str(value)
