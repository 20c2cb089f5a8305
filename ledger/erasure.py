"""Erasure (docs/access.md): crypto-shred one pupil, as one use case.

The erasure is recorded in the pupil's audit stream first (``access.record_erased``, in the transparency log). Then
one transaction destroys the pupil's data key, unlinks its rows from the pseudonym and, through ``forget``, removes
the pupil's facts from the views: the views never hold facts of a pupil whose key is gone, nor lose them for one
whose erasure failed. The log's digests, and so its proofs, stay.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ledger.access_audit import record_access
from ledger.core.errors import Category, LedgerError

if TYPE_CHECKING:
    from ledger.service import Ledger

# What else forgets an erased pupil, by its pseudonymous stream id, inside the erasure's transaction (the views:
# ``projections.runner.forget_pupil``, wired where the ledger is built).
Forget = Callable[[uuid.UUID], object]


def erase(ledger: Ledger, upn: str, ground: str, reference: str | None = None, forget: Forget | None = None) -> dict[str, Any]:
    aggregate_id = ledger.secrets.pupil_id(upn)
    key = ledger.store.app.pupil_keys.get(aggregate_id, max_age=0)
    if key is None:
        raise LedgerError.one(
            "not_found", "$.upn", "the ledger has no events for this pupil (never recorded, or already erased)", Category.NOT_FOUND
        )
    data: dict[str, Any] = {"ground": ground, "events_erased": ledger.store.count_events_of(aggregate_id)}
    if reference:
        data["reference"] = reference
    erasure_event = record_access(ledger, "access.record_erased", key.audit_id, data)
    erased = ledger.store.erase_subject(aggregate_id, also=(lambda: forget(aggregate_id)) if forget is not None else lambda: None)
    ledger.submissions.subjects.forget([aggregate_id])
    return {"events_erased": erased, "audit_id": key.audit_id, "erasure_event_id": erasure_event}
