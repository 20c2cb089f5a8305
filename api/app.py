"""FastAPI application: routes, authentication, error format (design.md 3.4)."""


import asyncio
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as FastAPIPath
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from api import security, web
from api.background import Background, Follower
from api.cli_feed import feed_report
from api.limits import Refusal, read_json
from api.log_routes import event_proof_route, log_router
from api.params import check_moment, named_as_query
from api.research import research_router
from api.settings_list import tailored_list_router
from api.views import views_router
from ledger import signatures
from ledger.core import jcs
from ledger.core.codes import SCHEMAS_DIR
from ledger.core.errors import Category, LedgerError
from ledger.group_commit import GroupCommitter
from ledger.service import Ledger, Principal, Reader
from ledger.storage import database
from ledger.tools.admin import log_vkey

STATUS = {
    Category.MALFORMED: 400, Category.UNAUTHENTICATED: 401, Category.FORBIDDEN: 403, Category.NOT_FOUND: 404,
    Category.CONFLICT: 409, Category.TOO_LARGE: 413, Category.INVALID: 422, Category.RATE_LIMITED: 429,
}
ENVELOPE_SCHEMA = json.loads((SCHEMAS_DIR / "envelope.schema.json").read_text("utf-8"))
for _k in ("$schema", "$id"):
    ENVELOPE_SCHEMA.pop(_k, None)


class ErrorItem(BaseModel):
    code: str = Field(examples=["upn_check_letter"])
    path: str = Field(examples=["$.payload.subject.upn"], description="JSONPath into the request")
    message: str


class Errors(BaseModel):
    errors: list[ErrorItem]


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
    receipt: dict[str, Any] = Field(description="DSSE envelope (payloadType application/vnd.pupil-ledger.receipt+json) signed by the ledger key")


class BatchIn(BaseModel):
    envelopes: list[dict[str, Any]] = Field(description="DSSE envelopes, all accepted or none")


class BatchOut(BaseModel):
    receipts: list[ReceiptOut]


class Health(BaseModel):
    status: str
    database: str
    latest_sequence: int = Field(description="highest ledger sequence committed")
    feed: dict[str, Any] | None = Field(default=None, description="with PUPIL_LEDGER_KAFKA: the relay's position, last publish and error; "
                                        "each consumer group's offset, end and lag per partition, and dead letters (docs/deployment.md)")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Errors, "description": desc}
    for status, desc in [(400, "malformed"), (401, "no or bad bearer token"), (403, "signature, key or submitter not accepted"),
                         (409, "event_id reused with other bytes"), (413, "body too large"), (415, "the body is not application/json"),
                         (422, "invalid event"),
                         (429, "rate limited, or too many rejections that depended on other organisations' records: retry after Retry-After seconds"),
                         (503, "the database is not answering: nothing was stored; retry after Retry-After seconds"),
                         (504, "the database stopped answering while committing: resubmit the same bytes (a stored event is answered 200)"),
                         (507, "the ledger's storage is full: nothing was stored")]
}
HEALTH_SECONDS = 1.5  # /healthz answers within this, whatever the database does


READ_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Errors, "description": desc}
    for status, desc in [(400, "no purpose stated where one is required"), (401, "no or bad bearer token"),
                         (403, "no current relationship with the pupil, or the role may not read it"), (404, "not found"),
                         (422, "invalid query"), (429, "rate limited: retry after Retry-After seconds")]
}
Purpose = Annotated[str | None, Query(description="why you read it (code list access_purposes); inspectors and the operator must state one",
                                      max_length=40)]
Reference = Annotated[str | None, Query(description="your case or inspection reference, recorded with the view", pattern="^[A-Za-z0-9._/-]{1,64}$")]


def error_response(status: int, problems: list[dict[str, str]], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"errors": problems}, status_code=status, headers=headers)


def body_too_large(reason: str) -> LedgerError:
    return LedgerError.one("body_too_large", "$", reason, Category.TOO_LARGE)


def parse_json(raw: bytes) -> Any:
    if not raw:
        raise LedgerError.one("empty_body", "$", "the request body is empty", Category.MALFORMED)
    try:
        return jcs.parse(raw)
    except jcs.NotJSON as exc:
        raise LedgerError.one("malformed_json", "$", f"the body is not JSON: {exc}", Category.MALFORMED) from None


