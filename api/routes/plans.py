"""The tailored list of settings (Green Paper proposal 5, issue 25): for a need type, a phase (or an age) and an LA,
the settings of the LA's local inclusion plan in force that meet that need, with their provision type, phases and
whether places are available. Public: no token, and no child's data is needed or stored to ask.

``tailoredList`` (``GET /tailored-list``) answers JSON; ``GET /find-a-setting`` is the same list as a GOV.UK page.
"""

from __future__ import annotations

import re
import threading
from datetime import date
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader, PrefixLoader, select_autoescape

from api.errors import Errors
from api.params import check_moment
from api.web.pages import SERVICE_NAME, finish_html
from ledger.core.codes import code_list, la_codes
from ledger.core.errors import LedgerError, Problem
from ledger.core.identifiers import org_scheme
from ledger.core.schooltime import academic_year
from ledger.service import Ledger
from projections.facts import Moment
from projections.plans import Funding, funding, open_placement_settings, tailored_list
from projections.runner import Projector, Reader

TEMPLATES = Path(__file__).resolve().parent.parent / "web" / "templates"
# Ages to phases (plan_phases): 2-4 early years, 5-10 primary, 11-15 secondary, 16-25 post-16.
PHASE_OF_AGE = [(2, 4, "early_years"), (5, 10, "primary"), (11, 15, "secondary"), (16, 25, "post16")]
MAX_QUERY_TEXT = 40


def phase_of_age(age: int) -> str | None:
    return next((phase for low, high, phase in PHASE_OF_AGE if low <= age <= high), None)


def checked_query(la: str | None, need: str | None, phase: str | None, age: int | None) -> tuple[str, str, str]:
    """The LA, need and phase asked for, or a 422 naming every bad parameter."""
    problems: list[tuple[str, str, str]] = []
    if la is not None and re.fullmatch(r"[0-9]{3}", la):
        la = f"la:{la}"  # 801 or la:801, as the public reports take it
    if not la:
        problems.append(("required", "query:la", "give the LA, e.g. la:801"))
    elif org_scheme(la) != "la" or la[3:] not in la_codes():
        problems.append(("org_id", "query:la", f"{la[:MAX_QUERY_TEXT]!r} is not a recognised LA id (la:NNN)"))
    needs = code_list("sen_need_types").all_codes()
    if not need:
        problems.append(("required", "query:need", f"give the need type, one of {', '.join(sorted(needs))}"))
    elif need not in needs:
        problems.append(("unknown_code", "query:need", f"{need[:MAX_QUERY_TEXT]!r} is not in code list sen_need_types"))
    phases = code_list("plan_phases").all_codes()
    from_age = phase_of_age(age) if age is not None else None
    if age is not None and from_age is None:
        problems.append(("age_range", "query:age", "the list covers ages 2 to 25"))
    if phase is not None and phase not in phases:
        problems.append(
            ("unknown_code", "query:phase", f"{phase[:MAX_QUERY_TEXT]!r} is not in code list plan_phases ({', '.join(sorted(phases))})")
        )
    elif phase is not None and from_age is not None and phase != from_age:
        problems.append(("phase_age_mismatch", "query:age", f"age {age} is in phase {from_age}, not {phase}"))
    elif phase is None and age is None:
        problems.append(("required", "query:phase", f"give the phase ({', '.join(sorted(phases))}) or the child's age"))
    if problems:
        raise LedgerError([Problem(code, path, message) for code, path, message in problems])
    return str(la), str(need), str(phase or from_age)


