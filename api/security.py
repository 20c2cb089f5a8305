"""Abuse resistance for the HTTP API (docs/access.md): per-token rate limits, security headers, and
errors that never carry a stack trace or an internal detail."""

import hashlib
import logging
import math
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

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


def limiter_key(request: Request) -> str:
    """Per bearer token (hashed: the token itself is never kept); per client address without one."""
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer " and auth[7:].strip():
        return "token:" + hashlib.sha256(auth[7:].strip().encode("utf-8")).hexdigest()[:32]
    return client_key(request)


def client_key(request: Request) -> str:
    return "client:" + (request.client.host if request.client else "unknown")


def install(app: FastAPI, limiter: RateLimiter, failures: RateLimiter | None = None) -> None:
    """Rate limits, security headers and the catch-all error handler, on every route of ``app``.

    ``failures`` counts rejected bearer tokens (401) per client address, so guessing tokens (each a new
    bucket of ``limiter``) is throttled too.
    """
    failures = failures or RateLimiter(rate=1.0, burst=20)

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        wait = 0.0
        if request.url.path != "/healthz":
            wait = failures.take(client_key(request), spend=False) or limiter.take(limiter_key(request))
        if wait:
            response: Response = JSONResponse(
                {"errors": [{"code": "rate_limited", "path": "$", "message": f"too many requests; retry after {math.ceil(wait)} s"}]},
                status_code=429, headers={"Retry-After": str(math.ceil(wait))})
        else:
            response = await call_next(request)
            if response.status_code == 401:
                failures.take(client_key(request))
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        response.headers.setdefault("Content-Security-Policy", DOCS_CSP if request.url.path in DOCS_PATHS else API_CSP)
        if request.url.path.startswith(("/pupils/", "/events/", "/access-log")):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        reference = uuid.uuid4().hex[:12]
        log.error("unhandled error %s", reference, exc_info=exc)
        return JSONResponse({"errors": [{"code": "internal_error", "path": "$",
                                         "message": f"the ledger could not answer; quote reference {reference} to the operator"}]},
                            status_code=500)
