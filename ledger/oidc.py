"""Optional OIDC bearer tokens: JWTs from a deployment's identity provider, checked against its JWKS.

A JWT is accepted when its signature verifies with a key of the configured JWKS (a file, or an https
URL fetched and cached), it is not expired, and its issuer and audience are the configured ones. Its
claims name the principal: ``org`` (a registered organisation id), ``role`` (docs/access.md) and, for
inspectors, optionally, ``scope`` (space-separated schools and areas narrowing what it inspects). Ledger tokens (``plt_...``) work
beside it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from ledger.core.policy import Principal, role_problem

ALGORITHMS = ["RS256", "ES256", "EdDSA"]


@dataclass
class OidcVerifier:
    jwks: str  # path to a JWKS file, or an https URL
    issuer: str
    audience: str

    def __post_init__(self) -> None:
        self._client = jwt.PyJWKClient(self.jwks, cache_keys=True, lifespan=300) if self.jwks.startswith("https://") else None
        self._keys = None if self._client else jwt.PyJWKSet.from_dict(json.loads(Path(self.jwks).read_text("utf-8")))

    def _key(self, token: str) -> Any:
        if self._client is not None:
            return self._client.get_signing_key_from_jwt(token).key
        assert self._keys is not None
        kid = jwt.get_unverified_header(token).get("kid")
        matches = [k for k in self._keys.keys if kid is None or k.key_id == kid]
        if not matches:
            raise jwt.InvalidTokenError(f"no key {kid} in the JWKS")
        return matches[0].key

    def principal(self, token: str) -> Principal | None:
        """The principal the JWT names, or None if it does not verify or names no valid principal."""
        try:
            claims = jwt.decode(
                token,
                self._key(token),
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iss", "aud", "org", "role"]},
            )
        except (jwt.InvalidTokenError, jwt.PyJWKClientError, ValueError):
            return None
        org, role, scope = claims.get("org"), claims.get("role"), claims.get("scope", "")
        if not isinstance(org, str) or not isinstance(role, str) or not isinstance(scope, str) or role_problem(org, role):
            return None
        inspected = frozenset(scope.split())
        if inspected and role != "inspector":  # an inspector's scope comes from inspections; a scope only narrows it
            return None
        token_id = "jwt:" + str(claims.get("jti") or claims.get("sub") or "")[:56]
        return Principal(org, role, token_id, inspected)