class DirectRoute:
    """One route served straight from the ASGI call, before FastAPI's routing, dependency solving and exception
    layers (measured in docs/performance.md, sixth round). The FastAPI route of the same
    method and path stays, and documents it; ``endpoint`` is what that route calls, and a ``LedgerError`` it raises
    is answered by ``on_error``, the app's handler for it, a ``Refusal`` by itself. Anything else propagates to the
    guard, which answers it without its details (``security.failure_response``)."""

    def __init__(self, app: ASGIApp, method: str, path: str, endpoint: Callable[[Request], Awaitable[Response]],
                 on_error: Callable[[Request, LedgerError], Awaitable[Response]]):
        self.app, self.method, self.path, self.endpoint, self.on_error = app, method, path, endpoint, on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != self.method:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await self.endpoint(request)
        except LedgerError as exc:
            response = await self.on_error(request, exc)
        except Refusal as exc:
            response = exc.response()
        await response(scope, receive, send)


def create_app(ledger: Ledger, followers: Sequence[Follower] = ()) -> FastAPI:
    """The API; ``followers`` run in background threads for the app's lifetime."""
    settings = ledger.settings
    background = Background(followers, idle_seconds=settings.follower_idle, pace_seconds=settings.follower_pace)
    committer = GroupCommitter(ledger)  # concurrent submitEvent calls share one transaction
    liveness = database.liveness_of(ledger.store.app.recorder)
    health_checks = ThreadPoolExecutor(2, thread_name_prefix="healthz")  # its own threads: never queued behind busy routes

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        background.start()
        try:
            yield
        finally:
            committer.stop()
            background.stop()
            health_checks.shutdown(wait=False)
            signatures.shutdown()  # the signature workers stop with the app, not at interpreter exit

    app = FastAPI(
        lifespan=lifespan,
        title="Pupil Movement Ledger",
        version="1.0.0",
        description=(
            "National system of record for pupil movements in SEND and alternative provision. "
            "Post signed DSSE envelopes (design.md 3.1); every 201 means durably committed and carries a "
            "receipt signed by the ledger. Errors are `{\"errors\": [{code, path, message}]}`."
        ),
    )
    bearer = HTTPBearer(auto_error=False, description="token issued by `pupil-ledger tokens issue`")

    @app.exception_handler(LedgerError)
    async def ledger_error(_: Request, exc: LedgerError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.category is Category.UNAUTHENTICATED else None
        if exc.category is Category.RATE_LIMITED:
            headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after or 1)))}
        return error_response(STATUS[exc.category], [p.as_dict() for p in exc.problems], headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            loc = [str(part) for part in err.get("loc", ())]
            where = loc[0] if loc else "body"
            path = "$" + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc[1:])
            problems.append({"code": f"invalid_{where}", "path": path if where == "body" else f"{where}:{'.'.join(loc[1:])}", "message": err.get("msg", "invalid")})
        return error_response(400 if any(e.get("type") == "json_invalid" for e in exc.errors()) else 422, problems)

    @app.exception_handler(Refusal)
    async def refusal(_: Request, exc: Refusal) -> JSONResponse:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, [{"code": "http_error", "path": "$", "message": str(exc.detail)}])

    authenticator = security.Authenticator(ledger)

    async def principal(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
        return await authenticator.principal(credentials.credentials if credentials else None, security.client_key(request.scope))

    Caller = Annotated[Principal, Depends(principal)]

    @app.post(
        "/events", operation_id="submitEvent", status_code=201, response_model=ReceiptOut, tags=["submission"],
        summary="Submit one signed event", responses={200: {"model": ReceiptOut, "description": "replay of an accepted envelope"}, **ERROR_RESPONSES},
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": ENVELOPE_SCHEMA}}},
                       "security": [{bearer.scheme_name: []}]},
    )
    async def submit_event(request: Request) -> JSONResponse:
        return await accept_event(request)  # served by DirectRoute below; here for the OpenAPI document and its checks

    def refuse_writes_while_away() -> None:
        """A write the database cannot take is refused before it is queued: certainly nothing of it is stored."""
        if liveness.away:
            failure = database.UNAVAILABLE
            raise Refusal(failure.status, failure.code, "$", failure.message, failure.retry_after)

    async def accept_event(request: Request) -> JSONResponse:
        # The hot path reads its bearer itself, as ``bearer`` would: FastAPI's dependency solving was a third of the
        # event loop's work per request.
        scheme, token = get_authorization_scheme_param(request.headers.get("authorization"))
        caller = await authenticator.principal(token if scheme.lower() == "bearer" else None, security.client_key(request.scope))
        raw = parse_json(await read_json(request, settings.max_event_bytes, body_too_large))
        refuse_writes_while_away()
        receipt = await asyncio.wrap_future(committer.enqueue(raw, caller))  # answered once its group has committed
        return JSONResponse(receipt.as_dict(), status_code=201 if receipt.created else 200)

    # Inside the guard (rate limits, headers), outside FastAPI's own layers: added first, so it wraps only those.
    app.add_middleware(DirectRoute, method="POST", path="/events", endpoint=accept_event, on_error=ledger_error)
    security.install(app, security.RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst))

    @app.post(
        "/batches", operation_id="submitBatch", status_code=201, response_model=BatchOut, tags=["submission"],
        summary="Submit many signed events in one transaction (all or none)",
        responses={200: {"model": BatchOut, "description": "every envelope was a replay"}, **ERROR_RESPONSES},
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["envelopes"], "properties": {"envelopes": {"type": "array", "items": ENVELOPE_SCHEMA}}}}}}},
    )
    async def submit_batch(request: Request, caller: Caller) -> JSONResponse:
        raw = parse_json(await read_json(request, settings.max_batch_bytes, body_too_large))
        if not isinstance(raw, dict) or not isinstance(raw.get("envelopes"), list) or set(raw) != {"envelopes"}:
            raise LedgerError.one("batch_shape", "$.envelopes", "the body is {\"envelopes\": [envelope, ...]}", Category.MALFORMED)
        if not raw["envelopes"]:
            raise LedgerError.one("batch_empty", "$.envelopes", "the batch has no envelopes", Category.INVALID)
        refuse_writes_while_away()
        receipts = await run_in_threadpool(ledger.submit_batch, raw["envelopes"], caller)
        created = any(r.created for r in receipts)
        return JSONResponse({"receipts": [r.as_dict() for r in receipts]}, status_code=201 if created else 200)

    @app.get("/events/{event_id}", operation_id="getEvent", tags=["reads"], summary="One accepted event with its envelope and receipt",
             description="Reading a pupil event is authorised by relationship (docs/access.md) and recorded as access.record_viewed.",
             responses=READ_RESPONSES)
    async def get_event(event_id: str, caller: Caller, purpose: Purpose = None, reference: Reference = None) -> dict[str, Any]:
        with named_as_query("reference"):
            return await run_in_threadpool(ledger.get_event, event_id, Reader(caller, purpose, reference, "getEvent"))

    @app.get("/pupils/{upn}/history", operation_id="pupilHistory", tags=["reads"],
             summary="A pupil's history as of an effective date, as known at a ledger time (bitemporal)",
             description="Authorised by relationship, bounded in time (docs/access.md); every read is recorded as access.record_viewed.",
             responses=READ_RESPONSES)
    async def pupil_history(
        upn: Annotated[str, FastAPIPath(pattern="^[A-Z][0-9]{11}[0-9A-Z]$", description="13-character UPN")], caller: Caller,
        as_of: Annotated[date | None, Query(description="effective date: only events that occurred on or before it")] = None,
        known_at: Annotated[datetime | None, Query(description="ledger time: only events received at or before it (RFC 3339, with zone)")] = None,
        include_envelopes: bool = False, purpose: Purpose = None, reference: Reference = None,
    ) -> dict[str, Any]:
        check_moment(as_of, known_at)
        reader = Reader(caller, purpose, reference, "pupilHistory")
        with named_as_query("reference"):
            return await run_in_threadpool(ledger.pupil_history, upn, as_of, known_at, include_envelopes, reader)

    @app.get("/access-log", operation_id="accessLog", tags=["reads"],
             summary="Who looked at pupil records and why: one pupil's views (subject access), or an organisation's (oversight)",
             description="With `upn`: the views of that pupil's record, for a principal that may read the record (the look is itself "
                         "recorded). Without: the views by `org`'s principals; the operator (admin) may omit `org` to see every view.",
             responses=READ_RESPONSES)
    async def access_log(
        caller: Caller, purpose: Purpose = None,
        upn: Annotated[str | None, Query(description="the pupil (subject access request)", pattern="^[A-Z][0-9]{11}[0-9A-Z]$")] = None,
        org: Annotated[str | None, Query(description="views by this organisation's principals (oversight)", max_length=40)] = None,
        after: Annotated[int, Query(ge=0, le=2**62, description="only views after this ledger sequence (paging)")] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        with named_as_query("org"):
            return await run_in_threadpool(ledger.access_log, caller, upn, org, purpose, after, limit)

    @app.get("/operator/claims", operation_id="unusualClaims", tags=["operations"],
             summary="Organisations by their unusual claims and rule probes in a period (the operator's report)",
             description="Events accepted with claim_new_area and rejections that depended on other organisations' records of the "
                         "pupil, counted per submitting organisation, most first, then newest first (docs/access.md). Admin token only.",
             responses=READ_RESPONSES)
    async def unusual_claims(
        caller: Caller,
        since: Annotated[date | None, Query(description="first day of the period (default: 30 days ago)")] = None,
        until: Annotated[date | None, Query(description="last day of the period (default: today)")] = None,
    ) -> dict[str, Any]:
        with named_as_query("since", "until"):
            return await run_in_threadpool(ledger.claims_report, caller, *claims_period(ledger.clock(), since, until))

    @app.get("/healthz", operation_id="healthz", response_model=Health, tags=["operations"], responses={503: {"model": Errors}},
             description=f"Answers within {HEALTH_SECONDS:g} s: 503 `database_unavailable` (with Retry-After) when the database does not.")
    async def healthz() -> Any:
        unavailable = Refusal(503, "database_unavailable", "$", "the database is not answering", database.RETRY_AFTER_SECONDS)
        if liveness.away:
            return unavailable.response()
        try:
            count = await asyncio.wait_for(asyncio.wrap_future(health_checks.submit(ledger.store.max_sequence)), HEALTH_SECONDS)
            feed = await asyncio.wait_for(asyncio.wrap_future(health_checks.submit(feed_report, ledger)), HEALTH_SECONDS)
        except Exception:  # noqa: BLE001 - any database failure, or no answer in time, is "unhealthy"; details stay here
            return unavailable.response()
        return Health(status="ok", database="postgresql" if ledger.store.is_postgres else "sqlite", latest_sequence=count, feed=feed)

    @app.get("/log/vkey", operation_id="getVerifierKey", tags=["log"], response_class=PlainTextResponse,
             summary="The ledger's C2SP note verifier key (receipts and checkpoints)")
    async def get_vkey() -> str:
        return log_vkey(ledger) + "\n"

    app.include_router(log_router(ledger))
    app.include_router(event_proof_route(ledger))
    app.include_router(views_router(ledger, principal))
    web.mount(app, ledger, authenticator.principal)  # the pages (docs/web.md): start page, public reports, dashboards, /assets
    app.include_router(research_router(ledger, principal))
    app.include_router(tailored_list_router(ledger))  # public: the tailored list of settings (issue 25)
    return app


def claims_period(now: datetime, since: date | None, until: date | None) -> tuple[datetime, datetime]:
    """The report's period as times: from the start of ``since`` to the end of ``until`` (UTC days), by default the last 30 days."""
    last = until or now.astimezone(UTC).date()
    if last >= date.max or (since is None and last < date.min + timedelta(days=29)):
        raise LedgerError.one("period", "query:until", "the period must lie between years 1 and 9999")
    first = since or last - timedelta(days=29)
    return datetime.combine(first, time.min, UTC), datetime.combine(last + timedelta(days=1), time.min, UTC)
