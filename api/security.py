"""Abuse resistance for the HTTP API (docs/access.md): per-token rate limits, security headers, and
errors that never carry a stack trace or an internal detail."""

import hashlib
import logging
import math
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("pupil_ledger.api")

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
}
API_CSP = "default-src 'none'; frame-ancestors 'none'"
# The interactive docs load FastAPI's Swagger UI and ReDoc bundles from their CDN.
DOCS_CSP = ("default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; style-src 'self' 'unsafe-inline' "
            "https://cdn.jsdelivr.net https://fonts.googleapis.com; img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
            "font-src https://fonts.gstatic.com; connect-src 'self'; worker-src blob:; frame-ancestors 'none'")
DOCS_PATHS = ("/docs", "/redoc")


class RateLimiter:
    """Token buckets: ``rate`` requests a second per key, bursts up to ``burst``; least recently used keys
    are dropped beyond ``max_keys``."""

    def __init__(self, rate: float, burst: int, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self.max_keys, self.clock = rate, burst, max_keys, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str, spend: bool = True) -> float:
        """0 when the request may go ahead, else the seconds to wait before retrying (``spend``: count it)."""
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
            self._buckets[key] = (tokens - 1 if wait == 0 and spend else tokens, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        return wait


def limiter_key(scope: Scope) -> str:
    """Per bearer token (hashed: the token itself is never kept); per client address without one."""
    auth = _header(scope, b"authorization")
    if auth[:7].lower() == "bearer " and auth[7:].strip():
        return "token:" + hashlib.sha256(auth[7:].strip().encode("utf-8")).hexdigest()[:32]
    return client_key(scope)


def client_key(scope: Scope) -> str:
    client = scope.get("client")
    return "client:" + (client[0] if client else "unknown")


def _header(scope: Scope, name: bytes) -> str:
    """The first value of request header ``name`` (lower case), or ""."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return ""


_RAW_HEADERS = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in HEADERS.items()]
_NO_STORE_PATHS = ("/pupils/", "/events/", "/access-log", "/research/")


class Guard:
    """Rate limits and security headers as plain ASGI middleware (Starlette's ``BaseHTTPMiddleware``, behind
    ``@app.middleware``, runs every request in an extra task with memory streams: a third of the web stack's CPU).

    ``failures`` counts rejected bearer tokens (401) per client address, so guessing tokens (each a new
    bucket of ``limiter``) is throttled too. The headers are added only where the response has not set them.
    """

    def __init__(self, app: ASGIApp, limiter: RateLimiter, failures: RateLimiter):
        self.app, self.limiter, self.failures = app, limiter, failures

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        extra = [*_RAW_HEADERS, (b"content-security-policy", (DOCS_CSP if path in DOCS_PATHS else API_CSP).encode("latin-1"))]
        if path.startswith(_NO_STORE_PATHS):
            extra.append((b"cache-control", b"no-store"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                if message["status"] == 401:
                    self.failures.take(client_key(scope))
                headers = message["headers"] = list(message.get("headers", ()))
                present = {key for key, _ in headers}
                headers.extend(header for header in extra if header[0] not in present)
            await send(message)

        wait = 0.0
        if path != "/healthz":
            wait = self.failures.take(client_key(scope), spend=False) or self.limiter.take(limiter_key(scope))
        if wait:
            refusal = JSONResponse(
                {"errors": [{"code": "rate_limited", "path": "$", "message": f"too many requests; retry after {math.ceil(wait)} s"}]},
                status_code=429, headers={"Retry-After": str(math.ceil(wait))})
            await refusal(scope, receive, send_with_headers)
            return
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send_with_headers(message)

        try:
            await self.app(scope, receive, send_tracked)
        except Exception as exc:
            if started:
                raise  # part of the answer is out: nothing can replace it (the server closes the connection)
            # answered here, not by Starlette's outermost error middleware, so that it carries the headers too
            await unexpected_failure(exc)(scope, receive, send_with_headers)


def install(app: FastAPI, limiter: RateLimiter) -> None:
    """Rate limits, security headers and the catch-all error handler, on every route of ``app``; rejected
    bearer tokens also count against the client address (20, then one a second)."""
    app.add_middleware(Guard, limiter=limiter, failures=RateLimiter(rate=1.0, burst=20))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:  # a failure in the guard itself
        return unexpected_failure(exc)


def unexpected_failure(exc: Exception) -> JSONResponse:
    """The answer to a failure nothing expected: logged in full under a reference; the caller gets only that."""
    reference = uuid.uuid4().hex[:12]
    log.error("unhandled error %s", reference, exc_info=exc)
    return JSONResponse({"errors": [{"code": "internal_error", "path": "$",
                                     "message": f"the ledger could not answer; quote reference {reference} to the operator"}]},
                        status_code=500)
