"""The operator's reports (docs/access.md): which organisations make unusual claims or probe the rules. Admin token
only; the ledger refuses any other caller."""

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from api.auth import Caller
from api.params import named_as_query
from api.routes.reads import READ_RESPONSES
from ledger.core.errors import LedgerError
from ledger.service import Ledger


def admin_router(ledger: Ledger) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get(
        "/operator/claims",
        operation_id="unusualClaims",
        summary="Organisations by their unusual claims and rule probes in a period (the operator's report)",
        description="Events accepted with claim_new_area and rejections that depended on other organisations' records of the "
        "pupil, counted per submitting organisation, most first, then newest first (docs/access.md). Admin token only.",
        responses=READ_RESPONSES,
    )
    async def unusual_claims(
        caller: Caller,
        since: Annotated[date | None, Query(description="first day of the period (default: 30 days ago)")] = None,
        until: Annotated[date | None, Query(description="last day of the period (default: today)")] = None,
    ) -> dict[str, Any]:
        with named_as_query("since", "until"):
            return await run_in_threadpool(ledger.claims_report, caller, *claims_period(ledger.clock(), since, until))

    return router


def claims_period(now: datetime, since: date | None, until: date | None) -> tuple[datetime, datetime]:
    """The report's period as times: from the start of ``since`` to the end of ``until`` (UTC days), by default the last 30 days."""
    last = until or now.astimezone(UTC).date()
    if last >= date.max or (since is None and last < date.min + timedelta(days=29)):
        raise LedgerError.one("period", "query:until", "the period must lie between years 1 and 9999")
    first = since or last - timedelta(days=29)
    return datetime.combine(first, time.min, UTC), datetime.combine(last + timedelta(days=1), time.min, UTC)
