"""The submission pipeline and reads, callable without HTTP (design.md 2, "data flow").

decode -> catalogue validation -> signature (key registry) -> submitter authorisation ->
idempotency -> domain rules on the subject -> one transaction -> signed receipts.
"""

from __future__ import annotations

import logging
import math
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

from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError

from . import catalogue, envelope, funding_rules, jcs, policy, signatures, tokens
from .config import Settings
from .envelope import b64decode_strict
from .errors import Category, LedgerError, Problem
from .identifiers import org_scheme
from .oidc import OidcVerifier
from .orgs import OrgState, check_org, fold_org
from .policy import Principal as Principal  # re-exported: callers import it from here
from .research.projects import check_research
from .research.releases import releases_holding
from .rules import CROSS_ORG_CODES, OrgFacts, Record, check_pupil, effective, fold_pupil
from .secrets import LedgerSecrets
from .store import INDEX_COLUMNS, Beside, IndexRow, Store, Subject

RECEIPT_PAYLOAD_TYPE = "application/vnd.pupil-ledger.receipt+json"
ADMIN_ORG = "dfe:admin"
ROLES = policy.ROLES
MAX_ATTEMPTS = 20  # optimistic-concurrency retries when another writer appended to the same subject
SUBJECT_CACHE_SIZE = 20_000  # committed subjects kept for rule checks (a few KB each)
PUBLIC_KEYS_KEPT = 100_000  # key ids remembered for sending signatures ahead (England has about 24,000 schools)
SPLIT_AFTER_CONFLICTS = 3  # a group's write failing this often in a row on fresh state is split (``submit_each``)

LINKED_FIELDS = ("school", "setting", "host_school", "commissioner")  # fields of pupil events naming an organisation whose facts links need
CLAIM_FLAGS = frozenset({"claim_new_area"})  # accepted claims the operator is shown (``claims_report``)
PROBE_PURPOSE = "rejected_submission"  # the purpose such a rejection is recorded with (code list access_purposes)
PROBE_BURST = 20  # such rejections per submitting organisation before it is limited ...
PROBE_REFILL_SECONDS = 60.0  # ... and then one more each this many seconds (per API process)
# A refusal to read a pupil (403 not_related) is answered no sooner than this after the read began: reading and
# folding a known pupil's records takes longer than finding none, and the answer's timing must not tell which.
REFUSAL_FLOOR_SECONDS = 0.010

