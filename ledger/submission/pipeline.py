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

Each attempt at a batch runs the stages below top to bottom (``Submissions._submit``). A stage takes each envelope's
value from the stage before and returns a new one (``values``: ``Decoded``, then ``Located`` or ``Replay``, then
``Authenticated``, then ``Judged``), or its ``Rejected``, which is out of the later stages; nothing is changed once
made. ``submit_batch`` accepts every envelope or none; ``submit_each`` (group commit) judges and answers each on its
own and writes the accepted ones together; what a failure means for the others is ``failures``.

The measured speed-ups sit below this story, each in its own module with its measurement: signatures verified by
worker processes while the pipeline goes on (``early_verdicts``), committed subjects cached for the rules
(``subject_cache``), a batch's reads in one round trip with its digests worked out meanwhile (``_read``), receipts
signed while the write is in flight (``ledger.receipts``), and group commit (``ledger.group_commit``).
"""

from __future__ import annotations

import functools
import random
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import IntegrityError

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
from ledger.submission.failures import GroupWriteFailed, affects_every_write, rejection_of
from ledger.submission.probes import probes_of, record_probes
from ledger.submission.staging import StagedWrite, stage
from ledger.submission.subject_cache import SubjectCache
from ledger.submission.values import Decoded, Judged, Located, Outcome, Rejected, Replay, Request

if TYPE_CHECKING:
    from ledger.service import Ledger

MAX_ATTEMPTS = 20  # optimistic-concurrency retries when another writer appended to the same subject
SPLIT_AFTER_CONFLICTS = 3  # a group's write failing this often in a row on fresh state is split (``submit_each``)


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
            [Request(i, path_of(i), principal, raw) for i, raw in enumerate(raws)], trusted, all_or_nothing=True, endpoint="submitBatch"
        )
        return [o for o in outcomes if isinstance(o, Receipt)]  # all or nothing: a problem raised instead

    def submit_each(self, requests: Sequence[tuple[Any, Principal | None]]) -> list[Receipt | Exception]:
        """Independent submissions committed in one transaction (group commit); each gets its own receipt or error.

        Nothing is returned before the commit, so a caller answered 201 is durable. An event_id that two
        requests of the group share is retried after the commit, where it is a replay or a conflict. Each request
        succeeds or fails on its own: one that raises while it is judged is rejected alone (``failures.rejection_of``), and when the
        group's write fails for a reason that is not the database's state or health (``GroupWriteFailed``), the
        group is split and each half written on its own, until only the request that made it fail fails.
        """
        try:
            outcomes = self._submit(
                [Request(i, "$", principal, raw) for i, (raw, principal) in enumerate(requests)],
                {},
                all_or_nothing=False,
                endpoint="submitEvent",
            )
        except GroupWriteFailed as failed:
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
        poisoned: dict[int, Problem] = {}  # requests that raised while judged: rejected alone, the others judged again without them
        conflicts = 0  # writes in a row that failed on the database's state (another writer came first)
        attempt = 0
        while True:
            attempt += 1
            received_at = self.ledger.clock()
            ahead = EarlyVerdicts(verdicts) if attempt < MAX_ATTEMPTS and len(requests) >= signatures.MIN_BATCH else None
            decoded = self._decode(requests, received_at, poisoned, ahead)
            located, working, cached = self._read(decoded, poisoned)
            if ahead is not None:
                located = self._send_known(located, working, trusted, ahead, poisoned)
            write = StagedWrite(Beside(timestamp(received_at)))
            outcomes = self._judge(located, received_at, working, trusted, ahead, poisoned, write)
            if ahead is not None:
                ahead.collect()
                if ahead.assumed_wrongly():
                    continue  # a signature did not verify after all: judge the batch again, knowing it
            if outcomes is None:
                continue  # the working state may hold part of a failed request's write: judge the others again, without it
            rejected = [outcome for outcome in outcomes if isinstance(outcome, Rejected)]
            stale = cached & set().union(*(r.reads for r in rejected))
            if stale and attempt < MAX_ATTEMPTS:
                self.subjects.forget(stale)  # never reject on cached state: another process may have moved on
                continue
            probes = probes_of(rejected)
            if all_or_nothing and rejected:
                failure = record_probes(self.ledger, probes, endpoint)
                if failure is not None:
                    raise failure
                waits = [r.retry_after for r in rejected if r.retry_after is not None]
                raise LedgerError([p for r in rejected for p in r.problems], retry_after=max(waits, default=None))
            receipts_ahead = ReceiptsAhead(self.ledger.receipt_signer, functools.partial(_accepted, outcomes, write.index_rows))
            try:
                sequences = self._commit(write, receipts_ahead)
            except IntegrityError as exc:
                receipts_ahead.drop()
                self.subjects.forget(working)
                conflicts += 1
                if not all_or_nothing and len(requests) > 1 and conflicts >= SPLIT_AFTER_CONFLICTS:
                    raise GroupWriteFailed(exc) from exc  # the same again, on fresh state: one request's doing, it seems
                if attempt >= MAX_ATTEMPTS:
                    if all_or_nothing:
                        raise
                    raise GroupWriteFailed(exc) from exc
                time.sleep(random.uniform(0, 0.002 * attempt))
                continue  # a concurrent writer got there first: re-read and re-check everything
            except Exception as exc:
                receipts_ahead.drop()
                if all_or_nothing or affects_every_write(exc):
                    raise
                raise GroupWriteFailed(exc) from exc
            self.subjects.put([s for s in working.values() if s is not None])
            return self._answers(outcomes, probes, record_probes(self.ledger, probes, endpoint), receipts_ahead.receipts(sequences))

    # -- the stages, each from the values the one before made (``values``) -------------------------

    def _decode(
        self, requests: Sequence[Request], received_at: datetime, poisoned: dict[int, Problem], ahead: EarlyVerdicts | None
    ) -> list[Decoded | Rejected]:
        """Stages 1-3, which need no stored state: decode, validate against the catalogue, authorise the bearer; then
        an event id two envelopes of the batch share is the later one's rejection. Each signature is sent to the
        workers as soon as its envelope is decoded (``early_verdicts``)."""
        decoded: list[Decoded | Rejected] = []
        for request in requests:
            if request.index in poisoned:
                decoded.append(Rejected(request, (poisoned[request.index],)))
                continue
            try:
                decoded.append(self._decode_one(request, received_at, ahead))
            except Exception as exc:  # noqa: BLE001 - this request's alone (``failures.rejection_of``)
                decoded.append(rejection_of(request, None, frozenset(), poisoned, exc)[0])
        if ahead is not None:
            ahead.batch.flush()  # the last, partial task works while the batch's state is read
        return _event_ids_once(decoded)

    def _decode_one(self, request: Request, received_at: datetime, ahead: EarlyVerdicts | None) -> Decoded | Rejected:
        env = envelope.decode(request.raw, request.path)
        checked = catalogue.validate(env.body, received_at, prefix=f"{request.path}.payload")
        problems = list(checked.problems)
        if request.principal is not None and not problems:
            problems.extend(p.at(f"{request.path}.payload") for p in policy.submit_problems(request.principal, env.body))
        if problems:
            return Rejected(request, tuple(problems), env.body)
        decoded = Decoded(request, env, tuple(checked.flags))
        if ahead is not None:
            ahead.send_early(decoded, self.hints)
        return decoded

    def _read(
        self, items: list[Decoded | Rejected], poisoned: dict[int, Problem]
    ) -> tuple[list[Located | Replay | Rejected], Working, set[uuid.UUID]]:
        """Stage 4 and what the later stages read: everything the envelopes need from the store, from the cache or in
        one round trip (not one per event): the index rows of their event ids (replays and conflicts) and every subject
        and submitter they touch. Returns each envelope's next value, the working set (None: no such subject yet) and
        the ids that came from the cache.

        Speed-up (docs/performance.md, "A batch's reads in one round trip" and "The batch's digests worked out while
        the database answers its reads": 7,300-7,700 -> 8,000-8,200 events/s): the digests are computed meanwhile."""
        secrets = self.ledger.secrets
        wanted: dict[int, tuple[uuid.UUID, uuid.UUID]] = {}  # request index: its subject, its submitter
        for item in items:
            if isinstance(item, Decoded):
                wanted[item.request.index] = (self._subject_id(item.body), secrets.org_id(item.body["submitter"]))
        everything = {aggregate_id for pair in wanted.values() for aggregate_id in pair}
        found = self.subjects.take(everything)
        cached = set(found)
        failed: dict[int, Rejected] = {}
        existing, loaded = self.ledger.store.lookups(
            [item.body["event_id"] for item in items if isinstance(item, Decoded)],
            everything - cached,
            meanwhile=lambda: failed.update(self._digest(items, poisoned)),
        )
        found.update(loaded)
        located: list[Located | Replay | Rejected] = []
        for item in items:
            if not isinstance(item, Decoded):
                located.append(item)
            elif item.request.index in failed:
                located.append(failed[item.request.index])
            else:
                located.append(_located(item, existing.get(item.body["event_id"]), *wanted[item.request.index]))
        return located, {aggregate_id: found.get(aggregate_id) for aggregate_id in everything}, cached

    def _digest(self, items: list[Decoded | Rejected], poisoned: dict[int, Problem]) -> dict[int, Rejected]:
        """Work out the envelopes' digests (and canonical forms) now, while the batch's reads are answered: the replay
        check and the index rows need them next (about 5 µs an event). Returns the envelopes that failed."""
        failed: dict[int, Rejected] = {}
        for item in items:
            if isinstance(item, Decoded):
                try:
                    item.env.event_digest  # noqa: B018 - cached properties, computed for later
                    item.env.envelope_digest  # noqa: B018
                except Exception as exc:  # noqa: BLE001 - this request's alone (``failures.rejection_of``)
                    failed[item.request.index] = rejection_of(item.request, item.body, frozenset(), poisoned, exc)[0]
        return failed

    def _send_known(
        self,
        items: list[Located | Replay | Rejected],
        working: Working,
        trusted: Trusted,
        ahead: EarlyVerdicts,
        poisoned: dict[int, Problem],
    ) -> list[Located | Replay | Rejected]:
        """Send the batch's signatures to the workers with the keys in the submitters' state before the batch, so the
        rules run meanwhile (``early_verdicts``); ``authenticate`` still decides, in order, with the state as the batch
        changes it."""
        orgs: dict[str, OrgState] = {}
        sent: list[Located | Replay | Rejected] = []
        for item in items:
            if isinstance(item, Located):
                submitter = item.decoded.body["submitter"]
                try:
                    if submitter not in orgs:
                        orgs[submitter] = self.org_state(submitter, working)
                        self.hints.remember(orgs[submitter])
                    ahead.send_known(item.decoded, orgs[submitter], trusted)
                except Exception as exc:  # noqa: BLE001 - this request's alone (``failures.rejection_of``)
                    sent.append(rejection_of(item.decoded.request, item.decoded.body, item.reads, poisoned, exc)[0])
                    continue
            sent.append(item)
        ahead.batch.flush()
        return sent

    def _judge(
        self,
        items: list[Located | Replay | Rejected],
        received_at: datetime,
        working: Working,
        trusted: Trusted,
        ahead: EarlyVerdicts | None,
        poisoned: dict[int, Problem],
        write: StagedWrite,
    ) -> list[Outcome] | None:
        """Stages 5 and 6, envelope by envelope in order, each seeing the ones before it: the signatures
        (``authenticate``), the domain rules (``judge``), and, if it stands, its write staged (``stage``). Everything
        that can fail comes before the first change to ``working``. None: an envelope failed with part of its write
        staged (the attempt is started again without it)."""
        outcomes: list[Outcome] = []
        for item in items:
            if not isinstance(item, Located):
                outcomes.append(item)
                continue
            try:
                authenticated = authenticate(self, item, received_at, working, trusted, ahead)
                if isinstance(authenticated, Rejected):
                    outcomes.append(authenticated)
                    continue
                record = Record.from_body(item.decoded.body, received_at)
                subject = self.load(item.subject_id, working)
                judged = judge(self, authenticated, record, subject, working, write.key_rows)
                if isinstance(judged, Judged):
                    stage(write, judged, subject, working, received_at, self.hints)
                outcomes.append(judged)
            except Exception as exc:  # noqa: BLE001 - this request's alone (``failures.rejection_of``)
                rejected, alone = rejection_of(item.decoded.request, item.decoded.body, item.reads, poisoned, exc)
                if not alone:
                    return None
                outcomes.append(rejected)
        return outcomes

    def _commit(self, write: StagedWrite, receipts_ahead: ReceiptsAhead) -> list[int]:
        """Stage 7: one transaction; the receipts are signed meanwhile (``ReceiptsAhead``). Returns the sequence numbers."""
        if not write.events:
            return []
        return self.ledger.store.append(write.events, write.index_rows, write.key_rows, on_ids=receipts_ahead.start, beside=write.beside)

    @staticmethod
    def _answers(
        outcomes: list[Outcome], probes: list[tuple[Rejected, str]], failure: Exception | None, receipts: list[Receipt]
    ) -> list[Receipt | Exception]:
        """Stage 8, after the commit: each envelope's receipt, or its rejection, or (a rejection that revealed another
        organisation's record, not recorded) what failed to record it."""
        probed = {rejected.request.index for rejected, _ in probes}
        signed = iter(receipts)
        answers: list[Receipt | Exception] = []
        for outcome in outcomes:
            if not isinstance(outcome, Rejected):
                answers.append(next(signed))
            elif failure is not None and outcome.request.index in probed:
                answers.append(failure)
            else:
                answers.append(LedgerError(list(outcome.problems), retry_after=outcome.retry_after))
        return answers

    # -- what the stages share -------------------------------------------------------------------

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


def _event_ids_once(items: list[Decoded | Rejected]) -> list[Decoded | Rejected]:
    """An event id two envelopes of the batch share is the later one's rejection (``duplicate_in_batch``)."""
    seen: dict[str, int] = {}
    out: list[Decoded | Rejected] = []
    for item in items:
        if isinstance(item, Decoded):
            event_id, index = item.body["event_id"], item.request.index
            if event_id in seen:
                message = f"event_id also used by item {seen[event_id]} of this batch"
                item = item.rejected([Problem("duplicate_in_batch", f"{item.request.path}.payload.event_id", message, Category.INVALID)])
            else:
                seen[event_id] = index
        out.append(item)
    return out


def _located(decoded: Decoded, row: IndexRow | None, subject_id: uuid.UUID, submitter_id: uuid.UUID) -> Located | Replay | Rejected:
    """A new event (no index row for its event id), a replay (the same envelope) or a conflict (other bytes)."""
    if row is None:
        return Located(decoded, subject_id, submitter_id)
    if row.envelope_digest == decoded.env.envelope_digest:
        return Replay(decoded, row)
    message = f"event_id {row.event_id} is already taken by another event: a replay sends the same envelope, a new event a new event_id"
    return decoded.rejected([Problem("event_id_conflict", f"{decoded.request.path}.payload.event_id", message, Category.CONFLICT)])


def _accepted(outcomes: list[Outcome], index_rows: list[dict[str, Any]], ids: Sequence[int]) -> list[Accepted]:
    """What each envelope not rejected gets a receipt for: its new index row (with the sequence number its event has:
    ``ids`` in the events' order, one event per new row) or the row it replays."""
    new_rows = iter(zip(index_rows, ids, strict=True))
    accepted: list[Accepted] = []
    for outcome in outcomes:
        if isinstance(outcome, Replay):
            accepted.append((outcome.row, False, None))
        elif isinstance(outcome, Judged):
            row, sequence = next(new_rows)
            accepted.append((IndexRow(**row, sequence=sequence), True, list(outcome.flags)))
    return accepted
