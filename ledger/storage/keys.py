"""Per-pupil data keys (crypto-shredding, docs/access.md): each pupil's stream is encrypted with its own key, kept
in ``pupil_keys`` wrapped by the master key; erasing the pupil destroys the key."""

from __future__ import annotations

import base64
import contextvars
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import IntegrityError

from ledger.core.errors import Category, LedgerError
from ledger.storage.secrets import is_pupil_stream
from ledger.storage.sql import Read


class SubjectErased(LedgerError):
    """The pupil's data key was destroyed: its events can no longer be read or added to."""

    def __init__(self, aggregate_id: uuid.UUID):
        super().__init__(LedgerError.one("pupil_erased", "$.subject", "this pupil's record has been erased", Category.CONFLICT).problems)
        self.aggregate_id = aggregate_id


class ErasedMeanwhile(IntegrityError):
    """A write to a pupil stream whose key another process destroyed: retried from the database, as a new pupil."""


@dataclass(frozen=True)
class PupilKey:
    key: bytes
    audit_id: str  # random pseudonym naming the pupil in access.* events; forgotten with the key


_NEW_KEYS: contextvars.ContextVar[dict[uuid.UUID, PupilKey] | None] = contextvars.ContextVar("new_pupil_keys", default=None)


class PupilKeys:
    """Each pupil's AES-256-GCM data key, stored in ``pupil_keys`` wrapped by the master key.

    Keys are cached for ``ttl`` seconds, so another process sees an erasure within that time, and then
    dropped: the cache holds only the keys used in the last ``ttl`` seconds (at most ``max_keys``), not every
    pupil the process ever touched (a projector catching up on 2 million events grew to 800 MB).
    A pupil's first event creates its key in the same transaction (``creating``).
    """

    def __init__(self, master_key: bytes, ttl: float = 2.0, max_keys: int = 200_000):
        self._master = AESGCM(master_key) if master_key else None
        self.ttl = ttl
        self.max_keys = max_keys
        self._cache: OrderedDict[uuid.UUID, tuple[float, PupilKey]] = OrderedDict()  # oldest first
        self._lock = threading.Lock()
        self.store: Any = None  # the Store they are read through, bound by it

    def __len__(self) -> int:
        """Keys held in memory now."""
        return len(self._cache)

    def _aad(self, aggregate_id: uuid.UUID) -> bytes:
        return b"pupil-ledger/pupil-key:" + aggregate_id.bytes

    def _wrap(self, aggregate_id: uuid.UUID, key: bytes) -> str:
        if self._master is None:
            raise RuntimeError("no pupil master key configured (PUPIL_MASTER_KEY)")
        nonce = os.urandom(12)
        return base64.b64encode(nonce + self._master.encrypt(nonce, key, self._aad(aggregate_id))).decode("ascii")

    def _unwrap(self, aggregate_id: uuid.UUID, wrapped: str) -> bytes:
        if self._master is None:
            raise RuntimeError("no pupil master key configured (PUPIL_MASTER_KEY)")
        raw = base64.b64decode(wrapped)
        return self._master.decrypt(raw[:12], raw[12:], self._aad(aggregate_id))

    def prefetch(self, aggregate_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, PupilKey]:
        """Load the keys of many pupils with one query (bulk reads). Only keys found are cached: an absent key
        is looked up again next time, so a pupil created meanwhile is never taken for one without a key."""
        read = self.read_of(aggregate_ids)
        return self.fetched(aggregate_ids, self.store.query_in(*read)) if read else {}

    @staticmethod
    def read_of(aggregate_ids: Sequence[uuid.UUID]) -> Read | None:
        """The read of these pupils' keys (for ``Store.query_in`` or ``Store.reads``); None: no pupil among them."""
        wanted = [str(i) for i in aggregate_ids if is_pupil_stream(i)]
        return (
            Read("SELECT originator_id, wrapped_key, audit_id FROM pupil_keys WHERE {where}", "originator_id", wanted) if wanted else None
        )

    def fetched(self, aggregate_ids: Sequence[uuid.UUID], rows: Sequence[tuple[Any, ...]]) -> dict[uuid.UUID, PupilKey]:
        """Unwrap and cache the keys ``rows`` (the result of ``read_of(aggregate_ids)``) hold."""
        wanted = [i for i in aggregate_ids if is_pupil_stream(i)]
        found = {}
        for stream, wrapped, audit_id in rows:
            aggregate_id = uuid.UUID(stream)
            found[aggregate_id] = PupilKey(self._unwrap(aggregate_id, wrapped), audit_id)
        now = time.monotonic()
        with self._lock:
            for i in wanted:
                if i in found:
                    self._keep(i, found[i], now)
                else:
                    self._cache.pop(i, None)
        return found

    def _keep(self, aggregate_id: uuid.UUID, key: PupilKey, now: float) -> None:
        """Cache a key as fetched at ``now``, dropping those too old to be used again (holding ``_lock``)."""
        self._cache[aggregate_id] = (now, key)
        self._cache.move_to_end(aggregate_id)
        while self._cache:
            fetched, _ = next(iter(self._cache.values()))
            if now - fetched <= self.ttl and len(self._cache) <= self.max_keys:
                break
            self._cache.popitem(last=False)

    def data_key(self, aggregate_id: uuid.UUID, max_age: float | None = None) -> bytes | None:
        """The pupil's key, or None if it has none (never created, or erased)."""
        found = self.get(aggregate_id, max_age)
        return found.key if found else None

    def get(self, aggregate_id: uuid.UUID, max_age: float | None = None) -> PupilKey | None:
        pending = _NEW_KEYS.get()
        if pending and aggregate_id in pending:
            return pending[aggregate_id]
        with self._lock:
            cached = self._cache.get(aggregate_id)
        if cached is not None and time.monotonic() - cached[0] <= (self.ttl if max_age is None else max_age):
            return cached[1]
        return self.prefetch([aggregate_id]).get(aggregate_id)

    @contextmanager
    def creating(self, aggregate_ids: Sequence[uuid.UUID]) -> Iterator[list[tuple[str, str, str]]]:
        """Fresh keys for new pupils: yields their rows to insert with the events; cached once committed."""
        keys = {i: PupilKey(AESGCM.generate_key(256), str(uuid.uuid4())) for i in aggregate_ids}
        token = _NEW_KEYS.set(keys)
        try:
            yield [(str(i), self._wrap(i, k.key), k.audit_id) for i, k in keys.items()]
        finally:
            _NEW_KEYS.reset(token)
        now = time.monotonic()
        with self._lock:
            for i, k in keys.items():
                self._keep(i, k, now)

    def forget(self, aggregate_id: uuid.UUID) -> None:
        with self._lock:
            self._cache.pop(aggregate_id, None)
