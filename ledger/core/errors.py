"""Domain errors: one type, a code, a JSON path and a category the HTTP layer maps to a status."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Category(StrEnum):
    MALFORMED = "malformed"  # 400: not parseable / not the envelope shape
    UNAUTHENTICATED = "unauthenticated"  # 401: no or bad bearer token
    FORBIDDEN = "forbidden"  # 403: signature, key or submitter not acceptable
    NOT_FOUND = "not_found"  # 404
    CONFLICT = "conflict"  # 409: event_id reused with other bytes
    TOO_LARGE = "too_large"  # 413
    INVALID = "invalid"  # 422: well-formed but breaks the catalogue or a rule
    RATE_LIMITED = "rate_limited"  # 429: not now; retry after ``LedgerError.retry_after`` seconds


@dataclass(frozen=True)
class Problem:
    code: str
    path: str
    message: str
    category: Category = Category.INVALID

    def at(self, prefix: str) -> Problem:
        """The same problem, its path re-rooted under ``prefix`` (e.g. ``$.envelopes[3]``)."""
        suffix = self.path[1:] if self.path.startswith("$") else self.path
        return Problem(self.code, prefix + suffix, self.message, self.category)

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "path": self.path, "message": self.message}


class LedgerError(Exception):
    """Raised by the core with one or more problems; nothing was stored."""

    def __init__(self, problems: list[Problem], retry_after: float | None = None):
        if not problems:
            raise ValueError("LedgerError needs at least one problem")
        self.problems = problems
        self.retry_after = retry_after  # seconds, for a RATE_LIMITED problem
        super().__init__("; ".join(f"{p.code} at {p.path}: {p.message}" for p in problems))

    @classmethod
    def one(cls, code: str, path: str, message: str, category: Category = Category.INVALID) -> LedgerError:
        return cls([Problem(code, path, message, category)])

    @property
    def category(self) -> Category:
        """The category that decides the status: the most fundamental problem wins."""
        order = list(Category)
        return min((p.category for p in self.problems), key=order.index)
