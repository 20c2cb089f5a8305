"""Bad input through HTTP gets a clear 4xx (code, path, message) and changes nothing, never a 500 (issue 18, items 10
and 17): integers of thousands of digits and nesting thousands deep, in an outer body, a batch or a signed payload;
indexes and tree sizes beyond any tree; dates and times beyond any the ledger holds; bodies that are not JSON."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from api.app import create_app
from ledger.core import ed25519, envelope, jcs
from ledger.tools import admin

from .conftest import SCHOOL_A, UPN, World

REGISTERED = {"school": SCHOOL_A, "enrolment_status": "C", "year_group": "9", "sen_status": "N", "looked_after": False}
HUGE_INTEGER = b"1" * 5000
DEEP = b"[" * 5000 + b"]" * 5000


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    with TestClient(create_app(world.ledger), raise_server_exceptions=False) as c:
        c.headers["authorization"] = f"Bearer {world.ledger.issue_token(SCHOOL_A, 'school')}"
        yield c


def post(client: TestClient, path: str, body: bytes, content_type: str | None = "application/json") -> Any:
    return client.post(path, content=body, headers={"content-type": content_type} if content_type else {})


def refused(response: Any, status: int, code: str, path: str) -> str:
    """The refusal's message, once its status, code and path are as expected."""
    assert response.status_code == status, response.text
    errors = response.json()["errors"]
    assert [(e["code"], e["path"]) for e in errors] == [(code, path)], errors
    return str(errors[0]["message"])


def signed_payload(world: World, payload: bytes) -> dict[str, Any]:
    """An envelope over exactly ``payload`` (not an event), validly signed by the school."""
    key = world.keys[SCHOOL_A]
    signature = ed25519.sign(key, envelope.pae(envelope.EVENT_PAYLOAD_TYPE, payload))
    return envelope.signed_envelope(envelope.EVENT_PAYLOAD_TYPE, payload, envelope.key_id(key.public_key()), signature)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"a":' + HUGE_INTEGER + b"}", "5000 digits"),
        (DEEP, "nested more than"),
        (b'{"envelopes":[' + HUGE_INTEGER + b"]}", "5000 digits"),
        (b'{"envelopes":[' + DEEP + b"]}", "nested more than"),
        (b"[" * 5000, "nested more than"),  # never closed: still refused as too deep, not left to the parser's recursion
    ],
)
def test_outer_bodies_with_huge_integers_or_deep_nesting_are_400(client: TestClient, world: World, body: bytes, says: str) -> None:
    before = world.ledger.store.max_sequence()
    for route in ("/events", "/batches"):
        assert says in refused(post(client, route, body), 400, "malformed_json", "$")
    assert world.ledger.store.max_sequence() == before


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        (b'{"n":' + HUGE_INTEGER + b"}", "5000 digits"),
        (b'{"n":-' + HUGE_INTEGER + b"}", "5000 digits"),
        (DEEP, "nested more than"),
        (b"[" * 300 + b"]" * 300, "nested more than"),  # deeper than orjson writes, within the parser's reach
    ],
)
def test_signed_payloads_with_huge_integers_or_deep_nesting_are_400(client: TestClient, world: World, payload: bytes, says: str) -> None:
    before = world.ledger.store.max_sequence()
    bad = signed_payload(world, payload)
    assert says in refused(post(client, "/events", json.dumps(bad).encode()), 400, "payload_not_json", "$.payload")
    good = world.sign(world.event("pupil.registered", SCHOOL_A, REGISTERED, upn=UPN))
    batch = json.dumps({"envelopes": [good, bad]}).encode()
    assert says in refused(post(client, "/batches", batch), 400, "payload_not_json", "$.envelopes[1].payload")
    assert world.ledger.store.max_sequence() == before
    assert post(client, "/events", json.dumps(good).encode()).status_code == 201  # the good one alone is accepted


@pytest.mark.parametrize(
    ("content_type", "accepted"),
    [
        (None, False),
        ("text/plain", False),
        ("text/plain; charset=utf-8", False),
        ("application/x-www-form-urlencoded", False),
        ("application/json; charset=iso-8859-1", False),
        ("application/jsonx", False),
        ("multipart/form-data; boundary=x", False),
        ("application/json", True),
        ("Application/JSON; charset=UTF-8", True),
        ("application/vnd.pupil-ledger.batch+json", True),
    ],
)
def test_post_bodies_must_be_json(client: TestClient, world: World, content_type: str | None, accepted: bool) -> None:
    body = world.event("pupil.registered", SCHOOL_A, REGISTERED, upn=UPN)
    before = world.ledger.store.max_sequence()
    for route, document in (("/events", world.sign(body)), ("/batches", {"envelopes": [world.sign(body)]})):
        response = post(client, route, json.dumps(document).encode(), content_type)
        if accepted:
            assert response.status_code in (200, 201), response.text
        else:
            refused(response, 415, "unsupported_media_type", "header:Content-Type")
            assert world.ledger.store.max_sequence() == before


def test_a_bad_token_is_told_before_the_media_type(client: TestClient) -> None:
    anonymous = TestClient(client.app)
    refused(anonymous.post("/events", content=b"{}", headers={"content-type": "text/plain"}), 401, "token_missing", "header:Authorization")


