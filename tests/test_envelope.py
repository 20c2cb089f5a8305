"""Envelope maths against the published vectors, plus property tests for tampering."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import uuid

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.core import ed25519, envelope, jcs
from ledger.core.errors import Category, LedgerError
from ledger.storage.secrets import LedgerSecrets

from .conftest import VECTORS

JCS_DIR = VECTORS / "jcs-rfc8785"


@pytest.mark.parametrize("name", sorted(p.name for p in (JCS_DIR / "input").iterdir()))
def test_jcs_vectors(name: str) -> None:
    expected = (JCS_DIR / "output" / name).read_bytes()
    assert jcs.canonicalize(json.loads((JCS_DIR / "input" / name).read_bytes())) == expected
    assert bytes.fromhex("".join((JCS_DIR / "outhex" / name.replace(".json", ".txt")).read_text().split())) == expected
    assert jcs.is_canonical(expected)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(codec="utf-8"))
    | st.text(alphabet=st.characters(max_codepoint=0x7F)),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(alphabet=st.characters(codec="utf-8"), max_size=4) | st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=20,
)


PLAIN_VALUES = st.recursive(  # every example takes the fast path (the strategy above mostly does not)
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(alphabet=st.characters(max_codepoint=0x7F)),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=4), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=600, deadline=None)
@given(PLAIN_VALUES)
def test_jcs_fast_path_equals_the_reference_implementation(value: object) -> None:
    import rfc8785

    assert jcs._plain(value)
    assert jcs.canonicalize(value) == rfc8785.dumps(value)


@settings(max_examples=600, deadline=None)
@given(JSON_VALUES)
def test_jcs_equals_the_reference_implementation(value: object) -> None:
    """The fast path (standard encoder for plain values) and the ``rfc8785`` reference agree byte for byte, errors included."""
    import rfc8785

    try:
        expected: bytes | type[Exception] = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as exc:
        expected = type(exc)
    try:
        got: bytes | type[Exception] = jcs.canonicalize(value)
    except rfc8785.CanonicalizationError as exc:
        got = type(exc)
    assert got == expected


@settings(max_examples=600, deadline=None)
@given(JSON_VALUES, st.booleans())
def test_the_trusted_parse_of_canonical_json_gives_what_json_loads_gives(value: object, as_text: bool) -> None:
    """``jcs.parse_trusted`` (orjson) reads what the ledger stored, always canonical by the ledger's own check: the
    same values and types as ``json.loads``, floats, non-ASCII text and integers up to 2^53 included."""
    import rfc8785

    try:
        data: bytes | str = jcs.canonicalize(value)
    except rfc8785.CanonicalizationError:  # no canonical form (an integer beyond 2^53, a lone surrogate): never stored
        return
    if not jcs.is_canonical(data):  # e.g. the float 2.0**64, written 18446744073709552000: read back, an integer beyond 2^53
        return
    if as_text:
        data = data.decode("utf-8")
    assert repr(jcs.parse_trusted(data)) == repr(json.loads(data))  # repr: the same types too, and -0.0 is not 0


def _canonical_by_reference(data: bytes) -> bool:
    import rfc8785

    try:
        return rfc8785.dumps(jcs.parse(data)) == data
    except (jcs.NotJSON, rfc8785.CanonicalizationError):
        return False


@settings(max_examples=600, deadline=None)
@given(JSON_VALUES, st.sampled_from(["reference", "ascii", "python"]))
def test_is_canonical_agrees_with_the_reference(value: object, form: str) -> None:
    """``parse_canonical`` skips the walk over plain ASCII payloads; it must still say exactly what RFC 8785 says,
    whether the bytes are canonical, written with \\u escapes, or with Python's own float and number forms."""
    import rfc8785

    try:
        data = {
            "reference": lambda: rfc8785.dumps(value),
            "ascii": lambda: json.dumps(value, sort_keys=True, separators=(",", ":")).encode(),
            "python": lambda: json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8"),
        }[form]()
    except (rfc8785.CanonicalizationError, UnicodeEncodeError):
        return
    assert jcs.is_canonical(data) == _canonical_by_reference(data)


@pytest.mark.parametrize(
    ("data", "canonical"),
    [
        (b'{"a":1,"b":[true,null]}', True),
        (b'{"b":1,"a":2}', False),
        (b'{"a":1,"a":1}', False),
        (b'{"a":1e-07}', False),
        (b'{"a":1e-7}', True),
        (b"1.0", False),
        (b"1.5", True),
        (b"9007199254740991", True),
        (b"9007199254740993", False),
        (b"-0", False),
        (b'"\\u00e9"', False),
        ('"\u00e9"'.encode(), True),
        (b'"\\u0041"', False),
        (b'"\\u001f"', True),
        (b'"\\ud800"', False),
        (b'{"n":1234567890123456}', True),
        (b"[1, 2]", False),
    ],
)
def test_is_canonical_edge_cases(data: bytes, canonical: bool) -> None:
    assert jcs.is_canonical(data) is canonical
    assert _canonical_by_reference(data) is canonical