log = logging.getLogger("pupil_ledger.service")


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
    principal: Principal | None = None  # who posted it (None: a trusted local caller)
    signed_with: set[str] = field(default_factory=set)  # the submitter's keys its signatures verified under
    retry_after: float | None = None  # seconds, when it was refused for a while (rule_probe_limited)


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
        self.probes = ProbeBudget(PROBE_BURST, PROBE_REFILL_SECONDS)  # rejections that told a submitter about others' records

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
        outcomes = self._submit([(raw, principal, path_of(i)) for i, raw in enumerate(raws)], trusted_keys or {}, all_or_nothing=True,
                                endpoint="submitBatch")
        return [o for o in outcomes if isinstance(o, Receipt)]  # all or nothing: a problem raised instead

    def submit_each(self, requests: Sequence[tuple[Any, Principal | None]]) -> list[Receipt | Exception]:
        """Independent submissions committed in one transaction (group commit); each gets its own receipt or error.

        Nothing is returned before the commit, so a caller answered 201 is durable. An event_id that two
        requests of the group share is retried after the commit, where it is a replay or a conflict. Each request
        succeeds or fails on its own: one that raises while it is judged is rejected alone (``_failed``), and when the
        group's write fails for a reason that is not the database's state or health (``_GroupWriteFailed``), the
        group is split and each half written on its own, until only the request that made it fail fails.
        """
        try:
            outcomes = self._submit([(raw, principal, "$") for raw, principal in requests], {}, all_or_nothing=False, endpoint="submitEvent")
        except _GroupWriteFailed as failed:
            if len(requests) == 1:
                return [failed.cause]
            half = len(requests) // 2
            return self._submit_part(requests[:half]) + self._submit_part(requests[half:])
        again = [i for i, o in enumerate(outcomes) if isinstance(o, LedgerError) and all(p.code == "duplicate_in_batch" for p in o.problems)]
        if again:
            for i, outcome in zip(again, self._submit_part([requests[i] for i in again]), strict=True):
                outcomes[i] = outcome
        return outcomes

    def _submit_part(self, requests: Sequence[tuple[Any, Principal | None]]) -> list[Receipt | Exception]:
        """``submit_each`` for part of a group whose other part may have committed already: a failure of this part
        (the database gone meanwhile) is its requests' answer, never the committed part's."""
        try:
            return self.submit_each(requests)
        except Exception as exc:  # noqa: BLE001 - answered to this part's callers, as the group committer would
            return [exc] * len(requests)

    def _submit(self, requests: Sequence[tuple[Any, Principal | None, str]], trusted: dict[str, tuple[str, bytes]],
                all_or_nothing: bool, endpoint: str) -> list[Receipt | Exception]:
        verdicts: dict[tuple[int, str, bytes], bool] = {}  # signatures already verified, kept across attempts
        poisoned: dict[int, Problem] = {}  # items that raised while judged: rejected alone, the others judged again without them
        conflicts = 0  # writes in a row that failed on the database's state (another writer came first)
        attempt = 0
        while True:
            attempt += 1
            received_at = self.clock()
            ahead = _Ahead(verdicts) if attempt < MAX_ATTEMPTS and len(requests) >= signatures.MIN_BATCH else None
            items = []
            for i, (raw, principal, path) in enumerate(requests):
                item = _Item(i, path, principal=principal)
                items.append(item)
                if i in poisoned:
                    item.problems.append(poisoned[i])
                    continue
                try:
                    self._prepare(item, raw, received_at)
                    if ahead is not None and not item.problems:
                        self._send_early(item, ahead)
                except Exception as exc:  # noqa: BLE001 - this item's alone (``_failed``)
                    self._failed(item, poisoned, exc)
            if ahead is not None:
                ahead.batch.flush()  # the last, partial task works while the batch's state is read
            working, cached = self._read_for(items, poisoned)
            if ahead is not None:
                self._verify_ahead(items, working, trusted, ahead, poisoned)
                ahead.batch.flush()
            events: list[Any] = []
            index_rows: list[dict[str, Any]] = []
            key_rows: list[tuple[str, str]] = []
            beside = Beside(timestamp(received_at))
            staged = True
            for item in items:
                if item.problems or item.duplicate_of is not None:
                    continue
                try:
                    self._authenticate(item, received_at, working, trusted)
                    if not item.problems:
                        self._apply_rules(item, received_at, working, events, index_rows, key_rows, beside)
                except Exception as exc:  # noqa: BLE001 - this item's alone (``_failed``)
                    staged = self._failed(item, poisoned, exc)
                    if not staged:
                        break  # the working state may hold part of its write: judge the others again, without it
            if ahead is not None:
                ahead.collect()
                if any(item.assumed_valid and item.verified is not None and not item.verified[2] for item in items):
                    continue  # a signature did not verify after all: judge the batch again, knowing it
            if not staged:
                continue
            rejected = [item for item in items if item.problems]
            stale = cached & set().union(*(item.reads for item in rejected))
            if stale and attempt < MAX_ATTEMPTS:
                self._subjects.forget(stale)  # never reject on cached state: another process may have moved on
                continue
            probes = self._probes_of(rejected)
            if all_or_nothing and rejected:
                failure = self._record_probes(probes, endpoint)
                if failure is not None:
                    raise failure
                waits = [item.retry_after for item in rejected if item.retry_after is not None]
                raise LedgerError([p for item in rejected for p in item.problems], retry_after=max(waits, default=None))
            ahead_of_commit = _ReceiptsAhead(self, items, index_rows)
            try:
                sequences = self.store.append(events, index_rows, key_rows, on_ids=ahead_of_commit.start, beside=beside) if events else []
            except IntegrityError as exc:
                ahead_of_commit.drop()
                self._subjects.forget(working)
                conflicts += 1
                if not all_or_nothing and len(requests) > 1 and conflicts >= SPLIT_AFTER_CONFLICTS:
                    raise _GroupWriteFailed(exc) from exc  # the same again, on fresh state: one request's doing, it seems
                if attempt >= MAX_ATTEMPTS:
                    if all_or_nothing:
                        raise
                    raise _GroupWriteFailed(exc) from exc
                time.sleep(random.uniform(0, 0.002 * attempt))
                continue  # a concurrent writer got there first: re-read and re-check everything
            except Exception as exc:
                ahead_of_commit.drop()
                if all_or_nothing or _affects_every_write(exc):
                    raise
                raise _GroupWriteFailed(exc) from exc
            self._subjects.put([s for s in working.values() if s is not None])
            failure = self._record_probes(probes, endpoint)
            probed = {item.index for item, _ in probes}
            receipts = iter(ahead_of_commit.receipts(sequences))
            outcomes: list[Receipt | Exception] = []
            for item in items:
                if failure is not None and item.index in probed:
                    outcomes.append(failure)
                elif item.problems:
                    outcomes.append(LedgerError(item.problems, retry_after=item.retry_after))
                else:
                    outcomes.append(next(receipts))
            return outcomes

    @staticmethod
    def _failed(item: _Item, poisoned: dict[int, Problem], exc: Exception) -> bool:
        """What judging ``item`` raised: a LedgerError is its rejection (True). Anything else that is not the database's
        failure rejects the item alone (422 ``unprocessable``, the details logged under a reference) and is remembered in
        ``poisoned`` for the attempts that follow (False: the attempt's working state may hold part of its write)."""
        if isinstance(exc, LedgerError):
            item.problems.extend(exc.problems)
            return True
        if _affects_every_write(exc):
            raise exc  # the database: every request of the group hears it
        reference = uuid.uuid4().hex[:12]
        log.error("an envelope could not be judged (reference %s)", reference, exc_info=exc)
        problem = Problem("unprocessable", item.path, f"the ledger could not process this envelope; quote reference {reference} "
                          "to the operator", Category.INVALID)
        poisoned[item.index] = problem
        item.problems.append(problem)
        return False

    def _read_for(self, items: list[_Item], poisoned: dict[int, Problem]) -> tuple[dict[uuid.UUID, Subject | None], set[uuid.UUID]]:
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
        existing, loaded = self.store.lookups(self._check_event_ids(items), everything - cached, meanwhile=lambda: self._digest(items, poisoned))
        self._mark_replays(items, existing)
        found.update(loaded)
        for item in items:
            if not item.problems and item.duplicate_of is None:  # still in play: its subject and submitter are read
                item.subject_id = wanted[item.index][0]
                item.reads = set(wanted[item.index])
        working: dict[uuid.UUID, Subject | None] = {aggregate_id: found.get(aggregate_id) for aggregate_id in everything}
        return working, cached

    def _digest(self, items: list[_Item], poisoned: dict[int, Problem]) -> None:
        """Work out the items' digests (and canonical envelopes) now, while the batch's reads are answered: the
        replay check and the index rows need them next (about 5 µs an event)."""
        for item in items:
            if item.env is not None and not item.problems:
                try:
                    _digests(item)
                except Exception as exc:  # noqa: BLE001 - this item's alone (``_failed``)
                    self._failed(item, poisoned, exc)

    def _verify_ahead(self, items: list[_Item], working: dict[uuid.UUID, Subject | None], trusted: dict[str, tuple[str, bytes]],
                      ahead: _Ahead, poisoned: dict[int, Problem]) -> None:
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
            try:
                self._send_known(item, orgs[submitter], trusted, ahead)
            except Exception as exc:  # noqa: BLE001 - this item's alone (``_failed``)
                self._failed(item, poisoned, exc)

    @staticmethod
    def _send_known(item: _Item, org: OrgState, trusted: dict[str, tuple[str, bytes]], ahead: _Ahead) -> None:
        """Send the item's first signature by a key ``org`` (its submitter) has, or a trusted key of it."""
        assert item.env is not None
        for kid, _sig in item.env.signatures:
            known = trusted[kid][1] if kid in trusted and trusted[kid][0] == org.org_id else None
            if known is None and kid in org.keys:
                known = org.keys[kid].public_key
            if known is not None:
                ahead.send(item, kid, known)
                return

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

    def _prepare(self, item: _Item, raw: Any, received_at: datetime) -> None:
        """Decode, validate and check the bearer's organisation: everything that needs no stored state."""
        item.env = envelope.decode(raw, item.path)
        item.body = item.env.body
        checked = catalogue.validate(item.body, received_at, prefix=f"{item.path}.payload")
        item.problems.extend(checked.problems)
        item.flags.extend(checked.flags)
        if item.principal is not None and not checked.problems:
            item.problems.extend(p.at(f"{item.path}.payload") for p in policy.submit_problems(item.principal, item.body))

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
                    f"event_id {row.event_id} is already taken by another event: a replay sends the same envelope, a new event a new event_id",
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
        """The envelope's signatures, by one rule whatever their order (README, "What the ledger checks"): every
        signature must be by a key of the submitter that is valid when the envelope is received (added, not
        revoked) and must verify over the payload. The first signature that fails decides the error."""
        assert item.env is not None
        submitter = item.body["submitter"]
        sig_path = f"{item.path}.signatures"
        org = self.org_state(submitter, working)
        used: set[str] = set()
        for kid, _sig in item.env.signatures:
            problem = self._signature_problem(item, kid, org, received_at, trusted)
            if problem is not None:
                code, message = problem
                path = f"{item.path}.payload.submitter" if code == "submitter_unknown" else sig_path
                item.problems.append(Problem(code, path, message, Category.FORBIDDEN))
                return
            used.add(kid)
        item.signed_with = used

    def _signature_problem(self, item: _Item, kid: str, org: OrgState, received_at: datetime,
                           trusted: dict[str, tuple[str, bytes]]) -> tuple[str, str] | None:
        """Why the item's signature by ``kid`` does not count (code, message), or None."""
        submitter = org.org_id
        if kid in trusted and trusted[kid][0] == submitter:
            return None if self._signature_valid(item, kid, trusted[kid][1]) else ("signature_invalid", f"the signature by key {kid} does not verify")
        key = org.keys.get(kid)
        if key is None:
            if not org.registered:
                return "submitter_unknown", f"{submitter} is not a registered organisation"
            owner = self.store.key_owner(kid)
            if owner is not None and owner != submitter:
                return "key_not_submitters", f"key {kid} belongs to {owner}, not to the submitter {submitter}"
            return "key_unknown", f"key {kid} is not registered for {submitter}"
        if key.revoked_at is not None and received_at >= key.revoked_at:
            return "key_revoked", f"key {kid} of {submitter} was revoked at {key.revoked_at.isoformat()}"
        if received_at < key.added_at:
            return "key_not_yet_valid", f"key {kid} of {submitter} is valid from {key.added_at.isoformat()}"
        if not self._signature_valid(item, kid, key.public_key):
            return "signature_invalid", f"the signature by key {kid} does not verify over this payload"
        return None

    def _apply_rules(self, item: _Item, received_at: datetime, working: dict[uuid.UUID, Subject | None], events: list[Any],
                     index_rows: list[dict[str, Any]], key_rows: list[tuple[str, str]], beside: Beside) -> None:
        """Judge the item against its subject's records and, if it stands, stage its write: the event on the subject
        (in ``working``, so later items of the batch see it), its index row and what goes beside it. Everything that
        can fail comes before the first change to ``working``."""
        assert item.env is not None
        body = item.body
        record = Record.from_body(body, received_at)
        aggregate_id = item.subject_id
        assert aggregate_id is not None  # set by _read_for for every item still in play
        subject = self._load(aggregate_id, working)
        records = subject.records if subject else []
        etype = catalogue.event_types()[body["type"]]
        problems: list[Problem]
        flags: list[dict[str, str]]
        if etype.subject == "pupil":
            limited = self._probe_limited(item, records)
            if limited:
                problems, flags = [limited], []
            else:
                def org_facts(org: str) -> OrgFacts:  # the submitter is loaded already; another organisation only when a rare rule asks
                    if org != body["submitter"]:  # (the submitter is read already) a rejection decided on cached facts is checked again
                        item.reads.add(self.secrets.org_id(org))
                    return self.org_state(org, working).facts()
                problems, flags = check_pupil(records, record, org_facts)
                if not problems and body["type"] == funding_rules.BAND:  # costed from the national tariff (issue 25)
                    problems = funding_rules.check_band(records, record, self._tariff_records(item, working), org_facts)
        elif etype.subject == "audit":
            problems, flags = [], []  # ledger-written access records
        else:
            org_state = fold_org(body["subject"]["org"], records)
            problems, flags = check_org(org_state, record), []
            if not problems and etype.name.startswith("research."):  # projects and releases (docs/research.md)
                problems = check_research(records, record)
            if not problems and etype.name in funding_rules.ORG_TYPES:  # plans, budgets, programmes, tariffs (issue 25)
                problems = funding_rules.check_org_event(records, record)
            if "self" in etype.submitters and body["submitter"] not in (ADMIN_ORG, body["subject"]["org"]):
                problems.append(Problem("submitter_not_allowed", f"{item.path}.payload.submitter", f"{body['type']} is posted by {ADMIN_ORG} or the organisation itself", Category.FORBIDDEN))
            if body["type"] == "org.key_added" and not problems:
                problems.extend(self._key_id_taken(body, key_rows))
        item.problems.extend(p.at(item.path) for p in problems)
        if item.problems:
            return
        item.flags.extend(flags)
        text = item.env.canonical_bytes.decode("utf-8")
        # -- staged from here on
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
            "envelope_digest": item.env.envelope_digest, "received_at": beside.received_at,
        })
        beside.signed_with |= item.signed_with
        if etype.subject == "audit":
            beside.access.append((str(aggregate_id), version, body["data"].get("principal", {}).get("org")))
            if body["data"].get("purpose") == PROBE_PURPOSE:
                beside.claims.append((str(aggregate_id), version, body["data"]["principal"]["org"], body["data"]["rejected"]))
        if any(flag["code"] in CLAIM_FLAGS for flag in item.flags):
            beside.claims.extend((str(aggregate_id), version, body["submitter"], flag["code"]) for flag in item.flags if flag["code"] in CLAIM_FLAGS)
        if body["type"] == "org.key_added":
            key_rows.append((body["data"]["key_id"], body["subject"]["org"]))
            self._public_keys[body["data"]["key_id"]] = b64decode_strict(body["data"]["public_key"])  # a hint only: see _send_early
        elif body["type"] == "org.key_revoked":
            key = subject.folded("org", lambda rs: fold_org(body["subject"]["org"], rs)).keys[body["data"]["key_id"]]
            assert key.revoked_at is not None  # as the organisation's own state now has it: one place decides when
            beside.revocations.append((key.key_id, body["subject"]["org"], timestamp(key.revoked_at)))

    def _tariff_records(self, item: _Item, working: dict[uuid.UUID, Subject | None]) -> list[Record]:
        """The national tariffs (records of ``dfe:admin``), read as part of the item's decision."""
        admin_id = self.secrets.org_id(funding_rules.TARIFF_ORG)
        item.reads.add(admin_id)
        subject = self._load(admin_id, working)
        return list(subject.records) if subject else []

    def _key_id_taken(self, body: dict[str, Any], key_rows: list[tuple[str, str]]) -> list[Problem]:
        """A key id is registered to one organisation only (``ledger_keys``): checked before the write, so a key of
        another organisation is this event's rejection, not a failed write for everything committed with it."""
        kid, org = body["data"]["key_id"], body["subject"]["org"]
        owner = next((o for k, o in key_rows if k == kid), None) or self.store.key_owner(kid)
        if owner is not None and owner != org:
            return [Problem("key_id_taken", "$.payload.data.key_id", f"key {kid} is registered to another organisation", Category.CONFLICT)]
        return []

    # -- rejections that depend on other organisations' records (docs/access.md, "Rule outcomes are reads") -----------

    def _probe_limited(self, item: _Item, records: Sequence[Record]) -> Problem | None:
        """Refuse, before judging, a submission about a pupil its organisation has posted nothing about, while that
        organisation has spent its budget of rejections that told it about other organisations' records. What this
        depends on (the budget, and the submitter's own records) says nothing about anyone else's."""
        if item.principal is None:
            return None
        org = item.body["submitter"]
        wait = self.probes.wait(org)
        if not wait or any(r.submitter == org for r in records):
            return None
        item.retry_after = wait
        return Problem("rule_probe_limited", "$.payload.subject", f"{org} has had too many submissions rejected because of other "
                       f"organisations' records of pupils; submissions about pupils it has no record of resume in {math.ceil(wait)} s",
                       Category.RATE_LIMITED)

    @staticmethod
    def _probes_of(rejected: list[_Item]) -> list[tuple[_Item, str]]:
        """The rejected items whose answer depends on other organisations' records of the pupil, with the code: each is a
        read of the pupil by the submitter, recorded (``_record_probes``). A trusted local caller's are not."""
        out = []
        for item in rejected:
            code = next((p.code for p in item.problems if p.code in CROSS_ORG_CODES), None)
            if code is not None and item.principal is not None and "upn" in item.body.get("subject", {}):
                out.append((item, code))
        return out

    def _record_probes(self, probes: list[tuple[_Item, str]], endpoint: str) -> Exception | None:
        """Record each probe as ``access.record_viewed`` in the pupil's audit stream, all in one write, and spend the
        submitters' budgets. Returns what failed, which those items are answered instead of their rejection: a
        rejection that reveals something is only ever answered once it is recorded."""
        if not probes:
            return None
        envelopes = []
        for item, code in probes:
            principal = item.principal
            assert principal is not None
            self.probes.spend(principal.org)
            key = self.store.app.pupil_keys.get(self.secrets.pupil_id(item.body["subject"]["upn"]))
            if key is None:
                continue  # no record of the pupil (erased meanwhile): nothing was revealed
            data = {"principal": {"org": principal.org, "role": principal.role, "token_id": principal.token_id},
                    "purpose": PROBE_PURPOSE, "endpoint": endpoint, "rejected": code,
                    "basis": f"rejected {item.body['type']} {item.body['event_id']}: {code}"[:200]}
            envelopes.append(envelope.sign(self._access_body("access.record_viewed", key.audit_id, data), self.secrets.signing_key))
        try:
            if envelopes:
                self.submit_batch(envelopes)
        except Exception as exc:  # noqa: BLE001 - answered to the probing items instead of their rejections
            return exc
        return None

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
        subject = self.store.subject(uuid.UUID(row.originator_id), fresh=True) if row else None
        entry = next((e for e in subject.entries if e.version == row.originator_version), None) if row and subject else None
        if row is None or entry is None:
            raise LedgerError.one("not_found", "$.event_id", f"no event {event_id} that you may read", Category.NOT_FOUND)
        access = None
        if reader is not None:
            if entry.record.type.startswith("pupil."):
                reader = Reader(reader.principal, reader.purpose, reader.reference, "getEvent")
                access, _ = self._authorise_pupil_read(entry.record.subject, reader, subject, own_submission=row.submitter == reader.principal.org,
                                                       event=entry.record)
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

        With a ``reader`` (every HTTP read): authorised by ``policy`` and recorded as ``access.record_viewed``; a
        reader whose relationship its own organisation asserted sees what occurred from its start, and a summary
        of the pupil's setting just before (``policy.Grant.since``).
        """
        started = time.monotonic()
        aggregate_id = self.secrets.pupil_id(upn)
        subject = self._pupil_for_read(aggregate_id)  # read once: authorised on, and shown, the same state
        access, grant = self._authorise_pupil_read(upn, reader, subject, started=started) if reader is not None else (None, None)
        if subject is None:
            raise LedgerError.one("not_found", "$.upn", "the ledger has no events for this pupil", Category.NOT_FOUND)
        since = grant.since if grant else None
        reader_org = reader.principal.org if reader else ""
        index = self.store.index_for_subject(aggregate_id)
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
                for r in state.registrations if r.open_on(day) and policy.shows_registration(r, grant, reader_org)
            ],
            "open": [
                {"kind": ep.kind, "started_by": ep.start_event_id, "since": ep.start.isoformat(), "details": ep.details}
                for ep in state.episodes.values() if ep.end is None and policy.shows_episode(ep, grant, reader_org)
            ],
            "events": events,
            "limited_from": since.isoformat() if since else None,
            "previous_setting": policy.setting_before([e.record for e in known], since) if since else [],
        }
        if access:
            out["access_event_id"] = access
        return out

    def _pupil_for_read(self, aggregate_id: uuid.UUID) -> Subject | None:
        """A pupil's stream for a read of its identified record, its key read from the database with it: one round trip,
        the same whether or not the pupil exists, so that a refusal takes as long for either (no timing oracle)."""
        return self.store.lookups([], [aggregate_id])[1].get(aggregate_id)

    # -- access control and the read audit (docs/access.md) -------------------------------------

    @property
    def windows(self) -> policy.Windows:
        return policy.Windows(self.settings.access_window_days, self.settings.inspection_window_days)

    def pupil_links(self, subject: Subject | None, reader_org: str) -> list[policy.PupilLink]:
        """The organisations related to the pupil and when, from the pupil's records (``subject``, as read by
        ``_pupil_for_read``) and the facts of the organisations they name, read in one round trip. The reader's
        own organisation is read with them: an unknown pupil costs the same read as a known one."""
        records = subject.records if subject else []
        named = {org for r in records for k in LINKED_FIELDS if isinstance(org := r.data.get(k), str)}
        ids = {self.secrets.org_id(org): org for org in named | {reader_org}}
        found = self.store.subjects(list(ids))
        facts = {}
        for aggregate_id, org in ids.items():
            state = fold_org(org, found[aggregate_id].records) if aggregate_id in found else fold_org(org, [])
            facts[org] = policy.OrgFacts(state.la, state.trust)
        return policy.pupil_links(records, facts)

    def _authorise_pupil_read(self, upn: str, reader: Reader, subject: Subject | None, own_submission: bool = False,
                              event: Record | None = None, started: float | None = None) -> tuple[str, policy.Grant]:
        """Authorise one read of a pupil's identified record and record it; returns the access event's id and the grant.

        ``subject``: the pupil's stream as the caller just read it, its key checked in the database. ``event``: the
        one event read (getEvent), which the grant must show. ``started``: when the read began (``time.monotonic``):
        a refusal for want of a relationship is not answered before ``REFUSAL_FLOOR_SECONDS`` from then."""
        started = time.monotonic() if started is None else started
        policy.purpose_for(reader.principal, reader.purpose)  # a missing or wrong purpose fails before anything is looked up
        links = self.pupil_links(subject, reader.principal.org)
        try:
            grant = policy.authorise_pupil_read(reader.principal, reader.purpose, links, self.clock().date(), self.windows, own_submission)
        except LedgerError as exc:
            if any(p.code == "not_related" for p in exc.problems):
                time.sleep(max(0.0, REFUSAL_FLOOR_SECONDS - (time.monotonic() - started)))
            raise
        if event is not None and not policy.visible(event, grant, reader.principal.org):
            raise policy.forbidden("before_relationship", "$.event_id", f"this event occurred before {reader.principal.org}'s own link with "
                                   f"the pupil began; it reads what occurred from {grant.since} (docs/access.md)")
        key = self.store.app.pupil_keys.get(self.secrets.pupil_id(upn))  # checked in the database by the read just made
        if key is None:
            raise LedgerError.one("not_found", "$.upn", "the ledger has no events for this pupil", Category.NOT_FOUND)
        data: dict[str, Any] = {
            "principal": {"org": reader.principal.org, "role": reader.principal.role, "token_id": reader.principal.token_id},
            "purpose": grant.purpose, "endpoint": reader.endpoint, "basis": grant.basis[:200],
        }
        if reader.reference:
            data["reference"] = reader.reference
        if event is not None:
            data["event_id"] = event.event_id
        return self._record_access("access.record_viewed", key.audit_id, data), grant

    def _access_body(self, event_type: str, audit_id: str, data: dict[str, Any]) -> dict[str, Any]:
        """The body of a ledger-written ``access.*`` event about the pupil whose audit pseudonym is ``audit_id``."""
        now = self.clock()
        return {
            "event_id": str(uuid.uuid4()), "type": event_type, "schema_version": 1, "submitter": ADMIN_ORG,
            "subject": {"pupil": audit_id}, "occurred_on": now.date().isoformat(), "reported_at": timestamp(now)[:19] + "Z", "data": data,
        }

    def _record_access(self, event_type: str, audit_id: str, data: dict[str, Any]) -> str:
        """Append a ledger-signed ``access.*`` event to the pupil's audit stream (so it is in the transparency log)."""
        try:
            receipt = self.submit(envelope.sign(self._access_body(event_type, audit_id, data), self.secrets.signing_key))
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
            started = time.monotonic()
            _, grant = self._authorise_pupil_read(upn, reader, self._pupil_for_read(self.secrets.pupil_id(upn)), started=started)
            key = self.store.app.pupil_keys.get(self.secrets.pupil_id(upn))  # checked in the database by that read
            assert key is not None
            stream = self.secrets.audit_stream_id(key.audit_id)
            subject = self.store.subject(stream)
            index = self.store.index_for_subject(stream)
            items = [self._access_item(e, index[e.version].sequence) for e in (subject.entries if subject else [])
                     if index[e.version].sequence > after and (grant.since is None or e.received_at.date() >= grant.since)]
            # which research projects received the pupil's pseudonymised rows (docs/research.md)
            received = releases_holding(self.store, self.secrets.pupil_id(upn), self.secrets.pseudonym_key)
            return {"pupil": key.audit_id, "views": items[:limit], "next_after": items[limit - 1]["sequence"] if len(items) > limit else None,
                    "research_releases": received}
        if not policy.may_read_access_log(principal, viewer_org):
            raise policy.forbidden("access_log_scope", "query:org", f"{principal.org} may read the views by its own principals (org={principal.org})")
        # ``ledger_access`` holds every access event's sequence and viewer organisation (written with it): the
        # organisation's views are read by its index, not found by decrypting every view in the ledger.
        by_viewer = "a.viewer_org = ? AND " if viewer_org is not None else ""
        columns = ", ".join(f"i.{c}" for c in INDEX_COLUMNS)
        rows = [IndexRow(*r) for r in self.store.query(
            f"SELECT {columns} FROM ledger_access a JOIN ledger_index i ON i.sequence = a.sequence "
            f"WHERE {by_viewer}a.sequence > ? ORDER BY a.sequence LIMIT ?", (*([viewer_org] if viewer_org is not None else []), after, limit))]
        streams: dict[str, dict[int, Any]] = {}  # each audit stream loaded once, however many of its views are listed
        items = []
        for row in rows:
            if row.originator_id not in streams:
                subject = self.store.subject(uuid.UUID(row.originator_id))
                streams[row.originator_id] = {e.version: e for e in subject.entries} if subject else {}
            items.append(self._access_item(streams[row.originator_id].get(row.originator_version), row.sequence))
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

    def claims_report(self, principal: Principal | None, since: datetime, until: datetime) -> dict[str, Any]:
        """Organisations by the number of unusual claims (events accepted with a ``CLAIM_FLAGS`` flag) and of rejections
        that depended on other organisations' records (``CROSS_ORG_CODES``), received from ``since`` until before
        ``until``: the most first, then the most recent first (docs/access.md, "Unusual claims"). The operator's only
        (``principal`` None: the local operator, on the command line)."""
        if principal is not None and not policy.may_read_claims_report(principal):
            raise policy.forbidden("operator_only", "$", "only the operator (an admin token) reads the report of unusual claims")
        if until <= since:
            raise LedgerError.one("period", "query:until", "the period ends after it starts")
        rows = self.store.query("SELECT org_id, code, COUNT(*), MAX(received_at) FROM ledger_claims WHERE received_at >= ? AND received_at < ? "
                                "GROUP BY org_id, code", (timestamp(since), timestamp(until)))
        orgs: dict[str, dict[str, Any]] = {}
        for org, code, count, latest in rows:
            entry = orgs.setdefault(org, {"org": org, "total": 0, "codes": {}, "latest": latest})
            entry["total"] += int(count)
            entry["codes"][code] = int(count)
            entry["latest"] = max(entry["latest"], latest)
        listed = sorted(sorted(orgs.values(), key=lambda o: str(o["latest"]), reverse=True), key=lambda o: -int(o["total"]))
        return {"since": timestamp(since), "until": timestamp(until), "organisations": listed}

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


