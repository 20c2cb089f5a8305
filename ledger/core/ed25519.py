"""Ed25519 verification with the verdict of ``cryptography`` (design.md 3.1), and signing, at libsodium's speed.

Verifying is the largest single cost of signed ingest. libsodium (PyNaCl) verifies in about 38 µs where
``cryptography`` (OpenSSL) takes about 60 µs, but the two do not accept the same signatures: libsodium also
refuses small-order and non-canonical points. Every signature libsodium accepts, OpenSSL accepts too (both
check the same cofactorless equation over the same encodings; of the 914 CCTV edge cases libsodium accepts
43, all among OpenSSL's 208, tested in ``tests/test_envelope.py``), so a "yes" from libsodium is final and a
"no" is asked again of ``cryptography``. The verdict is therefore exactly ``cryptography``'s; only
signatures that fail anyway pay twice.

Signing (receipts, one per accepted event) is deterministic (RFC 8032), so libsodium's signature is the
same bytes as OpenSSL's (16 µs against 21 µs).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from nacl.bindings import crypto_sign, crypto_sign_open, crypto_sign_seed_keypair
from nacl.exceptions import CryptoError

SIGNATURE_BYTES = 64
PUBLIC_KEY_BYTES = 32


def verify(public_raw: bytes, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is ``public_raw``'s Ed25519 signature of ``message``, as ``cryptography`` decides."""
    if len(signature) == SIGNATURE_BYTES and len(public_raw) == PUBLIC_KEY_BYTES:  # else libsodium would split sig || message elsewhere
        try:
            crypto_sign_open(signature + message, public_raw)
            return True
        except (CryptoError, ValueError, TypeError):
            pass
    return verify_openssl(public_raw, signature, message)


def verify_openssl(public_raw: bytes, signature: bytes, message: bytes) -> bool:
    """``cryptography``'s verdict alone (the reference, and the answer when libsodium says no)."""
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, message)
        return True
    except (InvalidSignature, ValueError):
        return False


def sign(private_key: Ed25519PrivateKey, message: bytes) -> bytes:
    """``private_key.sign(message)``, the same 64 bytes."""
    return crypto_sign(message, libsodium_secret(private_key))[:SIGNATURE_BYTES]


def sign_all(secret: bytes, messages: Sequence[bytes]) -> list[bytes]:
    """``sign`` of each message, with the key as ``libsodium_secret`` gives it (what a worker process is sent)."""
    return [crypto_sign(message, secret)[:SIGNATURE_BYTES] for message in messages]


@functools.lru_cache(maxsize=4096)  # the ledger's own key; the simulator signs for a whole area's organisations in turn
def libsodium_secret(private_key: Ed25519PrivateKey) -> bytes:
    seed = private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return crypto_sign_seed_keypair(seed)[1]
