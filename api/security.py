"""Abuse resistance for the HTTP API (docs/access.md): per-token rate limits, the client's address as the server
believes it, security headers, and a guard that answers any failure the routes let through without a stack trace or
an internal detail (``api.errors.failure_response``). Failed authentication is limited where tokens are checked
(``api.auth``)."""

import hashlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TypedDict

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import failure_response, refusal_response
from api.limits import Refusal

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
DOCS_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; style-src 'self' 'unsafe-inline' "
    "https://cdn.jsdelivr.net https://fonts.googleapis.com; img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
    "font-src https://fonts.gstatic.com; connect-src 'self'; worker-src blob:; frame-ancestors 'none'"
)
DOCS_PATHS = ("/docs", "/redoc")
# The web pages (api/web): their own CSS, JavaScript and images only. The one inline script is the GOV.UK page
# template's (it marks the body as js-enabled), allowed by its hash; tests/test_web.py checks the hash is current.
PAGE_CSP = (
    "default-src 'none'; script-src 'self' 'sha256-GUQ5ad8JK5KmEWmROf3LZd9ge94daqNvd8xy9YS1iDw='; style-src 'self'; "
    "img-src 'self'; font-src 'self'; manifest-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
PAGE_PATHS = ("/reports", "/dashboards", "/sign-in", "/sign-out", "/assets/")


def csp_for(path: str) -> str:
    if path in DOCS_PATHS:
        return DOCS_CSP
    if path == "/" or path.startswith(PAGE_PATHS):
        return PAGE_CSP
    return API_CSP


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

    def refund(self, key: str) -> None:
        """Give back what ``take`` spent (a reservation that was not needed)."""
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), self.clock()))
            self._buckets[key] = (min(float(self.burst), tokens + 1), last)


def limiter_key(scope: Scope) -> str:
    """Per bearer token (hashed: the token itself is never kept); per client address without one."""
    auth = _header(scope, b"authorization")
    if auth[:7].lower() == "bearer " and auth[7:].strip():
        return "token:" + hashlib.sha256(auth[7:].strip().encode("utf-8")).hexdigest()[:32]
    return client_key(scope)


def client_key(scope: Scope) -> str:
    """The client's address: the peer's, or the one a trusted proxy names (``PUPIL_LEDGER_TRUSTED_PROXIES``: the
    server rewrites ``client`` from X-Forwarded-For only for those proxies, ``server_options``)."""
    client = scope.get("client")
    return "client:" + (client[0] if client else "unknown")


class ServerOptions(TypedDict):
    proxy_headers: bool
    forwarded_allow_ips: str


def server_options(trusted_proxies: str) -> ServerOptions:
    """uvicorn's options for the forwarded headers: believed only from ``trusted_proxies`` (comma-separated
    addresses or networks), from nobody when it is empty. uvicorn's own default believes any local peer, so one
    client could rotate X-Forwarded-For past the limits, or name another to have it limited."""
    return {"proxy_headers": bool(trusted_proxies.strip()), "forwarded_allow_ips": trusted_proxies.strip() or "127.0.0.1"}


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

    Failed tokens are limited where they are checked (``Authenticator``), never here: refusing every request of an
    address for its failures refused the valid tokens behind it too. The headers are added only where the response
    has not set them.
    """

    def __init__(self, app: ASGIApp, limiter: RateLimiter):
        self.app, self.limiter = app, limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        extra = [*_RAW_HEADERS, (b"content-security-policy", csp_for(path).encode("latin-1"))]
        if path.startswith(_NO_STORE_PATHS):
            extra.append((b"cache-control", b"no-store"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message["headers"] = list(message.get("headers", ()))
                present = {key for key, _ in headers}
                headers.extend(header for header in extra if header[0] not in present)
            await send(message)

        wait = 0.0
        if path != "/healthz":
            wait = self.limiter.take(limiter_key(scope))
        if wait:
            refusal = Refusal(429, "rate_limited", "$", f"too many requests; retry after {math.ceil(wait)} s", wait)
            await refusal_response(refusal)(scope, receive, send_with_headers)
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
            await failure_response(exc)(scope, receive, send_with_headers)


def install(app: FastAPI, limiter: RateLimiter) -> None:
    """Rate limits and security headers on every route of ``app``, and its failures answered (``Guard``)."""
    app.add_middleware(Guard, limiter=limiter)
