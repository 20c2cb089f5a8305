"""The batch's write, staged event by event: each accepted envelope becomes an event on its subject (in the batch's
working set, so later envelopes of the batch see it), its index row, and what goes beside it in the same transaction
(``store.Beside``: access and claim rows, signing keys used, revocations)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ledger.claims import CLAIM_FLAGS
from ledger.core import catalogue
from ledger.core.envelope import b64decode_strict
from ledger.core.orgs import fold_org
from ledger.core.times import timestamp
from ledger.storage.store import Beside, Subject
from ledger.submission.early_verdicts import KeyHints
from ledger.submission.probes import PROBE_PURPOSE
from ledger.submission.values import Judged


@dataclass
class StagedWrite:
    """Everything one attempt at a batch will write, in one transaction (``Store.append``)."""

    beside: Beside
    events: list[Any] = field(default_factory=list)
    index_rows: list[dict[str, Any]] = field(default_factory=list)
    key_rows: list[tuple[str, str]] = field(default_factory=list)  # key id, organisation


def stage(
    write: StagedWrite,
    item: Judged,
    subject: Subject | None,
    working: dict[uuid.UUID, Subject | None],
    received_at: datetime,
    hints: KeyHints,
) -> None:
    """Stage the accepted item's write. Nothing here can reject it: every check came before."""
    env, record, flags = item.decoded.env, item.record, list(item.flags)
    body, aggregate_id = env.body, item.authenticated.located.subject_id
    text = env.canonical_bytes.decode("utf-8")
    if subject is None:
        subject = Subject.start(aggregate_id, text, received_at, flags, record)
        working[aggregate_id] = subject
    else:
        subject.record(text, received_at, flags, record)
    pending = subject.collect_events()
    write.events.extend(pending)
    version = pending[-1].originator_version
    beside = write.beside
    write.index_rows.append(
        {
            "event_id": body["event_id"],
            "originator_id": str(aggregate_id),
            "originator_version": version,
            "type": body["type"],
            "submitter": body["submitter"],
            "event_digest": env.event_digest,
            "envelope_digest": env.envelope_digest,
            "received_at": beside.received_at,
        }
    )
    beside.signed_with |= item.authenticated.signed_with
    if catalogue.event_types()[body["type"]].subject == "audit":  # a ledger-written access event, in the pupil's audit stream
        beside.access.append((str(aggregate_id), version, body["data"].get("principal", {}).get("org")))
        if body["data"].get("purpose") == PROBE_PURPOSE:
            beside.claims.append((str(aggregate_id), version, body["data"]["principal"]["org"], body["data"]["rejected"]))
    if any(flag["code"] in CLAIM_FLAGS for flag in flags):
        beside.claims.extend((str(aggregate_id), version, body["submitter"], flag["code"]) for flag in flags if flag["code"] in CLAIM_FLAGS)
    if body["type"] == "org.key_added":
        write.key_rows.append((body["data"]["key_id"], body["subject"]["org"]))
        hints.learn(body["data"]["key_id"], b64decode_strict(body["data"]["public_key"]))  # a hint only: see early_verdicts
    elif body["type"] == "org.key_revoked":
        key = subject.folded("org", lambda rs: fold_org(body["subject"]["org"], rs)).keys[body["data"]["key_id"]]
        assert key.revoked_at is not None  # as the organisation's own state now has it: one place decides when
        beside.revocations.append((key.key_id, body["subject"]["org"], timestamp(key.revoked_at)))
