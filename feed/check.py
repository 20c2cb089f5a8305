"""A fast sufficient check that a decoded feed record is a valid ``event-record.v1`` (the consumer's hot path).

The compiled JSON Schema validator (fastjsonschema) spent a projection worker's largest share of Python time on
each record: its ``anyOf``/``not`` rules are written as raised and caught exceptions, about six a record. This check
asks the same questions with the schema's own patterns, compiled once (``$`` read as end of string, as the
validator reads it), and the data's property names checked once per shape (the tuple of its keys). It only ever
says "certainly valid": whatever it does not recognise (another type, an extra field, a float sequence, a schema
changed since this was written) goes to the full validator, which accepts it or says why not. So it can reject
nothing the schema takes and accept nothing the schema refuses (tests/test_kafka_feed_check.py compares the two).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

_EXPECTED_FIELDS = frozenset(
    (
        "sequence",
        "event_id",
        "type",
        "subject",
        "submitter",
        "occurred_on",
        "received_at",
        "corrects",
        "flags",
        "event_digest",
        "envelope_digest",
        "data",
    )
)
_SHAPES_KEPT = 4096  # property-name tuples of ``data`` known to pass; a topic has a few dozen


def _search(pattern: str) -> Callable[[str], Any]:
    """The pattern's ``search``, with ``$`` at its end meaning the end of the string (as fastjsonschema compiles it)."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern).search


class RecordCheck:
    """``RecordCheck(schema)(body)``: True if ``body`` is certainly valid; False means "ask the full validator"."""

    def __init__(self, schema: Mapping[str, Any]):
        self.enabled = False
        self._data_shapes: set[tuple[str, ...]] = set()
        try:
            self._compile(schema)
        except (KeyError, TypeError, ValueError, AssertionError, re.error):
            self.enabled = False  # not the schema this was written for: every record goes to the full validator

    def _compile(self, schema: Mapping[str, Any]) -> None:
        props = schema["properties"]
        assert schema.get("type") == "object" and schema.get("additionalProperties") is False
        assert set(schema["required"]) == set(props) == _EXPECTED_FIELDS
        assert {k for k in schema if k not in ("$schema", "$id", "title", "description")} == {
            "type",
            "required",
            "properties",
            "additionalProperties",
        }

        def only(name: str, *keys: str) -> Mapping[str, Any]:
            spec: Mapping[str, Any] = props[name]
            assert set(spec) - {"description"} == set(keys), name
            return spec

        assert only("sequence", "type", "minimum")["type"] == "integer"
        self._minimum = props["sequence"]["minimum"]
        assert type(self._minimum) is int
        self._string_patterns: list[tuple[str, Callable[[str], Any]]] = []
        for name in ("event_id", "type", "submitter", "occurred_on", "received_at", "event_digest", "envelope_digest"):
            spec = only(name, "type", "pattern")
            assert spec["type"] == "string"
            self._string_patterns.append((name, _search(spec["pattern"])))
        subject = only("subject", "type", "anyOf", "not")
        assert subject["type"] == "string" and set(subject["not"]) == {"pattern"}
        assert all(set(alt) == {"pattern"} for alt in subject["anyOf"])
        self._subject_any = [_search(alt["pattern"]) for alt in subject["anyOf"]]
        self._subject_not = _search(subject["not"]["pattern"])
        corrects = only("corrects", "type")
        assert sorted(corrects["type"]) == ["null", "string"]
        flags = only("flags", "type", "items", "uniqueItems")
        assert flags["type"] == "array" and flags["uniqueItems"] is True
        assert set(flags["items"]) == {"type", "pattern"} and flags["items"]["type"] == "string"
        self._flag = _search(flags["items"]["pattern"])
        data = only("data", "type", "propertyNames")
        assert data["type"] == "object" and set(data["propertyNames"]) == {"not"} and set(data["propertyNames"]["not"]) == {"pattern"}
        self._data_name_not = _search(data["propertyNames"]["not"]["pattern"])
        self.enabled = True

    def __call__(self, body: Any) -> bool:
        if not self.enabled or type(body) is not dict or len(body) != len(_EXPECTED_FIELDS) or body.keys() != _EXPECTED_FIELDS:
            return False
        sequence = body["sequence"]
        if type(sequence) is not int or sequence < self._minimum:
            return False
        for name, search in self._string_patterns:
            value = body[name]
            if type(value) is not str or search(value) is None:
                return False
        subject = body["subject"]
        if type(subject) is not str or self._subject_not(subject) is not None or not any(s(subject) for s in self._subject_any):
            return False
        corrects = body["corrects"]
        if corrects is not None and type(corrects) is not str:
            return False
        flags = body["flags"]
        if type(flags) is not list:
            return False
        if flags and (any(type(f) is not str or self._flag(f) is None for f in flags) or len(set(flags)) != len(flags)):
            return False
        data = body["data"]
        if type(data) is not dict:
            return False
        shape = tuple(data)
        if shape not in self._data_shapes:
            if any(type(k) is not str or self._data_name_not(k) is not None for k in shape):
                return False
            if len(self._data_shapes) >= _SHAPES_KEPT:
                self._data_shapes.clear()
            self._data_shapes.add(shape)
        return True
