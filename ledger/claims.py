"""The operator's report of unusual claims (docs/access.md, "Unusual claims")."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from ledger.core import policy
from ledger.core.errors import LedgerError
from ledger.core.policy import Principal
from ledger.core.times import timestamp

if TYPE_CHECKING:
    from ledger.service import Ledger

CLAIM_FLAGS = frozenset({"claim_new_area"})  # accepted claims the operator is shown (``claims_report``)


def claims_report(ledger: Ledger, principal: Principal | None, since: datetime, until: datetime) -> dict[str, Any]:
    """Organisations by the number of unusual claims (events accepted with a ``CLAIM_FLAGS`` flag) and of rejections
    that depended on other organisations' records (``CROSS_ORG_CODES``), received from ``since`` until before
    ``until``: the most first, then the most recent first. The operator's only (``principal`` None: the local
    operator, on the command line)."""
    if principal is not None and not policy.may_read_claims_report(principal):
        raise policy.forbidden("operator_only", "$", "only the operator (an admin token) reads the report of unusual claims")
    if until <= since:
        raise LedgerError.one("period", "$.until", "the period ends after it starts")
    orgs: dict[str, dict[str, Any]] = {}
    for org, code, count, latest in ledger.store.claim_counts(timestamp(since), timestamp(until)):
        entry = orgs.setdefault(org, {"org": org, "total": 0, "codes": {}, "latest": latest})
        entry["total"] += count
        entry["codes"][code] = count
        entry["latest"] = max(entry["latest"], latest)
    listed = sorted(sorted(orgs.values(), key=lambda o: str(o["latest"]), reverse=True), key=lambda o: -int(o["total"]))
    return {"since": timestamp(since), "until": timestamp(until), "organisations": listed}
