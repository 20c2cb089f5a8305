"""The web pages (server-rendered with Jinja2 and GOV.UK Frontend): the start page, the public transparency
reports (no sign-in) and the signed-in dashboards, which obey the API's access policy. Every figure comes
from ``api.web.data``; every page is built from the metric catalogue (``api.web.catalogue``)."""

from __future__ import annotations

import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader, PrefixLoader, select_autoescape
from markupsafe import Markup

from api.limits import Refusal
from api.security import client_key
from ledger.core import policy
from ledger.core.catalogue import EARLIEST_DATE
from ledger.core.codes import code_list
from ledger.core.errors import LedgerError
from ledger.core.identifiers import org_scheme
from ledger.service import Ledger, Principal, Reader
from projections.facts import Moment

from . import catalogue, charts
from .data import BadScope, NotAllowed, WebData
from .report import Publication, PublicReport, rules_from_env
from .session import CSRF_COOKIE, SESSION_COOKIE, Sessions
from .tables import Column, DataTable

SERVICE_NAME = "Pupil movement transparency"
TEMPLATES = Path(__file__).resolve().parent / "templates"
LATEST_AS_OF = date(2100, 12, 31)
CACHED_PUBLICATIONS = 4
MAX_LISTED_TRUSTS = 50
DEFAULT_REFRESH_SECONDS = 300.0  # how long the pages keep a checkpoint's public reports before moving to a newer one
LEVEL_TITLES = {"national": "England", "la": "Local authority", "trust": "Trust", "school": "School or setting"}
HOME_OF_ROLE = {"la": "la", "trust": "trust", "school": "school", "ap_setting": "school"}

PrincipalOf = Callable[[str | None, str], Awaitable[Principal]]  # (token, client address): api.security.Authenticator.principal


