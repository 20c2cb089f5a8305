"""Submission (design.md 3.1): organisations post signed DSSE envelopes, one (``submitEvent``) or many in one
transaction (``submitBatch``); every 201 means durably committed and carries a receipt signed by the ledger.

``POST /events`` is the hot path: ``DirectRoute`` serves it straight from the ASGI call, and concurrent calls share
one transaction (``ledger.group_commit``). A write the database cannot take is refused before it is queued."""

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth import Caller, bearer, bearer_principal
from api.errors import Errors, ledger_error_response, refusal_response
from api.limits import Refusal, read_json
from ledger.core import jcs
from ledger.core.codes import SCHEMAS_DIR
from ledger.core.errors import Category, LedgerError
from ledger.group_commit import GroupCommitter
from ledger.service import Ledger
from ledger.storage import database

ENVELOPE_SCHEMA = json.loads((SCHEMAS_DIR / "envelope.schema.json").read_text("utf-8"))
for _k in ("$schema", "$id"):
    ENVELOPE_SCHEMA.pop(_k, None)

Endpoint = Callable[[Request], Awaitable[Response]]


class Flag(BaseModel):
    code: str = Field(examples=["late_report"])
    message: str


class ReceiptOut(BaseModel):
    event_id: str
    sequence: int = Field(description="ledger sequence (commit order; may have gaps)")
    event_digest: str = Field(description="hex SHA-256 of the payload bytes")
    envelope_digest: str = Field(description="hex SHA-256 of the envelope's JCS bytes")
    received_at: str
    status: str = Field(examples=["created"], description="created, or duplicate for a replay of the same envelope")
    flags: list[Flag]
    receipt: dict[str, Any] = Field(
        description="DSSE envelope (payloadType application/vnd.pupil-ledger.receipt+json) signed by the ledger key"
    )


class BatchOut(BaseModel):
    receipts: list[ReceiptOut]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Errors, "description": desc}
    for status, desc in [
        (400, "malformed"),
        (401, "no or bad bearer token"),
        (403, "signature, key or submitter not accepted"),
        (409, "event_id reused with other bytes"),
        (413, "body too large"),
        (415, "the body is not application/json"),
        (422, "invalid event"),
        (429, "rate limited, or too many rejections that depended on other organisations' records: retry after Retry-After seconds"),
        (503, "the database is not answering: nothing was stored; retry after Retry-After seconds"),
        (504, "the database stopped answering while committing: resubmit the same bytes (a stored event is answered 200)"),
        (507, "the ledger's storage is full: nothing was stored"),
    ]
}


def body_too_large(reason: str) -> LedgerError:
    return LedgerError.one("body_too_large", "$", reason, Category.TOO_LARGE)


def parse_json(raw: bytes) -> Any:
    if not raw:
        raise LedgerError.one("empty_body", "$", "the request body is empty", Category.MALFORMED)
    try:
        return jcs.parse(raw)
    except jcs.NotJSON as exc:
        raise LedgerError.one("malformed_json", "$", f"the body is not JSON: {exc}", Category.MALFORMED) from None


def submission_router(ledger: Ledger, committer: GroupCommitter) -> tuple[APIRouter, Endpoint]:
    """The submission routes, and the endpoint of ``POST /events`` for ``DirectRoute`` to serve."""
    settings = ledger.settings
    liveness = database.liveness_of(ledger.store.app.recorder)
    router = APIRouter(tags=["submission"])

    def refuse_writes_while_away() -> None:
        """A write the database cannot take is refused before it is queued: certainly nothing of it is stored."""
        if liveness.away:
            failure = database.UNAVAILABLE
            raise Refusal(failure.status, failure.code, "$", failure.message, failure.retry_after)

    async def accept_event(request: Request) -> JSONResponse:
        caller = await bearer_principal(request)
        raw = parse_json(await read_json(request, settings.max_event_bytes, body_too_large))
        refuse_writes_while_away()
        receipt = await asyncio.wrap_future(committer.enqueue(raw, caller))  # answered once its group has committed
        return JSONResponse(receipt.as_dict(), status_code=201 if receipt.created else 200)

    @router.post(
        "/events",
        operation_id="submitEvent",
        status_code=201,
        response_model=ReceiptOut,
        summary="Submit one signed event",
        responses={200: {"model": ReceiptOut, "description": "replay of an accepted envelope"}, **ERROR_RESPONSES},
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": ENVELOPE_SCHEMA}}},
            "security": [{bearer.scheme_name: []}],
        },
    )
    async def submit_event(request: Request) -> JSONResponse:
        return await accept_event(request)  # served by DirectRoute; here for the OpenAPI document and its checks

    @router.post(
        "/batches",
        operation_id="submitBatch",
        status_code=201,
        response_model=BatchOut,
        summary="Submit many signed events in one transaction (all or none)",
        responses={200: {"model": BatchOut, "description": "every envelope was a replay"}, **ERROR_RESPONSES},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["envelopes"],
                            "properties": {"envelopes": {"type": "array", "items": ENVELOPE_SCHEMA}},
                        }
                    }
                },
            }
        },
    )
    async def submit_batch(request: Request, caller: Caller) -> JSONResponse:
        raw = parse_json(await read_json(request, settings.max_batch_bytes, body_too_large))
        if not isinstance(raw, dict) or not isinstance(raw.get("envelopes"), list) or set(raw) != {"envelopes"}:
            raise LedgerError.one("batch_shape", "$.envelopes", 'the body is {"envelopes": [envelope, ...]}', Category.MALFORMED)
        if not raw["envelopes"]:
            raise LedgerError.one("batch_empty", "$.envelopes", "the batch has no envelopes", Category.INVALID)
        refuse_writes_while_away()
        receipts = await run_in_threadpool(ledger.submit_batch, raw["envelopes"], caller)
        created = any(r.created for r in receipts)
        return JSONResponse({"receipts": [r.as_dict() for r in receipts]}, status_code=201 if created else 200)

    return router, accept_event


class DirectRoute:
    """One route served straight from the ASGI call, before FastAPI's routing, dependency solving and exception
    layers (measured in docs/performance.md, sixth round). The FastAPI route of the same method and path stays, and
    documents it; ``endpoint`` is what that route calls, and a ``LedgerError`` or ``Refusal`` it raises is answered
    here as the app's handlers answer it (``api.errors``). Anything else propagates to the guard, which answers it
    without its details (``api.errors.failure_response``)."""

    def __init__(self, app: ASGIApp, method: str, path: str, endpoint: Endpoint):
        self.app, self.method, self.path, self.endpoint = app, method, path, endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != self.method:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await self.endpoint(request)
        except LedgerError as exc:
            response = ledger_error_response(exc)
        except Refusal as exc:
            response = refusal_response(exc)
        await response(scope, receive, send)
