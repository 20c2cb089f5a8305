"""Verified ledger tokens kept in memory, so a request need not query the database for its bearer
(docs/access.md, "Principals").

Only tokens that verified are kept, by the SHA-256 of the token (the hash ``ledger_tokens`` stores): an
unknown, wrong, expired or revoked token goes to the database every time, so guessing costs what it
did, and a token issued after a failed attempt is found. An entry answers until its token expires, for
at most ``MAX_AGE_SECONDS``, and only while the database has been seen, within the last
``RECHECK_SECONDS``, to hold as many tokens and as many revoked tokens as when the entry was verified.
Revocation only ever sets ``revoked_at`` (a token row is never deleted or un-revoked), so a revocation
by any process (the CLI, another API process) is obeyed within ``RECHECK_SECONDS``; one in this process
(``Ledger.revoke_token``) calls ``clear``, which also discards lookups still in flight.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from ledger.core.policy import Principal
from ledger.storage.store import Store

RECHECK_SECONDS = 1.0
MAX_AGE_SECONDS = 60.0
MAX_ENTRIES = 10_000


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class _Entry:
    principal: Principal
    expires_at: datetime | None
    verified_at: float  # monotonic


class TokenCache:
    def __init__(self, store: Store, clock: Callable[[], datetime], monotonic: Callable[[], float] = time.monotonic):
        self.store, self.clock, self.monotonic = store, clock, monotonic
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._recheck_lock = threading.Lock()
        self._counts: tuple[int, int] | None = None  # (tokens, revoked tokens) at the last check
        self._checked_at = float("-inf")  # monotonic time the last check started
        self.generation = 0  # bumped by every clear: a lookup begun before it must not be kept

    def get(self, token: str) -> Principal | None:
        """The principal of ``token`` if the cache may answer for it now (no database access), else None:
        ask the database (``Ledger.authenticate``)."""
        now = self.monotonic()
        if now - self._checked_at >= RECHECK_SECONDS:
            return None
        key = token_hash(token)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if now - entry.verified_at >= MAX_AGE_SECONDS or (entry.expires_at is not None and entry.expires_at <= self.clock()):
                del self._entries[key]
                return None
        return entry.principal

    def recheck(self) -> None:
        """Count the tokens and revoked tokens in the database unless that was done within ``RECHECK_SECONDS``;
        any change since the last count clears the cache."""
        if self.monotonic() - self._checked_at < RECHECK_SECONDS:
            return
        with self._recheck_lock:
            started = self.monotonic()
            if started - self._checked_at < RECHECK_SECONDS:
                return  # another thread just did it
            counts = self.store.tokens.counts()
            if counts != self._counts:
                self.clear()
                self._counts = counts
            self._checked_at = started  # when the count began: a revocation after it is seen by the next one

    def put(self, token: str, principal: Principal, expires_at: datetime | None, generation: int) -> None:
        """Keep a token verified by a lookup that began at ``generation`` (unless the cache was cleared since)."""
        with self._lock:
            if generation != self.generation:
                return
            key = token_hash(token)
            self._entries[key] = _Entry(principal, expires_at, self.monotonic())
            self._entries.move_to_end(key)
            while len(self._entries) > MAX_ENTRIES:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.generation += 1
