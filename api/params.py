"""Ranges of the query parameters several routes share. Outside them a value names nothing the ledger holds, and
would fail where it is used: ``9999-12-31T23:59:59.999999-23:59`` is past the last datetime once in UTC, and an
integer beyond a 64-bit one past what SQLite's INTEGER or PostgreSQL's bigint can compare with."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime

from ledger.core.catalogue import EARLIEST_DATE
from ledger.core.errors import LedgerError, Problem

LATEST_DATE = date(2100, 12, 31)
MAX_INTEGER = 2**63 - 1  # sequences, leaf indexes, tree sizes


def check_moment(as_of: date | None, known_at: datetime | None) -> None:
    """``as_of`` and ``known_at`` (RFC 3339 with a zone) between ``EARLIEST_DATE`` and ``LATEST_DATE``, or 422."""
    if known_at is not None and known_at.tzinfo is None:
        raise LedgerError.one("known_at_zone", "query:known_at", "known_at needs a time zone, e.g. 2026-09-04T10:00:00Z")
    if known_at is not None and not EARLIEST_DATE.year <= known_at.year <= LATEST_DATE.year:
        raise LedgerError.one("known_at_range", "query:known_at", f"known_at must be between {EARLIEST_DATE.year} and {LATEST_DATE.year}")
    if as_of is not None and not EARLIEST_DATE <= as_of <= LATEST_DATE:
        raise LedgerError.one("as_of_range", "query:as_of", f"as_of must be between {EARLIEST_DATE} and {LATEST_DATE}")


@contextmanager
def named_as_query(*names: str) -> Iterator[None]:
    """The core names the values a use case was handed by their own names (``$.reference``, ``$.org``); over HTTP
    they are query parameters, and a problem with one is answered at ``query:<name>`` (the core knows no HTTP names)."""
    try:
        yield
    except LedgerError as exc:
        renamed = [_as_query(p, names) for p in exc.problems]
        if renamed == exc.problems:
            raise
        raise LedgerError(renamed, exc.retry_after) from None


def _as_query(problem: Problem, names: tuple[str, ...]) -> Problem:
    for name in names:
        if problem.path == f"$.{name}" or problem.path.startswith((f"$.{name}.", f"$.{name}[")):
            return Problem(problem.code, "query:" + problem.path[2:], problem.message, problem.category)
    return problem
