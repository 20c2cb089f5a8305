"""The frame every web page is rendered in (server-rendered with Jinja2 and GOV.UK Frontend): the templates,
the navigation, the signed-in principal and the CSRF token each template gets, the response headers, the
error page; and the date and status helpers the pages share. The pages themselves: ``api.web.public``
(start page, public reports), ``api.web.signin`` and ``api.web.dashboards``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader, PrefixLoader, select_autoescape

from api.errors import STATUS
from ledger.core.catalogue import EARLIEST_DATE
from ledger.core.errors import LedgerError
from ledger.service import Principal

from . import catalogue
from .session import CSRF_COOKIE, Sessions

SERVICE_NAME = "Pupil movement transparency"
TEMPLATES = Path(__file__).resolve().parent / "templates"
LATEST_AS_OF = date(2100, 12, 31)

PrincipalOf = Callable[[str | None, str], Awaitable[Principal]]  # (token, client address): api.security.Authenticator.principal


def environment() -> Environment:
    loader = ChoiceLoader(
        [FileSystemLoader(str(TEMPLATES)), PrefixLoader({"govuk_frontend_jinja": PackageLoader("govuk_frontend_jinja", "templates")})]
    )
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
        nav = [
            {"href": "/", "text": "Home", "active": path == "/"},
            {"href": "/reports/england", "text": "Public reports", "active": path.startswith("/reports/") and not definitions},
            {"href": "/dashboards/", "text": "Dashboards", "active": path.startswith(("/dashboards", "/sign-in"))},
            {"href": catalogue.DEFINITIONS_PATH, "text": "Definitions", "active": definitions},
        ]
        return {"navigation": nav, "path": path, "principal": None, "csrf_token": ""}

    @staticmethod
    def _nonce(request: Request) -> tuple[str, bool]:
        """This browser's CSRF nonce (its cookie), or a new one to set."""
        nonce = request.cookies.get(CSRF_COOKIE)
        if nonce is None or not 16 <= len(nonce) <= 64:
            return Sessions.new_nonce(), True
        return nonce, False

    def render(
        self, request: Request, template: str, status: int = 200, principal: Principal | None = None, no_store: bool = False, **values: Any
    ) -> HTMLResponse:
        nonce, fresh = self._nonce(request)
        body = self.env.get_template(template).render(
            **{**self.common(request), "principal": principal, "csrf_token": self.sessions.csrf_token(nonce), **values}
        )
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
