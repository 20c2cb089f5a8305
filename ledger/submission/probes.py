"""Rejections that depend on other organisations' records (docs/access.md, "Rule outcomes are reads").

Such a rejection tells the submitter something about another organisation's record of the pupil: it is recorded as a
read of the pupil (``access.record_viewed``) before it is answered, and each submitting organisation has a budget of
them (``ProbeBudget``); when it is spent, submissions about pupils it has no record of are refused for a while.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ledger.access_audit import access_body
from ledger.core import envelope
from ledger.core.errors import Category, Problem
from ledger.core.rules import CROSS_ORG_CODES, Record
from ledger.submission.values import Decoded, Rejected

if TYPE_CHECKING:
    from ledger.service import Ledger

PROBE_PURPOSE = "rejected_submission"  # the purpose such a rejection is recorded with (code list access_purposes)
PROBE_BURST = 20  # such rejections per submitting organisation before it is limited ...
PROBE_REFILL_SECONDS = 60.0  # ... and then one more each this many seconds (per API process)


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


def probe_limited(budget: ProbeBudget, item: Decoded, records: Sequence[Record]) -> tuple[Problem, float] | None:
    """Refuse, before judging, a submission about a pupil its organisation has posted nothing about, while that
    organisation has spent its budget of rejections that told it about other organisations' records: the problem and
    the seconds to wait. What this depends on (the budget, and the submitter's own records) says nothing about anyone
    else's."""
    if item.request.principal is None:
        return None
    org = item.body["submitter"]
    wait = budget.wait(org)
    if not wait or any(r.submitter == org for r in records):
        return None
    problem = Problem(
        "rule_probe_limited",
        "$.payload.subject",
        f"{org} has had too many submissions rejected because of other "
        f"organisations' records of pupils; submissions about pupils it has no record of resume in {math.ceil(wait)} s",
        Category.RATE_LIMITED,
    )
    return problem, wait


def probes_of(rejected: list[Rejected]) -> list[tuple[Rejected, str]]:
    """The rejected items whose answer depends on other organisations' records of the pupil, with the code: each is a
    read of the pupil by the submitter, recorded (``record_probes``). A trusted local caller's are not."""
    out = []
    for item in rejected:
        code = next((p.code for p in item.problems if p.code in CROSS_ORG_CODES), None)
        if code is not None and item.request.principal is not None and item.body and "upn" in item.body.get("subject", {}):
            out.append((item, code))
    return out


def record_probes(ledger: Ledger, probes: list[tuple[Rejected, str]], endpoint: str) -> Exception | None:
    """Record each probe as ``access.record_viewed`` in the pupil's audit stream, all in one write, and spend the
    submitters' budgets. Returns what failed, which those items are answered instead of their rejection: a
    rejection that reveals something is only ever answered once it is recorded."""
    if not probes:
        return None
    envelopes = []
    for item, code in probes:
        principal, body = item.request.principal, item.body
        assert principal is not None and body is not None  # as probes_of chose them
        ledger.probes.spend(principal.org)
        key = ledger.store.app.pupil_keys.get(ledger.secrets.pupil_id(body["subject"]["upn"]))
        if key is None:
            continue  # no record of the pupil (erased meanwhile): nothing was revealed
        data = {
            "principal": {"org": principal.org, "role": principal.role, "token_id": principal.token_id},
            "purpose": PROBE_PURPOSE,
            "endpoint": endpoint,
            "rejected": code,
            "basis": f"rejected {body['type']} {body['event_id']}: {code}"[:200],
        }
        envelopes.append(envelope.sign(access_body("access.record_viewed", key.audit_id, data, ledger.clock()), ledger.secrets.signing_key))
    try:
        if envelopes:
            ledger.submit_batch(envelopes)
    except Exception as exc:  # noqa: BLE001 - answered to the probing items instead of their rejections
        return exc
    return None
