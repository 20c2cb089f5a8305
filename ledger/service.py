"""The ledger's use cases, callable without HTTP or the command line: ``Ledger`` is their facade, one short method each.

Where each use case lives:

- submitting envelopes: ``submission/pipeline.py`` (its docstring states the checks in order)
- receipts: ``receipts.py``
- reads (one event, a pupil's history, the organisations): ``reads.py``
- access control and the read audit: ``access_audit.py``
- erasure: ``erasure.py``
- tokens and OIDC: ``authentication.py``
- the report of unusual claims: ``claims.py``

The names other modules import from here are re-exported below.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime
from functools import cache
from typing import Any

from ledger import access_audit, authentication, claims, erasure, reads, tokens
from ledger.access_audit import ADMIN_ORG, Reader
from ledger.config import Settings
from ledger.core import policy
from ledger.core.orgs import OrgState
from ledger.core.policy import Principal
from ledger.core.times import timestamp, utcnow
from ledger.oidc import OidcVerifier
from ledger.receipts import RECEIPT_PAYLOAD_TYPE, Receipt, ReceiptSigner
from ledger.storage.secrets import LedgerSecrets
from ledger.storage.store import Store
from ledger.submission.pipeline import Submissions
from ledger.submission.probes import PROBE_BURST, PROBE_REFILL_SECONDS, ProbeBudget

__all__ = ["ADMIN_ORG", "RECEIPT_PAYLOAD_TYPE", "ROLES", "Ledger", "Principal", "ProbeBudget", "Reader", "Receipt", "timestamp", "utcnow"]

ROLES = policy.ROLES


class Ledger:
    """The use cases over one store, with the ledger's secrets and settings."""

    def __init__(self, store: Store, ledger_secrets: LedgerSecrets, settings: Settings, clock: Callable[[], datetime] = utcnow):
        self.store = store
        self.secrets = ledger_secrets
        self.settings = settings
        self.clock = clock
        self.submissions = Submissions(self)
        self.tokens = tokens.TokenCache(store, clock)  # verified bearer tokens, so a request need not query for its own
        self.probes = ProbeBudget(PROBE_BURST, PROBE_REFILL_SECONDS)  # rejections that told a submitter about others' records

    @property
    def receipt_signer(self) -> ReceiptSigner:
        return ReceiptSigner(self.secrets, self.settings, lambda row: reads.entry_of(self, row))

    # -- submission ------------------------------------------------------------------------------

    def submit(self, raw: Any, principal: Principal | None = None) -> Receipt:
        return self.submissions.submit_batch([raw], principal, lambda i: "$", {})[0]

    def submit_batch(
        self,
        raws: Sequence[Any],
        principal: Principal | None = None,
        path_of: Callable[[int], str] = lambda i: f"$.envelopes[{i}]",
        trusted_keys: dict[str, tuple[str, bytes]] | None = None,
    ) -> list[Receipt]:
        """Accept every envelope or none. ``principal`` None means a trusted local caller."""
        return self.submissions.submit_batch(raws, principal, path_of, trusted_keys or {})

    def submit_each(self, requests: Sequence[tuple[Any, Principal | None]]) -> list[Receipt | Exception]:
        """Independent submissions committed in one transaction (group commit); each gets its own receipt or error."""
        return self.submissions.submit_each(requests)

    def org_state(self, org: str) -> OrgState:
        return self.submissions.org_state(org)

    # -- reads -------------------------------------------------------------------------------------

    def get_event(self, event_id: str, reader: Reader | None = None) -> dict[str, Any]:
        return reads.get_event(self, event_id, reader)

    def pupil_history(
        self,
        upn: str,
        as_of: date | None = None,
        known_at: datetime | None = None,
        include_envelopes: bool = False,
        reader: Reader | None = None,
    ) -> dict[str, Any]:
        return reads.pupil_history(self, upn, as_of, known_at, include_envelopes, reader)

    def list_orgs(self) -> list[dict[str, Any]]:
        return reads.list_orgs(self)

    # -- access audit, erasure, the claims report --------------------------------------------------

    def access_log(
        self,
        principal: Principal,
        upn: str | None = None,
        viewer_org: str | None = None,
        purpose: str | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> dict[str, Any]:
        return access_audit.access_log(self, principal, upn, viewer_org, purpose, after, limit)

    def erase(self, upn: str, ground: str, reference: str | None = None, forget: erasure.Forget | None = None) -> dict[str, Any]:
        """Crypto-shred one pupil; ``forget`` (the views) forgets it in the same transaction (``erasure.py``)."""
        return erasure.erase(self, upn, ground, reference, forget)

    def claims_report(self, principal: Principal | None, since: datetime, until: datetime) -> dict[str, Any]:
        return claims.claims_report(self, principal, since, until)

    # -- tokens --------------------------------------------------------------------------------------

    def issue_token(self, org: str, role: str, expires_at: datetime | None = None, scope: Sequence[str] = ()) -> str:
        return authentication.issue_token(self, org, role, expires_at, scope)

    def revoke_token(self, token_or_id: str) -> bool:
        return authentication.revoke_token(self, token_or_id)

    def authenticate(self, token: str) -> Principal | None:
        return authentication.authenticate(self, token)

    def inspector_now(self, principal: Principal) -> Principal:
        return authentication.inspector_now(self, principal)

    @cache  # noqa: B019 - one verifier (and its JWKS cache) per ledger, for the ledger's lifetime
    def oidc(self) -> OidcVerifier:
        return OidcVerifier(self.settings.oidc_jwks, self.settings.oidc_issuer, self.settings.oidc_audience)
