"""DSSE envelopes over JCS payloads, signed with Ed25519 (design.md 3.1). Pure: no I/O."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.core import ed25519, jcs
from ledger.core.errors import Category, LedgerError, Problem

EVENT_PAYLOAD_TYPE = "application/vnd.pupil-ledger.event+json"
KEY_ID = re.compile(r"[0-9a-f]{16}")  # design.md 3.1: lowercase hex of the first 8 bytes of SHA-256 of the public key


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: the bytes that are actually signed."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def key_id(public_key: Ed25519PublicKey | bytes) -> str:
    """Lowercase hex of the first 8 bytes of SHA-256 of the raw 32-byte public key."""
    raw = public_key if isinstance(public_key, bytes) else raw_public_key(public_key)
    return hashlib.sha256(raw).digest()[:8].hex()


def raw_public_key(public_key: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode_strict(text: str) -> bytes:
    """Standard base64 with padding; anything else (URL-safe, whitespace, junk) is rejected."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise ValueError("not standard base64") from None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Envelope:
    """A structurally valid DSSE envelope whose payload is canonical JSON (not yet verified)."""

    payload_type: str
    payload: bytes
    signatures: tuple[tuple[str, bytes], ...]  # (keyid, signature)
    body: dict[str, Any]

    @cached_property
    def event_digest(self) -> str:
        return sha256_hex(self.payload)

    def to_json(self) -> dict[str, Any]:
        return {
            "payloadType": self.payload_type,
            "payload": b64encode(self.payload),
            "signatures": [{"keyid": k, "sig": b64encode(s)} for k, s in self.signatures],
        }

    @cached_property
    def canonical_bytes(self) -> bytes:
        """JCS of ``to_json()``, written out directly: its keys are fixed and in JCS order as written
        (payload < payloadType < signatures; keyid < sig), base64 needs no escaping, and the two strings
        that come from the sender are written by ``jcs.string``. A test holds it to ``jcs.canonicalize``."""
        sigs = ",".join(f'{{"keyid":{jcs.string(kid)},"sig":"{b64encode(sig)}"}}' for kid, sig in self.signatures)
        text = f'{{"payload":"{b64encode(self.payload)}","payloadType":{jcs.string(self.payload_type)},"signatures":[{sigs}]}}'
        return text.encode("utf-8")

    @cached_property
    def envelope_digest(self) -> str:
        return sha256_hex(self.canonical_bytes)

    def signed_by(self, keyid: str) -> tuple[bytes, bytes] | None:
        """(signature, signed bytes) of the first signature by ``keyid``, if any."""
        for sig_keyid, sig in self.signatures:
            if sig_keyid == keyid:
                return sig, pae(self.payload_type, self.payload)
        return None

    def verify(self, public_key: Ed25519PublicKey | bytes, keyid: str) -> bool:
        signed = self.signed_by(keyid)
        if signed is None:
            return False
        return ed25519.verify(public_key if isinstance(public_key, bytes) else raw_public_key(public_key), *signed)


def sign(
    body: dict[str, Any],
    private_key: Ed25519PrivateKey,
    keyid: str | None = None,
    payload_type: str = EVENT_PAYLOAD_TYPE,
) -> dict[str, Any]:
    """Canonicalise ``body`` and return a signed DSSE envelope as a JSON-ready dict."""
    payload = jcs.canonicalize(body)
    kid = keyid or key_id(private_key.public_key())
    return signed_envelope(payload_type, payload, kid, ed25519.sign(private_key, pae(payload_type, payload)))


def signed_envelope(payload_type: str, payload: bytes, keyid: str, signature: bytes) -> dict[str, Any]:
    """The DSSE envelope of ``payload`` with ``signature`` (made over ``pae(payload_type, payload)``), as a JSON-ready dict."""
    return {
        "payloadType": payload_type,
        "payload": b64encode(payload),
        "signatures": [{"keyid": keyid, "sig": b64encode(signature)}],
    }


