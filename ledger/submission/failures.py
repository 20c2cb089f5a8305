"""What an envelope or a group's write failing means (``pipeline.Submissions``): each request succeeds or fails on
its own, unless the database itself failed."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from eventsourcing.persistence import InterfaceError, OperationalError

from ledger.core.errors import Category, LedgerError, Problem
from ledger.storage import database
from ledger.submission.values import Rejected, Request

log = logging.getLogger("pupil_ledger.service")


def rejection_of(
    request: Request, body: dict[str, Any] | None, reads: frozenset[uuid.UUID], poisoned: dict[int, Problem], exc: Exception
) -> tuple[Rejected, bool]:
    """What judging ``request`` raised, as its rejection, and whether the attempt can go on (True). A LedgerError is
    its rejection. Anything else that is not the database's failure rejects the request alone (422
    ``unprocessable``, the details logged under a reference) and is remembered in ``poisoned`` for the attempts
    that follow (False: the attempt's working state may hold part of its write)."""
    if isinstance(exc, LedgerError):
        return Rejected(request, tuple(exc.problems), body, reads), True
    if affects_every_write(exc):
        raise exc  # the database: every request of the group hears it
    reference = uuid.uuid4().hex[:12]
    log.error("an envelope could not be judged (reference %s)", reference, exc_info=exc)
    problem = Problem(
        "unprocessable",
        request.path,
        f"the ledger could not process this envelope; quote reference {reference} to the operator",
        Category.INVALID,
    )
    poisoned[request.index] = problem
    return Rejected(request, (problem,), body, reads), False


class GroupWriteFailed(Exception):
    """A group's write failed for a reason that may be one request's doing (``submit_each`` splits the group)."""

    def __init__(self, cause: Exception):
        super().__init__(str(cause))
        self.cause = cause


def affects_every_write(exc: Exception) -> bool:
    """The database is away, full or timing out: no request of a group is to blame, and splitting it would only wait
    more. Or the group's COMMIT was sent and its answer lost: every request may be stored, and each is told so (504);
    writing the group again in halves would tell some of them 503, "nothing stored", for what may have been."""
    return isinstance(exc, (OperationalError, InterfaceError, OSError, TimeoutError, MemoryError)) or (
        database.failure_of(exc) is database.UNCONFIRMED
    )
