"""Signing in to the dashboards: who a request is from (its session cookie, or an Authorization: Bearer
header, authenticated exactly as the API does), the CSRF and same-origin check of posted forms, and the
``/sign-in`` and ``/sign-out`` pages (the session cookie itself: ``api.web.session``)."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.limits import Refusal
from api.security import client_key
from ledger.core.errors import LedgerError
from ledger.service import Principal

from .pages import Page, PrincipalOf
from .session import CSRF_COOKIE, SESSION_COOKIE, Sessions


def same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    return origin is None or origin == f"{request.url.scheme}://{request.url.netloc}"


def safe_next(target: str | None) -> str:
    return target if target and target.startswith("/dashboards/") and "//" not in target and "\\" not in target else "/dashboards/"


def to_sign_in(request: Request) -> Response:
    """A redirect to the sign-in page, which comes back here."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/sign-in?{urlencode({'next': target})}", status_code=303)


class SignIn:
    """The sessions of one app's pages; ``principal_of`` authenticates a bearer token exactly as the API does."""

    def __init__(self, page: Page, sessions: Sessions, principal_of: PrincipalOf):
        self.page, self.sessions, self.principal_of = page, sessions, principal_of

    async def signed_in(self, request: Request) -> Principal | None:
        """The principal of the session cookie, or of an Authorization: Bearer header; None if neither verifies."""
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else self.sessions.open(request.cookies.get(SESSION_COOKIE))
        if not token:
            return None
        try:
            return await self.principal_of(token, client_key(request.scope))
        except (LedgerError, Refusal):
            return None

    async def form_with_csrf(self, request: Request) -> dict[str, str] | None:
        """The posted form, if its CSRF token matches this browser's nonce and it came from this site."""
        if not same_origin(request):
            return None
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        if not self.sessions.csrf_valid(request.cookies.get(CSRF_COOKIE), form.get("csrf_token")):
            return None
        return form

    def router(self) -> APIRouter:
        """``/sign-in`` (the form, and exchanging a token for a session cookie) and ``/sign-out``."""
        router = APIRouter(include_in_schema=False)
        page, sessions, principal_of, form_with_csrf = self.page, self.sessions, self.principal_of, self.form_with_csrf

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
                    return page.error(
                        request,
                        refusal.status,
                        "Too many attempts",
                        f"Wait {max(1, round(refusal.retry_after or 1))} seconds, then try again.",
                    )
            if principal is None:
                return page.render(
                    request,
                    "sign_in.html",
                    status=401,
                    title="Sign in",
                    next=target,
                    no_store=True,
                    error="Enter a valid access token: this one is unknown, expired or revoked" if token else "Enter your access token",
                )
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

        return router
