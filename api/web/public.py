"""The public pages (no sign-in): the start page, the definitions and the public transparency reports of
England, each LA and each trust, as HTML, CSV and JSON. The reports at a date are those of the latest clean
checkpoint, kept for ``Settings.web_refresh_seconds`` (``PUPIL_LEDGER_WEB_REFRESH_SECONDS``), then replaced in the
background by the newest checkpoint's, under the disclosure rules of ``Settings.disclosure_threshold``."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from datetime import date
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup

from ledger.config import Settings
from projections.facts import Moment

from . import catalogue, charts
from .data import WebData
from .pages import Page, finish_html, parse_as_of
from .report import Publication, PublicReport, rules_of

CACHED_PUBLICATIONS = 4
MAX_LISTED_TRUSTS = 50


def report_view(report: PublicReport, base: str, static: bool = False) -> dict[str, Any]:
    """The values of report.html for ``report`` served at ``base`` (a page path; ``static``: a published site,
    whose CSV and JSON sit beside the page and which has no date form)."""
    query = "" if static else f"?as_of={report.as_of.isoformat()}"
    sections = []
    for group, title, figs in report.groups:
        scalars = [f for f in figs if f.kind != "breakdown"]
        breakdowns = []
        for f in figs:
            if f.kind != "breakdown":
                continue
            labels = [c.label for c in f.categories]
            series = [(report.name, [charts.plottable(c.value) for c in f.categories])]
            if report.level != "national":
                series.append(("England", [charts.plottable(c.national_value) for c in f.categories]))
            hidden = [c.label for c in f.categories if not isinstance(c.value, int)]
            desc = (
                f"Bar chart of {f.title.lower()} for {report.name}"
                + (" and England" if report.level != "national" else "")
                + f", {f.period}. "
                + ("No bar is drawn for " + "; ".join(hidden) + " (suppressed or not applicable). " if hidden else "")
                + "The table below the chart gives the same figures."
            )
            chart = charts.bar_chart(f.metric, f.title, labels, series, desc) if f.categories else None
            breakdowns.append((f, chart))
        sections.append({"group": group, "title": title, "scalars": scalars, "breakdowns": breakdowns})
    digests = report.digests()
    return {
        "title": f"{report.name}: pupil movements and inclusion",
        "report": report,
        "sections": sections,
        "digests": digests,
        "static_site": static,
        "csv_url": f"{base}.csv{query}",
        "json_url": f"{base}.json{query}",
        "rules": report.rules.statement,
        "breadcrumbs": [{"text": "Home", "href": "/"}, {"text": "Public reports", "href": "/reports/england"}],
    }


def public_router(data: WebData, page: Page, settings: Settings) -> APIRouter:
    """The public pages over ``data``, rendered in ``page``."""
    router = APIRouter(include_in_schema=False)
    publications: OrderedDict[tuple[Any, ...], Publication] = OrderedDict()
    recent: dict[tuple[date, int], tuple[float, Publication]] = {}  # (as_of, threshold) -> when chosen, publication
    refresh = settings.web_refresh_seconds  # how long the public reports of a checkpoint are kept
    rules = rules_of(settings)
    lock = threading.Lock()

    def publication(as_of: date) -> Publication | None:
        """The public reports at ``as_of``: those of the latest clean checkpoint, kept for up to ``refresh`` seconds
        (a steady flow of events moves the checkpoint every second; each report states the one it is of). After
        that the kept one is still served while the newest checkpoint's is prepared in the background, so no
        request waits for it; only the first at a date (or every one, with ``refresh`` 0) does."""
        with lock:
            kept = recent.get((as_of, rules.threshold))
        if kept is None or refresh <= 0:
            return choose(as_of)
        if time.monotonic() - kept[0] >= refresh:
            data.report_refresher.start(lambda: renew(as_of, kept[1]))
        return kept[1]

    def renew(as_of: date, kept: Publication) -> None:
        """In the background: the newest checkpoint's publication, prepared; if that fails (the database away),
        the kept one goes on being served and the next try is after the interval."""
        try:
            choose(as_of, prepare=True)
        except Exception:
            with lock:
                recent[(as_of, rules.threshold)] = (time.monotonic(), kept)
            raise

    def choose(as_of: date, prepare: bool = False) -> Publication | None:
        """The newest clean checkpoint's publication at ``as_of``, made if need be (``prepare``: with its
        disclosure-controlled tables worked out, as a background refresh does before the pages move to it)."""
        now = time.monotonic()
        cp = data.checkpoint()
        if cp is None:
            return None
        key = (as_of, cp.tree_size, rules.threshold)
        with lock:
            found = publications.get(key)
        if found is None:
            ctx = data.context(Moment(as_of, cp.moment_known_at))
            found = Publication(data, ctx, as_of, cp, rules)
            if prepare:
                for level in ("la", "trust"):
                    found.release(level)
            with lock:
                publications[key] = found
                while len(publications) > CACHED_PUBLICATIONS:
                    publications.popitem(last=False)
        with lock:
            recent[(as_of, rules.threshold)] = (now, found)
            while len(recent) > CACHED_PUBLICATIONS:
                recent.pop(next(iter(recent)))
        return found

    data.warmers.append(lambda: choose(data.today(), prepare=True))  # a server's start (``WebData.warm``)

    @router.get("/", response_class=HTMLResponse)
    async def start(request: Request) -> Response:
        def body() -> dict[str, Any]:
            pub = publication(data.today())
            las = pub.scopes("la") if pub else []
            trusts = pub.scopes("trust") if pub else []
            listed = trusts if len(trusts) <= MAX_LISTED_TRUSTS else []  # England has some 2,500 trusts: addressed, not listed
            return {
                "las": [(la, data.name_of(la)) for la in las],
                "trusts": [(t, data.name_of(t)) for t in listed],
                "trust_count": len(trusts),
                "checkpoint": pub.checkpoint if pub else None,
            }

        return page.render(
            request, "start.html", title="Pupil movements in SEND and alternative provision", **await run_in_threadpool(body)
        )

    @router.get("/reports/definitions", response_class=HTMLResponse)
    async def definitions(request: Request) -> Response:
        return page.render(
            request,
            "definitions.html",
            title="How each figure is defined",
            definitions=Markup(catalogue.definitions_html()),  # noqa: S704
            breadcrumbs=[{"text": "Home", "href": "/"}],
        )

    async def public_report(request: Request, level: str, org: str) -> Response:
        fmt = "html"
        for suffix in (".csv", ".json"):
            if org.endswith(suffix):
                org, fmt = org[: -len(suffix)], suffix[1:]
        try:
            as_of = parse_as_of(request.query_params.get("as_of"), data.today())
        except ValueError as exc:
            return page.error(request, 400, "There is a problem with the date", str(exc))
        if level == "la":
            org = org if org.startswith("la:") else f"la:{org}"
        elif level == "trust":
            org = org if org.startswith("trust:") else f"trust:{org}"
        pub = await run_in_threadpool(publication, as_of)
        if pub is None:
            return page.error(
                request, 503, "No figures yet", "The transparency log has no signed checkpoint yet; try again in a few seconds."
            )

        def body() -> bytes | None:
            """The report in the format asked for: the same bytes for the same publication, so kept with it."""
            key = (level, org, fmt if fmt != "html" else request.url.path)
            found = pub.rendered.get(key)
            if found is None:
                try:
                    report = pub.report(level, org)
                except KeyError:
                    return None
                if fmt == "json":
                    found = report.json_bytes()
                elif fmt == "csv":
                    found = report.csv_bytes()
                else:
                    html = page.env.get_template("report.html").render(**page.common(request), **report_view(report, request.url.path))
                    found = finish_html(html).encode("utf-8")
                pub.rendered[key] = found
            return found

        found = await run_in_threadpool(body)
        if found is None:
            return page.error(request, 404, "Page not found", f"There is no public report for {org}.")
        if fmt == "json":
            return Response(found, media_type="application/json")
        if fmt == "csv":
            name = "england" if level == "national" else org.replace(":", "-")
            return Response(
                found,
                media_type="text/csv; charset=utf-8",
                headers={"content-disposition": f'attachment; filename="{name}-{as_of.isoformat()}.csv"'},
            )
        return page.respond(request, found.decode("utf-8"))

    @router.get("/reports/england", response_class=HTMLResponse)
    @router.get("/reports/england.csv")
    @router.get("/reports/england.json")
    async def report_england(request: Request) -> Response:
        suffix = request.url.path.rsplit("england", 1)[1]
        return await public_report(request, "national", "england" + suffix)

    @router.get("/reports/la/{la}", response_class=HTMLResponse)
    async def report_la(request: Request, la: str) -> Response:
        return await public_report(request, "la", la)

    @router.get("/reports/trust/{trust}", response_class=HTMLResponse)
    async def report_trust(request: Request, trust: str) -> Response:
        return await public_report(request, "trust", trust)

    return router
