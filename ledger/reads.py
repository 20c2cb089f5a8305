"""Reads: one accepted event (getEvent), a pupil's history (pupilHistory), the organisations registered."""

from __future__ import annotations

import time
import uuid
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from ledger.access_audit import Reader, authorise_pupil_read, pupil_for_read
from ledger.core import jcs, policy
from ledger.core.errors import Category, LedgerError
from ledger.core.orgs import fold_org
from ledger.core.rules import effective, fold_pupil
from ledger.core.times import timestamp
from ledger.storage.store import Entry, IndexRow

if TYPE_CHECKING:
    from ledger.service import Ledger


def entry_of(ledger: Ledger, row: IndexRow) -> Entry | None:
    """The stored event an index row names (None: its pupil erased meanwhile)."""
    subject = ledger.store.subject(uuid.UUID(row.originator_id))
    if subject is None:
        return None
    return next((e for e in subject.entries if e.version == row.originator_version), None)


def get_event(ledger: Ledger, event_id: str, reader: Reader | None = None) -> dict[str, Any]:
    """One accepted event. With a ``reader``: authorised by ``policy``; reading a pupil event is recorded."""
    row = ledger.store.index_rows([event_id]).get(event_id)
    subject = ledger.store.subject(uuid.UUID(row.originator_id), fresh=True) if row else None
    entry = next((e for e in subject.entries if e.version == row.originator_version), None) if row and subject else None
    if row is None or entry is None:
        raise LedgerError.one("not_found", "$.event_id", f"no event {event_id} that you may read", Category.NOT_FOUND)
    access = None
    if reader is not None:
        if entry.record.type.startswith("pupil."):
            reader = Reader(reader.principal, reader.purpose, reader.reference, "getEvent")
            access, _ = authorise_pupil_read(
                ledger, entry.record.subject, reader, subject, own_submission=row.submitter == reader.principal.org, event=entry.record
            )
        elif not policy.may_read_event(reader.principal, row.type):
            raise LedgerError.one("not_found", "$.event_id", f"no event {event_id} that you may read", Category.NOT_FOUND)
    out = {
        "event_id": row.event_id,
        "sequence": row.sequence,
        "type": row.type,
        "submitter": row.submitter,
        "received_at": row.received_at,
        "event_digest": row.event_digest,
        "envelope_digest": row.envelope_digest,
        "flags": entry.flags,
        "envelope": jcs.parse(entry.envelope.encode("utf-8")),
        "receipt": ledger.receipt_signer.receipts([(row, False, entry.flags)])[0].signed,
    }
    if access:
        out["access_event_id"] = access
    return out


def pupil_history(
    ledger: Ledger,
    upn: str,
    as_of: date | None = None,
    known_at: datetime | None = None,
    include_envelopes: bool = False,
    reader: Reader | None = None,
) -> dict[str, Any]:
    """History of a pupil as of effective date ``as_of``, as known at ledger time ``known_at``.

    With a ``reader`` (every HTTP read): authorised by ``policy`` and recorded as ``access.record_viewed``; a
    reader whose relationship its own organisation asserted sees what occurred from its start, and a summary
    of the pupil's setting just before (``policy.Grant.since``).
    """
    started = time.monotonic()
    aggregate_id = ledger.secrets.pupil_id(upn)
    subject = pupil_for_read(ledger, aggregate_id)  # read once: authorised on, and shown, the same state
    access, grant = authorise_pupil_read(ledger, upn, reader, subject, started=started) if reader is not None else (None, None)
    if subject is None:
        raise LedgerError.one("not_found", "$.upn", "the ledger has no events for this pupil", Category.NOT_FOUND)
    since = grant.since if grant else None
    reader_org = reader.principal.org if reader else ""
    index = ledger.store.index_for_subject(aggregate_id)
    known = [e for e in subject.entries if known_at is None or e.received_at <= known_at]
    shown = [e for e in known if grant is None or policy.visible(e.record, grant, reader_org)]
    visible = [e for e in shown if as_of is None or e.record.occurred_on <= as_of]
    superseded_by = {e.record.corrects: e.record.event_id for e in known if e.record.corrects}
    # A correction supersedes its target whatever its own effective date, so the state is folded
    # from the records in force as known at ``known_at``, then cut at ``as_of``.
    in_force = [r for r in effective([e.record for e in known]) if as_of is None or r.occurred_on <= as_of]
    events = []
    for e in visible:
        r = e.record
        row = index.get(e.version)
        item: dict[str, Any] = {
            "event_id": r.event_id,
            "sequence": row.sequence if row else None,
            "type": r.type,
            "submitter": r.submitter,
            "occurred_on": r.occurred_on.isoformat(),
            "received_at": timestamp(r.received_at),
            "data": r.data,
            "corrects": r.corrects,
            "superseded_by": superseded_by.get(r.event_id),
            "flags": e.flags,
            "event_digest": row.event_digest if row else None,
        }
        if include_envelopes:
            item["envelope"] = jcs.parse(e.envelope.encode("utf-8"))
        events.append(item)
    state = fold_pupil(in_force)
    day = as_of or ledger.clock().date()
    out = {
        "as_of": as_of.isoformat() if as_of else None,
        "known_at": timestamp(known_at) if known_at else None,
        "on_roll": [
            {"school": r.school, "enrolment_status": r.status, "since": r.start.isoformat(), "sen_status": r.sen_status}
            for r in state.registrations
            if r.open_on(day) and policy.shows_registration(r, grant, reader_org)
        ],
        "open": [
            {"kind": ep.kind, "started_by": ep.start_event_id, "since": ep.start.isoformat(), "details": ep.details}
            for ep in state.episodes.values()
            if ep.end is None and policy.shows_episode(ep, grant, reader_org)
        ],
        "events": events,
        "limited_from": since.isoformat() if since else None,
        "previous_setting": policy.setting_before([e.record for e in known], since) if since else [],
    }
    if access:
        out["access_event_id"] = access
    return out


def list_orgs(ledger: Ledger) -> list[dict[str, Any]]:
    """Every organisation registered, with its keys (the operator's listing)."""
    out = []
    for originator in ledger.store.org_streams():
        subject = ledger.store.subject(originator)
        if subject is None:
            continue
        org_id = subject.records[0].subject
        state = fold_org(org_id, subject.records)
        out.append(
            {
                "org": org_id,
                "kind": state.kind,
                "name": state.name,
                "la": state.la,
                "trust": state.trust,
                "closed": state.closed,
                "keys": [
                    {"key_id": k.key_id, "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None} for k in state.keys.values()
                ],
            }
        )
    return sorted(out, key=lambda o: o["org"])