def environment() -> Environment:
    loader = ChoiceLoader([FileSystemLoader(str(TEMPLATES)),
                           PrefixLoader({"govuk_frontend_jinja": PackageLoader("govuk_frontend_jinja", "templates")})])
    env = Environment(loader=loader, autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
    env.globals["service_name"] = SERVICE_NAME
    return env


def finish_html(html: str) -> str:
    """GOV.UK Frontend's footer crown is an SVG with role="presentation", which the HTML standard does not allow on
    svg (the Nu validator says so); aria-hidden hides the decorative crown from assistive technology just the same."""
    return html.replace('focusable="false"\n    role="presentation"', 'focusable="false"\n    aria-hidden="true"')


class Page:
    """What every template gets: title, breadcrumbs, navigation, the signed-in principal, the CSRF token."""

    def __init__(self, env: Environment, sessions: Sessions):
        self.env, self.sessions = env, sessions

    @staticmethod
    def common(request: Request) -> dict[str, Any]:
        """What every template gets that does not depend on who asks: the navigation and the path."""
        path = request.url.path
        definitions = path == catalogue.DEFINITIONS_PATH
        nav = [{"href": "/", "text": "Home", "active": path == "/"},
               {"href": "/reports/england", "text": "Public reports", "active": path.startswith("/reports/") and not definitions},
               {"href": "/dashboards/", "text": "Dashboards", "active": path.startswith(("/dashboards", "/sign-in"))},
               {"href": catalogue.DEFINITIONS_PATH, "text": "Definitions", "active": definitions}]
        return {"navigation": nav, "path": path, "principal": None, "csrf_token": ""}

    @staticmethod
    def _nonce(request: Request) -> tuple[str, bool]:
        """This browser's CSRF nonce (its cookie), or a new one to set."""
        nonce = request.cookies.get(CSRF_COOKIE)
        if nonce is None or not 16 <= len(nonce) <= 64:
            return Sessions.new_nonce(), True
        return nonce, False

    def render(self, request: Request, template: str, status: int = 200, principal: Principal | None = None,
               no_store: bool = False, **values: Any) -> HTMLResponse:
        nonce, fresh = self._nonce(request)
        body = self.env.get_template(template).render(**{**self.common(request), "principal": principal,
                                                         "csrf_token": self.sessions.csrf_token(nonce), **values})
        return self.respond(request, finish_html(body), status, no_store or principal is not None, (nonce if fresh else None))

    @staticmethod
    def respond(request: Request, body: str, status: int = 200, no_store: bool = False, new_nonce: str | None = None) -> HTMLResponse:
        # same-origin, not the API's no-referrer: under no-referrer a browser posts this page's forms with
        # Origin: null, and the forms' Origin check needs the real one (nothing is sent to other sites either way)
        response = HTMLResponse(body, status_code=status, headers={"referrer-policy": "same-origin"})
        if new_nonce:
            response.headers.append("set-cookie", Sessions.csrf_cookie_header(new_nonce))
        if no_store:
            response.headers["cache-control"] = "no-store"
        return response

    def error(self, request: Request, status: int, title: str, message: str, principal: Principal | None = None) -> HTMLResponse:
        return self.render(request, "error.html", status=status, principal=principal, title=title, message=message)


def status_of(exc: LedgerError) -> int:
    from api.app import STATUS  # the API's one mapping of error categories to statuses (api.app imports this module)

    return STATUS[exc.category]


def parse_as_of(text: str | None, default: date) -> date:
    if not text:
        return default
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ValueError("the date must be written YYYY-MM-DD, for example 2026-03-20") from None
    if not EARLIEST_DATE <= day <= LATEST_AS_OF:
        raise ValueError(f"the date must be between {EARLIEST_DATE} and {LATEST_AS_OF}")
    return day


def quartile(rank: int | None, peers: int) -> str:
    """The quarter of the peers the rank falls in (1 = the highest values)."""
    if rank is None or peers <= 0:
        return "–"
    return f"Q{4 * (rank - 1) // peers + 1}"


def level_of(org: str) -> str:
    scheme = org_scheme(org)
    return {"la": "la", "trust": "trust", "england": "national"}.get(scheme or org, "school")


def dashboard_url(level: str, org: str, page: str = "", **params: str) -> str:
    query = {k: v for k, v in params.items() if v}
    return f"/dashboards/{level}/{quote(org, safe=':')}{('/' + page) if page else ''}" + (f"?{urlencode(query)}" if query else "")


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
            desc = (f"Bar chart of {f.title.lower()} for {report.name}" + (" and England" if report.level != "national" else "")
                    + f", {f.period}. " + ("No bar is drawn for " + "; ".join(hidden) + " (suppressed or not applicable). " if hidden else "")
                    + "The table below the chart gives the same figures.")
            chart = charts.bar_chart(f.metric, f.title, labels, series, desc) if f.categories else None
            breakdowns.append((f, chart))
        sections.append({"group": group, "title": title, "scalars": scalars, "breakdowns": breakdowns})
    digests = report.digests()
    return {"title": f"{report.name}: pupil movements and inclusion", "report": report, "sections": sections, "digests": digests,
            "static_site": static,
            "csv_url": f"{base}.csv{query}", "json_url": f"{base}.json{query}", "rules": report.rules.statement,
            "breadcrumbs": [{"text": "Home", "href": "/"}, {"text": "Public reports", "href": "/reports/england"}]}


def web_router(ledger: Ledger, principal_of: PrincipalOf, data: WebData | None = None) -> APIRouter:
    """The pages, for ``ledger``; ``principal_of`` authenticates a bearer token exactly as the API does."""
    data = data or WebData(ledger)
    env = environment()
    sessions = Sessions.from_secret(ledger.secrets.pseudonym_key)
    page = Page(env, sessions)
    router = APIRouter(include_in_schema=False)
    publications: OrderedDict[tuple[Any, ...], Publication] = OrderedDict()
    recent: dict[tuple[date, int], tuple[float, Publication]] = {}  # (as_of, threshold) -> when chosen, publication
    refresh = float(os.environ.get("PUPIL_LEDGER_WEB_REFRESH_SECONDS", DEFAULT_REFRESH_SECONDS))
    lock = threading.Lock()

    # -- public ------------------------------------------------------------------------------------------

    def publication(as_of: date) -> Publication | None:
        """The public reports at ``as_of``: those of the latest clean checkpoint, kept for up to ``refresh`` seconds
        (a steady flow of events moves the checkpoint every second; each report states the one it is of)."""
        rules = rules_from_env()
        now = time.monotonic()
        with lock:
            kept = recent.get((as_of, rules.threshold))
        if kept is not None and now - kept[0] < refresh:
            return kept[1]
        cp = data.checkpoint()
        if cp is None:
            return None
        key = (as_of, cp.tree_size, rules.threshold)
        with lock:
            found = publications.get(key)
        if found is None:
            ctx = data.context(Moment(as_of, cp.moment_known_at))
            found = Publication(data, ctx, as_of, cp, rules)
            with lock:
                publications[key] = found
                while len(publications) > CACHED_PUBLICATIONS:
                    publications.popitem(last=False)
        with lock:
            recent[(as_of, rules.threshold)] = (now, found)
            while len(recent) > CACHED_PUBLICATIONS:
                recent.pop(next(iter(recent)))
        return found

    @router.get("/", response_class=HTMLResponse)
    async def start(request: Request) -> Response:
        def body() -> dict[str, Any]:
            pub = publication(data.today())
            las = pub.scopes("la") if pub else []
            trusts = pub.scopes("trust") if pub else []
            listed = trusts if len(trusts) <= MAX_LISTED_TRUSTS else []  # England has some 2,500 trusts: addressed, not listed
            return {"las": [(la, data.name_of(la)) for la in las], "trusts": [(t, data.name_of(t)) for t in listed], "trust_count": len(trusts),
                    "checkpoint": pub.checkpoint if pub else None}
        return page.render(request, "start.html", title="Pupil movements in SEND and alternative provision", **await run_in_threadpool(body))

    @router.get("/reports/definitions", response_class=HTMLResponse)
    async def definitions(request: Request) -> Response:
        return page.render(request, "definitions.html", title="How each figure is defined", definitions=Markup(catalogue.definitions_html()),  # noqa: S704
                           breadcrumbs=[{"text": "Home", "href": "/"}])

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
            return page.error(request, 503, "No figures yet", "The transparency log has no signed checkpoint yet; try again in a few seconds.")
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
            return Response(found, media_type="text/csv; charset=utf-8",
                            headers={"content-disposition": f'attachment; filename="{name}-{as_of.isoformat()}.csv"'})
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

    # -- signing in ----------------------------------------------------------------------------------------

    async def signed_in(request: Request) -> Principal | None:
        """The principal of the session cookie, or of an Authorization: Bearer header; None if neither verifies."""
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else sessions.open(request.cookies.get(SESSION_COOKIE))
        if not token:
            return None
        try:
            return await principal_of(token, client_key(request.scope))
        except (LedgerError, Refusal):
            return None

    def same_origin(request: Request) -> bool:
        origin = request.headers.get("origin")
        return origin is None or origin == f"{request.url.scheme}://{request.url.netloc}"

    async def form_with_csrf(request: Request) -> dict[str, str] | None:
        """The posted form, if its CSRF token matches this browser's nonce and it came from this site."""
        if not same_origin(request):
            return None
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        if not sessions.csrf_valid(request.cookies.get(CSRF_COOKIE), form.get("csrf_token")):
            return None
        return form

    def safe_next(target: str | None) -> str:
        return target if target and target.startswith("/dashboards/") and "//" not in target and "\\" not in target else "/dashboards/"

    @router.get("/sign-in", response_class=HTMLResponse)
    async def sign_in_form(request: Request) -> Response:
        return page.render(request, "sign_in.html", title="Sign in", next=safe_next(request.query_params.get("next")), no_store=True)

    @router.post("/sign-in", response_class=HTMLResponse)
    async def sign_in(request: Request) -> Response:
        form = await form_with_csrf(request)
        if form is None:
            return page.error(request, 403, "Your form has expired", "Go back to the sign in page, reload it and try again.")
        token = (form.get("token") or "").strip()
        target = safe_next(form.get("next"))
        principal = None
        if token and len(token) <= 8192:
            try:
                principal = await principal_of(token, client_key(request.scope))
            except LedgerError:
                principal = None
            except Refusal as refusal:
                return page.error(request, refusal.status, "Too many attempts", f"Wait {max(1, round(refusal.retry_after or 1))} seconds, then try again.")
        if principal is None:
            return page.render(request, "sign_in.html", status=401, title="Sign in", next=target, no_store=True,
                               error="Enter a valid access token: this one is unknown, expired or revoked" if token else "Enter your access token")
        response = RedirectResponse(target, status_code=303)
        response.headers.append("set-cookie", sessions.cookie_header(sessions.seal(token)))
        response.headers["cache-control"] = "no-store"
        return response

    @router.post("/sign-out")
    async def sign_out(request: Request) -> Response:
        if await form_with_csrf(request) is None:
            return page.error(request, 403, "Your form has expired", "Reload the page and try again.")
        response = RedirectResponse("/", status_code=303)
        response.headers.append("set-cookie", Sessions.clear_header())
        return response

    # -- dashboards -----------------------------------------------------------------------------------------

    def to_sign_in(request: Request) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/sign-in?{urlencode({'next': target})}", status_code=303)

    @router.get("/dashboards/", response_class=HTMLResponse)
    @router.get("/dashboards", response_class=HTMLResponse)
    async def dashboards_home(request: Request) -> Response:
        principal = await signed_in(request)
        if principal is None:
            return to_sign_in(request)
        if principal.role == "researcher":
            return page.error(request, 403, "You cannot see dashboards", "Researchers read approved exports only (docs/access.md).", principal)
        if principal.role in ("admin", "regions"):
            return RedirectResponse(dashboard_url("national", "england"), status_code=303)
        if principal.role == "inspector":
            scopes = [(s, level_of(s), await run_in_threadpool(data.name_of, s)) for s in principal.scope]
            return page.render(request, "inspector_home.html", principal=principal, title="Your inspections", scopes=scopes,
                               dashboard_url=dashboard_url)
        return RedirectResponse(dashboard_url(HOME_OF_ROLE.get(principal.role, "school"), principal.org), status_code=303)

    async def scoped(request: Request, level: str, org: str, build: Callable[[Principal, str, date], dict[str, Any]],
                     template: str) -> Response:
        """Sign-in, the access policy for the scope (as the API's views apply it), the date, then the page."""
        principal = await signed_in(request)
        if principal is None:
            return to_sign_in(request)
        if level not in ("national", "la", "trust", "school"):
            return page.error(request, 404, "Page not found", f"There are no dashboards for {level!r}.", principal)
        try:
            as_of = parse_as_of(request.query_params.get("as_of"), data.today())
            scope = await run_in_threadpool(data.authorise, principal, level, None if level == "national" else org)
        except (ValueError, BadScope) as exc:
            return page.error(request, 400, "There is a problem with the page address", str(exc), principal)
        except NotAllowed as exc:
            return page.error(request, 403, "You cannot see these figures", f"{exc} (see docs/access.md: aggregates).", principal)
        values = await run_in_threadpool(build, principal, scope, as_of)
        tables: list[DataTable] = values.get("tables", [])
        if request.query_params.get("format") == "csv":
            wanted = request.query_params.get("table")
            for t in tables:
                if t.id == wanted:
                    name = f"{scope.replace(':', '-')}-{t.id}-{as_of.isoformat()}.csv"
                    return Response(t.csv_bytes(), media_type="text/csv; charset=utf-8",
                                    headers={"content-disposition": f'attachment; filename="{name}"', "cache-control": "no-store"})
            return page.error(request, 404, "Page not found", "There is no such table on this page.", principal)
        name = await run_in_threadpool(data.name_of, scope)
        tabs = dashboard_tabs(level, scope, as_of, request.url.path, principal)
        return page.render(request, template, principal=principal, level=level, scope=scope, scope_name=name, as_of=as_of,
                           tabs=tabs, level_title=LEVEL_TITLES[level],
                           breadcrumbs=[{"text": "Dashboards", "href": "/dashboards/"}, {"text": name, "href": dashboard_url(level, scope, as_of=as_of.isoformat())}],
                           **values)

    def dashboard_tabs(level: str, scope: str, as_of: date, path: str, principal: Principal) -> list[dict[str, Any]]:
        day = as_of.isoformat()
        items = [("", "Summary"), ("trends", "Trends"), ("units", "Schools and areas" if level != "school" else None),
                 ("placements", "Placements register"), ("providers", "Unregistered providers"), ("cases", "Regions Group cases")]
        out = []
        for slug, text in items:
            if text is None:
                continue
            href = dashboard_url(level, scope, slug, as_of=day)
            out.append({"href": href, "text": text, "current": path == href.split("?")[0]})
        if data.may_read_pupils(principal):
            out.append({"href": "/dashboards/pupil", "text": "Pupil history", "current": False})
        return out

    def params(request: Request) -> dict[str, str]:
        return dict(request.query_params)

    @router.get("/dashboards/{level}/{org}", response_class=HTMLResponse)
    async def summary(request: Request, level: str, org: str) -> Response:
        def build(principal: Principal, scope: str, as_of: date) -> dict[str, Any]:
            m = Moment(as_of)
            body = data.metrics(level, scope, m)
            positions = data.positions()
            groups = []
            tables = []
            for group, title, entries in catalogue.groups():
                rows, breakdowns = [], []
                for e in entries:
                    f = body["metrics"].get(e.name)
                    if f is None:
                        continue
                    if e.kind == "breakdown":
                        labels = sorted(set(f["value"] or {}) | set(f["national_value"] or {}))
                        bt = DataTable(f"{e.name}", [Column("label", "Category"), Column("value", LEVEL_TITLES[level] if level != "national" else "England", True)]
                                       + ([Column("national", "England", True)] if level != "national" else []),
                                       [{"label": e.label(k), "value": (f["value"] or {}).get(k, 0), "national": (f["national_value"] or {}).get(k, 0)} for k in labels],
                                       request.url.path, params(request))
                        series = [("This " + LEVEL_TITLES[level].lower() if level != "national" else "England", [float((f["value"] or {}).get(k, 0)) for k in labels])]
                        if level != "national":
                            series.append(("England", [float((f["national_value"] or {}).get(k, 0)) for k in labels]))
                        chart = charts.bar_chart(f"d-{e.name}", e.title, [e.label(k) for k in labels], series,
                                                 f"Bar chart of {e.title.lower()}, {e.period(as_of)[2]}. The table below gives the same figures.") if labels else None
                        breakdowns.append((e, chart, bt))
                        tables.append(bt)
                        continue
                    rows.append({"metric": e.title, "metric__href": e.anchor, "value": f["value"], "national": f["national_value"],
                                 "rank": f"{f['rank']} of {f['peers']}" if f["rank"] is not None else "–", "quartile": quartile(f["rank"], f["peers"]),
                                 "period": e.period(as_of)[2]})
                table = DataTable(f"summary-{group}", [Column("metric", "Metric"), Column("value", "Value", True), Column("national", "England", True),
                                                       Column("rank", "Rank among peers"), Column("quartile", "Quartile (Q1 highest)"),
                                                       Column("period", "Period")], rows, request.url.path, params(request))
                tables.append(table)
                groups.append({"group": group, "title": title, "table": table, "breakdowns": breakdowns})
            return {"title": "Summary", "groups": groups, "tables": tables, "positions": positions}
        return await scoped(request, level, org, build, "dashboard.html")

    @router.get("/dashboards/{level}/{org}/trends", response_class=HTMLResponse)
    async def trends(request: Request, level: str, org: str) -> Response:
        def build(principal: Principal, scope: str, as_of: date) -> dict[str, Any]:
            group_names = [g for g, _, _ in catalogue.groups()]
            group = request.query_params.get("group") or group_names[0]
            if group not in group_names:
                group = group_names[0]
            entries = [e for g, _, es in catalogue.groups() if g == group for e in es if e.kind != "breakdown"]
            points = data.series(level, scope, [e.name for e in entries], as_of)
            blocks, tables = [], []
            for e in entries:
                labels = [d.isoformat() for d, _ in points]
                mine = [charts.plottable(p.get(e.name, {}).get("value")) for _, p in points]
                national = [charts.plottable(p.get(e.name, {}).get("national_value")) for _, p in points]
                series = [("This " + LEVEL_TITLES[level].lower() if level != "national" else "England", mine)]
                if level != "national":
                    series.append(("England", national))
                chart = charts.line_chart(f"t-{e.name}", e.title, labels, series,
                                          f"Line chart of {e.title.lower()} at the end of each month to {as_of.isoformat()}. The table below gives the same figures.")
                table = DataTable(f"trend-{e.name}", [Column("date", "Date"), Column("value", "Value", True)] + ([Column("national", "England", True)] if level != "national" else []),
                                  [{"date": d.isoformat(), "value": p.get(e.name, {}).get("value"), "national": p.get(e.name, {}).get("national_value")} for d, p in points],
                                  request.url.path, params(request))
                blocks.append((e, chart, table))
                tables.append(table)
            groups = [(g, t) for g, t, _ in catalogue.groups()]
            return {"title": "Trends", "blocks": blocks, "tables": tables, "group": group, "groups": groups}
        return await scoped(request, level, org, build, "trends.html")

    @router.get("/dashboards/{level}/{org}/units", response_class=HTMLResponse)
    async def units(request: Request, level: str, org: str) -> Response:
        def build(principal: Principal, scope: str, as_of: date) -> dict[str, Any]:
            group_names = [g for g, _, _ in catalogue.groups()]
            group = request.query_params.get("group") or group_names[0]
            if group not in group_names:
                group = group_names[0]
            ctx = data.context(Moment(as_of))
            child_level, children = data.children(level, scope, ctx)
            children = [c for c in children if data.may_read(principal, child_level, c, ctx)]
            by_metric = data.level_figures(ctx, child_level)
            entries = [e for g, _, es in catalogue.groups() if g == group for e in es if e.kind != "breakdown"]
            rows = []
            for c in children:
                row: dict[str, Any] = {"name": data.name_of(c), "name__href": dashboard_url(child_level, c, as_of=as_of.isoformat()), "org": c}
                for e in entries:
                    found = by_metric[e.name][0].get(c)
                    row[e.name] = found.value if found is not None else None
                rows.append(row)
            table = DataTable("units", [Column("name", "Name"), Column("org", "Identifier")] + [Column(e.name, e.title, True) for e in entries],
                              rows, request.url.path, params(request))
            groups = [(g, t) for g, t, _ in catalogue.groups()]
            return {"title": "Schools and areas", "table": table, "tables": [table], "group": group, "groups": groups,
                    "child_level": LEVEL_TITLES[child_level], "entries": entries}
        return await scoped(request, level, org, build, "units.html")

    @router.get("/dashboards/{level}/{org}/placements", response_class=HTMLResponse)
    async def placements(request: Request, level: str, org: str) -> Response:
        def build(principal: Principal, scope: str, as_of: date) -> dict[str, Any]:
            reg = data.placements(level, scope, Moment(as_of))
            setting = code_list("ap_setting_types")
            names = {k: v for version in setting.versions for k, v in version.codes.items()}
            published = (reg.get("published") or {}).get("by_setting_type", {})
            types = sorted(set(reg["by_setting_type"]) | set(published))
            by_type = DataTable("by-setting-type", [Column("type", "Setting type"), Column("open", "Open placements", True)]
                                + ([Column("published", "Published DfE figure 2022/23", True)] if reg.get("published") else []),
                                [{"type": f"{names.get(t, t)} ({t})", "open": reg["by_setting_type"].get(t, 0), "published": published.get(t)} for t in types],
                                request.url.path, params(request))
            pairs = DataTable("by-setting-type-and-tier", [Column("type", "Setting type"), Column("tier", "Tier"), Column("open", "Open placements", True)],
                              [{"type": f"{names.get(p['setting_type'], p['setting_type'])} ({p['setting_type']})", "tier": str(p["tier"]), "open": p["open_placements"]}
                               for p in reg["by_setting_type_and_tier"]], request.url.path, params(request))
            return {"title": "Placements register", "register": reg, "tables": [by_type, pairs], "by_type": by_type, "pairs": pairs}
        return await scoped(request, level, org, build, "placements.html")

    @router.get("/dashboards/{level}/{org}/providers", response_class=HTMLResponse)
    async def providers(request: Request, level: str, org: str) -> Response:
        def build(principal: Principal, scope: str, as_of: date) -> dict[str, Any]:
            watch = data.providers(level, scope, Moment(as_of))
            rows = [{"provider": data.name_of(p["provider"]), "id": p["provider"], "la": p["la"], "pupils": p["pupils"], "hours": p["weekly_hours"],
                     "full_time": p["full_time_pupils"], "sen": p["full_time_pupils_with_sen_or_looked_after"],
                     "flag": "Likely to need registration" if p["needs_registration"] else "No", "commissioners": ", ".join(p["commissioners"])}
                    for p in watch["providers"]]
            table = DataTable("providers", [Column("provider", "Provider"), Column("id", "Identifier"), Column("la", "LA"), Column("pupils", "Pupils", True),
                                            Column("hours", "Hours a week", True), Column("full_time", "Full-time pupils", True),
                                            Column("sen", "Full-time with SEN or looked after", True), Column("flag", "Registration"),
                                            Column("commissioners", "Commissioned by")], rows, request.url.path, params(request))
            return {"title": "Unregistered providers", "watch": watch, "table": table, "tables": [table]}
        return await scoped(request, level, org, build, "providers.html")

    @router.get("/dashboards/{level}/{org}/cases", response_class=HTMLResponse)
    async def cases(request: Request, level: str, org: str) -> Response:
        def build(principal: Principal, scope: str, as_of: date) -> dict[str, Any]:
            found = data.cases(level, scope, Moment(as_of))
            rows = [{"org": data.name_of(c["org"]), "org_id": c["org"], "opened_on": c["opened_on"], "category": c["category"], "status": c["status"],
                     "metric": (c.get("snapshot") or {}).get("metric"), "metric__href": catalogue.DEFINITIONS_PATH + "#" + str((c.get("snapshot") or {}).get("metric")),
                     "metric_value": (c.get("snapshot") or {}).get("metric_value"), "national_value": (c.get("snapshot") or {}).get("national_value"),
                     "decisions": len(c["decisions"]), "actions": len(c["actions"]), "outcome": c.get("outcome")} for c in found]
            table = DataTable("cases", [Column("org", "Organisation"), Column("org_id", "Identifier"), Column("opened_on", "Opened"), Column("category", "Concern"),
                                        Column("status", "Status"), Column("metric", "Metric"), Column("metric_value", "Value seen", True),
                                        Column("national_value", "England then", True), Column("decisions", "Decisions", True),
                                        Column("actions", "Actions done", True), Column("outcome", "Outcome")], rows, request.url.path, params(request))
            return {"title": "Regions Group cases", "table": table, "tables": [table]}
        return await scoped(request, level, org, build, "cases.html")

    # -- a pupil's history (identified: authorised by relationship and recorded, as pupilHistory) -------------

    def purposes_for(principal: Principal) -> list[tuple[str, str]]:
        """The purposes the role may state (the policy's list), default first."""
        _, allowed = policy.PURPOSES.get(principal.role, (None, ()))
        names = code_list("access_purposes")
        titles = {k: v for version in names.versions for k, v in version.codes.items()}
        return [(p, titles.get(p, p)) for p in allowed]

    @router.get("/dashboards/pupil", response_class=HTMLResponse)
    async def pupil_form(request: Request) -> Response:
        principal = await signed_in(request)
        if principal is None:
            return to_sign_in(request)
        return page.render(request, "pupil.html", principal=principal, title="A pupil's history", purposes=purposes_for(principal),
                           history=None, no_store=True, breadcrumbs=[{"text": "Dashboards", "href": "/dashboards/"}])

    @router.post("/dashboards/pupil", response_class=HTMLResponse)
    async def pupil_history(request: Request) -> Response:
        principal = await signed_in(request)
        if principal is None:
            return to_sign_in(request)
        form = await form_with_csrf(request)
        if form is None:
            return page.error(request, 403, "Your form has expired", "Go back, reload the page and try again.", principal)
        upn = (form.get("upn") or "").strip().upper()
        purpose = form.get("purpose") or None
        reference = (form.get("reference") or "").strip() or None
        values: dict[str, Any] = {"title": "A pupil's history", "purposes": purposes_for(principal), "upn": upn, "purpose": purpose,
                                  "reference": reference or "", "history": None, "breadcrumbs": [{"text": "Dashboards", "href": "/dashboards/"}]}
        if not re.fullmatch(r"[A-Z][0-9]{11}[0-9A-Z]", upn):
            return page.render(request, "pupil.html", status=422, principal=principal, no_store=True,
                               errors=[("upn", "Enter a 13-character UPN, for example H801200001001")], **values)
        if reference and not re.fullmatch(r"[A-Za-z0-9._/-]{1,64}", reference):
            return page.render(request, "pupil.html", status=422, principal=principal, no_store=True,
                               errors=[("reference", "A reference is up to 64 letters, digits and . _ / -")], **values)
        try:
            history = await run_in_threadpool(ledger.pupil_history, upn, None, None, False, Reader(principal, purpose, reference, "pupilHistory"))
        except LedgerError as exc:
            return page.render(request, "pupil.html", status=status_of(exc), principal=principal, no_store=True,
                               errors=[("upn", f"{p.message} ({p.code})") for p in exc.problems], **values)
        return page.render(request, "pupil.html", principal=principal, no_store=True, **{**values, "history": history})

    return router
