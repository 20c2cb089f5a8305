"""Web pages served by the API's FastAPI app: the start page, public transparency reports and signed-in
dashboards (docs/web.md), built with GOV.UK Frontend (vendored in ``static/``, served at ``/assets``)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from ledger.service import Ledger

from .data import WebData
from .pages import PrincipalOf, web_router

STATIC = Path(__file__).resolve().parent / "static"


def mount(app: FastAPI, ledger: Ledger, principal_of: PrincipalOf) -> WebData:
    """Add the pages and their static assets to ``app``; returns the pages' data module (one per app)."""
    data = WebData(ledger)
    app.include_router(web_router(ledger, principal_of, data))
    app.mount("/assets", StaticFiles(directory=STATIC), name="assets")
    return data
