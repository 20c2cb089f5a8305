"""The checks that need stored state: the submitter's signatures (*authenticate*) and the domain rules on the
subject's records (*judge*). Each returns the envelope's next value (``values``) or its rejection; neither changes
anything stored or staged."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ledger.access_audit import ADMIN_ORG
from ledger.core import catalogue, funding_rules
from ledger.core.errors import Category, Problem
from ledger.core.orgs import OrgState, check_org, fold_org
from ledger.core.rules import OrgFacts, Record, check_pupil
from ledger.research.projects import check_research
from ledger.storage.store import Subject
from ledger.submission.early_verdicts import EarlyVerdicts, signature_valid
from ledger.submission.probes import probe_limited
from ledger.submission.values import Authenticated, Decoded, Judged, Located, Rejected

if TYPE_CHECKING:
    from ledger.submission.pipeline import Submissions

Working = dict[uuid.UUID, Subject | None]  # the batch's subjects as it changes them (None: no such subject yet)
Trusted = dict[str, tuple[str, bytes]]  # key id -> (organisation, public key): keys a trusted local caller vouches for


def authenticate(
    sub: Submissions, item: Located, received_at: datetime, working: Working, trusted: Trusted, ahead: EarlyVerdicts | None
) -> Authenticated | Rejected:
    """The envelope's signatures, by one rule whatever their order (README, "What the ledger checks"): every
    signature must be by a key of the submitter that is valid when the envelope is received (added, not
    revoked) and must verify over the payload. The first signature that fails decides the error."""
    decoded = item.decoded
    org = sub.org_state(decoded.body["submitter"], working)
    used: set[str] = set()
    for kid, _sig in decoded.env.signatures:
        problem = _signature_problem(sub, decoded, kid, org, received_at, trusted, ahead)
        if problem is not None:
            code, message = problem
            where = decoded.request.path
            path = f"{where}.payload.submitter" if code == "submitter_unknown" else f"{where}.signatures"
            return decoded.rejected([Problem(code, path, message, Category.FORBIDDEN)], item.reads)
        used.add(kid)
    return Authenticated(item, frozenset(used))


def _signature_problem(
    sub: Submissions, item: Decoded, kid: str, org: OrgState, received_at: datetime, trusted: Trusted, ahead: EarlyVerdicts | None
) -> tuple[str, str] | None:
    """Why the item's signature by ``kid`` does not count (code, message), or None."""
    submitter = org.org_id
    if kid in trusted and trusted[kid][0] == submitter:
        return (
            None
            if signature_valid(ahead, item, kid, trusted[kid][1])
            else ("signature_invalid", f"the signature by key {kid} does not verify")
        )
    key = org.keys.get(kid)
    if key is None:
        if not org.registered:
            return "submitter_unknown", f"{submitter} is not a registered organisation"
        owner = sub.ledger.store.key_owner(kid)
        if owner is not None and owner != submitter:
            return "key_not_submitters", f"key {kid} belongs to {owner}, not to the submitter {submitter}"
        return "key_unknown", f"key {kid} is not registered for {submitter}"
    if key.revoked_at is not None and received_at >= key.revoked_at:
        return "key_revoked", f"key {kid} of {submitter} was revoked at {key.revoked_at.isoformat()}"
    if received_at < key.added_at:
        return "key_not_yet_valid", f"key {kid} of {submitter} is valid from {key.added_at.isoformat()}"
    if not signature_valid(ahead, item, kid, key.public_key):
        return "signature_invalid", f"the signature by key {kid} does not verify over this payload"
    return None


def judge(
    sub: Submissions, item: Authenticated, record: Record, subject: Subject | None, working: Working, key_rows: list[tuple[str, str]]
) -> Judged | Rejected:
    """The domain rules for the item's event type on its subject's records (``working``: as the batch leaves them):
    pupils by ``rules.check_pupil`` (after the probe limit), organisations by ``orgs.check_org`` and the research
    rules, ledger-written access events not at all. Returns the rules' flags, or the rejection with the streams it
    was decided on."""
    decoded = item.located.decoded
    body = decoded.body
    reads = set(item.located.reads)  # and any other organisation or the tariffs a rule asks about
    records = subject.records if subject else []
    etype = catalogue.event_types()[body["type"]]
    problems: list[Problem]
    flags: list[dict[str, str]] = []
    if etype.subject == "pupil":
        limited = probe_limited(sub.ledger.probes, decoded, records)
        if limited:
            problem, wait = limited
            return decoded.rejected([problem.at(decoded.request.path)], frozenset(reads), retry_after=wait)

        def org_facts(org: str) -> OrgFacts:  # the submitter is loaded already; another organisation only when a rare rule asks
            if org != body["submitter"]:  # (the submitter is read already) a rejection decided on cached facts is checked again
                reads.add(sub.ledger.secrets.org_id(org))
            return sub.org_state(org, working).facts()

        def tariff_records() -> list[Record]:  # the national tariffs (records of ``dfe:admin``), read as part of the decision
            admin_id = sub.ledger.secrets.org_id(funding_rules.TARIFF_ORG)
            reads.add(admin_id)
            tariffs = sub.load(admin_id, working)
            return list(tariffs.records) if tariffs else []

        problems, flags = check_pupil(records, record, org_facts, tariff_records)
    elif etype.subject == "audit":
        problems = []  # ledger-written access records
    else:
        problems = _org_problems(sub, decoded, record, records, key_rows)
    if problems:
        return decoded.rejected([p.at(decoded.request.path) for p in problems], frozenset(reads))
    return Judged(item, record, (*decoded.flags, *flags))


def _org_problems(
    sub: Submissions, decoded: Decoded, record: Record, records: list[Record], key_rows: list[tuple[str, str]]
) -> list[Problem]:
    """The rules for an event about an organisation: its own state, then research projects, funding, who may post it,
    and a key id registered to one organisation only."""
    body = decoded.body
    etype = catalogue.event_types()[body["type"]]
    org_state = fold_org(body["subject"]["org"], records)
    problems = check_org(org_state, record)
    if not problems and etype.name.startswith("research."):  # projects and releases (docs/research.md)
        problems = check_research(records, record)
    if not problems and etype.name in funding_rules.ORG_TYPES:  # plans, budgets, programmes, tariffs (issue 25)
        problems = funding_rules.check_org_event(records, record)
    if "self" in etype.submitters and body["submitter"] not in (ADMIN_ORG, body["subject"]["org"]):
        problems.append(
            Problem(
                "submitter_not_allowed",
                "$.payload.submitter",  # re-rooted under the envelope's path with the others
                f"{body['type']} is posted by {ADMIN_ORG} or the organisation itself",
                Category.FORBIDDEN,
            )
        )
    if body["type"] == "org.key_added" and not problems:
        problems.extend(_key_id_taken(sub, body, key_rows))
    return problems


def _key_id_taken(sub: Submissions, body: dict[str, Any], key_rows: list[tuple[str, str]]) -> list[Problem]:
    """A key id is registered to one organisation only (``ledger_keys``): checked before the write, so a key of
    another organisation is this event's rejection, not a failed write for everything committed with it."""
    kid, org = body["data"]["key_id"], body["subject"]["org"]
    owner = next((o for k, o in key_rows if k == kid), None) or sub.ledger.store.key_owner(kid)
    if owner is not None and owner != org:
        return [Problem("key_id_taken", "$.payload.data.key_id", f"key {kid} is registered to another organisation", Category.CONFLICT)]
    return []