def _malformed(code: str, path: str, message: str) -> LedgerError:
    return LedgerError([Problem(code, path, message, Category.MALFORMED)])


def decode(raw: Any, path: str = "$", payload_type: str = EVENT_PAYLOAD_TYPE) -> Envelope:
    """Check the envelope's shape and that its payload is canonical JSON of an object.

    ``raw`` is the already-parsed JSON value of the envelope. Raises LedgerError.
    """
    if not isinstance(raw, dict):
        raise _malformed("envelope_not_object", path, "the envelope must be a JSON object")
    unknown = sorted(set(raw) - {"payloadType", "payload", "signatures"})
    if unknown:
        raise _malformed("envelope_unknown_field", f"{path}.{unknown[0]}", f"unknown envelope field {unknown[0]!r}")
    for field in ("payloadType", "payload", "signatures"):
        if field not in raw:
            raise _malformed("envelope_missing_field", f"{path}.{field}", f"{field} is required")
    if raw["payloadType"] != payload_type:
        raise _malformed("payload_type", f"{path}.payloadType", f"payloadType must be {payload_type!r}")
    if not isinstance(raw["payload"], str):
        raise _malformed("payload_not_base64", f"{path}.payload", "payload must be a base64 string")
    try:
        payload = b64decode_strict(raw["payload"])
    except ValueError:
        raise _malformed("payload_not_base64", f"{path}.payload", "payload is not standard base64") from None
    signatures = raw["signatures"]
    if not isinstance(signatures, list):
        raise _malformed("signatures_not_array", f"{path}.signatures", "signatures must be an array")
    if not signatures:
        raise LedgerError.one(
            "signature_missing",
            f"{path}.signatures",
            "the envelope carries no signature",
            Category.FORBIDDEN,
        )
    sigs: list[tuple[str, bytes]] = []
    for i, entry in enumerate(signatures):
        where = f"{path}.signatures[{i}]"
        if not isinstance(entry, dict) or set(entry) - {"keyid", "sig"} or "sig" not in entry:
            raise _malformed("signature_shape", where, 'each signature is {"keyid", "sig"}')
        kid, sig = entry.get("keyid"), entry["sig"]
        if not isinstance(kid, str) or not isinstance(sig, str):
            raise _malformed("signature_shape", where, "keyid and sig must be strings")
        if not KEY_ID.fullmatch(kid):
            raise _malformed("keyid_shape", f"{where}.keyid", "keyid is a key id: 16 lowercase hexadecimal characters")
        if any(kid == seen for seen, _ in sigs):
            raise _malformed("keyid_repeated", f"{where}.keyid", f"key {kid} signs at most once in an envelope")
        try:
            sig_bytes = b64decode_strict(sig)
        except ValueError:
            raise _malformed("signature_not_base64", f"{where}.sig", "sig is not standard base64") from None
        sigs.append((kid, sig_bytes))
    try:
        body, canonical = jcs.parse_canonical(payload)
    except jcs.NotJSON as exc:
        raise _malformed("payload_not_json", f"{path}.payload", f"payload is not JSON: {exc}") from None
    except RecursionError:
        raise _malformed("payload_not_json", f"{path}.payload", "payload nests arrays or objects too deeply") from None
    except ValueError:  # e.g. an integer with more digits than Python converts
        raise _malformed(
            "payload_not_json",
            f"{path}.payload",
            "payload holds a value beyond what the ledger parses (an integer of thousands of digits?)",
        ) from None
    if not isinstance(body, dict):
        raise _malformed("payload_not_object", f"{path}.payload", "payload must be a JSON object")
    if not canonical:
        raise _malformed(
            "payload_not_canonical",
            f"{path}.payload",
            "payload is not RFC 8785 (JCS) canonical JSON; canonicalise it before signing",
        )
    return Envelope(raw["payloadType"], payload, tuple(sigs), body)
