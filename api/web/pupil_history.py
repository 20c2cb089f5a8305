"""A pupil's history in the dashboards: the one identified page, authorised by relationship and recorded, as the
API's pupilHistory (a UPN, a purpose and a reference posted with the form's CSRF token)."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from ledger.core import policy
from ledger.core.codes import code_list
from ledger.core.errors import LedgerError
from ledger.service import Ledger, Principal, Reader

from .pages import Page, status_of
from .signin import SignIn, to_sign_in


def pupil_history_router(ledger: Ledger, page: Page, auth: SignIn) -> APIRouter:
    """The pupil history form and its answer for those ``auth`` signs in, read from ``ledger``."""
    router = APIRouter(include_in_schema=False)

    def purposes_for(principal: Principal) -> list[tuple[str, str]]:
        """The purposes the role may state (the policy's list), default first."""
        _, allowed = policy.PURPOSES.get(principal.role, (None, ()))
        names = code_list("access_purposes")
        titles = {k: v for version in names.versions for k, v in version.codes.items()}
        return [(p, titles.get(p, p)) for p in allowed]

    @router.get("/dashboards/pupil", response_class=HTMLResponse)
    async def pupil_form(request: Request) -> Response:
        principal = await auth.signed_in(request)
        if principal is None:
            return to_sign_in(request)
        return page.render(
            request,
            "pupil.html",
            principal=principal,
            title="A pupil's history",
            purposes=purposes_for(principal),
            history=None,
            no_store=True,
            breadcrumbs=[{"text": "Dashboards", "href": "/dashboards/"}],
        )

    @router.post("/dashboards/pupil", response_class=HTMLResponse)
    async def pupil_history(request: Request) -> Response:
        principal = await auth.signed_in(request)
        if principal is None:
            return to_sign_in(request)
        form = await auth.form_with_csrf(request)
        if form is None:
            return page.error(request, 403, "Your form has expired", "Go back, reload the page and try again.", principal)
        upn = (form.get("upn") or "").strip().upper()
        purpose = form.get("purpose") or None
        reference = (form.get("reference") or "").strip() or None
        values: dict[str, Any] = {
            "title": "A pupil's history",
            "purposes": purposes_for(principal),
            "upn": upn,
            "purpose": purpose,
            "reference": reference or "",
            "history": None,
            "breadcrumbs": [{"text": "Dashboards", "href": "/dashboards/"}],
        }
        if not re.fullmatch(r"[A-Z][0-9]{11}[0-9A-Z]", upn):
            return page.render(
                request,
                "pupil.html",
                status=422,
                principal=principal,
                no_store=True,
                errors=[("upn", "Enter a 13-character UPN, for example H801200001001")],
                **values,
            )
        if reference and not re.fullmatch(r"[A-Za-z0-9._/-]{1,64}", reference):
            return page.render(
                request,
                "pupil.html",
                status=422,
                principal=principal,
                no_store=True,
                errors=[("reference", "A reference is up to 64 letters, digits and . _ / -")],
                **values,
            )
        try:
            history = await run_in_threadpool(
                ledger.pupil_history, upn, None, None, False, Reader(principal, purpose, reference, "pupilHistory")
            )
        except LedgerError as exc:
            return page.render(
                request,
                "pupil.html",
                status=status_of(exc),
                principal=principal,
                no_store=True,
                errors=[("upn", f"{p.message} ({p.code})") for p in exc.problems],
                **values,
            )
        return page.render(request, "pupil.html", principal=principal, no_store=True, **{**values, "history": history})

    return router
