"""The signed-in dashboards, which obey the API's access policy: a home per role; for England, an LA, a trust
or a school its summary, trends, schools and areas, placements register, unregistered providers and Regions
Group cases (each table also as CSV). Every figure comes from ``api.web.data``, every page is built from the
metric catalogue (``api.web.catalogue``). A pupil's history, the one identified page, is ``api.web.pupil_history``.

Over 400 lines as one concept: each tab is a short builder run inside the one frame all tabs share (``scoped``: sign-in,
the access policy for the scope, the date, the tabs and the CSV of any table), so splitting the tabs off would only
scatter that frame's users.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ledger.core.codes import code_list
from ledger.core.identifiers import org_scheme
from ledger.core.times import timestamp
from ledger.service import Principal
from projections.facts import Moment

from . import catalogue, charts
from .data import BadScope, NotAllowed, WebData
from .pages import Page, parse_as_of
from .signin import SignIn, to_sign_in
from .tables import Column, DataTable

LEVEL_TITLES = {"national": "England", "la": "Local authority", "trust": "Trust", "school": "School or setting"}
HOME_OF_ROLE = {"la": "la", "trust": "trust", "school": "school", "ap_setting": "school"}


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


def dashboards_router(data: WebData, page: Page, auth: SignIn) -> APIRouter:
    """The dashboards over ``data`` for those ``auth`` signs in."""
    router = APIRouter(include_in_schema=False)

    @router.get("/dashboards/", response_class=HTMLResponse)
    @router.get("/dashboards", response_class=HTMLResponse)
    async def dashboards_home(request: Request) -> Response:
        principal = await auth.signed_in(request)
        if principal is None:
            return to_sign_in(request)
        if principal.role == "researcher":
            return page.error(
                request, 403, "You cannot see dashboards", "Researchers read approved exports only (docs/access.md).", principal
            )
        if principal.role in ("admin", "regions"):
            return RedirectResponse(dashboard_url("national", "england"), status_code=303)
        if principal.role == "inspector":
            scopes = [(s, level_of(s), await run_in_threadpool(data.name_of, s)) for s in principal.scope]
            return page.render(
                request, "inspector_home.html", principal=principal, title="Your inspections", scopes=scopes, dashboard_url=dashboard_url
            )
        return RedirectResponse(dashboard_url(HOME_OF_ROLE.get(principal.role, "school"), principal.org), status_code=303)

    async def scoped(
        request: Request, level: str, org: str, build: Callable[[Principal, str, Moment], dict[str, Any]], template: str
    ) -> Response:
        """Sign-in, the access policy for the scope (as the API's views apply it), the date, then the page."""
        principal = await auth.signed_in(request)
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
        pin = await run_in_threadpool(data.pin)  # one ledger time for the whole page
        values = await run_in_threadpool(build, principal, scope, Moment(as_of, pin.known_at))
        tables: list[DataTable] = values.get("tables", [])
        if request.query_params.get("format") == "csv":
            wanted = request.query_params.get("table")
            for t in tables:
                if t.id == wanted:
                    name = f"{scope.replace(':', '-')}-{t.id}-{as_of.isoformat()}.csv"
                    return Response(
                        t.csv_bytes(),
                        media_type="text/csv; charset=utf-8",
                        headers={"content-disposition": f'attachment; filename="{name}"', "cache-control": "no-store"},
                    )
            return page.error(request, 404, "Page not found", "There is no such table on this page.", principal)
        name = await run_in_threadpool(data.name_of, scope)
        tabs = dashboard_tabs(level, scope, as_of, request.url.path, principal)
        return page.render(
            request,
            template,
            principal=principal,
            level=level,
            scope=scope,
            scope_name=name,
            as_of=as_of,
            tabs=tabs,
            level_title=LEVEL_TITLES[level],
            pin=pin,
            known_at=timestamp(pin.known_at),
            refresh_seconds=f"{data.dashboard_refresh:g}",
            breadcrumbs=[
                {"text": "Dashboards", "href": "/dashboards/"},
                {"text": name, "href": dashboard_url(level, scope, as_of=as_of.isoformat())},
            ],
            **values,
        )

    def dashboard_tabs(level: str, scope: str, as_of: date, path: str, principal: Principal) -> list[dict[str, Any]]:
        day = as_of.isoformat()
        items = [
            ("", "Summary"),
            ("trends", "Trends"),
            ("units", "Schools and areas" if level != "school" else None),
            ("placements", "Placements register"),
            ("providers", "Unregistered providers"),
            ("cases", "Regions Group cases"),
        ]
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
        def build(principal: Principal, scope: str, m: Moment) -> dict[str, Any]:
            as_of = m.as_of
            body = data.metrics(level, scope, m)
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
                        bt = DataTable(
                            f"{e.name}",
                            [Column("label", "Category"), Column("value", LEVEL_TITLES[level] if level != "national" else "England", True)]
                            + ([Column("national", "England", True)] if level != "national" else []),
                            [
                                {
                                    "label": e.label(k),
                                    "value": (f["value"] or {}).get(k, 0),
                                    "national": (f["national_value"] or {}).get(k, 0),
                                }
                                for k in labels
                            ],
                            request.url.path,
                            params(request),
                        )
                        series = [
                            (
                                "This " + LEVEL_TITLES[level].lower() if level != "national" else "England",
                                [float((f["value"] or {}).get(k, 0)) for k in labels],
                            )
                        ]
                        if level != "national":
                            series.append(("England", [float((f["national_value"] or {}).get(k, 0)) for k in labels]))
                        chart = (
                            charts.bar_chart(
                                f"d-{e.name}",
                                e.title,
                                [e.label(k) for k in labels],
                                series,
                                f"Bar chart of {e.title.lower()}, {e.period(as_of)[2]}. The table below gives the same figures.",
                            )
                            if labels
                            else None
                        )
                        breakdowns.append((e, chart, bt))
                        tables.append(bt)
                        continue
                    rows.append(
                        {
                            "metric": e.title,
                            "metric__href": e.anchor,
                            "value": f["value"],
                            "national": f["national_value"],
                            "rank": f"{f['rank']} of {f['peers']}" if f["rank"] is not None else "–",
                            "quartile": quartile(f["rank"], f["peers"]),
                            "period": e.period(as_of)[2],
                        }
                    )
                table = DataTable(
                    f"summary-{group}",
                    [
                        Column("metric", "Metric"),
                        Column("value", "Value", True),
                        Column("national", "England", True),
                        Column("rank", "Rank among peers"),
                        Column("quartile", "Quartile (Q1 highest)"),
                        Column("period", "Period"),
                    ],
                    rows,
                    request.url.path,
                    params(request),
                )
                tables.append(table)
                groups.append({"group": group, "title": title, "table": table, "breakdowns": breakdowns})
            return {"title": "Summary", "groups": groups, "tables": tables}

        return await scoped(request, level, org, build, "dashboard.html")

    @router.get("/dashboards/{level}/{org}/trends", response_class=HTMLResponse)
    async def trends(request: Request, level: str, org: str) -> Response:
        def build(principal: Principal, scope: str, m: Moment) -> dict[str, Any]:
            as_of = m.as_of
            group_names = [g for g, _, _ in catalogue.groups()]
            group = request.query_params.get("group") or group_names[0]
            if group not in group_names:
                group = group_names[0]
            entries = [e for g, _, es in catalogue.groups() if g == group for e in es if e.kind != "breakdown"]
            points = data.series(level, scope, [e.name for e in entries], as_of, known_at=m.known_at)
            blocks, tables = [], []
            for e in entries:
                labels = [d.isoformat() for d, _ in points]
                mine = [charts.plottable(p.get(e.name, {}).get("value")) for _, p in points]
                national = [charts.plottable(p.get(e.name, {}).get("national_value")) for _, p in points]
                series = [("This " + LEVEL_TITLES[level].lower() if level != "national" else "England", mine)]
                if level != "national":
                    series.append(("England", national))
                chart = charts.line_chart(
                    f"t-{e.name}",
                    e.title,
                    labels,
                    series,
                    f"Line chart of {e.title.lower()} at the end of each month to {as_of.isoformat()}. The table below gives the same figures.",
                )
                table = DataTable(
                    f"trend-{e.name}",
                    [Column("date", "Date"), Column("value", "Value", True)]
                    + ([Column("national", "England", True)] if level != "national" else []),
                    [
                        {
                            "date": d.isoformat(),
                            "value": p.get(e.name, {}).get("value"),
                            "national": p.get(e.name, {}).get("national_value"),
                        }
                        for d, p in points
                    ],
                    request.url.path,
                    params(request),
                )
                blocks.append((e, chart, table))
                tables.append(table)
            groups = [(g, t) for g, t, _ in catalogue.groups()]
            return {"title": "Trends", "blocks": blocks, "tables": tables, "group": group, "groups": groups}

        return await scoped(request, level, org, build, "trends.html")

    @router.get("/dashboards/{level}/{org}/units", response_class=HTMLResponse)
    async def units(request: Request, level: str, org: str) -> Response:
        def build(principal: Principal, scope: str, m: Moment) -> dict[str, Any]:
            as_of = m.as_of
            group_names = [g for g, _, _ in catalogue.groups()]
            group = request.query_params.get("group") or group_names[0]
            if group not in group_names:
                group = group_names[0]
            child_level = data.children_level(level)
            ctx, by_metric = data.pinned_level_figures(m, child_level)
            children = data.children(level, scope, ctx)
            children = [c for c in children if data.may_read(principal, child_level, c, ctx)]
            entries = [e for g, _, es in catalogue.groups() if g == group for e in es if e.kind != "breakdown"]
            rows = []
            for c in children:
                row: dict[str, Any] = {
                    "name": data.name_of(c),
                    "name__href": dashboard_url(child_level, c, as_of=as_of.isoformat()),
                    "org": c,
                }
                for e in entries:
                    found = by_metric[e.name][0].get(c)
                    row[e.name] = found.value if found is not None else None
                rows.append(row)
            table = DataTable(
                "units",
                [Column("name", "Name"), Column("org", "Identifier")] + [Column(e.name, e.title, True) for e in entries],
                rows,
                request.url.path,
                params(request),
            )
            groups = [(g, t) for g, t, _ in catalogue.groups()]
            return {
                "title": "Schools and areas",
                "table": table,
                "tables": [table],
                "group": group,
                "groups": groups,
                "child_level": LEVEL_TITLES[child_level],
                "entries": entries,
            }

        return await scoped(request, level, org, build, "units.html")

    @router.get("/dashboards/{level}/{org}/placements", response_class=HTMLResponse)
    async def placements(request: Request, level: str, org: str) -> Response:
        def build(principal: Principal, scope: str, m: Moment) -> dict[str, Any]:
            reg = data.placements(level, scope, m)
            setting = code_list("ap_setting_types")
            names = {k: v for version in setting.versions for k, v in version.codes.items()}
            published = (reg.get("published") or {}).get("by_setting_type", {})
            types = sorted(set(reg["by_setting_type"]) | set(published))
            by_type = DataTable(
                "by-setting-type",
                [Column("type", "Setting type"), Column("open", "Open placements", True)]
                + ([Column("published", "Published DfE figure 2022/23", True)] if reg.get("published") else []),
                [
                    {"type": f"{names.get(t, t)} ({t})", "open": reg["by_setting_type"].get(t, 0), "published": published.get(t)}
                    for t in types
                ],
                request.url.path,
                params(request),
            )
            pairs = DataTable(
                "by-setting-type-and-tier",
                [Column("type", "Setting type"), Column("tier", "Tier"), Column("open", "Open placements", True)],
                [
                    {
                        "type": f"{names.get(p['setting_type'], p['setting_type'])} ({p['setting_type']})",
                        "tier": str(p["tier"]),
                        "open": p["open_placements"],
                    }
                    for p in reg["by_setting_type_and_tier"]
                ],
                request.url.path,
                params(request),
            )
            return {"title": "Placements register", "register": reg, "tables": [by_type, pairs], "by_type": by_type, "pairs": pairs}

        return await scoped(request, level, org, build, "placements.html")

    @router.get("/dashboards/{level}/{org}/providers", response_class=HTMLResponse)
    async def providers(request: Request, level: str, org: str) -> Response:
        def build(principal: Principal, scope: str, m: Moment) -> dict[str, Any]:
            watch = data.providers(level, scope, m)
            rows = [
                {
                    "provider": data.name_of(p["provider"]),
                    "id": p["provider"],
                    "la": p["la"],
                    "pupils": p["pupils"],
                    "hours": p["weekly_hours"],
                    "full_time": p["full_time_pupils"],
                    "sen": p["full_time_pupils_with_sen_or_looked_after"],
                    "flag": "Likely to need registration" if p["needs_registration"] else "No",
                    "commissioners": ", ".join(p["commissioners"]),
                }
                for p in watch["providers"]
            ]
            table = DataTable(
                "providers",
                [
                    Column("provider", "Provider"),
                    Column("id", "Identifier"),
                    Column("la", "LA"),
                    Column("pupils", "Pupils", True),
                    Column("hours", "Hours a week", True),
                    Column("full_time", "Full-time pupils", True),
                    Column("sen", "Full-time with SEN or looked after", True),
                    Column("flag", "Registration"),
                    Column("commissioners", "Commissioned by"),
                ],
                rows,
                request.url.path,
                params(request),
            )
            return {"title": "Unregistered providers", "watch": watch, "table": table, "tables": [table]}

        return await scoped(request, level, org, build, "providers.html")

    @router.get("/dashboards/{level}/{org}/cases", response_class=HTMLResponse)
    async def cases(request: Request, level: str, org: str) -> Response:
        def build(principal: Principal, scope: str, m: Moment) -> dict[str, Any]:
            found = data.cases(level, scope, m)
            rows = [
                {
                    "org": data.name_of(c["org"]),
                    "org_id": c["org"],
                    "opened_on": c["opened_on"],
                    "category": c["category"],
                    "status": c["status"],
                    "metric": (c.get("snapshot") or {}).get("metric"),
                    "metric__href": catalogue.DEFINITIONS_PATH + "#" + str((c.get("snapshot") or {}).get("metric")),
                    "metric_value": (c.get("snapshot") or {}).get("metric_value"),
                    "national_value": (c.get("snapshot") or {}).get("national_value"),
                    "decisions": len(c["decisions"]),
                    "actions": len(c["actions"]),
                    "outcome": c.get("outcome"),
                }
                for c in found
            ]
            table = DataTable(
                "cases",
                [
                    Column("org", "Organisation"),
                    Column("org_id", "Identifier"),
                    Column("opened_on", "Opened"),
                    Column("category", "Concern"),
                    Column("status", "Status"),
                    Column("metric", "Metric"),
                    Column("metric_value", "Value seen", True),
                    Column("national_value", "England then", True),
                    Column("decisions", "Decisions", True),
                    Column("actions", "Actions done", True),
                    Column("outcome", "Outcome"),
                ],
                rows,
                request.url.path,
                params(request),
            )
            return {"title": "Regions Group cases", "table": table, "tables": [table]}

        return await scoped(request, level, org, build, "cases.html")

    return router
