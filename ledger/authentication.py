"""Bearer tokens: issuing and revoking the ledger's own (``plt_...``; only their hash is kept), and finding the
principal of a bearer, a ledger token or, when an identity provider is configured, an OIDC JWT (docs/access.md)."""

from __future__ import annotations

import secrets as pysecrets
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from ledger import tokens
from ledger.core import policy
from ledger.core.codes import la_codes
from ledger.core.errors import LedgerError
from ledger.core.identifiers import org_scheme
from ledger.core.orgs import fold_org
from ledger.core.policy import Principal
from ledger.core.times import timestamp

if TYPE_CHECKING:
    from ledger.service import Ledger


def issue_token(ledger: Ledger, org: str, role: str, expires_at: datetime | None = None, scope: Sequence[str] = ()) -> str:
    """A bearer token for ``org`` as ``role`` (only its hash is kept). ``scope``: for an inspector, optionally, the
    schools and areas (urn:..., la:...) it is limited to among those its organisation is inspecting."""
    problem = policy.role_problem(org, role)
    if problem:
        raise LedgerError.one("unknown_role" if role not in policy.ROLES else "role_org_mismatch", "$.role", problem)
    if scope and role != "inspector":
        raise LedgerError.one(
            "scope",
            "$.scope",
            "only an inspector token may name schools or areas (--scope), and only to narrow the "
            "areas its organisation is inspecting (inspection.started)",
        )
    for org_in_scope in scope:
        if org_scheme(org_in_scope) not in ("urn", "la"):
            raise LedgerError.one("scope", "$.scope", f"{org_in_scope!r} is not a school (urn:NNNNNN) or an area (la:NNN)")
    if not ledger.org_state(org).registered:
        raise LedgerError.one("org_unknown", "$.org", f"{org} is not registered")
    token_id = pysecrets.token_hex(4)
    token = f"plt_{token_id}_{pysecrets.token_urlsafe(32)}"
    ledger.store.tokens.insert(
        token_id,
        tokens.token_hash(token),
        org,
        role,
        timestamp(ledger.clock()),
        timestamp(expires_at) if expires_at else None,
        " ".join(scope),
    )
    return token


def revoke_token(ledger: Ledger, token_or_id: str) -> bool:
    token_id = token_or_id.split("_")[1] if token_or_id.startswith("plt_") else token_or_id
    if not ledger.store.tokens.revoke(token_id, timestamp(ledger.clock())):
        return False
    ledger.tokens.clear()  # other processes see it within tokens.RECHECK_SECONDS
    return True


def authenticate(ledger: Ledger, token: str) -> Principal | None:
    """The principal of a ledger token (``plt_...``) or, when an identity provider is configured, of a JWT; an
    inspector's with its scope as of now (``policy.inspection_scope``: the areas its organisation is inspecting)."""
    principal = _token_principal(ledger, token)
    return inspector_now(ledger, principal) if principal is not None and principal.role == "inspector" else principal


def inspector_now(ledger: Ledger, principal: Principal) -> Principal:
    """The inspector with the areas under its organisation's inspection today (every LA's ``inspection.started``,
    read in one round trip: inspectors are few, and an inspection takes effect on its day, not from a cache)."""
    areas = {f"la:{code}": ledger.secrets.org_id(f"la:{code}") for code in la_codes()}
    found = ledger.store.subjects(list(areas.values()))
    inspections = {area: fold_org(area, found[i].records).inspections.values() for area, i in areas.items() if i in found}
    schools = {s: ledger.org_state(s).la for s in principal.scope if org_scheme(s) == "urn"}
    return policy.inspection_scope(principal, inspections, ledger.clock().date(), schools)


def _token_principal(ledger: Ledger, token: str) -> Principal | None:
    parts = token.split("_")
    if len(parts) < 3 or parts[0] != "plt":
        found = ledger.oidc().principal(token) if ledger.settings.oidc_jwks else None
        return found if found is not None and ledger.org_state(found.org).registered else None
    ledger.tokens.recheck()
    found = ledger.tokens.get(token)
    if found is not None:
        return found
    generation = ledger.tokens.generation
    row = ledger.store.tokens.row(parts[1])
    if row is None:
        tokens.token_hash(token)  # the same work whether or not the id exists
        return None
    token_hash, org, role, expires_at, revoked_at, scope = row
    if not pysecrets.compare_digest(token_hash, tokens.token_hash(token)) or revoked_at:
        return None
    if expires_at and expires_at <= timestamp(ledger.clock()):
        return None
    principal = Principal(org, role, parts[1], frozenset((scope or "").split()))
    ledger.tokens.put(token, principal, datetime.fromisoformat(expires_at) if expires_at else None, generation)
    return principal
