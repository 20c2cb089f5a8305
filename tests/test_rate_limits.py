"""Failed authentication is limited without locking out the innocent (issue 18, item 11): a token that verifies is
never refused for its address's failures, guesses beyond the budget cost the database nothing, and
``X-Forwarded-For`` names the client only when a configured proxy sends it (``PUPIL_LEDGER_TRUSTED_PROXIES``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from ledger.config import Settings
from ledger.tools import admin

from .conftest import SCHOOL_A, UPN, World
from .processes import Server

BUDGET = 20  # failed tokens an address may send before it must slow down (docs/access.md)
GUESS = "plt_0badc0de_" + "x" * 43


def _guess(n: int) -> str:
    return f"plt_{n:08x}_{'y' * 43}"


@pytest.fixture
def app(world: World) -> Iterator[Any]:
    world.post(
        "pupil.registered",
        SCHOOL_A,
        {"school": SCHOOL_A, "enrolment_status": "C", "year_group": "9", "sen_status": "N", "looked_after": False},
        upn=UPN,
    )
    with TestClient(create_app(world.ledger)) as client:
        yield client.app


def _get(app: Any, token: str, path: str = f"/pupils/{UPN}/history") -> Any:
    return TestClient(app).get(path, headers={"authorization": f"Bearer {token}"})


def test_a_valid_token_is_never_refused_for_its_address_failures(app: Any, world: World) -> None:
    cached = world.ledger.issue_token(SCHOOL_A, "school")
    assert _get(app, cached).status_code == 200  # verified once: this process keeps it
    responses = [_get(app, _guess(n)) for n in range(BUDGET + 10)]
    statuses = [r.status_code for r in responses]
    # beyond the budget, one failure a second (the bucket refills while an unknown token waits for the directory)
    assert statuses[:BUDGET] == [401] * BUDGET and statuses[BUDGET:].count(429) >= 5 and set(statuses) == {401, 429}, statuses
    assert _get(app, cached).status_code == 200
    fresh = world.ledger.issue_token(SCHOOL_A, "school")  # never seen by this process: it must be looked up
    assert _get(app, fresh).status_code == 200
    limited = next(r for r in responses if r.status_code == 429)
    assert limited.json()["errors"][0]["code"] == "auth_rate_limited" and int(limited.headers["retry-after"]) >= 1
    revoked = world.ledger.issue_token(SCHOOL_A, "school")
    world.ledger.revoke_token(revoked)
    refused = _get(app, revoked)
    assert refused.status_code == 401 and refused.json()["errors"][0]["code"] == "token_invalid"  # known, looked up, refused


def test_guesses_beyond_the_budget_cost_the_database_one_count_a_second(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(world.ledger)
    queries: list[str] = []
    query = world.ledger.store.query

    def counted(statement: str, params: Any = ()) -> Any:
        queries.append(statement)
        return query(statement, params)

    async def guesses() -> tuple[list[int], float]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:

            async def guess(n: int) -> int:
                return (await http.get("/log/vkey", headers={"authorization": f"Bearer {_guess(n)}"})).status_code

            for n in range(BUDGET):
                assert await guess(n) == 200  # a public route: the token is checked only where one is needed
            for n in range(BUDGET):
                assert (await http.get(f"/pupils/{UPN}/history", headers={"authorization": f"Bearer {_guess(n)}"})).status_code == 401
            monkeypatch.setattr(world.ledger.store, "query", counted)
            started = time.monotonic()
            statuses = await asyncio.gather(
                *(http.get(f"/events/{n}", headers={"authorization": f"Bearer {_guess(100 + n)}"}) for n in range(300))
            )
            return [r.status_code for r in statuses], time.monotonic() - started

    statuses, seconds = asyncio.run(guesses())
    assert set(statuses) <= {401, 429} and statuses.count(401) <= seconds + 2, statuses  # one lookup a second as the budget refills
    token_reads = [q for q in queries if "ledger_tokens" in q]
    assert len(token_reads) <= 2 * (seconds + 1), (seconds, token_reads)  # one count a second, not one lookup per guess


def _statuses(base: str, source: str, tokens: list[str], forwarded: list[str] | None = None) -> list[int]:
    """Statuses of getEvent with each token, from local address ``source``, on one connection."""
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(base_url=base, transport=transport, timeout=10) as http:
        return [
            http.get(
                "/events/00000000-0000-4000-8000-000000000000",
                headers={"authorization": f"Bearer {token}", **({"x-forwarded-for": forwarded[i]} if forwarded else {})},
            ).status_code
            for i, token in enumerate(tokens)
        ]


def _check_forwarded_headers(server: Server, trusted: bool) -> None:
    guesses = [_guess(n) for n in range(BUDGET + 5)]
    rotating = [f"10.1.{n // 250}.{n % 250}" for n in range(len(guesses))]
    # an untrusted peer (127.0.0.2) cannot escape the limit by naming another client in each request
    escaped = _statuses(server.url, "127.0.0.2", guesses, rotating)
    assert escaped[:BUDGET] == [401] * BUDGET and escaped.count(429) >= 2, escaped
    # nor lock a victim out by naming it: 127.0.0.3's own budget is intact
    _statuses(server.url, "127.0.0.4", guesses, ["127.0.0.3"] * len(guesses))
    assert _statuses(server.url, "127.0.0.3", [GUESS]) == [401]
    # the configured proxy (127.0.0.1) is believed: each client it names has its own budget
    through_proxy = _statuses(server.url, "127.0.0.1", guesses, rotating)
    assert (through_proxy.count(429) == 0) is trusted, through_proxy


def test_forwarded_for_is_believed_only_from_configured_proxies(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    admin.initialise(settings).ledger.store.close()
    for proxies, trusted in (("", False), ("127.0.0.1", True)):
        server = Server(settings, env={"PUPIL_LEDGER_TRUSTED_PROXIES": proxies}).start()
        try:
            _check_forwarded_headers(server, trusted)
        finally:
            server.stop()


@pytest.mark.slow
def test_forwarded_for_with_several_workers(pg_url: str, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", database_url=pg_url)
    admin.initialise(settings).ledger.store.close()
    server = Server(settings, args=("--workers", "2"), env={"PUPIL_LEDGER_TRUSTED_PROXIES": "127.0.0.1/32"}).start()
    try:
        _check_forwarded_headers(server, trusted=True)
    finally:
        server.stop()


def test_one_token_flooding_waiting_reads_slows_nobody_else(tmp_path: Path) -> None:
    """Issue 18 item 15: reads waiting for ``min_sequence`` hold no worker thread and are bounded per token, so
    /healthz and other tokens' reads stay fast while one token sends 80 reads that can only wait."""
    settings = Settings(home=tmp_path / "home")
    ledger = admin.initialise(settings).ledger
    admin.add_org(ledger, SCHOOL_A, "school", "School", "la:801")
    flooder, other = ledger.issue_token(SCHOOL_A, "school"), ledger.issue_token(SCHOOL_A, "school")
    beyond = ledger.store.max_sequence() + 1000  # never reached: each read waits its full 2 s
    ledger.store.close()
    server = Server(settings).start()

    async def run() -> tuple[list[httpx.Response], list[float], list[float]]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as http:

            async def timed(path: str, token: str | None = None) -> float:
                started = time.monotonic()
                response = await http.get(path, headers={"authorization": f"Bearer {token}"} if token else {})
                assert response.status_code == 200, response.text
                return time.monotonic() - started

            flood = [
                asyncio.create_task(
                    http.get("/views/placements", params={"min_sequence": beyond}, headers={"authorization": f"Bearer {flooder}"})
                )
                for _ in range(80)
            ]
            await asyncio.sleep(0.3)  # the flood is in
            health, reads = [], []
            while not all(task.done() for task in flood):
                health.append(await timed("/healthz"))
                reads.append(await timed("/views/placements", other))
            return [task.result() for task in flood], health, reads

    try:
        answers, health, reads = asyncio.run(run())
    finally:
        server.stop()
    assert max(health) < 0.5 and max(reads) < 1.0, (sorted(health)[-3:], sorted(reads)[-3:])
    statuses = [r.status_code for r in answers]
    assert statuses.count(503) == 4 and statuses.count(429) == 76, statuses  # four waited 2 s and said "not yet"; the rest at once
    refused = next(r for r in answers if r.status_code == 429)
    assert refused.json()["errors"][0]["code"] == "too_many_waiting_reads" and refused.headers["retry-after"] == "1"
