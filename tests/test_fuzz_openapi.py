"""Fuzz every operation of the OpenAPI document (schemathesis): no 5xx, and every response is one the
document declares, in status, content type and schema. A school's token and a seeded pupil, on SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, status_code_conformance

from api.app import create_app
from ledger import admin
from ledger.config import Settings
from projections.runner import Projector

from .conftest import LA, SCHOOL_A, UPN

CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]
# Found by this test in routes owned by other work streams, and reported to them (see the report of issue 5).
# The set must match exactly: a new failure fails the test, and so does a fix (then remove it here).
KNOWN_FAILURES: set[str] = set()


@pytest.fixture
def app_and_token(tmp_path: Path) -> Iterator[tuple[Any, str]]:
    ledger = admin.initialise(Settings(home=tmp_path / "home")).ledger
    admin.add_org(ledger, SCHOOL_A, "school", "Fuzz school", LA)
    key = Ed25519PrivateKey.generate()
    admin.add_key(ledger, SCHOOL_A, key.public_key())
    body = admin.event_body("pupil.registered", SCHOOL_A, {"upn": UPN}, {"school": SCHOOL_A, "enrolment_status": "C", "year_group": "9",
                                                                         "sen_status": "N", "looked_after": False}, date.today(), ledger.clock())
    ledger.submit(admin.signed(body, key))
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

        @given(case=operation.as_strategy())
        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
        def fuzz(case: Any) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
            if isinstance(case.query, dict) and isinstance(case.query.get("min_sequence"), int | float):
                case.query["min_sequence"] = min(case.query["min_sequence"], 1)  # reached: no 2 s wait per example
            response = case.call()
            # no 5xx, except the documented 503 "not there yet, retry" (views asked for a min_sequence they have not reached)
            assert response.status_code < 500 or (response.status_code == 503 and "Retry-After" in response.headers), \
                f"{response.status_code} {response.text[:300]}"
            case.validate_response(response, checks=CHECKS)

        try:
            fuzz()
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collected: one report for every operation that fails
            failures[operation.label] = "\n".join(str(e)[:1500] for e in getattr(exc, "exceptions", [exc]))
    unexpected = {label: why for label, why in failures.items() if label not in KNOWN_FAILURES}
    assert unexpected == {}, "\n\n".join(f"{label}: {why}" for label, why in unexpected.items())
    assert set(failures) == KNOWN_FAILURES, f"fixed meanwhile, remove from KNOWN_FAILURES: {KNOWN_FAILURES - set(failures)}"
