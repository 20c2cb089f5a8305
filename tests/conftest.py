"""Shared fixtures: a fresh ledger per test, on SQLite and on a freshly created PostgreSQL database."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import own_events
from ledger.config import Settings
from ledger.core.identifiers import make_upn
from ledger.service import Ledger
from ledger.tools import admin
from projections.read_model_england import use_shard

VECTORS = Path(__file__).resolve().parent / "vectors"  # public conformance vectors with their sources and licences (README there)
PG_ADMIN_URL = os.environ.get("PUPIL_LEDGER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A freshly created PostgreSQL database, dropped afterwards."""
    name = f"pl_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
        return Settings(home=tmp_path / "home", database_url=url)
    return Settings(home=tmp_path / "home")


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@dataclass
class World:
    """A ledger with one LA, two schools and a registered AP provider, each with a signing key."""

    ledger: Ledger
    clock: Clock
    admin_token: str
    keys: dict[str, Ed25519PrivateKey] = field(default_factory=dict)

    def event(
        self,
        event_type: str,
        submitter: str,
        data: dict[str, Any],
        *,
        upn: str | None = None,
        org: str | None = None,
        occurred_on: date | None = None,
        event_id: str | None = None,
        corrects: str | None = None,
    ) -> dict[str, Any]:
        subject = {"upn": upn} if upn else {"org": org or submitter}
        day = occurred_on or self.clock.now.date()
        return own_events.event_body(event_type, submitter, subject, data, day, self.clock.now, event_id=event_id, corrects=corrects)

    def sign(self, body: dict[str, Any], signer: str | None = None) -> dict[str, Any]:
        return own_events.signed(body, self.keys[signer or body["submitter"]])

    def post(self, event_type: str, submitter: str, data: dict[str, Any], **kwargs: Any) -> Any:
        return self.ledger.submit(self.sign(self.event(event_type, submitter, data, **kwargs)))

    def admit(self, upn: str, school: str = "urn:100005", sen: str = "N", status: str = "C", occurred_on: date | None = None) -> Any:
        return self.post(
            "pupil.registered",
            school,
            {"school": school, "enrolment_status": status, "year_group": "9", "sen_status": sen, "looked_after": False},
            upn=upn,
            occurred_on=occurred_on,
        )


SCHOOL_A, SCHOOL_B, LA, PROVIDER = "urn:100005", "urn:100006", "la:801", "ukprn:10000047"
UPN = "H801200001001"


def upn(n: int) -> str:
    return make_upn("801", 20, n)


@pytest.fixture
def world(settings: Settings) -> Iterator[World]:
    clock = Clock(datetime(2026, 10, 5, 9, 0, tzinfo=UTC))
    result = admin.initialise(settings, clock)
    ledger = result.ledger
    w = World(ledger, clock, result.admin_token)
    for org, kind in ((SCHOOL_A, "school"), (SCHOOL_B, "school"), (LA, "la"), (PROVIDER, "ap_setting")):
        admin.add_org(ledger, org, kind, f"Test {org}", LA if kind != "la" else None)
        w.keys[org] = Ed25519PrivateKey.generate()
        admin.add_key(ledger, org, w.keys[org].public_key())
    yield w
    ledger.store.close()


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Kafka-protocol broker (``tests/kafka_broker.py``) for the whole session, killed by its PID afterwards."""
    from tests.kafka_broker import Broker

    broker = Broker(tmp_path_factory.mktemp("kafka") / "data").start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(autouse=True)
def _englands_share_is_the_projectors() -> Iterator[None]:
    """A Kafka worker run in the test process takes its own share of England's numbers for the whole process
    (``read_model_england.use_shard``, as a worker process does); the tests after it project as the projector does."""
    yield
    use_shard(0)