@pytest.mark.parametrize(
    "value",
    [
        "\x7f",
        'a"b\\c',
        "\b\f\n\r\t\x00\x1f",
        "/",
        {"b": 1, "a": [True, False, None]},
        2**53 - 1,
        -(2**53) + 1,
        1.0,
        "\u2028",
        {"\ue000": 1, "\U0001f600": 2},
    ],
)
def test_jcs_edge_cases(value: object) -> None:
    import rfc8785

    assert jcs.canonicalize(value) == rfc8785.dumps(value)


def test_rfc8032_vectors() -> None:
    for v in json.loads((VECTORS / "ed25519-rfc8032" / "rfc8032_ed25519.json").read_text())["vectors"]:
        key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(v["secret_key_hex"]))
        assert envelope.raw_public_key(key.public_key()).hex() == v["public_key_hex"]
        assert key.sign(bytes.fromhex(v["message_hex"])).hex() == v["signature_hex"]
        assert ed25519.sign(key, bytes.fromhex(v["message_hex"])).hex() == v["signature_hex"]  # libsodium, for receipts
    for size in range(0, 2000, 40):
        key, message = Ed25519PrivateKey.generate(), os.urandom(size)
        assert ed25519.sign(key, message) == key.sign(message)


def test_cctv_edge_cases_accepted_exactly_as_documented() -> None:
    cases = json.loads((VECTORS / "ed25519-cctv" / "ed25519vectors.json").read_text())
    accepted = 0
    for case in cases:
        try:
            Ed25519PublicKey.from_public_bytes(bytes.fromhex(case["key"])).verify(bytes.fromhex(case["sig"]), case["msg"].encode())
            accepted += 1
            assert not {"non_canonical_R", "low_order_residue"} & set(case.get("flags") or [])
        except (InvalidSignature, ValueError):
            pass
    assert accepted == 208


def test_the_ledger_verifies_exactly_as_cryptography_does() -> None:
    """``ed25519.verify`` asks libsodium first: on every CCTV edge case its verdict must still be cryptography's."""
    import nacl.bindings
    import nacl.exceptions

    cases = json.loads((VECTORS / "ed25519-cctv" / "ed25519vectors.json").read_text())
    by_libsodium = 0
    for case in cases:
        key, sig, msg = bytes.fromhex(case["key"]), bytes.fromhex(case["sig"]), case["msg"].encode()
        assert ed25519.verify(key, sig, msg) is ed25519.verify_openssl(key, sig, msg), case
        try:
            nacl.bindings.crypto_sign_open(sig + msg, key)
            by_libsodium += 1
            assert ed25519.verify_openssl(key, sig, msg), case  # what the fast path relies on
        except (nacl.exceptions.CryptoError, ValueError):
            pass
    assert sum(ed25519.verify(bytes.fromhex(c["key"]), bytes.fromhex(c["sig"]), c["msg"].encode()) for c in cases) == 208
    assert 0 < by_libsodium < 208
    key = Ed25519PrivateKey.generate()
    raw, message = envelope.raw_public_key(key.public_key()), b"some signed bytes"
    signature = key.sign(message)
    assert ed25519.verify(raw, signature, message)
    assert not ed25519.verify(raw, signature, message + b"!")
    assert not ed25519.verify(raw, signature[:63], signature[63:] + message)  # sig || message split elsewhere: still no
    assert not ed25519.verify(raw[:31], signature, message)


def test_dsse_pae_vector() -> None:
    v = json.loads((VECTORS / "dsse_pae_vector.json").read_text())
    assert envelope.pae(v["payloadType"], v["payload_utf8"].encode()) == v["pae_utf8"].encode()


def test_pseudonym_is_hmac_sha256() -> None:
    for case in json.loads((VECTORS / "hmac_sha256_rfc4231.json").read_text())["cases"]:
        key = bytes.fromhex(case["key_hex"]) if "key_hex" in case else case["key_utf8"].encode()
        assert hmac.new(key, case["data_utf8"].encode(), hashlib.sha256).hexdigest() == case["hmac_sha256_hex"]
        secrets = LedgerSecrets(Ed25519PrivateKey.generate(), key, "")
        pupil = secrets.pupil_id(case["data_utf8"])
        mask = ~((0xF << 76) | (0x3 << 62))  # version-8 UUID: all but the 6 version and variant bits are the HMAC's
        assert pupil.version == 8 and pupil.int & mask == uuid.UUID(bytes=bytes.fromhex(case["hmac_sha256_hex"])[:16]).int & mask


