"""Sign-in for the dashboards: a bearer token (a ledger token, or an OIDC JWT when an identity provider is
configured) is exchanged for a short session cookie, and CSRF protection for every form.

The cookie holds the token itself, encrypted and authenticated (AES-256-GCM under a key derived from the
ledger's secrets, so every API process of the ledger can read it), with its expiry. Each request
authenticates that token again exactly as the API does, so revoking the token ends the session within the
same second the API stops accepting it. ``__Host-`` cookies: ``Secure``, ``Path=/``, no ``Domain``;
``HttpOnly`` and ``SameSite=Strict``.

CSRF: each form carries HMAC(key, nonce) where the nonce is the random value of a second ``__Host-`` cookie
(double submit, signed), and a POST whose ``Origin`` names another site is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SESSION_COOKIE = "__Host-pl_session"
CSRF_COOKIE = "__Host-pl_csrf"
SESSION_SECONDS = 30 * 60  # a short session: sign in again after half an hour
CSRF_SECONDS = 2 * 60 * 60


def _derive(master: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"pupil-ledger web", info=purpose).derive(master)


@dataclass(frozen=True)
class Sessions:
    cipher_key: bytes
    csrf_key: bytes
    seconds: int = SESSION_SECONDS

    @classmethod
    def from_secret(cls, master: bytes, seconds: int = SESSION_SECONDS) -> Sessions:
        return cls(_derive(master, b"session cookie v1"), _derive(master, b"csrf v1"), seconds)

    # -- the session cookie ------------------------------------------------------------------------------

    def seal(self, token: str, now: float | None = None) -> str:
        expires = int((now if now is not None else time.time()) + self.seconds)
        nonce = secrets.token_bytes(12)
        body = json.dumps({"t": token, "e": expires}, separators=(",", ":")).encode("utf-8")
        sealed = AESGCM(self.cipher_key).encrypt(nonce, body, SESSION_COOKIE.encode("ascii"))
        return base64.urlsafe_b64encode(nonce + sealed).decode("ascii").rstrip("=")

    def open(self, cookie: str | None, now: float | None = None) -> str | None:
        """The token in a session cookie, or None if it is missing, forged, altered or expired."""
        if not cookie or len(cookie) > 4096:
            return None
        try:
            raw = base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))
            body = json.loads(AESGCM(self.cipher_key).decrypt(raw[:12], raw[12:], SESSION_COOKIE.encode("ascii")))
        except (ValueError, InvalidTag, TypeError):
            return None
        if not isinstance(body, dict) or not isinstance(body.get("t"), str) or not isinstance(body.get("e"), int):
            return None
        if body["e"] <= (now if now is not None else time.time()):
            return None
        return str(body["t"])

    def cookie_header(self, value: str) -> str:
        return f"{SESSION_COOKIE}={value}; Max-Age={self.seconds}; Path=/; Secure; HttpOnly; SameSite=Strict"

    @staticmethod
    def clear_header() -> str:
        return f"{SESSION_COOKIE}=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Strict"

    # -- CSRF ----------------------------------------------------------------------------------------------

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_urlsafe(24)

    def csrf_token(self, nonce: str) -> str:
        return hmac.new(self.csrf_key, nonce.encode("utf-8"), hashlib.sha256).hexdigest()

    def csrf_valid(self, nonce: str | None, submitted: str | None) -> bool:
        if not nonce or not submitted or len(submitted) != 64:
            return False
        return hmac.compare_digest(self.csrf_token(nonce), submitted)

    @staticmethod
    def csrf_cookie_header(nonce: str) -> str:
        return f"{CSRF_COOKIE}={nonce}; Max-Age={CSRF_SECONDS}; Path=/; Secure; HttpOnly; SameSite=Strict"
