"""Every error answer of the HTTP API, in its one format: ``{"errors": [{code, path, message}]}`` (design.md 3.4).

A ``LedgerError`` from the core, a request FastAPI could not validate, an HTTP exception (an unknown path, a wrong
method), a ``Refusal`` (a request refused before its route answers: 415, 429, 503...) and any other exception (a
database failure told as what it means for the request, or a fault told only by a reference) are each turned into a
response here, with the status the problem's category decides and the headers the status needs (``WWW-Authenticate``
on 401, ``Retry-After`` when waiting helps). ``install`` registers these answers as the app's exception handlers; the
models document them in the OpenAPI document."""

import logging
import math
import threading
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.limits import Refusal
from ledger.core.errors import Category, LedgerError
from ledger.storage import database

log = logging.getLogger("pupil_ledger.api")

STATUS = {
    Category.MALFORMED: 400,
    Category.UNAUTHENTICATED: 401,
    Category.FORBIDDEN: 403,
    Category.NOT_FOUND: 404,
    Category.CONFLICT: 409,
    Category.TOO_LARGE: 413,
    Category.INVALID: 422,
    Category.RATE_LIMITED: 429,
}


class ErrorItem(BaseModel):
    code: str = Field(examples=["upn_check_letter"])
    path: str = Field(examples=["$.payload.subject.upn"], description="JSONPath into the request")
    message: str


class Errors(BaseModel):
    errors: list[ErrorItem]


def problem(code: str, path: str, message: str) -> dict[str, str]:
    """One entry of ``errors``."""
    return {"code": code, "path": path, "message": message}


def error_response(
    status: int, problems: list[dict[str, str]], headers: dict[str, str] | None = None, retry_after: float | None = None
) -> JSONResponse:
    """The answer ``{"errors": problems}`` with ``status``; ``retry_after`` seconds are sent rounded up."""
    if retry_after is not None:
        headers = {**(headers or {}), "Retry-After": str(math.ceil(retry_after))}
    return JSONResponse({"errors": problems}, status_code=status, headers=headers)


def ledger_error_response(exc: LedgerError) -> JSONResponse:
    """The status of the problems' category; a 401 asks for a bearer token, a 429 says when to retry (at least 1 s)."""
    headers = {"WWW-Authenticate": "Bearer"} if exc.category is Category.UNAUTHENTICATED else None
    retry_after = max(1, math.ceil(exc.retry_after or 1)) if exc.category is Category.RATE_LIMITED else None
    return error_response(STATUS[exc.category], [p.as_dict() for p in exc.problems], headers, retry_after)


def validation_error_response(exc: RequestValidationError) -> JSONResponse:
    """A request FastAPI could not validate: 400 when the body is not JSON, else 422; each problem is at the body's
    JSONPath (``invalid_body``) or at the parameter (``invalid_query`` at ``query:<name>``, and so on)."""
    problems = []
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ())]
        where = loc[0] if loc else "body"
        path = "$" + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc[1:])
        problems.append(problem(f"invalid_{where}", path if where == "body" else f"{where}:{'.'.join(loc[1:])}", err.get("msg", "invalid")))
    return error_response(400 if any(e.get("type") == "json_invalid" for e in exc.errors()) else 422, problems)


def refusal_response(exc: Refusal) -> JSONResponse:
    return error_response(exc.status, [problem(exc.code, exc.path, exc.message)], retry_after=exc.retry_after)


def http_error_response(exc: StarletteHTTPException) -> JSONResponse:
    return error_response(exc.status_code, [problem("http_error", "$", str(exc.detail))])


class _Sparse:
    """Logs each kind of expected failure at most once every ``seconds``, with how many went unlogged: an outage
    answers every request 503, and the log should say so, not repeat it thousands of times."""

    def __init__(self, seconds: float = 10.0):
        self.seconds = seconds
        self._last: dict[str, tuple[float, int]] = {}  # kind -> (when last logged, how many since)
        self._lock = threading.Lock()

    def note(self, kind: str, message: str) -> None:
        now = time.monotonic()
        with self._lock:
            last, unlogged = self._last.get(kind, (float("-inf"), 0))
            if now - last < self.seconds:
                self._last[kind] = (last, unlogged + 1)
                return
            self._last[kind] = (now, 0)
        log.warning("%s%s", message, f" (and {unlogged} more like it)" if unlogged else "")


_DATABASE_LOG = _Sparse()


def failure_response(exc: Exception) -> JSONResponse:
    """The answer to an exception no route answered. A database failure says what it means for the request (503
    unavailable, 504 commit unconfirmed, 507 storage full; with Retry-After); anything else is a fault, logged in
    full under a reference, and the caller gets only that (500)."""
    failure = database.failure_of(exc)
    if failure is not None:
        _DATABASE_LOG.note(failure.code, f"answered {failure.status} {failure.code}: {type(exc).__name__}: {exc}")
        return refusal_response(Refusal(failure.status, failure.code, "$", failure.message, failure.retry_after))
    reference = uuid.uuid4().hex[:12]
    log.error("unhandled error %s", reference, exc_info=exc)
    return error_response(
        500, [problem("internal_error", "$", f"the ledger could not answer; quote reference {reference} to the operator")]
    )


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` in the one format."""

    @app.exception_handler(LedgerError)
    async def ledger_error(_: Request, exc: LedgerError) -> JSONResponse:
        return ledger_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error_response(exc)

    @app.exception_handler(Refusal)
    async def refusal(_: Request, exc: Refusal) -> JSONResponse:
        return refusal_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return http_error_response(exc)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:  # a failure in the guard itself (api.security)
        return failure_response(exc)