HUGE = "99999999999999999999"


@pytest.mark.parametrize(
    ("query", "status", "code", "path"),
    [
        (f"/log/proof/inclusion?index={HUGE}", 422, "invalid_query", "query:index"),
        (f"/log/proof/inclusion?index={2**62}", 404, "not_in_tree", "$.index"),
        (f"/log/proof/inclusion?index=0&tree_size={HUGE}", 422, "invalid_query", "query:tree_size"),
        (f"/log/proof/inclusion?index=0&tree_size={2**62}", 404, "no_checkpoint", "$.tree_size"),
        (f"/log/proof/consistency?first=1&second={HUGE}", 422, "invalid_query", "query:second"),
        (f"/log/proof/consistency?first={HUGE}", 422, "invalid_query", "query:first"),
        (f"/log/proof/consistency?first={2**62}&second={2**62}", 422, "bad_tree_sizes", "$.second"),
        ("/log/tile/0/x999/x999/x999/x999/x999/x999/999", 404, "no_such_tile", "$.path"),
        ("/log/tile/entries/x999/x999/x999/x999/x999/x999/999.p/5", 404, "no_such_tile", "$.path"),
        (f"/access-log?after={HUGE}", 422, "invalid_query", "query:after"),
        (f"/views/placements?min_sequence={HUGE}", 422, "invalid_query", "query:min_sequence"),
    ],
)
def test_indexes_and_sizes_beyond_any_tree(client: TestClient, world: World, query: str, status: int, code: str, path: str) -> None:
    world.post("pupil.registered", SCHOOL_A, REGISTERED, upn=UPN)
    admin.sealer(world.ledger).seal_all()
    refused(client.get(query), status, code, path)


EXTREMES = [
    ("known_at", "9999-12-31T23:59:59.999999-23:59"),
    ("known_at", "0001-01-01T00:00:00+14:00"),
    ("known_at", "9999-12-31T23:59:59.999999+23:59"),
    ("as_of", "0001-01-01"),
    ("as_of", "9999-12-31"),
]


@pytest.mark.parametrize(
    "route",
    [
        f"/pupils/{UPN}/history",
        "/views/placements",
        "/views/unregistered-providers",
        "/views/cases",
        f"/views/metrics?level=school&org={SCHOOL_A}",
    ],
)
@pytest.mark.parametrize(("name", "value"), EXTREMES)
def test_dates_and_times_beyond_any_the_ledger_holds_are_422(client: TestClient, world: World, route: str, name: str, value: str) -> None:
    world.post("pupil.registered", SCHOOL_A, REGISTERED, upn=UPN)  # a pupil the school may read: the history gets as far as the moment
    response = client.get(route, params={name: value})
    assert name in refused(response, 422, f"{name}_range", f"query:{name}")


def _nested(depth: int, strings: list[str], as_object: list[bool]) -> Any:
    value: Any = strings[0]
    for level in range(depth):
        text = strings[level % len(strings)]
        value = {text: value} if as_object[level % len(as_object)] else [text, value]
    return value


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 40),
    st.lists(st.text(alphabet='[]{}"\\:,ab\u00e9', max_size=6), min_size=1, max_size=5),
    st.lists(st.booleans(), min_size=1, max_size=5),
    st.booleans(),
)
def test_the_depth_bound_counts_only_brackets_outside_strings(
    depth: int, strings: list[str], as_object: list[bool], ascii_only: bool
) -> None:
    """Strings full of brackets, quotes and escapes neither hide nesting nor add to it."""
    data = json.dumps(_nested(depth, strings, as_object), ensure_ascii=ascii_only).encode("utf-8")
    if depth > jcs.MAX_DEPTH:
        with pytest.raises(jcs.NotJSON, match="nested more than"):
            jcs.parse(data)
        with pytest.raises(jcs.NotJSON, match="nested more than"):
            jcs.parse_canonical(data)
    else:
        assert jcs.parse(data) == json.loads(data)


def test_integers_up_to_the_bound_parse() -> None:
    assert jcs.parse(b"-" + b"9" * jcs.MAX_INTEGER_DIGITS) == -int("9" * jcs.MAX_INTEGER_DIGITS)
    with pytest.raises(jcs.NotJSON, match="65 digits"):
        jcs.parse(b"[" + b"9" * 65 + b"]")
    assert jcs.parse_canonical(b'{"n":' + b"1" * 40 + b"}") == ({"n": int("1" * 40)}, False)  # beyond 2^53: not canonical


def test_a_batch_of_5000_envelopes_is_checked_for_depth_quickly() -> None:
    import time

    env = {
        "payloadType": envelope.EVENT_PAYLOAD_TYPE,
        "payload": base64.b64encode(b"x" * 700).decode(),
        "signatures": [{"keyid": "0123456789abcdef", "sig": "A" * 88}],
    }
    batch = json.dumps({"envelopes": [env] * 5000}).encode()

    def fastest(run: Any) -> float:
        times = []
        for _ in range(5):
            started = time.perf_counter()
            run(batch)
            times.append(time.perf_counter() - started)
        return min(times)

    assert fastest(jcs._check_depth) < fastest(jcs.parse) / 2, "the depth check costs more than half the parse it guards"
