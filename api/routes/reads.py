"""Reads of pupil records (docs/access.md): one event, a pupil's bitemporal history, and the access log of who looked
at them and why. Each read is authorised by the caller's relationship with the pupil and recorded."""

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi import Path as FastAPIPath
from fastapi.concurrency import run_in_threadpool

from api.auth import Caller
from api.errors import Errors
from api.params import check_moment, named_as_query
from ledger.service import Ledger, Reader

READ_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Errors, "description": desc}
    for status, desc in [
        (400, "no purpose stated where one is required"),
        (401, "no or bad bearer token"),
        (403, "no current relationship with the pupil, or the role may not read it"),
        (404, "not found"),
        (422, "invalid query"),
        (429, "rate limited: retry after Retry-After seconds"),
    ]
}
Purpose = Annotated[
    str | None, Query(description="why you read it (code list access_purposes); inspectors and the operator must state one", max_length=40)
]
Reference = Annotated[
    str | None, Query(description="your case or inspection reference, recorded with the view", pattern="^[A-Za-z0-9._/-]{1,64}$")
]


def reads_router(ledger: Ledger) -> APIRouter:
    router = APIRouter(tags=["reads"])

    @router.get(
        "/events/{event_id}",
        operation_id="getEvent",
        summary="One accepted event with its envelope and receipt",
        description="Reading a pupil event is authorised by relationship (docs/access.md) and recorded as access.record_viewed.",
        responses=READ_RESPONSES,
    )
    async def get_event(event_id: str, caller: Caller, purpose: Purpose = None, reference: Reference = None) -> dict[str, Any]:
        with named_as_query("reference", "purpose"):
            return await run_in_threadpool(ledger.get_event, event_id, Reader(caller, purpose, reference, "getEvent"))

    @router.get(
        "/pupils/{upn}/history",
        operation_id="pupilHistory",
        summary="A pupil's history as of an effective date, as known at a ledger time (bitemporal)",
        description="Authorised by relationship, bounded in time (docs/access.md); every read is recorded as access.record_viewed.",
        responses=READ_RESPONSES,
    )
    async def pupil_history(
        upn: Annotated[str, FastAPIPath(pattern="^[A-Z][0-9]{11}[0-9A-Z]$", description="13-character UPN")],
        caller: Caller,
        as_of: Annotated[date | None, Query(description="effective date: only events that occurred on or before it")] = None,
        known_at: Annotated[
            datetime | None, Query(description="ledger time: only events received at or before it (RFC 3339, with zone)")
        ] = None,
        include_envelopes: bool = False,
        purpose: Purpose = None,
        reference: Reference = None,
    ) -> dict[str, Any]:
        check_moment(as_of, known_at)
        reader = Reader(caller, purpose, reference, "pupilHistory")
        with named_as_query("reference", "purpose"):
            return await run_in_threadpool(ledger.pupil_history, upn, as_of, known_at, include_envelopes, reader)

    @router.get(
        "/access-log",
        operation_id="accessLog",
        summary="Who looked at pupil records and why: one pupil's views (subject access), or an organisation's (oversight)",
        description="With `upn`: the views of that pupil's record, for a principal that may read the record (the look is itself "
        "recorded). Without: the views by `org`'s principals; the operator (admin) may omit `org` to see every view.",
        responses=READ_RESPONSES,
    )
    async def access_log(
        caller: Caller,
        purpose: Purpose = None,
        upn: Annotated[str | None, Query(description="the pupil (subject access request)", pattern="^[A-Z][0-9]{11}[0-9A-Z]$")] = None,
        org: Annotated[str | None, Query(description="views by this organisation's principals (oversight)", max_length=40)] = None,
        after: Annotated[int, Query(ge=0, le=2**62, description="only views after this ledger sequence (paging)")] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        with named_as_query("org", "purpose"):
            return await run_in_threadpool(ledger.access_log, caller, upn, org, purpose, after, limit)

    return router
