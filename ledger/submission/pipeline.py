"""The submission pipeline: how an envelope becomes an accepted event (design.md 2, "data flow").

The checks, in the order they run (README, "What the ledger checks", quotes this list; a test holds them equal):

1. decode: the envelope's form (DSSE, base64, canonical JSON payload)
2. validate: the payload against the event catalogue (schema, code lists, dates)
3. authorise the bearer: the posting organisation and role may submit this event type
4. event_id: once per batch, then idempotency (the same envelope again is a replay, other bytes a conflict)
5. signatures: every one by a key of the submitter, valid when received, verifying over the payload
6. domain rules: the event against its subject's records (and the organisations they name)
7. commit: the batch's events, index rows and what goes beside them in one transaction
8. receipts: one signed receipt per accepted event, sent only after the commit

Each attempt at a batch runs the stages below top to bottom (``Submissions._attempt``); an envelope that fails a
stage is out of the later ones. ``submit_batch`` accepts every envelope or none; ``submit_each`` (group commit)
judges and answers each on its own and writes the accepted ones together.

The measured speed-ups sit below this story, each in its own module with its measurement: signatures verified by
worker processes while the pipeline goes on (``early_verdicts``), committed subjects cached for the rules
(``subject_cache``), a batch's reads in one round trip with its digests worked out meanwhile (``read``), receipts
signed while the write is in flight (``ledger.receipts``), and group commit (``ledger.group_commit``).
"""

from __future__ import annotations

import functools
import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError

from ledger import signatures
from ledger.core import catalogue, envelope, policy
from ledger.core.errors import Category, LedgerError, Problem
from ledger.core.orgs import OrgState, fold_org
from ledger.core.policy import Principal
from ledger.core.rules import Record
from ledger.core.times import timestamp
from ledger.receipts import Accepted, Receipt, ReceiptsAhead
from ledger.storage.store import Beside, IndexRow, Subject
from ledger.submission.checks import Trusted, Working, authenticate, judge
from ledger.submission.early_verdicts import EarlyVerdicts, KeyHints, Verdicts
from ledger.submission.item import InFlight
from ledger.submission.probes import probes_of, record_probes
from ledger.submission.staging import StagedWrite, stage
from ledger.submission.subject_cache import SubjectCache

if TYPE_CHECKING:
    from ledger.service import Ledger

MAX_ATTEMPTS = 20  # optimistic-concurrency retries when another writer appended to the same subject
SPLIT_AFTER_CONFLICTS = 3  # a group's write failing this often in a row on fresh state is split (``submit_each``)

log = logging.getLogger("pupil_ledger.service")

Request = tuple[Any, Principal | None, str]  # the raw envelope, who posted it (None: a trusted local caller), its JSON path