def test_key_id_is_first_8_bytes_of_sha256() -> None:
    raw = bytes(range(32))
    assert envelope.key_id(raw) == hashlib.sha256(raw).hexdigest()[:16]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
bodies = st.dictionaries(st.text(min_size=1, max_size=8), json_values, min_size=1, max_size=6)
KEY = Ed25519PrivateKey.generate()
KID = envelope.key_id(KEY.public_key())


@settings(max_examples=150, deadline=None)
@given(bodies)
def test_sign_then_verify_round_trip(body: dict) -> None:
    env = envelope.decode(envelope.sign(body, KEY))
    assert env.body == body
    assert env.verify(KEY.public_key(), KID)
    assert envelope.decode(json.loads(json.dumps(env.to_json()))).envelope_digest == env.envelope_digest


@settings(max_examples=150, deadline=None)
@given(bodies, st.data())
def test_any_tampering_is_caught(body: dict, data: st.DataObject) -> None:
    signed = envelope.sign(body, KEY)
    payload = bytearray(base64.b64decode(signed["payload"]))
    sig = bytearray(base64.b64decode(signed["signatures"][0]["sig"]))
    what = data.draw(st.sampled_from(["payload", "sig", "type", "keyid"]))
    if what == "payload":
        i = data.draw(st.integers(0, len(payload) - 1))
        payload[i] ^= 1 << data.draw(st.integers(0, 7))
        signed["payload"] = base64.b64encode(bytes(payload)).decode()
    elif what == "sig":
        i = data.draw(st.integers(0, 63))
        sig[i] ^= 1 << data.draw(st.integers(0, 7))
        signed["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    elif what == "type":
        signed["payloadType"] = "application/json"
    else:
        signed["signatures"][0]["keyid"] = "0" * 16
    try:
        env = envelope.decode(signed)
    except LedgerError:
        return  # rejected as malformed / not canonical / wrong type: also fine
    assert not env.verify(KEY.public_key(), KID)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(alphabet=st.characters(codec="utf-8")) | st.text(alphabet=st.characters(max_codepoint=0x7F)), st.binary(max_size=80)
        ),
        max_size=3,
    ),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=12),
    st.binary(max_size=200),
)
def test_envelope_canonical_bytes_are_jcs_of_the_envelope(signatures: list, payload_type: str, payload: bytes) -> None:
    """The envelope's canonical form is written out directly (its shape is fixed); it must be exactly
    RFC 8785 of the envelope as JSON, whatever the key ids and payload type hold (quotes, controls, non-ASCII)."""
    import rfc8785

    env = envelope.Envelope(payload_type, payload, tuple(signatures), {})
    assert env.canonical_bytes == rfc8785.dumps(env.to_json())


def test_non_canonical_payload_is_rejected() -> None:
    body = {"b": 1, "a": 2}
    raw = json.dumps(body).encode()  # keys out of order, spaces: not JCS
    signed = {
        "payloadType": envelope.EVENT_PAYLOAD_TYPE,
        "payload": base64.b64encode(raw).decode(),
        "signatures": [{"keyid": KID, "sig": base64.b64encode(KEY.sign(envelope.pae(envelope.EVENT_PAYLOAD_TYPE, raw))).decode()}],
    }
    with pytest.raises(LedgerError) as exc:
        envelope.decode(signed)
    assert exc.value.problems[0].code == "payload_not_canonical"
    assert exc.value.problems[0].path == "$.payload"


@pytest.mark.parametrize(
    "mutate,code,category",
    [
        (lambda e: e.pop("signatures"), "envelope_missing_field", Category.MALFORMED),
        (lambda e: e.update(signatures=[]), "signature_missing", Category.FORBIDDEN),
        (lambda e: e.update(payload="not base64!"), "payload_not_base64", Category.MALFORMED),
        (lambda e: e.update(extra=1), "envelope_unknown_field", Category.MALFORMED),
        (lambda e: e.update(payload=base64.b64encode(b"[1]").decode()), "payload_not_object", Category.MALFORMED),
        (lambda e: e.update(payload=base64.b64encode(b'{"a":1,"a":2}').decode()), "payload_not_json", Category.MALFORMED),
    ],
)
def test_malformed_envelopes(mutate, code: str, category: Category) -> None:
    signed = envelope.sign({"a": 1}, KEY)
    mutate(signed)
    with pytest.raises(LedgerError) as exc:
        envelope.decode(signed)
    assert (exc.value.problems[0].code, exc.value.category) == (code, category)
