"""The operator's research actions, as events signed by the ledger's key (dfe:admin): approve and revoke
projects, and record a release (``research.export_released``, which the ledger alone writes)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date
from typing import Any

from ledger import own_events
from ledger.core.errors import Category, LedgerError
from ledger.research.releases import all_projects
from ledger.service import ADMIN_ORG, Ledger, Receipt


def approve_project(ledger: Ledger, researcher: str, data: Mapping[str, Any]) -> Receipt:
    """``research.project_approved`` for ``researcher``; the project id must be new in the whole ledger."""
    project_id = data.get("project")
    if isinstance(project_id, str) and project_id in all_projects(ledger.store):
        raise LedgerError.one("project_exists", "$.payload.data.project", f"project {project_id} is already approved", Category.CONFLICT)
    return ledger.submit(own_events.admin_event(ledger, "research.project_approved", researcher, dict(data)))


def revoke_project(ledger: Ledger, project_id: str, reason: str, reference: str | None = None) -> Receipt:
    project = all_projects(ledger.store).get(project_id)
    if project is None:
        raise LedgerError.one("project_unknown", "$.project", f"no project {project_id}", Category.NOT_FOUND)
    data: dict[str, Any] = {"project": project_id, "reason": reason, **({"reference": reference} if reference else {})}
    return ledger.submit(own_events.admin_event(ledger, "research.project_revoked", project.researcher, data))


def record_release(ledger: Ledger, release_id: str, researcher: str, data: Mapping[str, Any], today: date | None = None) -> Receipt:
    """Append ``research.export_released`` with event id ``release_id``: the ledger's rules check once more, as it is
    written, that the project is approved, unrevoked and unexpired, and the variables approved."""
    now = ledger.clock()
    body = own_events.event_body(
        "research.export_released", ADMIN_ORG, {"org": researcher}, dict(data), today or now.date(), now, event_id=release_id
    )
    return ledger.submit(own_events.signed(body, ledger.secrets.signing_key))


def new_release_id() -> str:
    return str(uuid.uuid4())
