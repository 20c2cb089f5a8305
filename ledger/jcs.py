"""RFC 8785 JSON Canonicalization Scheme (JCS).

Serialisation is delegated to the ``rfc8785`` package (Trail of Bits), which implements the
ECMAScript number formatting JCS requires; this module adds the ledger's strict parse and the
"is this byte string already canonical?" check.
"""

from __future__ import annotations

import json
from typing import Any

import rfc8785


class NotJSON(ValueError):
    """The bytes are not a single UTF-8 JSON value (or contain duplicate keys)."""


def canonicalize(value: Any) -> bytes:
    return rfc8785.dumps(value)


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise NotJSON(f"duplicate key {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise NotJSON(f"{name} is not JSON")


def parse(data: bytes) -> Any:
    """Parse strict JSON: UTF-8, no duplicate keys, no NaN/Infinity."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotJSON(f"not UTF-8 at byte {exc.start}") from None
    try:
        return json.loads(
            text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
    except json.JSONDecodeError as exc:
        raise NotJSON(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None


def is_canonical(data: bytes) -> bool:
    try:
        return canonicalize(parse(data)) == data
    except (NotJSON, rfc8785.CanonicalizationError):
        return False
