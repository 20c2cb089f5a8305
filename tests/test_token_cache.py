"""The cache of verified bearer tokens (ledger/tokens.py): a request need not query the database for its
token, yet a revocation anywhere and an expiry are obeyed (docs/access.md)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from ledger import tokens
from ledger.tools import admin

from .conftest import SCHOOL_A, World
from .processes import run_cli

EVENT = "/events/00000000-0000-4000-8000-000000000000"


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ticks(world: World) -> Ticks:
    ticks = Ticks()
    world.ledger.tokens.monotonic = ticks
    return ticks


def client(world: World, token: str) -> TestClient:
    return TestClient(create_app(world.ledger), headers={"authorization": f"Bearer {token}"}, raise_server_exceptions=False)


def test_a_verified_token_is_answered_without_the_database_until_the_recheck(
    world: World, ticks: Ticks, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = world.ledger
    token = ledger.issue_token(SCHOOL_A, "school")
    principal = ledger.authenticate(token)
    assert principal is not None and ledger.tokens.get(token) == principal

    def no_database(*_: object) -> None:
        raise AssertionError("the database was queried")

    monkeypatch.setattr(ledger.store, "query", no_database)
    ticks.now += tokens.RECHECK_SECONDS / 2
    assert ledger.authenticate(token) == principal
    ticks.now += tokens.RECHECK_SECONDS / 2
    assert ledger.tokens.get(token) is None  # the revocation count is due: the next request asks the database
    with pytest.raises(AssertionError, match="queried"):
        ledger.authenticate(token)


def test_failed_lookups_are_not_cached(world: World, ticks: Ticks) -> None:
    ledger = world.ledger
    token = ledger.issue_token(SCHOOL_A, "school")
    wrong = token[:-1] + ("x" if token[-1] != "x" else "y")
    assert ledger.authenticate(wrong) is None and ledger.tokens.get(wrong) is None
    assert ledger.authenticate(token) is not None and ledger.authenticate(wrong) is None
    ledger.revoke_token(token)
    assert ledger.authenticate(token) is None and ledger.tokens.get(token) is None


def test_revoking_in_this_process_refuses_the_next_request(world: World) -> None:
    token = world.ledger.issue_token(SCHOOL_A, "school")
    api = client(world, token)
    assert api.get(EVENT).status_code == 404
    assert world.ledger.tokens.get(token) is not None
    assert world.ledger.revoke_token(token.split("_")[1])
    assert api.get(EVENT).status_code == 401


def test_a_lookup_in_flight_during_a_revocation_is_not_kept(world: World) -> None:
    ledger = world.ledger
    token = ledger.issue_token(SCHOOL_A, "school")
    before = ledger.tokens.generation
    principal = ledger.authenticate(token)
    assert principal is not None
    ledger.revoke_token(token)
    ledger.tokens.put(token, principal, None, before)  # what a lookup that read the row before the revocation would do
    assert ledger.tokens.get(token) is None and ledger.authenticate(token) is None


def test_revoking_from_another_ledger_is_obeyed_within_the_recheck_interval(world: World, ticks: Ticks) -> None:
    ledger = world.ledger
    token = ledger.issue_token(SCHOOL_A, "school")
    assert ledger.authenticate(token) is not None
    other = admin.open_ledger(ledger.settings)
    try:
        assert other.revoke_token(token)
    finally:
        other.store.close()
    ticks.now += tokens.RECHECK_SECONDS
    assert ledger.tokens.get(token) is None and ledger.authenticate(token) is None


def test_revoking_with_the_cli_refuses_requests_within_a_second(world: World) -> None:
    token = world.ledger.issue_token(SCHOOL_A, "school")
    api = client(world, token)
    assert api.get(EVENT).status_code == 404
    run_cli(world.ledger.settings, "tokens", "revoke", token.split("_")[1])
    revoked_by = time.monotonic()
    while api.get(EVENT).status_code != 401:
        assert time.monotonic() - revoked_by < tokens.RECHECK_SECONDS + 0.5, "still accepted after the bound"
        time.sleep(0.05)


def test_an_expired_token_is_refused_though_cached(world: World, ticks: Ticks) -> None:
    ledger = world.ledger
    token = ledger.issue_token(SCHOOL_A, "school", world.clock.now + timedelta(days=1))
    assert ledger.authenticate(token) is not None
    world.clock.advance(days=1)
    assert ledger.tokens.get(token) is None and ledger.authenticate(token) is None


def test_an_entry_lasts_at_most_its_maximum_age(world: World, ticks: Ticks) -> None:
    ledger = world.ledger
    token = ledger.issue_token(SCHOOL_A, "school")
    assert ledger.authenticate(token) is not None
    ticks.now += tokens.MAX_AGE_SECONDS
    ledger.tokens.recheck()
    assert ledger.tokens.get(token) is None and ledger.authenticate(token) is not None
