"""Access control and the read audit (docs/access.md): who may read a pupil's identified record, each such read
recorded as a ledger-signed ``access.*`` event in the pupil's audit stream, and the access log that lists them."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ledger.core import envelope, policy
from ledger.core.errors import Category, LedgerError, Problem
from ledger.core.orgs import fold_org
from ledger.core.policy import Principal
from ledger.core.rules import Record
from ledger.core.times import timestamp
from ledger.research.releases import releases_holding
from ledger.storage.store import Entry, Subject

if TYPE_CHECKING:
    from ledger.service import Ledger

ADMIN_ORG = "dfe:admin"  # the ledger's own organisation: it signs the access events (and the operator's own events)
LINKED_FIELDS = ("school", "setting", "host_school", "commissioner")  # fields of pupil events naming an organisation whose facts links need
# A refusal to read a pupil (403 not_related) is answered no sooner than this after the read began: reading and
# folding a known pupil's records takes longer than finding none, and the answer's timing must not tell which.
REFUSAL_FLOOR_SECONDS = 0.010


@dataclass(frozen=True)
class Reader:
    """Who reads an identified pupil record and why: the read is authorised by ``policy`` and recorded."""

    principal: Principal
    purpose: str | None = None
    reference: str | None = None
    endpoint: str = "pupilHistory"


def windows(ledger: Ledger) -> policy.Windows:
    return policy.Windows(ledger.settings.access_window_days, ledger.settings.inspection_window_days)


def pupil_for_read(ledger: Ledger, aggregate_id: uuid.UUID) -> Subject | None:
    """A pupil's stream for a read of its identified record, its key read from the database with it: one round trip,
    the same whether or not the pupil exists, so that a refusal takes as long for either (no timing oracle)."""
    return ledger.store.lookups([], [aggregate_id])[1].get(aggregate_id)


def pupil_links(ledger: Ledger, subject: Subject | None, reader_org: str) -> list[policy.PupilLink]:
    """The organisations related to the pupil and when, from the pupil's records (``subject``, as read by
    ``pupil_for_read``) and the facts of the organisations they name, read in one round trip. The reader's
    own organisation is read with them: an unknown pupil costs the same read as a known one."""
    records = subject.records if subject else []
    named = {org for r in records for k in LINKED_FIELDS if isinstance(org := r.data.get(k), str)}
    ids = {ledger.secrets.org_id(org): org for org in named | {reader_org}}
    found = ledger.store.subjects(list(ids))
    facts = {}
    for aggregate_id, org in ids.items():
        state = fold_org(org, found[aggregate_id].records) if aggregate_id in found else fold_org(org, [])
        facts[org] = policy.OrgFacts(state.la, state.trust)
    return policy.pupil_links(records, facts)


def authorise_pupil_read(
    ledger: Ledger,
    upn: str,
    reader: Reader,
    subject: Subject | None,
    own_submission: bool = False,
    event: Record | None = None,
    started: float | None = None,
) -> tuple[str, policy.Grant]:
    """Authorise one read of a pupil's identified record and record it; returns the access event's id and the grant.

    ``subject``: the pupil's stream as the caller just read it, its key checked in the database. ``event``: the
    one event read (getEvent), which the grant must show. ``started``: when the read began (``time.monotonic``):
    a refusal for want of a relationship is not answered before ``REFUSAL_FLOOR_SECONDS`` from then."""
    started = time.monotonic() if started is None else started
    policy.purpose_for(reader.principal, reader.purpose)  # a missing or wrong purpose fails before anything is looked up
    links = pupil_links(ledger, subject, reader.principal.org)
    try:
        grant = policy.authorise_pupil_read(reader.principal, reader.purpose, links, ledger.clock().date(), windows(ledger), own_submission)
    except LedgerError as exc:
        if any(p.code == "not_related" for p in exc.problems):
            time.sleep(max(0.0, REFUSAL_FLOOR_SECONDS - (time.monotonic() - started)))
        raise
    if event is not None and not policy.visible(event, grant, reader.principal.org):
        raise policy.forbidden(
            "before_relationship",
            "$.event_id",
            f"this event occurred before {reader.principal.org}'s own link with "
            f"the pupil began; it reads what occurred from {grant.since} (docs/access.md)",
        )
    key = ledger.store.app.pupil_keys.get(ledger.secrets.pupil_id(upn))  # checked in the database by the read just made
    if key is None:
        raise LedgerError.one("not_found", "$.upn", "the ledger has no events for this pupil", Category.NOT_FOUND)
    data: dict[str, Any] = {
        "principal": {"org": reader.principal.org, "role": reader.principal.role, "token_id": reader.principal.token_id},
        "purpose": grant.purpose,
        "endpoint": reader.endpoint,
        "basis": grant.basis[:200],
    }
    if reader.reference:
        data["reference"] = reader.reference
    if event is not None:
        data["event_id"] = event.event_id
    return record_access(ledger, "access.record_viewed", key.audit_id, data), grant


def access_body(event_type: str, audit_id: str, data: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The body of a ledger-written ``access.*`` event about the pupil whose audit pseudonym is ``audit_id``."""
    return {
        "event_id": str(uuid.uuid4()),
        "type": event_type,
        "schema_version": 1,
        "submitter": ADMIN_ORG,
        "subject": {"pupil": audit_id},
        "occurred_on": now.date().isoformat(),
        "reported_at": timestamp(now)[:19] + "Z",
        "data": data,
    }


