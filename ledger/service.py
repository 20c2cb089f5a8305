"""The submission pipeline and reads, callable without HTTP (design.md 2, "data flow").

decode -> catalogue validation -> signature (key registry) -> submitter authorisation ->
idempotency -> domain rules on the subject -> one transaction -> signed receipts.
"""

from __future__ import annotations

import random
import secrets as pysecrets
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cache
from typing import Any

from eventsourcing.persistence import IntegrityError

from . import catalogue, envelope, jcs, policy, signatures, tokens
from .config import Settings
from .envelope import b64decode_strict
from .errors import Category, LedgerError, Problem
from .identifiers import org_scheme
from .oidc import OidcVerifier
from .orgs import OrgState, check_org, fold_org
from .policy import Principal as Principal  # re-exported: callers import it from here
from .research.projects import check_research
from .research.releases import releases_holding
from .rules import Record, check_pupil, effective, fold_pupil
from .secrets import LedgerSecrets
from .store import INDEX_COLUMNS, IndexRow, Store, Subject

RECEIPT_PAYLOAD_TYPE = "application/vnd.pupil-ledger.receipt+json"
ADMIN_ORG = "dfe:admin"
ROLES = policy.ROLES
MAX_ATTEMPTS = 20  # optimistic-concurrency retries when another writer appended to the same subject
SUBJECT_CACHE_SIZE = 20_000  # committed subjects kept for rule checks (a few KB each)
PUBLIC_KEYS_KEPT = 100_000  # key ids remembered for sending signatures ahead (England has about 24,000 schools)


def utcnow() -> datetime:
    return datetime.now(UTC)


def timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Reader:
    """Who reads an identified pupil record and why: the read is authorised by ``policy`` and recorded."""

    principal: Principal
    purpose: str | None = None
    reference: str | None = None
    endpoint: str = "pupilHistory"


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
            "event_id": self.event_id, "sequence": self.sequence, "event_digest": self.event_digest,
            "envelope_digest": self.envelope_digest, "received_at": self.received_at,
            "status": "created" if self.created else "duplicate", "flags": self.flags, "receipt": self.signed,
        }


