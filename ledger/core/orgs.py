"""Organisations and their signing keys, folded from ``org.*`` and ``provider.*`` records. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from nacl.bindings import crypto_core_ed25519_is_valid_point

from ledger.core.catalogue import CLOCK_SKEW, parse_timestamp
from ledger.core.envelope import b64decode_strict, key_id
from ledger.core.errors import Category, Problem
from ledger.core.identifiers import la_code_of, org_scheme
from ledger.core.inspection_rules import Inspection, check_inspection, inspection_of
from ledger.core.rules import OrgFacts, Record

OPERATOR = "dfe:admin"  # the only submitter that may state a past revocation time

KINDS_BY_SCHEME = {
    "urn": ("school", "ap_setting"),
    "la": ("la",),
    "trust": ("trust",),
    "ukprn": ("provider", "ap_setting"),
    "uprov": ("unregistered_provider",),
    "ofsted": ("inspectorate",),
    "cqc": ("inspectorate",),
    "dfe:regions": ("regions",),
    "dfe:admin": ("admin",),
    "research": ("researcher",),
    "icb": ("icb",),
    "tribunal": ("tribunal",),
    "mediation": ("mediation",),
}


@dataclass
class SigningKey:
    key_id: str
    public_key: bytes
    added_at: datetime
    revoked_at: datetime | None = None


@dataclass
class OrgState:
    org_id: str
    registered: bool = False
    kind: str = ""
    name: str = ""
    la: str | None = None
    trust: str | None = None
    closed: bool = False
    closed_on: date | None = None
    keys: dict[str, SigningKey] = field(default_factory=dict)
    inspections: dict[str, Inspection] = field(default_factory=dict)  # an LA's area SEND inspections (inspection.started)
    _facts: OrgFacts | None = field(default=None, repr=False, compare=False)  # made once per fold: asked for every pupil event

    def public_key(self, kid: str) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(self.keys[kid].public_key)

    def facts(self) -> OrgFacts:
        """What the pupil rules may ask about this organisation."""
        if self._facts is None:
            self._facts = OrgFacts(self.kind, self.la, self.trust, self.closed_on, self.registered)
        return self._facts


def weak_public_key(raw: bytes) -> bool:
    """Whether ``raw`` is no Ed25519 public key a signer could hold: not 32 bytes, not a canonical encoding of a
    curve point (y >= p, or x = 0 with the sign bit set), or a point outside the prime-order subgroup (the 8
    small-order points and every point with a small-order component). With the identity as "key", a signature
    (R = identity, S = 0) verifies on every message under cofactorless verification, without any private key.
    A key made by any Ed25519 implementation (a clamped scalar times the base point) is never weak.
    """
    return len(raw) != 32 or not crypto_core_ed25519_is_valid_point(raw)


def revocation_time(stated: datetime | None, received_at: datetime, submitter: str) -> datetime:
    """When a revocation takes effect: the operator may state any time (after investigating a compromise, in the
    past too); an organisation's own revocation takes effect when received, or at a later time it states."""
    if stated is None:
        return received_at
    return stated if submitter == OPERATOR else max(stated, received_at)


def apply_org(state: OrgState, r: Record) -> None:
    d = r.data
    state._facts = None
    if r.type == "org.registered":
        state.registered, state.kind, state.name = True, d["kind"], d["name"]
        state.la, state.trust = d.get("la"), d.get("trust")
    elif r.type == "provider.unregistered_recorded":
        state.registered, state.kind, state.name = True, "unregistered_provider", d["name"]
        state.la = r.submitter
    elif r.type == "org.joined_trust":
        state.trust = d["trust"]
    elif r.type == "org.left_trust":
        state.trust = None
    elif r.type in ("org.closed", "provider.closed"):
        state.closed, state.closed_on = True, r.occurred_on
    elif r.type == "org.key_added":
        raw = b64decode_strict(d["public_key"])
        if not weak_public_key(raw):  # one accepted before keys were checked is never used
            state.keys[d["key_id"]] = SigningKey(d["key_id"], raw, r.received_at)
    elif r.type == "org.key_revoked":
        key = state.keys.get(d["key_id"])
        if key is not None:
            key.revoked_at = revocation_time(parse_timestamp(d.get("revoked_at")), r.received_at, r.submitter)
    elif r.type == "inspection.started":
        state.inspections[r.event_id] = inspection_of(r)


