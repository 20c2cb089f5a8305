"""Fuzz every operation of the OpenAPI document (schemathesis): no 5xx, and every response is one the
document declares, in status, content type and schema. A school's token and a seeded pupil, on SQLite.

The generated values stay small, so each example may also be given a shape the generator does not reach
(issue 18, item 10): every integer parameter beyond a 64-bit integer, every date and time at the ends of the
calendar and of the zones, a body of a 5,000-digit integer or 5,000-deep nesting."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, status_code_conformance

from api.app import create_app
from ledger import own_events
from ledger.config import Settings
from ledger.tools import admin
from projections.runner import Projector

from .conftest import LA, SCHOOL_A, UPN

CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]
# Found by this test in routes owned by other work streams, and reported to them (see the report of issue 5).
# The set must match exactly: a new failure fails the test, and so does a fix (then remove it here).
KNOWN_FAILURES: set[str] = set()

HUGE_INTEGER = "99999999999999999999"
EXTREME_TIMES = [
    "9999-12-31T23:59:59.999999-23:59",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59.999999+23:59",
    "0001-01-01T00:00:00Z",
]
EXTREME_DATES = ["0001-01-01", "9999-12-31"]
EXTREME_BODIES = [
    b'{"a":' + b"1" * 5000 + b"}",
    b"[" * 5000 + b"]" * 5000,
    b'{"envelopes":[' + b"9" * 5000 + b"]}",
    b'{"envelopes":[' + b"[" * 5000 + b"]" * 5000 + b"]}",
]
SHAPES = ["as generated", "huge integers", "extreme times", "extreme dates", "extreme body"]


def _kind(schema: dict[str, Any]) -> str | None:
    """integer, date or date-time: what a query parameter's schema takes (FastAPI writes optional ones as anyOf)."""
    for option in [schema, *schema.get("anyOf", [])]:
        if option.get("type") == "integer":
            return "integer"
        if option.get("format") in ("date", "date-time"):
            return str(option["format"])
    return None


def _reshape(operation: Any, case: Any, shape: str, extreme: int) -> dict[str, Any]:
    """Give ``case`` the ``shape`` (``extreme``: which of the extreme values); returns extra arguments for ``call``."""
    kinds = {p.name: _kind(p.definition.get("schema", {})) for p in operation.query}
    wanted = {"huge integers": "integer", "extreme times": "date-time", "extreme dates": "date"}.get(shape)
    if wanted:
        values = {"integer": [HUGE_INTEGER], "date-time": EXTREME_TIMES, "date": EXTREME_DATES}[wanted]
        case.query = {**(case.query or {}), **{name: values[extreme % len(values)] for name, kind in kinds.items() if kind == wanted}}
        if "upn" in (case.path_parameters or {}):
            case.path_parameters["upn"] = UPN  # a pupil the school may read: the moment is computed, not refused before
    if shape == "extreme body" and operation.method.upper() == "POST":
        return {"data": EXTREME_BODIES[extreme % len(EXTREME_BODIES)]}
    return {}


@pytest.fixture
def app_and_token(tmp_path: Path) -> Iterator[tuple[Any, str]]:
    ledger = admin.initialise(Settings(home=tmp_path / "home")).ledger
    admin.add_org(ledger, SCHOOL_A, "school", "Fuzz school", LA)
    key = Ed25519PrivateKey.generate()
    admin.add_key(ledger, SCHOOL_A, key.public_key())
    body = own_events.event_body(
        "pupil.registered",
        SCHOOL_A,
        {"upn": UPN},
        {"school": SCHOOL_A, "enrolment_status": "C", "year_group": "9", "sen_status": "N", "looked_after": False},
        date.today(),
        ledger.clock(),
    )
    ledger.submit(own_events.signed(body, key))
    admin.sealer(ledger).seal_all()  # as `serve` does in the background: the log has a checkpoint, the views are current
    Projector(ledger.store).catch_up()
    yield create_app(ledger), ledger.issue_token(SCHOOL_A, "school")
    ledger.store.close()


def test_every_operation_answers_as_documented(app_and_token: tuple[Any, str]) -> None:
    app, token = app_and_token
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    failures: dict[str, str] = {}
    for operation in operations:

        @given(case=operation.as_strategy(), shape=st.sampled_from(SHAPES), extreme=st.integers(0, 3))
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
        def fuzz(case: Any, shape: str, extreme: int) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
            if isinstance(case.query, dict) and isinstance(case.query.get("min_sequence"), int | float):
                case.query["min_sequence"] = min(case.query["min_sequence"], 1)  # reached: no 2 s wait per example
            response = case.call(**_reshape(case.operation, case, shape, extreme))
            # no 5xx, except the documented 503 "not there yet, retry" (views asked for a min_sequence they have not reached)
            assert response.status_code < 500 or (response.status_code == 503 and "Retry-After" in response.headers), (
                f"{response.status_code} {response.text[:300]}"
            )
            case.validate_response(response, checks=CHECKS)

        try:
            fuzz()
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collected: one report for every operation that fails
            failures[operation.label] = "\n".join(str(e)[:1500] for e in getattr(exc, "exceptions", [exc]))
    unexpected = {label: why for label, why in failures.items() if label not in KNOWN_FAILURES}
    assert unexpected == {}, "\n\n".join(f"{label}: {why}" for label, why in unexpected.items())
    assert set(failures) == KNOWN_FAILURES, f"fixed meanwhile, remove from KNOWN_FAILURES: {KNOWN_FAILURES - set(failures)}"