@dataclass
class _Item:
    """One envelope in flight through the pipeline."""

    index: int
    path: str
    env: envelope.Envelope | None = None
    body: dict[str, Any] = field(default_factory=dict)
    flags: list[dict[str, str]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    duplicate_of: IndexRow | None = None
    subject_id: uuid.UUID | None = None  # the stream the event goes on
    reads: set[uuid.UUID] = field(default_factory=set)  # the subject and the submitter, whose state decides
    verified: tuple[str, bytes, bool] | None = None  # (key id, public key, signature valid), checked ahead
    pending: tuple[str, bytes] | None = None  # (key id, public key) whose verdict is on its way from the workers
    assumed_valid: bool = False  # judged before that verdict came in, as if the signature were valid


class Ledger:
    """The write side as a use-case boundary (no HTTP, no CLI)."""

    def __init__(self, store: Store, ledger_secrets: LedgerSecrets, settings: Settings, clock: Callable[[], datetime] = utcnow):
        self.store = store
        self.secrets = ledger_secrets
        self.settings = settings
        self.clock = clock
        self._subjects = _SubjectCache(SUBJECT_CACHE_SIZE)
        self._public_keys: dict[str, bytes] = {}  # key id -> public key, as last seen in an organisation's state (``_send_early``)
        self.tokens = tokens.TokenCache(store, clock)  # verified bearer tokens, so a request need not query for its own

    # -- submission --------------------------------------------------------------------------

    def submit(self, raw: Any, principal: Principal | None = None) -> Receipt:
        return self.submit_batch([raw], principal, path_of=lambda i: "$")[0]

    def submit_batch(
        self,
        raws: Sequence[Any],
        principal: Principal | None = None,
        path_of: Callable[[int], str] = lambda i: f"$.envelopes[{i}]",
        trusted_keys: dict[str, tuple[str, bytes]] | None = None,
    ) -> list[Receipt]:
        """Accept every envelope or none. ``principal`` None means a trusted local caller."""
        if len(raws) > self.settings.max_batch_items:
            raise LedgerError.one("batch_too_large", "$.envelopes", f"at most {self.settings.max_batch_items} envelopes per batch", Category.TOO_LARGE)
        outcomes = self._submit([(raw, principal, path_of(i)) for i, raw in enumerate(raws)], trusted_keys or {}, all_or_nothing=True)
        return [o for o in outcomes if isinstance(o, Receipt)]  # all or nothing: a problem raised instead

    def submit_each(self, requests: Sequence[tuple[Any, Principal | None]]) -> list[Receipt | LedgerError]:
        """Independent submissions committed in one transaction (group commit); each gets its own receipt or error.

        Nothing is returned before the commit, so a caller answered 201 is durable. An event_id that two
        requests of the group share is retried after the commit, where it is a replay or a conflict.
        """
        outcomes = self._submit([(raw, principal, "$") for raw, principal in requests], {}, all_or_nothing=False)
        again = [i for i, o in enumerate(outcomes) if isinstance(o, LedgerError) and all(p.code == "duplicate_in_batch" for p in o.problems)]
        if again:
            for i, outcome in zip(again, self.submit_each([requests[i] for i in again]), strict=True):
                outcomes[i] = outcome
        return outcomes

    def _submit(self, requests: Sequence[tuple[Any, Principal | None, str]], trusted: dict[str, tuple[str, bytes]],
                all_or_nothing: bool) -> list[Receipt | LedgerError]:
        verdicts: dict[tuple[int, str, bytes], bool] = {}  # signatures already verified, kept across attempts
        for attempt in range(MAX_ATTEMPTS):
            received_at = self.clock()
            ahead = _Ahead(verdicts) if attempt < MAX_ATTEMPTS - 1 and len(requests) >= signatures.MIN_BATCH else None
            items = []
            for i, (raw, principal, path) in enumerate(requests):
                item = self._prepare(raw, i, path, received_at, principal)
                items.append(item)
                if ahead is not None and not item.problems:
                    self._send_early(item, ahead)
            if ahead is not None:
                ahead.batch.flush()  # the last, partial task works while the batch's state is read
            working, cached = self._read_for(items)
            if ahead is not None:
                self._verify_ahead(items, working, trusted, ahead)
                ahead.batch.flush()
            events: list[Any] = []
            index_rows: list[dict[str, Any]] = []
            key_rows: list[tuple[str, str]] = []
            received_text = timestamp(received_at)
            for item in items:
                if item.problems or item.duplicate_of is not None:
                    continue
                self._authenticate(item, received_at, working, trusted)
                if not item.problems:
                    self._apply_rules(item, received_at, received_text, working, events, index_rows, key_rows)
            if ahead is not None:
                ahead.collect()
                if any(item.assumed_valid and item.verified is not None and not item.verified[2] for item in items):
                    continue  # a signature did not verify after all: judge the batch again, knowing it
            rejected = [item for item in items if item.problems]
            stale = cached & set().union(*(item.reads for item in rejected))
            if stale and attempt < MAX_ATTEMPTS - 1:
                self._subjects.forget(stale)  # never reject on cached state: another process may have moved on
                continue
            if all_or_nothing and rejected:
                raise LedgerError([p for item in rejected for p in item.problems])
            ahead_of_commit = _ReceiptsAhead(self, items, index_rows)
            try:
                sequences = self.store.append(events, index_rows, key_rows, on_ids=ahead_of_commit.start) if events else []
            except IntegrityError:
                ahead_of_commit.drop()
                self._subjects.forget(working)
                if attempt == MAX_ATTEMPTS - 1:
                    raise
                time.sleep(random.uniform(0, 0.002 * (attempt + 1)))
                continue  # a concurrent writer got there first: re-read and re-check everything
            self._subjects.put([s for s in working.values() if s is not None])
            receipts = iter(ahead_of_commit.receipts(sequences))
            return [LedgerError(item.problems) if item.problems else next(receipts) for item in items]
        raise AssertionError("unreachable")

    def _read_for(self, items: list[_Item]) -> tuple[dict[uuid.UUID, Subject | None], set[uuid.UUID]]:
        """Everything the items need from the store, from the cache or in one round trip (not one per event): the
        index rows of their event ids (replays and conflicts: ``_check_event_ids``), and every subject and
        submitter they touch. Returns the working set (None: no such subject yet) and the ids that came from the cache.
        """
        wanted: dict[int, tuple[uuid.UUID, uuid.UUID]] = {}  # item: its subject, its submitter
        for item in items:
            if not item.problems:
                wanted[item.index] = (self._subject_id(item.body), self.secrets.org_id(item.body["submitter"]))
        everything = {aggregate_id for pair in wanted.values() for aggregate_id in pair}
        found = self._subjects.take(everything)
        cached = set(found)
        existing, loaded = self.store.lookups(self._check_event_ids(items), everything - cached, meanwhile=lambda: _digest(items))
        self._mark_replays(items, existing)
        found.update(loaded)
        for item in items:
            if not item.problems and item.duplicate_of is None:  # still in play: its subject and submitter are read
                item.subject_id = wanted[item.index][0]
                item.reads = set(wanted[item.index])
        working: dict[uuid.UUID, Subject | None] = {aggregate_id: found.get(aggregate_id) for aggregate_id in everything}
        return working, cached

    def _verify_ahead(self, items: list[_Item], working: dict[uuid.UUID, Subject | None], trusted: dict[str, tuple[str, bytes]],
                      ahead: _Ahead) -> None:
        """Send the batch's signatures to the worker processes, with the keys in the organisations' state before
        the batch, so the rules run meanwhile. ``_authenticate`` still decides, in order and with the state as the batch changes
        it, and verifies inline a signature whose key was not sent; until the verdicts are in, a signature sent
        counts as valid (``assumed_valid``). They are collected before anything is committed, and the batch is
        judged again if one failed.
        """
        orgs: dict[str, OrgState] = {}
        for item in items:
            if item.problems or item.duplicate_of is not None or item.env is None:
                continue
            submitter = item.body["submitter"]
            if submitter not in orgs:
                orgs[submitter] = self.org_state(submitter, working)
                self._remember_keys(orgs[submitter])
            for kid, _sig in item.env.signatures:
                known = trusted[kid][1] if kid in trusted and trusted[kid][0] == submitter else None
                if known is None and kid in orgs[submitter].keys:
                    known = orgs[submitter].keys[kid].public_key
                if known is not None:
                    ahead.send(item, kid, known)
                    break

    def _send_early(self, item: _Item, ahead: _Ahead) -> None:
        """Send the item's signature to the workers as soon as it is decoded, with the public key its key id had
        when last seen in an organisation's state, so the workers verify while this thread goes on with the batch.
        What this decides is only whether those bytes verify under that key: whether the key is the submitter's and
        valid at this moment is decided in ``_authenticate``, which uses the verdict only for the same (key id,
        public key) and verifies otherwise.
        """
        assert item.env is not None
        for kid, _sig in item.env.signatures:
            public_raw = self._public_keys.get(kid)
            if public_raw is not None:
                ahead.send(item, kid, public_raw)
                return

    def _remember_keys(self, org: OrgState) -> None:
        if len(self._public_keys) > PUBLIC_KEYS_KEPT:
            self._public_keys.clear()  # a bound, not a cache policy: the next batches fill it again
        for kid, key in org.keys.items():
            self._public_keys[kid] = key.public_key

    @staticmethod
    def _signature_valid(item: _Item, kid: str, public_raw: bytes) -> bool:
        assert item.env is not None
        if item.verified is not None and item.verified[:2] == (kid, public_raw):
            return item.verified[2]
        if item.pending == (kid, public_raw):
            item.assumed_valid = True  # until the verdict is collected, before the commit
            return True
        return item.env.verify(public_raw, kid)

    def _prepare(self, raw: Any, index: int, path: str, received_at: datetime, principal: Principal | None) -> _Item:
        """Decode, validate and check the bearer's organisation: everything that needs no stored state."""
        item = _Item(index, path)
        try:
            item.env = envelope.decode(raw, path)
        except LedgerError as exc:
            item.problems.extend(exc.problems)
            return item
        item.body = item.env.body
        checked = catalogue.validate(item.body, received_at, prefix=f"{path}.payload")
        item.problems.extend(checked.problems)
        item.flags.extend(checked.flags)
        if principal is not None and not checked.problems:
            item.problems.extend(p.at(f"{path}.payload") for p in policy.submit_problems(principal, item.body))
        return item

    def _check_event_ids(self, items: list[_Item]) -> list[str]:
        """Mark an event id two items of the batch share; return the event ids to look up in the index."""
        seen: dict[str, int] = {}
        for item in items:
            if item.problems:
                continue
            event_id = item.body["event_id"]
            if event_id in seen:
                item.problems.append(Problem("duplicate_in_batch", f"{item.path}.payload.event_id", f"event_id also used by item {seen[event_id]} of this batch", Category.INVALID))
            else:
                seen[event_id] = item.index
        return [i.body["event_id"] for i in items if not i.problems]

    @staticmethod
    def _mark_replays(items: list[_Item], existing: dict[str, IndexRow]) -> None:
        """An event id already accepted: a replay (the same envelope) or a conflict (other bytes)."""
        for item in items:
            row = existing.get(item.body.get("event_id", "")) if not item.problems else None
            if row is None:
                continue
            assert item.env is not None
            if row.envelope_digest == item.env.envelope_digest:
                item.duplicate_of = row
            else:
                item.problems.append(Problem(
                    "event_id_conflict", f"{item.path}.payload.event_id",
                    f"event_id {row.event_id} was already accepted (sequence {row.sequence}) with different bytes",
                    Category.CONFLICT,
                ))

    def _subject_id(self, body: dict[str, Any]) -> uuid.UUID:
        subject = body["subject"]
        if "pupil" in subject:
            return self.secrets.audit_stream_id(subject["pupil"])
        return self.secrets.pupil_id(subject["upn"]) if "upn" in subject else self.secrets.org_id(subject["org"])

    def _load(self, aggregate_id: uuid.UUID, working: dict[uuid.UUID, Subject | None]) -> Subject | None:
        if aggregate_id not in working:
            working[aggregate_id] = self.store.subject(aggregate_id)
        return working[aggregate_id]

    def org_state(self, org: str, working: dict[uuid.UUID, Subject | None] | None = None) -> OrgState:
        subject = self._load(self.secrets.org_id(org), {} if working is None else working)
        return subject.folded("org", lambda records: fold_org(org, records)) if subject else fold_org(org, [])

    def _authenticate(self, item: _Item, received_at: datetime,
                      working: dict[uuid.UUID, Subject | None], trusted: dict[str, tuple[str, bytes]]) -> None:
        assert item.env is not None
        submitter = item.body["submitter"]
        sig_path = f"{item.path}.signatures"

        def forbid(code: str, message: str, path: str = sig_path) -> None:
            item.problems.append(Problem(code, path, message, Category.FORBIDDEN))

        org = self.org_state(submitter, working)
        for kid, _sig in item.env.signatures:
            if kid in trusted and trusted[kid][0] == submitter:
                if self._signature_valid(item, kid, trusted[kid][1]):
                    return
                forbid("signature_invalid", f"the signature by key {kid} does not verify")
                return
            key = org.keys.get(kid)
            if key is None:
                continue
            if key.revoked_at is not None and received_at >= key.revoked_at:
                forbid("key_revoked", f"key {kid} of {submitter} was revoked at {key.revoked_at.isoformat()}")
                return
            if received_at < key.added_at:
                forbid("key_not_yet_valid", f"key {kid} of {submitter} is valid from {key.added_at.isoformat()}")
                return
            if not self._signature_valid(item, kid, key.public_key):
                forbid("signature_invalid", f"the signature by key {kid} does not verify over this payload")
            return
        if not org.registered:
            forbid("submitter_unknown", f"{submitter} is not a registered organisation", f"{item.path}.payload.submitter")
            return
        kid = item.env.signatures[0][0]
        owner = self.store.key_owner(kid)
        if owner is not None and owner != submitter:
            forbid("key_not_submitters", f"key {kid} belongs to {owner}, not to the submitter {submitter}")
        else:
            forbid("key_unknown", f"key {kid} is not registered for {submitter}")

    def _apply_rules(self, item: _Item, received_at: datetime, received_text: str, working: dict[uuid.UUID, Subject | None],
                     events: list[Any], index_rows: list[dict[str, Any]], key_rows: list[tuple[str, str]]) -> None:
        assert item.env is not None
        body = item.body
        record = Record.from_body(body, received_at)
        aggregate_id = item.subject_id
        assert aggregate_id is not None  # set by _read_for for every item still in play
        subject = self._load(aggregate_id, working)
        records = subject.records if subject else []
        etype = catalogue.event_types()[body["type"]]
        if etype.subject == "pupil":
            problems, flags = check_pupil(records, record)
        elif etype.subject == "audit":
            problems, flags = [], []  # ledger-written access records
        else:
            org_state = fold_org(body["subject"]["org"], records)
            problems, flags = check_org(org_state, record), []
            if not problems and etype.name.startswith("research."):  # projects and releases (docs/research.md)
                problems = check_research(records, record)
            if "self" in etype.submitters and body["submitter"] not in (ADMIN_ORG, body["subject"]["org"]):
                problems.append(Problem("submitter_not_allowed", f"{item.path}.payload.submitter", f"{body['type']} is posted by {ADMIN_ORG} or the organisation itself", Category.FORBIDDEN))
        item.problems.extend(p.at(item.path) for p in problems)
        if item.problems:
            return
        item.flags.extend(flags)
        text = item.env.canonical_bytes.decode("utf-8")
        if subject is None:
            subject = Subject.start(aggregate_id, text, received_at, item.flags, record)
            working[aggregate_id] = subject
        else:
            subject.record(text, received_at, item.flags, record)
        pending = subject.collect_events()
        events.extend(pending)
        version = pending[-1].originator_version
        index_rows.append({
            "event_id": body["event_id"], "originator_id": str(aggregate_id), "originator_version": version,
            "type": body["type"], "submitter": body["submitter"], "event_digest": item.env.event_digest,
            "envelope_digest": item.env.envelope_digest, "received_at": received_text,
        })
        if body["type"] == "org.key_added":
            key_rows.append((body["data"]["key_id"], body["subject"]["org"]))
            self._public_keys[body["data"]["key_id"]] = b64decode_strict(body["data"]["public_key"])  # a hint only: see _send_early

    @staticmethod
    def _accepted(items: list[_Item], index_rows: list[dict[str, Any]], ids: Sequence[int]) -> list[_Accepted]:
        """What each item without problems gets a receipt for: its new index row (with the sequence number its
        event has: ``ids`` in the events' order, one event per new row) or the row it replays."""
        new_rows = iter(zip(index_rows, ids, strict=True))
        accepted: list[_Accepted] = []
        for item in items:
            if item.problems:
                continue
            if item.duplicate_of is not None:
                accepted.append((item.duplicate_of, False, None))
            else:
                row, sequence = next(new_rows)
                accepted.append((IndexRow(**row, sequence=sequence), True, item.flags))
        return accepted

    def _receipts(self, accepted: list[_Accepted]) -> list[Receipt]:
        return _ReceiptSigning(self, accepted).receipts()

    def _claim(self, row: IndexRow) -> dict[str, Any]:
        """What a receipt says."""
        return {
            "event_id": row.event_id, "sequence": row.sequence, "event_digest": row.event_digest,
            "envelope_digest": row.envelope_digest, "received_at": row.received_at, "ledger": self.settings.origin,
            # the promise: this event is in a signed checkpoint of the log within this many seconds
            "max_merge_delay_seconds": _json_number(self.settings.max_merge_delay),
        }

    # -- reads ---------------------------------------------------------------------------------

    def _entry(self, row: IndexRow) -> Any:
        subject = self.store.subject(uuid.UUID(row.originator_id))
        if subject is None:
            return None
        return next((e for e in subject.entries if e.version == row.originator_version), None)

    def get_event(self, event_id: str, reader: Reader | None = None) -> dict[str, Any]:
        """One accepted event. With a ``reader``: authorised by ``policy``; reading a pupil event is recorded."""
        row = self.store.index_rows([event_id]).get(event_id)
        entry = self._entry(row) if row else None
        if row is None or entry is None:
            raise LedgerError.one("not_found", "$.event_id", f"no event {event_id} that you may read", Category.NOT_FOUND)
        access = None
        if reader is not None:
            if entry.record.type.startswith("pupil."):
                reader = Reader(reader.principal, reader.purpose, reader.reference, "getEvent")
                access = self._authorise_pupil_read(entry.record.subject, reader, own_submission=row.submitter == reader.principal.org,
                                                    event_id=event_id)
            elif not policy.may_read_event(reader.principal, row.type):
                raise LedgerError.one("not_found", "$.event_id", f"no event {event_id} that you may read", Category.NOT_FOUND)
        out = {
            "event_id": row.event_id, "sequence": row.sequence, "type": row.type, "submitter": row.submitter,
            "received_at": row.received_at, "event_digest": row.event_digest, "envelope_digest": row.envelope_digest,
            "flags": entry.flags, "envelope": jcs.parse(entry.envelope.encode("utf-8")),
            "receipt": self._receipts([(row, False, entry.flags)])[0].signed,
        }
        if access:
            out["access_event_id"] = access
        return out

    def pupil_history(self, upn: str, as_of: date | None = None, known_at: datetime | None = None,
                      include_envelopes: bool = False, reader: Reader | None = None) -> dict[str, Any]:
        """History of a pupil as of effective date ``as_of``, as known at ledger time ``known_at``.

        With a ``reader`` (every HTTP read): authorised by ``policy`` and recorded as ``access.record_viewed``.
        """
        aggregate_id = self.secrets.pupil_id(upn)
        subject = self.store.subject(aggregate_id, fresh=True)  # read once: authorised on, and shown, the same state
        access = self._authorise_pupil_read(upn, reader, subject=subject) if reader is not None else None
        if subject is None:
            raise LedgerError.one("not_found", "$.upn", "the ledger has no events for this pupil", Category.NOT_FOUND)
        index = self.store.index_for_subject(aggregate_id)
        known = [e for e in subject.entries if known_at is None or e.received_at <= known_at]
        visible = [e for e in known if as_of is None or e.record.occurred_on <= as_of]
        superseded_by = {e.record.corrects: e.record.event_id for e in known if e.record.corrects}
        # A correction supersedes its target whatever its own effective date, so the state is folded
        # from the records in force as known at ``known_at``, then cut at ``as_of``.
        in_force = [r for r in effective([e.record for e in known]) if as_of is None or r.occurred_on <= as_of]
        events = []
        for e in visible:
            r = e.record
            row = index.get(e.version)
            item: dict[str, Any] = {
                "event_id": r.event_id, "sequence": row.sequence if row else None, "type": r.type, "submitter": r.submitter,
                "occurred_on": r.occurred_on.isoformat(), "received_at": timestamp(r.received_at), "data": r.data,
                "corrects": r.corrects, "superseded_by": superseded_by.get(r.event_id), "flags": e.flags,
                "event_digest": row.event_digest if row else None,
            }
            if include_envelopes:
                item["envelope"] = jcs.parse(e.envelope.encode("utf-8"))
            events.append(item)
        state = fold_pupil(in_force)
        day = as_of or self.clock().date()
        out = {
            "as_of": as_of.isoformat() if as_of else None,
            "known_at": timestamp(known_at) if known_at else None,
            "on_roll": [
                {"school": r.school, "enrolment_status": r.status, "since": r.start.isoformat(), "sen_status": r.sen_status}
                for r in state.registrations if r.open_on(day)
            ],
            "open": [
                {"kind": ep.kind, "started_by": ep.start_event_id, "since": ep.start.isoformat(), "details": ep.details}
                for ep in state.episodes.values() if ep.end is None
            ],
            "events": events,
        }
        if access:
            out["access_event_id"] = access
        return out

    # -- access control and the read audit (docs/access.md) -------------------------------------

    @property
    def windows(self) -> policy.Windows:
        return policy.Windows(self.settings.access_window_days, self.settings.inspection_window_days)

    def pupil_links(self, upn: str, subject: Subject | None = None) -> list[policy.PupilLink]:
        """The organisations related to the pupil and when, from the pupil's records (``subject``: as just read
        with ``fresh=True``) and the organisations' facts."""
        subject = subject or self.store.subject(self.secrets.pupil_id(upn), fresh=True)
        records = subject.records if subject else []
        named = {r.data.get(k) for r in records for k in ("school", "setting", "host_school", "commissioner")}
        facts = {}
        for org in named:
            if isinstance(org, str):
                state = self.org_state(org)
                facts[org] = policy.OrgFacts(state.la, state.trust)
        return policy.pupil_links(records, facts)

    def _authorise_pupil_read(self, upn: str, reader: Reader, own_submission: bool = False, event_id: str | None = None,
                              subject: Subject | None = None) -> str:
        """Authorise one read of a pupil's identified record and record it; returns the access event's id.

        ``subject``: the pupil's stream as the caller just read it with ``fresh=True`` (its key then checked)."""
        policy.purpose_for(reader.principal, reader.purpose)  # a missing or wrong purpose fails before anything is looked up
        links = self.pupil_links(upn, subject)
        grant = policy.authorise_pupil_read(reader.principal, reader.purpose, links, self.clock().date(), self.windows, own_submission)
        key = self.store.app.pupil_keys.get(self.secrets.pupil_id(upn))  # checked in the database by the fresh read just made
        if key is None:
            raise LedgerError.one("not_found", "$.upn", "the ledger has no events for this pupil", Category.NOT_FOUND)
        data: dict[str, Any] = {
            "principal": {"org": reader.principal.org, "role": reader.principal.role, "token_id": reader.principal.token_id},
            "purpose": grant.purpose, "endpoint": reader.endpoint, "basis": grant.basis[:200],
        }
        if reader.reference:
            data["reference"] = reader.reference
        if event_id:
            data["event_id"] = event_id
        return self._record_access("access.record_viewed", key.audit_id, data)

    def _record_access(self, event_type: str, audit_id: str, data: dict[str, Any]) -> str:
        """Append a ledger-signed ``access.*`` event to the pupil's audit stream (so it is in the transparency log)."""
        now = self.clock()
        body = {
            "event_id": str(uuid.uuid4()), "type": event_type, "schema_version": 1, "submitter": ADMIN_ORG,
            "subject": {"pupil": audit_id}, "occurred_on": now.date().isoformat(), "reported_at": timestamp(now)[:19] + "Z", "data": data,
        }
        try:
            receipt = self.submit(envelope.sign(body, self.secrets.signing_key))
        except LedgerError as exc:  # a malformed reference: the caller's fault, so it is not a 500
            raise LedgerError([Problem(p.code, "query:reference" if ".reference" in p.path else p.path, p.message, p.category)
                               for p in exc.problems]) from None
        return receipt.event_id

    def access_log(self, principal: Principal, upn: str | None = None, viewer_org: str | None = None,
                   purpose: str | None = None, after: int = 0, limit: int = 100) -> dict[str, Any]:
        """Who looked and why: one pupil's views (a subject access request; itself recorded), or the views
        by an organisation's principals (oversight), oldest first from sequence ``after``."""
        if upn is not None:
            reader = Reader(principal, purpose, None, "accessLog")
            self._authorise_pupil_read(upn, reader)
            key = self.store.app.pupil_keys.get(self.secrets.pupil_id(upn))  # checked in the database by that fresh read
            assert key is not None
            stream = self.secrets.audit_stream_id(key.audit_id)
            subject = self.store.subject(stream)
            index = self.store.index_for_subject(stream)
            items = [self._access_item(e, index[e.version].sequence) for e in (subject.entries if subject else []) if index[e.version].sequence > after]
            # which research projects received the pupil's pseudonymised rows (docs/research.md)
            received = releases_holding(self.store, self.secrets.pupil_id(upn), self.secrets.pseudonym_key)
            return {"pupil": key.audit_id, "views": items[:limit], "next_after": items[limit - 1]["sequence"] if len(items) > limit else None,
                    "research_releases": received}
        if not policy.may_read_access_log(principal, viewer_org):
            raise policy.forbidden("access_log_scope", "query:org", f"{principal.org} may read the views by its own principals (org={principal.org})")
        rows = [IndexRow(*r) for r in self.store.query(
            f"SELECT {', '.join(INDEX_COLUMNS)} FROM ledger_index WHERE type IN ('access.record_viewed', 'access.record_erased') "
            "AND sequence > ? ORDER BY sequence LIMIT ?", (after, limit))]
        streams: dict[str, dict[int, Any]] = {}  # each audit stream loaded once, however many of its views are listed
        items = []
        for row in rows:
            if row.originator_id not in streams:
                subject = self.store.subject(uuid.UUID(row.originator_id))
                streams[row.originator_id] = {e.version: e for e in subject.entries} if subject else {}
            item = self._access_item(streams[row.originator_id].get(row.originator_version), row.sequence)
            if viewer_org is None or item.get("principal", {}).get("org") == viewer_org:
                items.append(item)
        return {"org": viewer_org, "views": items, "next_after": rows[-1].sequence if len(rows) == limit else None}

    @staticmethod
    def _access_item(entry: Any, sequence: int) -> dict[str, Any]:
        r = entry.record
        data = dict(r.data)
        read = data.pop("event_id", None)  # getEvent: the event that was read
        return {**data, "event_id": r.event_id, "sequence": sequence, "type": r.type, "received_at": timestamp(r.received_at),
                "pupil": r.subject, **({"read_event_id": read} if read else {})}

    def erase(self, upn: str, ground: str, reference: str | None = None) -> dict[str, Any]:
        """Crypto-shred one pupil (docs/access.md): record the erasure in the pupil's audit stream, destroy the
        pupil's data key and unlink its rows from the pseudonym. The log's digests, and so its proofs, stay."""
        aggregate_id = self.secrets.pupil_id(upn)
        key = self.store.app.pupil_keys.get(aggregate_id, max_age=0)
        if key is None:
            raise LedgerError.one("not_found", "$.upn", "the ledger has no events for this pupil (never recorded, or already erased)", Category.NOT_FOUND)
        count = int(self.store.query("SELECT COUNT(*) FROM ledger_index WHERE originator_id = ?", (str(aggregate_id),))[0][0])
        data: dict[str, Any] = {"ground": ground, "events_erased": count}
        if reference:
            data["reference"] = reference
        erasure_event = self._record_access("access.record_erased", key.audit_id, data)
        erased = self.store.erase_subject(aggregate_id)
        self._subjects.forget([aggregate_id])
        return {"events_erased": erased, "audit_id": key.audit_id, "erasure_event_id": erasure_event}

    def list_orgs(self) -> list[dict[str, Any]]:
        rows = self.store.query("SELECT DISTINCT originator_id FROM ledger_index WHERE type IN ('org.registered', 'provider.unregistered_recorded')")
        out = []
        for (originator,) in rows:
            subject = self.store.subject(uuid.UUID(originator))
            if subject is None:
                continue
            org_id = subject.records[0].subject
            state = fold_org(org_id, subject.records)
            out.append({"org": org_id, "kind": state.kind, "name": state.name, "la": state.la, "trust": state.trust,
                        "closed": state.closed, "keys": [{"key_id": k.key_id, "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None} for k in state.keys.values()]})
        return sorted(out, key=lambda o: o["org"])

    # -- tokens ---------------------------------------------------------------------------------

    def issue_token(self, org: str, role: str, expires_at: datetime | None = None, scope: Sequence[str] = ()) -> str:
        """A bearer token for ``org`` as ``role`` (only its hash is kept). ``scope``: an inspector's inspected
        schools and areas (urn:..., la:...), required for inspectors and refused for other roles."""
        problem = policy.role_problem(org, role)
        if problem:
            raise LedgerError.one("unknown_role" if role not in ROLES else "role_org_mismatch", "$.role", problem)
        if (role == "inspector") != bool(scope):
            raise LedgerError.one("scope", "$.scope", "an inspector token names the inspected schools or areas (--scope); other roles take none")
        for org_in_scope in scope:
            if org_scheme(org_in_scope) not in ("urn", "la"):
                raise LedgerError.one("scope", "$.scope", f"{org_in_scope!r} is not a school (urn:NNNNNN) or an area (la:NNN)")
        if not self.org_state(org).registered:
            raise LedgerError.one("org_unknown", "$.org", f"{org} is not registered")
        token_id = pysecrets.token_hex(4)
        token = f"plt_{token_id}_{pysecrets.token_urlsafe(32)}"
        self.store.execute(
            "INSERT INTO ledger_tokens (token_id, token_hash, org_id, role, issued_at, expires_at, scope) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (token_id, tokens.token_hash(token), org, role, timestamp(self.clock()), timestamp(expires_at) if expires_at else None, " ".join(scope)),
        )
        return token

    @cache  # noqa: B019 - one verifier (and its JWKS cache) per ledger, for the ledger's lifetime
    def _oidc(self) -> OidcVerifier:
        return OidcVerifier(self.settings.oidc_jwks, self.settings.oidc_issuer, self.settings.oidc_audience)

    def revoke_token(self, token_or_id: str) -> bool:
        token_id = token_or_id.split("_")[1] if token_or_id.startswith("plt_") else token_or_id
        before = self.store.query("SELECT revoked_at FROM ledger_tokens WHERE token_id = ?", (token_id,))
        if not before:
            return False
        self.store.execute("UPDATE ledger_tokens SET revoked_at = ? WHERE token_id = ? AND revoked_at IS NULL", (timestamp(self.clock()), token_id))
        self.tokens.clear()  # other processes see it within tokens.RECHECK_SECONDS
        return True

    def authenticate(self, token: str) -> Principal | None:
        """The principal of a ledger token (``plt_...``) or, when an identity provider is configured, of a JWT."""
        parts = token.split("_")
        if len(parts) < 3 or parts[0] != "plt":
            found = self._oidc().principal(token) if self.settings.oidc_jwks else None
            return found if found is not None and self.org_state(found.org).registered else None
        self.tokens.recheck()
        found = self.tokens.get(token)
        if found is not None:
            return found
        generation = self.tokens.generation
        rows = self.store.query("SELECT token_hash, org_id, role, expires_at, revoked_at, scope FROM ledger_tokens WHERE token_id = ?", (parts[1],))
        if not rows:
            tokens.token_hash(token)  # the same work whether or not the id exists
            return None
        token_hash, org, role, expires_at, revoked_at, scope = rows[0]
        if not pysecrets.compare_digest(token_hash, tokens.token_hash(token)) or revoked_at:
            return None
        if expires_at and expires_at <= timestamp(self.clock()):
            return None
        principal = Principal(org, role, parts[1], frozenset((scope or "").split()))
        self.tokens.put(token, principal, datetime.fromisoformat(expires_at) if expires_at else None, generation)
        return principal


def _digest(items: list[_Item]) -> None:
    """Work out the items' digests (and canonical envelopes) now, while the batch's reads are answered: the
    replay check and the index rows need them next (about 5 µs an event)."""
    for item in items:
        if item.env is not None and not item.problems:
            item.env.event_digest  # noqa: B018 - cached properties, computed for later
            item.env.envelope_digest  # noqa: B018


_Accepted = tuple[IndexRow, bool, list[dict[str, str]] | None]  # index row, created (not a replay), flags (None: read them)


class _ReceiptSigning:
    """A batch's receipts, their signatures on their way from the worker processes."""

    def __init__(self, ledger: Ledger, accepted: list[_Accepted]):
        self.ledger, self.accepted = ledger, accepted
        self.payloads = [jcs.canonicalize(ledger._claim(row)) for row, _, _ in accepted]
        self.signing = signatures.Signing(ledger.secrets.signing_key, [envelope.pae(RECEIPT_PAYLOAD_TYPE, p) for p in self.payloads])

    def receipts(self) -> list[Receipt]:
        """The receipts, in order; flags None are read from the stored event."""
        out = []
        key_id = self.ledger.secrets.signing_key_id
        for (row, created, flags), payload, signature in zip(self.accepted, self.payloads, self.signing.results(), strict=True):
            if flags is None:
                entry = self.ledger._entry(row)
                flags = entry.flags if entry else []
            receipt = envelope.signed_envelope(RECEIPT_PAYLOAD_TYPE, payload, key_id, signature)
            out.append(Receipt(row.event_id, row.sequence, row.event_digest, row.envelope_digest, row.received_at, created, flags, receipt))
        return out

    def discard(self) -> None:
        self.signing.results()  # collected, so the workers' answers are not left waiting


class _ReceiptsAhead:
    """A batch's receipts, signed while its write is still in flight: the store tells ``start`` the sequence
    numbers before the commit (``Store.append``'s ``on_ids``), and the workers sign as the rows are written.
    Nothing is shown before the commit: ``receipts`` is asked only after ``append`` returned, and checks the
    numbers it was started with (a write retried inside the store starts again; one that failed is dropped)."""

    def __init__(self, ledger: Ledger, items: list[_Item], index_rows: list[dict[str, Any]]):
        self.ledger, self.items, self.index_rows = ledger, items, index_rows
        self._started: tuple[list[int], _ReceiptSigning] | None = None

    def start(self, ids: Sequence[int]) -> None:
        self.drop()
        self._started = (list(ids), _ReceiptSigning(self.ledger, Ledger._accepted(self.items, self.index_rows, ids)))

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


class _Ahead:
    """A batch's signatures on their way to the worker processes (``signatures.Batch``), and the verdicts."""

    def __init__(self, verdicts: dict[tuple[int, str, bytes], bool]):
        self.verdicts = verdicts  # (item index, key id, public key) -> valid, kept across attempts
        self.batch = signatures.Batch()
        self.sent: list[tuple[_Item, str, bytes]] = []

    def send(self, item: _Item, kid: str, public_raw: bytes) -> None:
        """Send the item's signature by ``kid`` to be checked against ``public_raw``, unless it is on its way
        already (sent early, ``Ledger._send_early``) or its verdict is known (an earlier attempt)."""
        if item.pending == (kid, public_raw):
            return
        known = self.verdicts.get((item.index, kid, public_raw))
        if known is not None:
            item.verified = (kid, public_raw, known)
            return
        assert item.env is not None
        signed = item.env.signed_by(kid)
        assert signed is not None
        self.batch.add((public_raw, *signed))
        self.sent.append((item, kid, public_raw))
        item.pending = (kid, public_raw)

    def collect(self) -> None:
        for (item, kid, raw), ok in zip(self.sent, self.batch.results(), strict=True):
            self.verdicts[item.index, kid, raw] = ok
            item.verified, item.pending = (kid, raw, ok), None


class _SubjectCache:
    """Committed subjects for the rule checks of later batches, least recently used out first.

    It hands out clones, so a batch that is rejected or loses a race never changes what is cached. An entry
    goes stale when another process appends to the subject: the commit then fails on the version and is
    retried from the database, and a rejection decided on cached state is re-checked from the database.
    """

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[uuid.UUID, Subject] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Subject | None]:
        out: dict[uuid.UUID, Subject | None] = {}
        with self._lock:
            for aggregate_id in ids:
                subject = self._items.get(aggregate_id)
                if subject is not None:
                    self._items.move_to_end(aggregate_id)
                    out[aggregate_id] = subject.clone()
        return out

    def put(self, subjects: Iterable[Subject]) -> None:
        with self._lock:
            for subject in subjects:
                self._items[subject.id] = subject
                self._items.move_to_end(subject.id)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def forget(self, ids: Iterable[uuid.UUID]) -> None:
        with self._lock:
            for aggregate_id in ids:
                self._items.pop(aggregate_id, None)


def _json_number(value: float) -> float | int:
    """A whole number as an int: the same JCS bytes (1.0 is written 1), through the fast path."""
    return int(value) if float(value).is_integer() else value
