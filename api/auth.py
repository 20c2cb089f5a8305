"""Who is calling: the principal of a request's bearer token, for every route that needs one.

A route that needs a caller takes a parameter typed ``Caller``: FastAPI hands it the principal of the request's bearer
token, or answers 401 (``token_missing``, ``token_invalid``) or 429 (``auth_rate_limited``) before the route runs, and
the OpenAPI document lists the route under the ``HTTPBearer`` scheme. Public routes take no ``Caller``. The tokens are
checked by the app's one ``Authenticator`` (``use``), which limits failed attempts per client address without ever
refusing a token that verifies."""

import asyncio
import math
import time
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from api.limits import Refusal
from api.security import RateLimiter, client_key
from ledger.core.errors import Category, LedgerError
from ledger.service import Ledger, Principal
from ledger.storage.store import Store
from ledger.tokens import token_hash

bearer = HTTPBearer(auto_error=False, description="token issued by `pupil-ledger tokens issue`")


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
        count, _ = self.store.tokens.counts()
        if count != self._count:  # tokens are only ever added (revocation sets a column): the same count, the same set
            self._hashes = self.store.tokens.hashes()
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
                raise Refusal(
                    429,
                    "auth_rate_limited",
                    "header:Authorization",
                    f"too many unknown tokens from this address; retry after {math.ceil(wait)} s",
                    wait,
                )
            found = await run_in_threadpool(self.ledger.authenticate, token)  # OIDC tokens cost no database unless they verify
        except Exception as exc:
            if not wait and not isinstance(exc, Refusal):
                self.failures.refund(client)  # no verdict (the database failed): nothing was learnt about the token
            raise
        if found is not None and not wait:
            self.failures.refund(client)
        if found is None:
            raise LedgerError.one(
                "token_invalid", "header:Authorization", "the bearer token is unknown, expired or revoked", Category.UNAUTHENTICATED
            )
        return found


def use(app: FastAPI, authenticator: Authenticator) -> None:
    """Check the bearer tokens of ``app``'s routes with ``authenticator``."""
    app.state.authenticator = authenticator


async def bearer_principal(request: Request) -> Principal:
    """The principal of the request's bearer token, read from the header as ``bearer`` reads it: for a route served
    without FastAPI's dependency solving (``api.routes.submission``), which was a third of the event loop's work."""
    scheme, token = get_authorization_scheme_param(request.headers.get("authorization"))
    authenticator: Authenticator = request.app.state.authenticator
    return await authenticator.principal(token if scheme.lower() == "bearer" else None, client_key(request.scope))


async def _caller(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
    authenticator: Authenticator = request.app.state.authenticator
    return await authenticator.principal(credentials.credentials if credentials else None, client_key(request.scope))


Caller = Annotated[Principal, Depends(_caller)]
"""A route parameter: the principal of the request's bearer token (the route needs one)."""