class TailoredLists:
    """The plans and open placements behind the list, read from the views once per date and log position (the list is
    public: it reads the plans view and the placement facts only, never every pupil's record)."""

    def __init__(self, ledger: Ledger):
        self.projector, self.reader = Projector(ledger.store), Reader(ledger.store)
        self._cached: tuple[Any, tuple[Funding, dict[str, str]]] | None = None
        self._lock = threading.Lock()

    def state(self, day: date) -> tuple[Funding, dict[str, str]]:
        key = (day, tuple(sorted(self.projector.positions().items())))
        with self._lock:
            if self._cached is not None and self._cached[0] == key:
                return self._cached[1]
        moment = Moment(day)
        found = (funding(self.reader, moment), open_placement_settings(self.reader, moment))
        with self._lock:
            self._cached = (key, found)
        return found

    def las_with_plans(self, day: date) -> list[str]:
        """The LAs with a local inclusion plan in force on ``day`` (for the page's choice of LA)."""
        state, _ = self.state(day)
        return sorted(la for la in state.plans if state.plan_on(la, day) is not None)

    def answer(self, la: str, need: str, phase: str, day: date) -> dict[str, Any]:
        state, open_placements = self.state(day)
        return {
            "la": la,
            "need": need,
            "phase": phase,
            "as_of": day.isoformat(),
            **tailored_list(state, la, need, phase, day, open_placements),
        }


LaQ = Annotated[str | None, Query(max_length=MAX_QUERY_TEXT, description="the LA, la:NNN")]
NeedQ = Annotated[str | None, Query(max_length=MAX_QUERY_TEXT, description="SEN primary need code (sen_need_types), e.g. ASD")]
PhaseQ = Annotated[str | None, Query(max_length=MAX_QUERY_TEXT, description="early_years, primary, secondary or post16 (or give age)")]
AgeQ = Annotated[int | None, Query(ge=0, le=99, description="the child's age in years, instead of phase")]
AsOfQ = Annotated[date | None, Query(description="the plan in force on this date (default today)")]


def environment() -> Environment:
    loader = ChoiceLoader(
        [FileSystemLoader(str(TEMPLATES)), PrefixLoader({"govuk_frontend_jinja": PackageLoader("govuk_frontend_jinja", "templates")})]
    )
    return Environment(loader=loader, autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)


def tailored_list_router(ledger: Ledger) -> APIRouter:
    lists = TailoredLists(ledger)
    router = APIRouter(tags=["plans"])
    env = environment()

    @router.get(
        "/tailored-list",
        operation_id="tailoredList",
        responses={422: {"model": Errors}},
        summary="Settings of an LA's local inclusion plan in force that meet a need type in a phase, and whether places are available",
    )
    async def tailored(la: LaQ = None, need: NeedQ = None, phase: PhaseQ = None, age: AgeQ = None, as_of: AsOfQ = None) -> dict[str, Any]:
        check_moment(as_of, None)
        checked = checked_query(la, need, phase, age)
        return await run_in_threadpool(lists.answer, *checked, as_of or ledger.clock().date())

    @router.get("/find-a-setting", include_in_schema=False, response_class=HTMLResponse)
    async def page(request: Request, la: LaQ = None, need: NeedQ = None, phase: PhaseQ = None, age: AgeQ = None) -> HTMLResponse:
        asked = any(v is not None for v in (la, need, phase, age))
        result, errors = None, []
        today = ledger.clock().date()
        if asked:
            try:
                result = await run_in_threadpool(lists.answer, *checked_query(la, need, phase, age), today)
            except LedgerError as exc:
                errors = [{"text": p.message, "href": f"#{p.path.split(':', 1)[-1]}"} for p in exc.problems]
        las = await run_in_threadpool(lambda: [(code, ledger.org_state(code).name or code) for code in lists.las_with_plans(today)])
        year = academic_year(today)
        values = {
            "title": "Find a setting for a child with special educational needs",
            "navigation": [{"href": "/", "text": "Home"}, {"href": "/find-a-setting", "text": "Find a setting", "active": True}],
            "needs": sorted(code_list("sen_need_types").codes_for(year).items()),
            "phases": list(code_list("plan_phases").codes_for(year).items()),
            "provision_types": code_list("provision_types").codes_for(year),
            "asked": {"la": la or "", "need": need or "", "phase": phase or ""},
            "result": result,
            "errors": errors,
            "las": las,
        }
        html = finish_html(env.get_template("tailored_list.html").render(service_name=SERVICE_NAME, **values))
        return HTMLResponse(html, status_code=422 if errors else 200, headers={"referrer-policy": "same-origin"})

    return router
