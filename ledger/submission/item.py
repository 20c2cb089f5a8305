"""One envelope in flight through the submission pipeline (``pipeline.py``), and what each stage leaves on it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from ledger.core import envelope
from ledger.core.errors import Problem
from ledger.core.policy import Principal
from ledger.storage.store import IndexRow


@dataclass(slots=True)
class InFlight:
    """One envelope in flight. Each stage of ``pipeline.Submissions`` adds to it, and only the stage named adds:

    - *decode* sets ``env`` and ``body`` and the catalogue's ``flags`` and ``problems``;
    - *read* sets ``duplicate_of`` (a replay), ``subject_id`` and ``reads``;
    - *authenticate* sets ``signed_with``, or a problem;
    - *judge* adds the rules' ``flags``, or problems (and ``retry_after`` when refused for a while).

    A problem anywhere takes the envelope out of the later stages. The signatures' verdicts from the workers are
    kept beside the batch (``early_verdicts.EarlyVerdicts``), not here.
    """

    index: int
    path: str
    principal: Principal | None = None  # who posted it (None: a trusted local caller)
    env: envelope.Envelope | None = None
    body: dict[str, Any] = field(default_factory=dict)
    flags: list[dict[str, str]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    duplicate_of: IndexRow | None = None
    subject_id: uuid.UUID | None = None  # the stream the event goes on
    reads: set[uuid.UUID] = field(default_factory=set)  # the subject and the submitter, whose state decides
    signed_with: set[str] = field(default_factory=set)  # the submitter's keys its signatures verified under
    retry_after: float | None = None  # seconds, when it was refused for a while (rule_probe_limited)

    @property
    def in_play(self) -> bool:
        """Still to be judged and written: no problem, and not a replay."""
        return not self.problems and self.duplicate_of is None