def fold_org(org_id: str, records: Sequence[Record]) -> OrgState:
    state = OrgState(org_id)
    for record in records:
        apply_org(state, record)
    return state


def _bad(code: str, path: str, message: str, category: Category = Category.INVALID) -> Problem:
    return Problem(code, path, message, category)


def check_org(state: OrgState, new: Record) -> list[Problem]:
    """Problems that reject ``new`` about organisation ``state.org_id``."""
    d, t = new.data, new.type
    if t in ("org.registered", "provider.unregistered_recorded"):
        if state.registered:
            return [_bad("already_registered", "$.payload.subject.org", f"{state.org_id} is already registered")]
        if t == "org.registered" and d["kind"] not in KINDS_BY_SCHEME.get(org_scheme(state.org_id) or "", ()):
            return [_bad("kind_mismatch", "$.payload.data.kind", f"{state.org_id} cannot be of kind {d['kind']}")]
        if t == "provider.unregistered_recorded":
            if org_scheme(state.org_id) != "uprov":
                return [_bad("not_unregistered_provider", "$.payload.subject.org", "an unregistered provider id is uprov:<la>-<n>")]
            if la_code_of(state.org_id) != la_code_of(new.submitter):
                return [
                    _bad(
                        "not_own_provider_id",
                        "$.payload.subject.org",
                        f"{new.submitter} can only assign ids uprov:{la_code_of(new.submitter)}-N",
                        Category.FORBIDDEN,
                    )
                ]
        return []
    if not state.registered:
        return [_bad("org_unknown", "$.payload.subject.org", f"{state.org_id} is not registered")]
    if state.closed and t != "org.key_revoked":  # a closed organisation's key can still be revoked
        return [_bad("org_closed", "$.payload.subject.org", f"{state.org_id} is closed")]
    if t.startswith("inspection."):  # ledger/core/inspection_rules.py
        return check_inspection(state.org_id, state.inspections, new)
    if t.startswith("provider.") and new.submitter != state.la:
        return [_bad("not_owner", "$.payload.subject.org", f"only {state.la} records events about {state.org_id}", Category.FORBIDDEN)]
    if t == "org.key_added":
        try:
            raw = b64decode_strict(d["public_key"])
        except ValueError:
            return [_bad("public_key", "$.payload.data.public_key", "not base64 of a raw 32-byte Ed25519 public key")]
        if weak_public_key(raw):
            return [
                _bad(
                    "weak_public_key",
                    "$.payload.data.public_key",
                    "not a usable Ed25519 public key: it must be a canonically encoded "
                    "curve point of large prime order (small-order, mixed-order, off-curve and non-canonical keys let forged "
                    "signatures verify)",
                )
            ]
        if key_id(raw) != d["key_id"]:
            return [_bad("key_id_mismatch", "$.payload.data.key_id", f"the key id of that public key is {key_id(raw)}")]
        if d["key_id"] in state.keys:
            return [_bad("key_exists", "$.payload.data.key_id", "that key is already registered")]
    if t == "org.key_revoked":
        key = state.keys.get(d["key_id"])
        if key is None:
            return [_bad("key_unknown", "$.payload.data.key_id", f"{state.org_id} has no key {d['key_id']}")]
        if key.revoked_at is not None:
            return [_bad("key_already_revoked", "$.payload.data.key_id", f"key {d['key_id']} was revoked at {key.revoked_at.isoformat()}")]
        stated = parse_timestamp(d.get("revoked_at"))
        if stated is not None and new.submitter != OPERATOR and stated < new.received_at - CLOCK_SKEW:
            # else an organisation could disown everything it signed since, long after the fact
            return [
                _bad(
                    "backdated_revocation",
                    "$.payload.data.revoked_at",
                    "an organisation's own revocation takes effect when received "
                    f"or at a later time; only {OPERATOR} may state a past revocation time",
                )
            ]
        if stated is not None and stated < key.added_at:
            return [_bad("revoked_before_added", "$.payload.data.revoked_at", f"key {d['key_id']} was added at {key.added_at.isoformat()}")]
    return []