def record_access(ledger: Ledger, event_type: str, audit_id: str, data: dict[str, Any]) -> str:
    """Append a ledger-signed ``access.*`` event to the pupil's audit stream (so it is in the transparency log).
    A malformed reference is the caller's fault (at ``$.reference``, the reader's), so it is not a 500."""
    try:
        receipt = ledger.submit(envelope.sign(access_body(event_type, audit_id, data, ledger.clock()), ledger.secrets.signing_key))
    except LedgerError as exc:
        raise LedgerError(
            [Problem(p.code, "$.reference" if ".reference" in p.path else p.path, p.message, p.category) for p in exc.problems]
        ) from None
    return receipt.event_id


def access_log(
    ledger: Ledger,
    principal: Principal,
    upn: str | None = None,
    viewer_org: str | None = None,
    purpose: str | None = None,
    after: int = 0,
    limit: int = 100,
) -> dict[str, Any]:
    """Who looked and why: one pupil's views (a subject access request; itself recorded), or the views
    by an organisation's principals (oversight), oldest first from sequence ``after``."""
    if upn is not None:
        reader = Reader(principal, purpose, None, "accessLog")
        started = time.monotonic()
        _, grant = authorise_pupil_read(ledger, upn, reader, pupil_for_read(ledger, ledger.secrets.pupil_id(upn)), started=started)
        key = ledger.store.app.pupil_keys.get(ledger.secrets.pupil_id(upn))  # checked in the database by that read
        assert key is not None
        stream = ledger.secrets.audit_stream_id(key.audit_id)
        subject = ledger.store.subject(stream)
        index = ledger.store.index_for_subject(stream)
        items = [
            access_item(e, index[e.version].sequence)
            for e in (subject.entries if subject else [])
            if index[e.version].sequence > after and (grant.since is None or e.received_at.date() >= grant.since)
        ]
        # which research projects received the pupil's pseudonymised rows (docs/research.md)
        received = releases_holding(ledger.store, ledger.secrets.pupil_id(upn), ledger.secrets.pseudonym_key)
        return {
            "pupil": key.audit_id,
            "views": items[:limit],
            "next_after": items[limit - 1]["sequence"] if len(items) > limit else None,
            "research_releases": received,
        }
    if not policy.may_read_access_log(principal, viewer_org):
        raise policy.forbidden(
            "access_log_scope", "$.org", f"{principal.org} may read the views by its own principals (org={principal.org})"
        )
    rows = ledger.store.access_rows(viewer_org, after, limit)
    streams: dict[str, dict[int, Entry]] = {}  # each audit stream loaded once, however many of its views are listed
    items = []
    for row in rows:
        if row.originator_id not in streams:
            subject = ledger.store.subject(uuid.UUID(row.originator_id))
            streams[row.originator_id] = {e.version: e for e in subject.entries} if subject else {}
        items.append(access_item(streams[row.originator_id].get(row.originator_version), row.sequence))
    return {"org": viewer_org, "views": items, "next_after": rows[-1].sequence if len(rows) == limit else None}


def access_item(entry: Any, sequence: int) -> dict[str, Any]:
    r = entry.record
    data = dict(r.data)
    read = data.pop("event_id", None)  # getEvent: the event that was read
    return {
        **data,
        "event_id": r.event_id,
        "sequence": sequence,
        "type": r.type,
        "received_at": timestamp(r.received_at),
        "pupil": r.subject,
        **({"read_event_id": read} if read else {}),
    }