def _digests(item: _Item) -> None:
    """Work out the item's digests (and canonical envelope) now, while the batch's reads are answered: the replay
    check and the index rows need them next (about 5 µs an event)."""
    assert item.env is not None
    item.env.event_digest  # noqa: B018 - cached properties, computed for later
    item.env.envelope_digest  # noqa: B018


class _GroupWriteFailed(Exception):
    """A group's write failed for a reason that may be one request's doing (``submit_each`` splits the group)."""

    def __init__(self, cause: Exception):
        super().__init__(str(cause))
        self.cause = cause


def _affects_every_write(exc: Exception) -> bool:
    """The database is away, full or timing out: no request of a group is to blame, and splitting it would only wait more."""
    return isinstance(exc, (OperationalError, InterfaceError, OSError, TimeoutError, MemoryError))


class ProbeBudget:
    """Token buckets, one per submitting organisation, of rejections that depend on other organisations' records
    (``CROSS_ORG_CODES``): ``burst`` of them, then one each ``refill_seconds``. Per process, like the rate limits."""

    def __init__(self, burst: int, refill_seconds: float, clock: Callable[[], float] = time.monotonic, max_orgs: int = 100_000):
        self.burst, self.refill_seconds, self.clock, self.max_orgs = burst, refill_seconds, clock, max_orgs
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # org -> (tokens, when counted)
        self._lock = threading.Lock()

    def _level(self, org: str, now: float) -> float:
        tokens, when = self._buckets.get(org, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - when) / self.refill_seconds)

    def wait(self, org: str) -> float:
        """0 while ``org`` has budget left, else the seconds until it has some again."""
        if org not in self._buckets:  # never spent any (most): no lock on the hot path
            return 0.0
        with self._lock:
            level = self._level(org, self.clock())
        return 0.0 if level >= 1 else (1 - level) * self.refill_seconds

    def spend(self, org: str) -> None:
        now = self.clock()
        with self._lock:
            self._buckets[org] = (self._level(org, now) - 1, now)  # below zero when a group overspent: it waits longer
            self._buckets.move_to_end(org)
            while len(self._buckets) > self.max_orgs:
                self._buckets.popitem(last=False)


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
