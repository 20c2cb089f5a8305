"""Abuse resistance for the HTTP API (docs/access.md): per-token rate limits, limits on failed authentication
that never refuse a token that verifies, security headers, and errors that never carry a stack trace or an internal detail (a database failure is told as what it means for the
request: ``ledger.database.failure_of``)."""

import asyncio
import hashlib
import logging
import math
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import TypedDict

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.limits import Refusal
from ledger.core.errors import Category, LedgerError
from ledger.service import Ledger, Principal
from ledger.storage import database
from ledger.storage.store import Store
from ledger.tokens import token_hash

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
# The web pages (api/web): their own CSS, JavaScript and images only. The one inline script is the GOV.UK page
# template's (it marks the body as js-enabled), allowed by its hash; tests/test_web.py checks the hash is current.
PAGE_CSP = ("default-src 'none'; script-src 'self' 'sha256-GUQ5ad8JK5KmEWmROf3LZd9ge94daqNvd8xy9YS1iDw='; style-src 'self'; "
            "img-src 'self'; font-src 'self'; manifest-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
            "frame-ancestors 'none'")
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


class TokenDirectory:
    """The SHA-256 of every ledger token (the column ``ledger_tokens`` keeps), held in memory so that a guess from
    an address over its failure budget is told from a real token without a lookup. Reloaded when the number of
    tokens changed, checked at most once every ``interval`` seconds however many ask: an unknown token waits for the
    next check (under a second) rather than being refused, so one issued a moment ago is found."""

    def __init__(self, store: Store, interval: float = 1.0):
        self.store, self.interval = store, interval
        self._hashes: frozenset[str] = frozenset()
        self._count = -1
        self._checked_at = float("-inf")  # when the last check began
        self._lock: asyncio.Lock | None = None

    async def knows(self, token: str) -> bool:
        hashed, asked = token_hash(token), time.monotonic()
        if hashed in self._hashes:
            return True
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            if self._checked_at < asked:  # no check began since this token was asked about
                await asyncio.sleep(max(0.0, self._checked_at + self.interval - time.monotonic()))
                began, before = time.monotonic(), self._checked_at
                self._checked_at = began
                try:
                    await run_in_threadpool(self._reload)
                except Exception:
                    self._checked_at = before  # not checked after all (the database is away): the next ask checks
                    raise
        return hashed in self._hashes

    def _reload(self) -> None:
        count = int(self.store.query("SELECT COUNT(*) FROM ledger_tokens")[0][0])
        if count != self._count:  # tokens are only ever added (revocation sets a column): the same count, the same set
            self._hashes = frozenset(row[0] for row in self.store.query("SELECT token_hash FROM ledger_tokens"))
            self._count = count


class Authenticator:
    """The principal of a bearer token. Each address may fail ``failures.burst`` times, then once a second; past that,
    a ledger token is looked up only if its hash is a real token's (``TokenDirectory``), others are refused with 429
    at no database cost. So a token that verifies is never refused for its address's failures (a school behind the
    same NAT as a guesser, or named by a spoofed header), and guessing costs the database at most one count a
    second. Tokens this process verified recently are answered from memory (ledger/tokens.py)."""

    def __init__(self, ledger: Ledger, failures: RateLimiter | None = None):
        self.ledger = ledger
        self.failures = failures or RateLimiter(rate=1.0, burst=20)
        self.directory = TokenDirectory(ledger.store)

    async def principal(self, token: str | None, client: str) -> Principal:
        if not token:
            raise LedgerError.one("token_missing", "header:Authorization", "send Authorization: Bearer <token>", Category.UNAUTHENTICATED)
        found = self.ledger.tokens.get(token)  # verified within the last second: no database, so no worker thread either
        if found is not None:  # an inspector's scope is the areas it inspects today (ledger.authenticate)
            return found if found.role != "inspector" else await run_in_threadpool(self.ledger.inspector_now, found)
        wait = self.failures.take(client)  # reserved before the lookup (concurrent guesses cannot share one), given back if it verifies
        try:
            if wait and token.startswith("plt_") and not await self.directory.knows(token):
                raise Refusal(429, "auth_rate_limited", "header:Authorization",
                              f"too many unknown tokens from this address; retry after {math.ceil(wait)} s", wait)
            found = await run_in_threadpool(self.ledger.authenticate, token)  # OIDC tokens cost no database unless they verify
        except Exception as exc:
            if not wait and not isinstance(exc, Refusal):
                self.failures.refund(client)  # no verdict (the database failed): nothing was learnt about the token
            raise
        if found is not None and not wait:
            self.failures.refund(client)
        if found is None:
            raise LedgerError.one("token_invalid", "header:Authorization", "the bearer token is unknown, expired or revoked", Category.UNAUTHENTICATED)
        return found


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
            await failure_response(exc)(scope, receive, send_with_headers)


def install(app: FastAPI, limiter: RateLimiter) -> None:
    """Rate limits, security headers and the catch-all error handler, on every route of ``app``."""
    app.add_middleware(Guard, limiter=limiter)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:  # a failure in the guard itself
        return failure_response(exc)


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
        return Refusal(failure.status, failure.code, "$", failure.message, failure.retry_after).response()
    reference = uuid.uuid4().hex[:12]
    log.error("unhandled error %s", reference, exc_info=exc)
    return JSONResponse({"errors": [{"code": "internal_error", "path": "$",
                                     "message": f"the ledger could not answer; quote reference {reference} to the operator"}]},
                        status_code=500)
