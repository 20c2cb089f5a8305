"""The submission pipeline's stages pass immutable values (``ledger/submission/values.py``, issue 19): a stage makes
a new value, never edits the one it was given."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from ledger.core.errors import Problem
from ledger.submission import values
from ledger.submission.values import Authenticated, Decoded, Judged, Located, Rejected, Replay, Request


def test_every_stage_value_is_a_frozen_slotted_dataclass() -> None:
    classes = [Request, Rejected, Decoded, Replay, Located, Authenticated, Judged]
    assert {c.__name__ for c in classes} == {
        name
        for name, obj in vars(values).items()
        if isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == values.__name__
    }
    for cls in classes:
        params = cls.__dataclass_params__  # type: ignore[attr-defined]
        assert params.frozen, cls.__name__
        assert "__slots__" in vars(cls), cls.__name__


def test_a_rejection_cannot_be_edited_and_its_problems_are_a_tuple() -> None:
    request = Request(0, "$", None, {})
    rejected = Rejected(request, (Problem("x", "$", "m"),), None, frozenset({uuid.uuid4()}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        rejected.problems = ()  # type: ignore[misc]
    with pytest.raises(AttributeError):
        rejected.problems.append(Problem("y", "$", "m"))  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        rejected.reads.add(uuid.uuid4())  # type: ignore[attr-defined]
