"""Organisations' keys: weak public keys are refused (issue 18, item 7) and a revocation is backdated only by the
operator, never before the key was added (item 17)."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import own_events
from ledger.core import envelope
from ledger.core.errors import LedgerError
from ledger.core.orgs import OrgState, apply_org, check_org, fold_org
from ledger.core.rules import Record
from ledger.tools import admin

from .conftest import SCHOOL_A, UPN, World

# -- Ed25519 arithmetic in plain Python (RFC 8032 5.1), independent of the libraries the ledger uses ------------

P = 2**255 - 19
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
Point = tuple[int, int]


def add(a: Point, b: Point) -> Point:
    (x1, y1), (x2, y2) = a, b
    t = D * x1 * x2 * y1 * y2 % P
    return (x1 * y2 + x2 * y1) * pow(1 + t, P - 2, P) % P, (y1 * y2 + x1 * x2) * pow(1 - t, P - 2, P) % P


def times(n: int, a: Point) -> Point:
    out: Point = (0, 1)
    for bit in bin(n)[2:]:
        out = add(out, out)
        if bit == "1":
            out = add(out, a)
    return out


def x_of(y: int, sign: int) -> int | None:
    """The x with that sign bit for ``y`` on the curve, or None (RFC 8032 5.1.3)."""
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    if v * x * x % P == (P - u) % P:
        x = x * SQRT_M1 % P
    if v * x * x % P != u:
        return None
    return P - x if x & 1 != sign and x else x


def encode(y: int, sign: int) -> bytes:
    return (y | sign << 255).to_bytes(32, "little")


def decode(raw: bytes) -> Point:
    n = int.from_bytes(raw, "little")
    y, sign = n & (2**255 - 1), n >> 255
    x = x_of(y % P, sign)
    assert x is not None
    return x, y % P


# The y coordinates of the 8 points of order 1, 2, 4 and 8 (the y values libsodium's blocklist carries)
ORDER_8_Y = int.from_bytes(bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"), "little")
TORSION = sorted({(x, y) for y in (1, P - 1, 0, ORDER_8_Y, P - ORDER_8_Y) for sign in (0, 1) if (x := x_of(y, sign)) is not None})
CANONICAL = [encode(y, x & 1) for x, y in TORSION]
NON_CANONICAL = [
    encode(1, 1),
    encode(P - 1, 1),  # x = 0 with the sign bit set ("-0")
    encode(1 + P, 0),
    encode(1 + P, 1),
    encode(0 + P, 0),
    encode(0 + P, 1),  # y + p (y < 19)
]


def test_the_small_order_points_are_what_they_should_be() -> None:
    assert len(TORSION) == 8 and len(set(CANONICAL)) == 8
    assert all(times(8, t) == (0, 1) for t in TORSION)
    assert sorted(min(n for n in (1, 2, 4, 8) if times(n, t) == (0, 1)) for t in TORSION) == [1, 2, 4, 4, 8, 8, 8, 8]
    assert bytes.fromhex("0100000000000000000000000000000000000000000000000000000000000000") in CANONICAL  # the identity
    assert bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a") in CANONICAL
    assert bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f") in CANONICAL  # order 2
    assert bytes.fromhex("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f") in NON_CANONICAL  # p + 1 = identity


# -- item 7: weak keys ---------------------------------------------------------------------------------------

NOW = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)


def _registered(org: str = SCHOOL_A) -> OrgState:
    state = OrgState(org)
    apply_org(state, _record("org.registered", {"kind": "school", "name": "A school", "la": "la:801"}, org))
    return state


def _record(event_type: str, data: dict, org: str = SCHOOL_A, submitter: str = "dfe:admin", received: datetime = NOW) -> Record:
    return Record(f"e-{event_type}-{received.isoformat()}", event_type, submitter, org, received.date(), received, data)


def _key_added(raw: bytes) -> Record:
    return _record("org.key_added", {"key_id": envelope.key_id(raw), "public_key": base64.b64encode(raw).decode(), "algorithm": "ed25519"})


def _mixed_order() -> bytes:
    """A real key plus a point of order 8: the right length, on the curve, canonical, but not in the prime-order group."""
    real = decode(envelope.raw_public_key(Ed25519PrivateKey.generate().public_key()))
    x, y = add(real, next(t for t in TORSION if t[1] == ORDER_8_Y))
    return encode(y, x & 1)


def _off_curve() -> bytes:
    y = next(y for y in range(2, 1000) if x_of(y, 0) is None)
    return encode(y, 0)


def _other_non_canonical() -> list[bytes]:
    """y + p for the small y (< 19) that are on the curve: the same points as y, spelt another way."""
    return [encode(y + P, 0) for y in range(2, 19) if x_of(y, 0) is not None]


@pytest.mark.parametrize(
    "raw", CANONICAL + NON_CANONICAL + [_mixed_order(), _off_curve(), *_other_non_canonical()], ids=lambda raw: raw.hex()
)
def test_a_weak_public_key_is_refused_and_never_used(raw: bytes) -> None:
    problems = check_org(_registered(), _key_added(raw))
    assert [(p.code, p.path) for p in problems] == [("weak_public_key", "$.payload.data.public_key")]
    assert fold_org(SCHOOL_A, [_record("org.registered", {"kind": "school", "name": "A school"}), _key_added(raw)]).keys == {}


def test_real_keys_are_accepted() -> None:
    for _ in range(50):
        raw = envelope.raw_public_key(Ed25519PrivateKey.generate().public_key())
        assert check_org(_registered(), _key_added(raw)) == []


def test_through_the_ledger_the_identity_key_is_refused_and_a_signature_without_a_private_key_verifies_nowhere(world: World) -> None:
    """With the identity point as key, R = identity and S = 0 "verify" on any message (OpenSSL, cofactorless)."""
    identity = encode(1, 0)
    kid = envelope.key_id(identity)
    data = {"key_id": kid, "public_key": base64.b64encode(identity).decode(), "algorithm": "ed25519"}
    before = world.ledger.store.count_events()
    with pytest.raises(LedgerError) as exc:
        world.ledger.submit(own_events.admin_event(world.ledger, "org.key_added", SCHOOL_A, data))
    assert [p.code for p in exc.value.problems] == ["weak_public_key"]
    assert world.ledger.store.count_events() == before
    body = world.event(
        "pupil.registered",
        SCHOOL_A,
        {"school": SCHOOL_A, "enrolment_status": "C", "year_group": "9", "sen_status": "N", "looked_after": False},
        upn=UPN,
    )
    forged = envelope.signed_envelope(envelope.EVENT_PAYLOAD_TYPE, envelope.jcs.canonicalize(body), kid, identity + bytes(32))
    assert envelope.decode(forged).verify(identity, kid)  # what the key would have let through
    with pytest.raises(LedgerError) as exc:
        world.ledger.submit(forged)
    assert [p.code for p in exc.value.problems] == ["key_unknown"]


# -- item 17: backdated revocations ---------------------------------------------------------------------

ADDED_AT = datetime(2026, 9, 1, 8, 0, tzinfo=UTC)


def _with_key() -> tuple[OrgState, str]:
    state = _registered()
    raw = envelope.raw_public_key(Ed25519PrivateKey.generate().public_key())
    apply_org(
        state,
        _record(
            "org.key_added",
            {"key_id": envelope.key_id(raw), "public_key": base64.b64encode(raw).decode(), "algorithm": "ed25519"},
            received=ADDED_AT,
        ),
    )
    return state, envelope.key_id(raw)


def _revocation(kid: str, submitter: str, revoked_at: datetime | None) -> Record:
    data = {"key_id": kid, "reason": "compromised", **({"revoked_at": revoked_at.strftime("%Y-%m-%dT%H:%M:%SZ")} if revoked_at else {})}
    return _record("org.key_revoked", data, submitter=submitter)


@pytest.mark.parametrize(
    "submitter,stated,problem,effective",
    [
        (SCHOOL_A, None, None, NOW),  # its own, from when received
        (SCHOOL_A, NOW + timedelta(days=2), None, NOW + timedelta(days=2)),  # its own, from a later time
        (SCHOOL_A, NOW - timedelta(minutes=4), None, NOW),  # within the clock skew: from when received
        (SCHOOL_A, NOW - timedelta(minutes=6), "backdated_revocation", None),
        (SCHOOL_A, datetime(2000, 1, 1, tzinfo=UTC), "backdated_revocation", None),  # disowning everything it ever signed
        ("dfe:admin", datetime(2026, 9, 20, tzinfo=UTC), None, datetime(2026, 9, 20, tzinfo=UTC)),  # the operator, after investigating
        ("dfe:admin", ADDED_AT, None, ADDED_AT),
        ("dfe:admin", ADDED_AT - timedelta(seconds=1), "revoked_before_added", None),
        ("dfe:admin", datetime(2000, 1, 1, tzinfo=UTC), "revoked_before_added", None),
    ],
)
def test_when_a_revocation_takes_effect(submitter: str, stated: datetime | None, problem: str | None, effective: datetime | None) -> None:
    state, kid = _with_key()
    revocation = _revocation(kid, submitter, stated)
    assert [(p.code, p.path) for p in check_org(state, revocation)] == ([(problem, "$.payload.data.revoked_at")] if problem else [])
    if problem is None:
        apply_org(state, revocation)
        assert state.keys[kid].revoked_at == effective


def test_a_closed_organisations_key_can_still_be_revoked_and_nothing_else_changes() -> None:
    state, kid = _with_key()
    apply_org(state, Record("c", "org.closed", "dfe:admin", SCHOOL_A, date(2026, 9, 30), NOW, {}))
    assert state.closed_on == date(2026, 9, 30) and state.facts().closed == date(2026, 9, 30)
    assert check_org(state, _revocation(kid, SCHOOL_A, None)) == []
    raw = envelope.raw_public_key(Ed25519PrivateKey.generate().public_key())
    assert [p.code for p in check_org(state, _key_added(raw))] == ["org_closed"]


def test_through_the_ledger_a_school_cannot_backdate_its_own_revocation(world: World) -> None:
    kid = envelope.key_id(world.keys[SCHOOL_A].public_key())
    before = world.ledger.store.count_events()
    with pytest.raises(LedgerError) as exc:
        world.post(
            "org.key_revoked", SCHOOL_A, {"key_id": kid, "reason": "compromised", "revoked_at": "2000-01-01T00:00:00Z"}, org=SCHOOL_A
        )
    assert [(p.code, p.path) for p in exc.value.problems] == [("backdated_revocation", "$.payload.data.revoked_at")]
    assert world.ledger.store.count_events() == before
    world.admit(UPN)  # its key still works
    with pytest.raises(LedgerError) as exc:  # nor can the operator date it before the key was added
        admin.revoke_key(world.ledger, SCHOOL_A, kid, "compromised", datetime(2000, 1, 1, tzinfo=UTC))
    assert [p.code for p in exc.value.problems] == ["revoked_before_added"]
    world.post("org.key_revoked", SCHOOL_A, {"key_id": kid, "reason": "retired"}, org=SCHOOL_A)
    (org,) = [o for o in world.ledger.list_orgs() if o["org"] == SCHOOL_A]
    assert [k["revoked_at"] for k in org["keys"]] == [world.clock.now.isoformat()]
