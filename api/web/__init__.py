"""Web pages served by the API's FastAPI app: the start page, public transparency reports and signed-in
dashboards (docs/web.md), built with GOV.UK Frontend (vendored in ``static/``, served at ``/assets``)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from ledger.service import Ledger
from projections.state_cache import Allowance

from .dashboards import dashboards_router
from .data import WebData
from .pages import Page, PrincipalOf, environment
from .public import public_router
from .pupil_history import pupil_history_router
from .session import Sessions
from .signin import SignIn

STATIC = Path(__file__).resolve().parent / "static"


def mount(app: FastAPI, ledger: Ledger, principal_of: PrincipalOf, allowance: Allowance | None = None) -> WebData:
    """Add the pages and their static assets to ``app``; returns the pages' data module (one per app).
    ``principal_of`` authenticates a bearer token exactly as the API does; the pages' settings are the
    ledger.s (``Ledger.settings``, read at start). ``allowance``: the items the pages' states may hold, shared with
    the process's other caches of states (``WebData``)."""
    data = WebData(ledger, allowance=allowance)
    sessions = Sessions.from_secret(ledger.secrets.pseudonym_key)
    page = Page(environment(), sessions)
    auth = SignIn(page, sessions, principal_of)
    app.include_router(public_router(data, page, ledger.settings))
    app.include_router(auth.router())
    app.include_router(dashboards_router(data, page, auth))
    app.include_router(pupil_history_router(ledger, page, auth))
    app.mount("/assets", StaticFiles(directory=STATIC), name="assets")
    return data
