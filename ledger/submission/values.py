"""What the submission pipeline's stages (``pipeline.py``) pass each other, one immutable value per envelope.

Each stage takes the value the stage before it made and returns a new one; nothing is changed once made:

- *decode* (stages 1-3) makes a :class:`Decoded` (the envelope, its payload and the catalogue's flags) or a
  :class:`Rejected`;
- *read* (stage 4) makes a :class:`Replay` (the same envelope accepted before), a :class:`Located` (the stream it goes
  on and the submitter's, whose state decides) or a :class:`Rejected`;
- *authenticate* (stage 5) makes an :class:`Authenticated` (the submitter's keys its signatures verified under) or a
  :class:`Rejected`;
- *judge* (stage 6) makes a :class:`Judged` (the record to write and every flag) or a :class:`Rejected`.

A :class:`Rejected` goes no further; it keeps what the probe records and the stale-cache check need (the payload,
the streams read). The signatures' verdicts from the workers are kept beside the batch
(``early_verdicts.EarlyVerdicts``), keyed by the request's index.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from ledger.core.envelope import Envelope
from ledger.core.errors import Problem
from ledger.core.policy import Principal
from ledger.core.rules import Record
from ledger.storage.store import IndexRow

Flag = dict[str, str]  # a rule's flag on an accepted event: {"code": ..., "message": ...}


@dataclass(frozen=True, slots=True)
class Request:
    """One envelope as posted: its place in the batch, its JSON path, who posted it (None: a trusted local caller)."""

    index: int
    path: str
    principal: Principal | None
    raw: Any


@dataclass(frozen=True, slots=True)
class Rejected:
    """An envelope out of the pipeline, with why (``problems``) and, when refused for a while, ``retry_after`` seconds.
    ``body`` is its payload when it was decoded; ``reads`` the streams whose state the rejection was decided on."""

    request: Request
    problems: tuple[Problem, ...]
    body: dict[str, Any] | None = None
    reads: frozenset[uuid.UUID] = frozenset()
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Decoded:
    """Stages 1-3 passed: a well-formed envelope whose payload the catalogue and the bearer's role allow."""

    request: Request
    env: Envelope
    flags: tuple[Flag, ...]  # the catalogue's

    @property
    def body(self) -> dict[str, Any]:
        return self.env.body

    def rejected(self, problems: list[Problem], reads: frozenset[uuid.UUID] = frozenset(), retry_after: float | None = None) -> Rejected:
        return Rejected(self.request, tuple(problems), self.env.body, reads, retry_after)


@dataclass(frozen=True, slots=True)
class Replay:
    """The same envelope was accepted before (stage 4): answered with the receipt of the row it replays."""

    decoded: Decoded
    row: IndexRow


@dataclass(frozen=True, slots=True)
class Located:
    """Stage 4 passed: a new event, the stream it goes on (``subject_id``) and its submitter's stream."""

    decoded: Decoded
    subject_id: uuid.UUID
    submitter_id: uuid.UUID

    @property
    def reads(self) -> frozenset[uuid.UUID]:
        return frozenset((self.subject_id, self.submitter_id))


@dataclass(frozen=True, slots=True)
class Authenticated:
    """Stage 5 passed: every signature is by a key of the submitter valid when received (``signed_with``)."""

    located: Located
    signed_with: frozenset[str]


@dataclass(frozen=True, slots=True)
class Judged:
    """Stage 6 passed: the event stands on its subject's records; ``record`` is what is written, ``flags`` every
    flag (the catalogue's, then the rules')."""

    authenticated: Authenticated
    record: Record
    flags: tuple[Flag, ...]

    @property
    def decoded(self) -> Decoded:
        return self.authenticated.located.decoded


Outcome = Rejected | Replay | Judged  # what an attempt decides for each envelope
