"""The consumer's fast record check (feed.check) against the schema's own validator: it may say "ask the validator"
for anything, but "valid" only for what the validator accepts, and it does say "valid" for the records the relay
writes."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import fastjsonschema
import orjson
import pytest

from feed.check import RecordCheck
from feed.consumer import PoisonRecord, log_event_of
from ledger.feed import SCHEMA_HEADER, record_schema

GOOD: dict[str, Any] = {
    "sequence": 42,
    "event_id": "0f8fad5b-d9cb-469f-a165-70867728950e",
    "type": "ehcp.amended",
    "subject": "7c9e6679-7425-80de-944b-e07fc1f90ae7",
    "submitter": "urn:100005",
    "occurred_on": "2024-09-01",
    "received_at": "2024-09-02T08:15:00.123456Z",
    "corrects": None,
    "flags": ["late", "backdated"],
    "event_digest": "a" * 64,
    "envelope_digest": "0123456789abcdef" * 4,
    "data": {"school": "urn:100005", "reason": "moved"},
}

BAD_VALUES: dict[str, list[Any]] = {
    "sequence": [0, -1, True, False, 1.5, "42", None, 2.0, 10**30],
    "event_id": ["0F8FAD5B-D9CB-469F-A165-70867728950E", "0f8fad5b-d9cb-469f-a165-70867728950e\n", "", 7, None],
    "type": ["pupil", "Pupil.enrolled", "pupil.enrolled\n", "pupil.enrolled.x", 1],
    "subject": [
        "A12345678901B",
        "A123456789012",
        "7c9e6679-7425-40de-944b-e07fc1f90ae7",
        "7c9e6679-7425-80de-944b-e07fc1f90ae7\n",
        "la:801",
        "ofsted",
        "LA:801",
        "",
        None,
        ["x"],
    ],
    "submitter": ["URN:1", "urn:", "urn:1\n", "la:801", "dfe:admin", "", 5],
    "occurred_on": ["2024-9-01", "2024-09-01\n", "2024-13-45", "x", None],
    "received_at": ["2024-09-02T08:15:00Z", "2024-09-02T08:15:00.123456Z\n", "2024-09-02T08:15:00.123456+00:00", 0],
    "corrects": ["0f8fad5b-d9cb-469f-a165-70867728950e", "", 3, [], {}],
    "flags": [[], ["late", "late"], ["Late"], ["late\n"], [1], "late", None, ("late",), ["a", "b", "a"]],
    "event_digest": ["A" * 64, "a" * 63, "a" * 65, "a" * 64 + "\n", None],
    "envelope_digest": ["g" * 64, "", None],
    "data": [{}, {"upn": "x"}, {"pupil_UPN": "x"}, {"Upn_old": 1}, {"nested": {"upn": "x"}}, [], "x", None, {"a": 1, "b": 2}],
}


def variants() -> list[Any]:
    out: list[Any] = [copy.deepcopy(GOOD), [], "x", None, 1]
    for field, values in BAD_VALUES.items():
        for value in values:
            body = copy.deepcopy(GOOD)
            body[field] = value
            out.append(body)
        missing = copy.deepcopy(GOOD)
        del missing[field]
        out.append(missing)
    extra = copy.deepcopy(GOOD)
    extra["more"] = 1
    out.append(extra)
    for a, b in itertools.combinations(["sequence", "subject", "flags", "data"], 2):  # two faults at once
        body = copy.deepcopy(GOOD)
        body[a], body[b] = BAD_VALUES[a][0], BAD_VALUES[b][0]
        out.append(body)
    return out


def accepts(validate: Any, body: Any) -> bool:
    try:
        validate(body)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


def test_the_fast_check_says_valid_only_for_what_the_schema_accepts_and_does_for_the_usual_records() -> None:
    validate = fastjsonschema.compile(record_schema())
    check = RecordCheck(record_schema())
    assert check.enabled
    said_valid = 0
    for body in variants():
        for _ in range(2):  # the second time the data's shape is known
            if check(body):
                said_valid += 1
                assert accepts(validate, body), body
    assert check(copy.deepcopy(GOOD)) and accepts(validate, GOOD)
    for organisation in ("la:801", "ofsted", "urn:100005", "dfe:admin"):
        assert check({**GOOD, "subject": organisation, "flags": [], "corrects": GOOD["event_id"]})
    assert said_valid > 20  # the valid variants took the fast path


def test_a_schema_it_was_not_written_for_sends_every_record_to_the_validator() -> None:
    changed = copy.deepcopy(record_schema())
    changed["properties"]["sequence"]["maximum"] = 10
    check = RecordCheck(changed)
    assert not check.enabled and not check(copy.deepcopy(GOOD))
    loose = copy.deepcopy(record_schema())
    del loose["additionalProperties"]
    assert not RecordCheck(loose).enabled


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("subject", "A12345678901B", "not event-record.v1"),
        ("data", {"upn": "x"}, "not event-record.v1"),
        ("sequence", 0, "not event-record.v1"),
    ],
)
def test_records_the_fast_check_refuses_are_still_poison_with_the_validators_reason(field: str, value: Any, says: str) -> None:
    body = {**GOOD, field: value}
    with pytest.raises(PoisonRecord, match=says):
        log_event_of(orjson.dumps(body), [SCHEMA_HEADER])
    event = log_event_of(orjson.dumps(GOOD), [SCHEMA_HEADER])
    assert event.seq == 42 and event.subject == GOOD["subject"] and event.flags == ("late", "backdated")


def test_the_batched_applied_upsert_raises_a_subjects_sequence_and_never_lowers_it(settings: Any) -> None:
    from feed.state import FeedState
    from ledger.tools import admin

    store = admin.initialise(settings).ledger.store
    try:
        state = FeedState(store)
        state.ensure_consumer()
        many = {f"s{i:04d}": i + 1 for i in range(1500)}
        with store.cursor(commit=True) as cur:
            state.set_applied(cur, many)
            state.set_applied(cur, {})
        with store.cursor(commit=True) as cur:  # a redelivered record (lower sequence) beside newer ones and a new subject
            state.set_applied(cur, {"s0004": 2, "s0007": 100, "new": 9})
        with store.cursor() as cur:
            got = state.applied(cur, ["s0004", "s0007", "new", "s1499", "absent"])
        assert got == {"s0004": 5, "s0007": 100, "new": 9, "s1499": 1500}
        assert store.query("SELECT COUNT(*) FROM pv_kafka_applied")[0][0] == 1501
    finally:
        store.close()
