"""C2SP signed-note key encoding (c2sp.org/signed-note): verifier keys for the log."""

from __future__ import annotations

import base64
import hashlib

ED25519_ALG = b"\x01"


def key_hash(name: str, public_raw: bytes) -> bytes:
    return hashlib.sha256(name.encode("utf-8") + b"\n" + ED25519_ALG + public_raw).digest()[:4]


def vkey(name: str, public_raw: bytes) -> str:
    """``<name>+<hex key hash>+<base64(0x01 || public key)>``."""
    encoded = base64.b64encode(ED25519_ALG + public_raw).decode("ascii")
    return f"{name}+{key_hash(name, public_raw).hex()}+{encoded}"
