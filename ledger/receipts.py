"""Receipts: what the ledger signs for each accepted event (design.md 2), and their signing by the worker processes.

Speed-up (docs/performance.md, "Receipts signed ahead"): a batch's receipts are signed while its write is still in
flight (``ReceiptsAhead``): the store tells the sequence numbers before the commit, and the workers sign meanwhile.
Nothing is shown before the commit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ledger import signatures
from ledger.config import Settings
from ledger.core import envelope, jcs
from ledger.storage.secrets import LedgerSecrets
from ledger.storage.store import Entry, IndexRow

RECEIPT_PAYLOAD_TYPE = "application/vnd.pupil-ledger.receipt+json"


@dataclass
class Receipt:
    event_id: str
    sequence: int
    event_digest: str
    envelope_digest: str
    received_at: str
    created: bool  # False: the same envelope had been accepted before (a replay)
    flags: list[dict[str, str]] = field(default_factory=list)
    signed: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "sequence": self.sequence,
            "event_digest": self.event_digest,
            "envelope_digest": self.envelope_digest,
            "received_at": self.received_at,
            "status": "created" if self.created else "duplicate",
            "flags": self.flags,
            "receipt": self.signed,
        }


# What one receipt is for: the index row, created (not a replay), flags (None: read them from the stored event).
Accepted = tuple[IndexRow, bool, list[dict[str, str]] | None]


@dataclass(frozen=True)
class ReceiptSigner:
    """What receipts are signed with and say: the ledger's signing key and its origin and merge-delay promise;
    ``entry_of`` reads a stored event (for a replay's flags)."""

    secrets: LedgerSecrets
    settings: Settings
    entry_of: Callable[[IndexRow], Entry | None]

    def claim(self, row: IndexRow) -> dict[str, Any]:
        """What a receipt says."""
        return {
            "event_id": row.event_id,
            "sequence": row.sequence,
            "event_digest": row.event_digest,
            "envelope_digest": row.envelope_digest,
            "received_at": row.received_at,
            "ledger": self.settings.origin,
            # the promise: this event is in a signed checkpoint of the log within this many seconds
            "max_merge_delay_seconds": _json_number(self.settings.max_merge_delay),
        }

    def receipts(self, accepted: list[Accepted]) -> list[Receipt]:
        return ReceiptSigning(self, accepted).receipts()


class ReceiptSigning:
    """A batch's receipts, their signatures on their way from the worker processes."""

    def __init__(self, signer: ReceiptSigner, accepted: list[Accepted]):
        self.signer, self.accepted = signer, accepted
        self.payloads = [jcs.canonicalize(signer.claim(row)) for row, _, _ in accepted]
        self.signing = signatures.Signing(signer.secrets.signing_key, [envelope.pae(RECEIPT_PAYLOAD_TYPE, p) for p in self.payloads])

    def receipts(self) -> list[Receipt]:
        """The receipts, in order; flags None are read from the stored event."""
        out = []
        key_id = self.signer.secrets.signing_key_id
        for (row, created, flags), payload, signature in zip(self.accepted, self.payloads, self.signing.results(), strict=True):
            if flags is None:
                entry = self.signer.entry_of(row)
                flags = entry.flags if entry else []
            receipt = envelope.signed_envelope(RECEIPT_PAYLOAD_TYPE, payload, key_id, signature)
            out.append(Receipt(row.event_id, row.sequence, row.event_digest, row.envelope_digest, row.received_at, created, flags, receipt))
        return out

    def discard(self) -> None:
        self.signing.results()  # collected, so the workers' answers are not left waiting


class ReceiptsAhead:
    """A batch's receipts, signed while its write is still in flight: the store tells ``start`` the sequence
    numbers before the commit (``Store.append``'s ``on_ids``), and the workers sign as the rows are written.
    Nothing is shown before the commit: ``receipts`` is asked only after ``append`` returned, and checks the
    numbers it was started with (a write retried inside the store starts again; one that failed is dropped).
    ``accepted_for(ids)``: what each receipt is for, given the sequence numbers of the new events."""

    def __init__(self, signer: ReceiptSigner, accepted_for: Callable[[Sequence[int]], list[Accepted]]):
        self.signer, self.accepted_for = signer, accepted_for
        self._started: tuple[list[int], ReceiptSigning] | None = None

    def start(self, ids: Sequence[int]) -> None:
        self.drop()
        self._started = (list(ids), ReceiptSigning(self.signer, self.accepted_for(ids)))

    def drop(self) -> None:
        if self._started is not None:
            self._started[1].discard()
            self._started = None

    def receipts(self, ids: list[int]) -> list[Receipt]:
        """The receipts for the committed write whose events have ``ids``."""
        if self._started is None or self._started[0] != ids:  # nothing written, or the store did not say
            self.start(ids)
        assert self._started is not None
        return self._started[1].receipts()


def _json_number(value: float) -> float | int:
    """A whole number as an int: the same JCS bytes (1.0 is written 1), through the fast path."""
    return int(value) if float(value).is_integer() else value