class Submissions:
    """The write side: envelopes in, receipts (or problems) out. Holds the caches the speed-ups keep."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger
        self.subjects = SubjectCache()
        self.hints = KeyHints()

    # -- the entry points ----------------------------------------------------------------------

    def submit_batch(
        self, raws: Sequence[Any], principal: Principal | None, path_of: Callable[[int], str], trusted: Trusted
    ) -> list[Receipt]:
        """Accept every envelope or none. ``principal`` None means a trusted local caller."""
        limit = self.ledger.settings.max_batch_items
        if len(raws) > limit:
            raise LedgerError.one("batch_too_large", "$.envelopes", f"at most {limit} envelopes per batch", Category.TOO_LARGE)
        outcomes = self._submit(
            [(raw, principal, path_of(i)) for i, raw in enumerate(raws)], trusted, all_or_nothing=True, endpoint="submitBatch"
        )
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
            outcomes = self._submit(
                [(raw, principal, "$") for raw, principal in requests], {}, all_or_nothing=False, endpoint="submitEvent"
            )
        except _GroupWriteFailed as failed:
            if len(requests) == 1:
                return [failed.cause]
            half = len(requests) // 2
            return self._submit_part(requests[:half]) + self._submit_part(requests[half:])
        again = [
            i for i, o in enumerate(outcomes) if isinstance(o, LedgerError) and all(p.code == "duplicate_in_batch" for p in o.problems)
        ]
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

    # -- one batch, attempted until it is decided ----------------------------------------------

    def _submit(self, requests: Sequence[Request], trusted: Trusted, all_or_nothing: bool, endpoint: str) -> list[Receipt | Exception]:
        verdicts: Verdicts = {}  # signatures already verified, kept across attempts
        poisoned: dict[int, Problem] = {}  # items that raised while judged: rejected alone, the others judged again without them
        conflicts = 0  # writes in a row that failed on the database's state (another writer came first)
        attempt = 0
        while True:
            attempt += 1
            received_at = self.ledger.clock()
            ahead = EarlyVerdicts(verdicts) if attempt < MAX_ATTEMPTS and len(requests) >= signatures.MIN_BATCH else None
            items = self._decode(requests, received_at, poisoned, ahead)
            working, cached = self._read(items, poisoned)
            if ahead is not None:
                self._send_known(items, working, trusted, ahead, poisoned)
            write = StagedWrite(Beside(timestamp(received_at)))
            staged = self._judge(items, received_at, working, trusted, ahead, poisoned, write)
            if ahead is not None:
                ahead.collect()
                if ahead.assumed_wrongly():
                    continue  # a signature did not verify after all: judge the batch again, knowing it
            if not staged:
                continue  # the working state may hold part of a failed item's write: judge the others again, without it
            rejected = [item for item in items if item.problems]
            stale = cached & set().union(*(item.reads for item in rejected))
            if stale and attempt < MAX_ATTEMPTS:
                self.subjects.forget(stale)  # never reject on cached state: another process may have moved on
                continue
            probes = probes_of(rejected)
            if all_or_nothing and rejected:
                failure = record_probes(self.ledger, probes, endpoint)
                if failure is not None:
                    raise failure
                waits = [item.retry_after for item in rejected if item.retry_after is not None]
                raise LedgerError([p for item in rejected for p in item.problems], retry_after=max(waits, default=None))
            receipts_ahead = ReceiptsAhead(self.ledger.receipt_signer, functools.partial(_accepted, items, write.index_rows))
            try:
                sequences = self._commit(write, receipts_ahead)
            except IntegrityError as exc:
                receipts_ahead.drop()
                self.subjects.forget(working)
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
                receipts_ahead.drop()
                if all_or_nothing or _affects_every_write(exc):
                    raise
                raise _GroupWriteFailed(exc) from exc
            self.subjects.put([s for s in working.values() if s is not None])
            return self._answers(items, probes, record_probes(self.ledger, probes, endpoint), receipts_ahead.receipts(sequences))

    # -- the stages ------------------------------------------------------------------------------

    def _decode(
        self, requests: Sequence[Request], received_at: datetime, poisoned: dict[int, Problem], ahead: EarlyVerdicts | None
    ) -> list[InFlight]:
        """Stages 1-3, which need no stored state: decode, validate against the catalogue, authorise the bearer.
        Each signature is sent to the workers as soon as its envelope is decoded (``early_verdicts``)."""
        items = []
        for i, (raw, principal, path) in enumerate(requests):
            item = InFlight(i, path, principal)
            items.append(item)
            if i in poisoned:
                item.problems.append(poisoned[i])
                continue
            try:
                item.env = envelope.decode(raw, item.path)
                item.body = item.env.body
                checked = catalogue.validate(item.body, received_at, prefix=f"{item.path}.payload")
                item.problems.extend(checked.problems)
                item.flags.extend(checked.flags)
                if item.principal is not None and not checked.problems:
                    item.problems.extend(p.at(f"{item.path}.payload") for p in policy.submit_problems(item.principal, item.body))
                if ahead is not None and not item.problems:
                    ahead.send_early(item, self.hints)
            except Exception as exc:  # noqa: BLE001 - this item's alone (``_failed``)
                self._failed(item, poisoned, exc)
        if ahead is not None:
            ahead.batch.flush()  # the last, partial task works while the batch's state is read
        return items

    def _read(self, items: list[InFlight], poisoned: dict[int, Problem]) -> tuple[Working, set[uuid.UUID]]:
        """Stage 4 and what the later stages read: event ids once per batch, then everything the items need from the
        store, from the cache or in one round trip (not one per event): the index rows of their event ids (replays and
        conflicts) and every subject and submitter they touch. Returns the working set (None: no such subject yet)
        and the ids that came from the cache.

        Speed-up (docs/performance.md, "A batch's reads in one round trip" and "The batch's digests worked out while
        the database answers its reads": 7,300-7,700 -> 8,000-8,200 events/s): the digests are computed meanwhile."""
        secrets = self.ledger.secrets
        wanted: dict[int, tuple[uuid.UUID, uuid.UUID]] = {}  # item: its subject, its submitter
        for item in items:
            if not item.problems:
                wanted[item.index] = (self._subject_id(item.body), secrets.org_id(item.body["submitter"]))
        everything = {aggregate_id for pair in wanted.values() for aggregate_id in pair}
        found = self.subjects.take(everything)
        cached = set(found)
        existing, loaded = self.ledger.store.lookups(
            _event_ids_once(items), everything - cached, meanwhile=lambda: self._digest(items, poisoned)
        )
        _mark_replays(items, existing)
        found.update(loaded)
        for item in items:
            if item.in_play:  # its subject and submitter are read
                item.subject_id = wanted[item.index][0]
                item.reads = set(wanted[item.index])
        return {aggregate_id: found.get(aggregate_id) for aggregate_id in everything}, cached

    def _digest(self, items: list[InFlight], poisoned: dict[int, Problem]) -> None:
        """Work out the items' digests (and canonical envelopes) now, while the batch's reads are answered: the
        replay check and the index rows need them next (about 5 µs an event)."""
        for item in items:
            if item.env is not None and not item.problems:
                try:
                    item.env.event_digest  # noqa: B018 - cached properties, computed for later
                    item.env.envelope_digest  # noqa: B018
                except Exception as exc:  # noqa: BLE001 - this item's alone (``_failed``)
                    self._failed(item, poisoned, exc)

    def _send_known(
        self, items: list[InFlight], working: Working, trusted: Trusted, ahead: EarlyVerdicts, poisoned: dict[int, Problem]
    ) -> None:
        """Send the batch's signatures to the workers with the keys in the submitters' state before the batch, so the
        rules run meanwhile (``early_verdicts``); ``authenticate`` still decides, in order, with the state as the batch
        changes it."""
        orgs: dict[str, OrgState] = {}
        for item in items:
            if not item.in_play or item.env is None:
                continue
            submitter = item.body["submitter"]
            if submitter not in orgs:
                orgs[submitter] = self.org_state(submitter, working)
                self.hints.remember(orgs[submitter])
            try:
                ahead.send_known(item, orgs[submitter], trusted)
            except Exception as exc:  # noqa: BLE001 - this item's alone (``_failed``)
                self._failed(item, poisoned, exc)
        ahead.batch.flush()

    def _judge(
        self,
        items: list[InFlight],
        received_at: datetime,
        working: Working,
        trusted: Trusted,
        ahead: EarlyVerdicts | None,
        poisoned: dict[int, Problem],
        write: StagedWrite,
    ) -> bool:
        """Stages 5 and 6, item by item in order, each seeing the ones before it: the signatures (``authenticate``),
        the domain rules (``judge``), and, if it stands, its write staged (``stage``). Everything that can fail comes
        before the first change to ``working``. False: an item failed with part of its write staged."""
        for item in items:
            if not item.in_play:
                continue
            try:
                authenticate(self, item, received_at, working, trusted, ahead)
                if item.problems:
                    continue
                record = Record.from_body(item.body, received_at)
                aggregate_id = item.subject_id
                assert aggregate_id is not None  # set by _read for every item still in play
                subject = self.load(aggregate_id, working)
                judge(self, item, record, subject, working, write.key_rows)
                if not item.problems:
                    stage(write, item, record, subject, aggregate_id, working, received_at, self.hints)
            except Exception as exc:  # noqa: BLE001 - this item's alone (``_failed``)
                if not self._failed(item, poisoned, exc):
                    return False
        return True

    def _commit(self, write: StagedWrite, receipts_ahead: ReceiptsAhead) -> list[int]:
        """Stage 7: one transaction; the receipts are signed meanwhile (``ReceiptsAhead``). Returns the sequence numbers."""
        if not write.events:
            return []
        return self.ledger.store.append(write.events, write.index_rows, write.key_rows, on_ids=receipts_ahead.start, beside=write.beside)

    @staticmethod
    def _answers(
        items: list[InFlight], probes: list[tuple[InFlight, str]], failure: Exception | None, receipts: list[Receipt]
    ) -> list[Receipt | Exception]:
        """Stage 8, after the commit: each item's receipt, or its rejection, or (a rejection that revealed another
        organisation's record, not recorded) what failed to record it."""
        probed = {item.index for item, _ in probes}
        signed = iter(receipts)
        outcomes: list[Receipt | Exception] = []
        for item in items:
            if failure is not None and item.index in probed:
                outcomes.append(failure)
            elif item.problems:
                outcomes.append(LedgerError(item.problems, retry_after=item.retry_after))
            else:
                outcomes.append(next(signed))
        return outcomes

    # -- what the stages share -------------------------------------------------------------------

    @staticmethod
    def _failed(item: InFlight, poisoned: dict[int, Problem], exc: Exception) -> bool:
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
        problem = Problem(
            "unprocessable",
            item.path,
            f"the ledger could not process this envelope; quote reference {reference} to the operator",
            Category.INVALID,
        )
        poisoned[item.index] = problem
        item.problems.append(problem)
        return False

    def _subject_id(self, body: dict[str, Any]) -> uuid.UUID:
        subject, secrets = body["subject"], self.ledger.secrets
        if "pupil" in subject:
            return secrets.audit_stream_id(subject["pupil"])
        return secrets.pupil_id(subject["upn"]) if "upn" in subject else secrets.org_id(subject["org"])

    def load(self, aggregate_id: uuid.UUID, working: Working) -> Subject | None:
        if aggregate_id not in working:
            working[aggregate_id] = self.ledger.store.subject(aggregate_id)
        return working[aggregate_id]

    def org_state(self, org: str, working: Working | None = None) -> OrgState:
        subject = self.load(self.ledger.secrets.org_id(org), {} if working is None else working)
        return subject.folded("org", lambda records: fold_org(org, records)) if subject else fold_org(org, [])


def _event_ids_once(items: list[InFlight]) -> list[str]:
    """Mark an event id two items of the batch share; return the event ids to look up in the index."""
    seen: dict[str, int] = {}
    for item in items:
        if item.problems:
            continue
        event_id = item.body["event_id"]
        if event_id in seen:
            item.problems.append(
                Problem(
                    "duplicate_in_batch",
                    f"{item.path}.payload.event_id",
                    f"event_id also used by item {seen[event_id]} of this batch",
                    Category.INVALID,
                )
            )
        else:
            seen[event_id] = item.index
    return [i.body["event_id"] for i in items if not i.problems]


def _mark_replays(items: list[InFlight], existing: dict[str, IndexRow]) -> None:
    """An event id already accepted: a replay (the same envelope) or a conflict (other bytes)."""
    for item in items:
        row = existing.get(item.body.get("event_id", "")) if not item.problems else None
        if row is None:
            continue
        assert item.env is not None
        if row.envelope_digest == item.env.envelope_digest:
            item.duplicate_of = row
        else:
            item.problems.append(
                Problem(
                    "event_id_conflict",
                    f"{item.path}.payload.event_id",
                    f"event_id {row.event_id} is already taken by another event: a replay sends the same envelope, a new event a new event_id",
                    Category.CONFLICT,
                )
            )


def _accepted(items: list[InFlight], index_rows: list[dict[str, Any]], ids: Sequence[int]) -> list[Accepted]:
    """What each item without problems gets a receipt for: its new index row (with the sequence number its
    event has: ``ids`` in the events' order, one event per new row) or the row it replays."""
    new_rows = iter(zip(index_rows, ids, strict=True))
    accepted: list[Accepted] = []
    for item in items:
        if item.problems:
            continue
        if item.duplicate_of is not None:
            accepted.append((item.duplicate_of, False, None))
        else:
            row, sequence = next(new_rows)
            accepted.append((IndexRow(**row, sequence=sequence), True, item.flags))
    return accepted


class _GroupWriteFailed(Exception):
    """A group's write failed for a reason that may be one request's doing (``submit_each`` splits the group)."""

    def __init__(self, cause: Exception):
        super().__init__(str(cause))
        self.cause = cause


def _affects_every_write(exc: Exception) -> bool:
    """The database is away, full or timing out: no request of a group is to blame, and splitting it would only wait more."""
    return isinstance(exc, (OperationalError, InterfaceError, OSError, TimeoutError, MemoryError))
