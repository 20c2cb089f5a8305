"""The ledger's bearer tokens as stored (``Store.tokens``): ``ledger_tokens`` holds each token's hash, organisation,
role, expiry, scope and revocation, never the token itself (ledger/authentication.py issues and checks them)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ledger.storage.store import Store


class TokenTable:
    """``ledger_tokens``, by name."""

    def __init__(self, store: Store):
        self.store = store

    def insert(self, token_id: str, token_hash: str, org: str, role: str, issued_at: str, expires_at: str | None, scope: str) -> None:
        self.store.execute(
            "INSERT INTO ledger_tokens (token_id, token_hash, org_id, role, issued_at, expires_at, scope) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (token_id, token_hash, org, role, issued_at, expires_at, scope),
        )

    def revoke(self, token_id: str, revoked_at: str) -> bool:
        """Mark the token revoked (once: a revocation's time never changes). False: no such token."""
        if not self.store.query("SELECT revoked_at FROM ledger_tokens WHERE token_id = ?", (token_id,)):
            return False
        self.store.execute("UPDATE ledger_tokens SET revoked_at = ? WHERE token_id = ? AND revoked_at IS NULL", (revoked_at, token_id))
        return True

    def row(self, token_id: str) -> tuple[str, str, str, str | None, str | None, str | None] | None:
        """(token_hash, org, role, expires_at, revoked_at, scope) of a ledger token, or None."""
        rows = self.store.query(
            "SELECT token_hash, org_id, role, expires_at, revoked_at, scope FROM ledger_tokens WHERE token_id = ?", (token_id,)
        )
        return (rows[0][0], rows[0][1], rows[0][2], rows[0][3], rows[0][4], rows[0][5]) if rows else None

    def counts(self) -> tuple[int, int]:
        """(tokens issued, tokens revoked): tokens are only ever added and revocation sets a column, so an unchanged
        pair means an unchanged set of tokens and revocations."""
        total, revoked = self.store.query("SELECT COUNT(*), COUNT(revoked_at) FROM ledger_tokens")[0]
        return int(total), int(revoked)

    def hashes(self) -> frozenset[str]:
        """The hash of every ledger token ever issued (revoked ones included)."""
        return frozenset(str(row[0]) for row in self.store.query("SELECT token_hash FROM ledger_tokens"))
