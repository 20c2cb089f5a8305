"""Event catalogue v1: JSON Schemas under ``schemas/`` are the single source of truth.

Validation = the JSON Schema (structure) + the ledger's own keywords, read from the same files:
``x-code-list`` (value must be in the named code list for the event's academic year),
``x-org-id`` (organisation id schemes allowed), ``x-not-before`` (a date not before
``occurred_on``), ``x-subject`` (pupil, org, or audit: a pupil's audit pseudonym) and ``x-submitters`` (who may post the type).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any

import fastjsonschema
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from ledger.core.codes import SCHEMAS_DIR, code_list, la_codes
from ledger.core.errors import Problem
from ledger.core.identifiers import check_org_id, check_upn, org_scheme
from ledger.core.schooltime import academic_year

EARLIEST_DATE = date(1990, 1, 1)
MAX_PLANNING_HORIZON = timedelta(days=5 * 366)
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class EventType:
    name: str
    description: str
    subject: str  # "pupil" | "org"
    submitters: tuple[str, ...]  # org id schemes, plus "self" for the subject organisation
    schema: dict[str, Any]


@dataclass
class Checked:
    """Outcome of validating one event body."""

    problems: list[Problem] = field(default_factory=list)
    flags: list[dict[str, str]] = field(default_factory=list)


@cache
def _common_schema() -> dict[str, Any]:
    return dict(json.loads((SCHEMAS_DIR / "event.schema.json").read_text("utf-8")))


@cache
def event_types() -> dict[str, EventType]:
    types: dict[str, EventType] = {}
    for path in sorted((SCHEMAS_DIR / "events").glob("*.schema.json")):
        schema = json.loads(path.read_text("utf-8"))
        name = schema["title"]
        types[name] = EventType(name, schema["description"], schema["x-subject"], tuple(schema["x-submitters"]), schema)
    return types


@cache
def _validator(type_name: str) -> Draft202012Validator:
    common = _common_schema()
    registry: Registry[Any] = Registry().with_resource(common["$id"], Resource.from_contents(common))
    schema = {"allOf": [{"$ref": common["$id"]}, event_types()[type_name].schema]}
    return Draft202012Validator(schema, registry=registry)


@cache
def _compiled(type_name: str) -> Any:
    """The same schema compiled to Python (fastjsonschema): it accepts; on a rejection ``jsonschema`` names the
    problems, and this one's stands alone only where ``jsonschema`` finds none (see ``_schema_problems``).

    Formats stay annotations, as in ``jsonschema`` without a format checker: dates are checked below.
    """
    return fastjsonschema.compile({"allOf": [_common_schema(), event_types()[type_name].schema]}, use_formats=False)


def _json_path(prefix: str, parts: Iterator[Any] | Any) -> str:
    out = prefix
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _schema_problems(body: dict[str, Any], type_name: str, prefix: str) -> list[Problem]:
    try:
        _compiled(type_name)(body)
        return []  # the common case, about 15 times faster than asking jsonschema
    except fastjsonschema.JsonSchemaValueException as exc:
        strict = exc  # jsonschema names every problem with its path; this one stands only if it names none
    problems = []
    for error in sorted(_validator(type_name).iter_errors(body), key=lambda e: list(e.absolute_path)):
        path = _json_path(prefix, error.absolute_path)
        if error.validator == "required":
            missing = re.match(r"'([^']+)'", error.message)
            if missing:
                path += f".{missing.group(1)}"
            code = "required"
        elif error.validator == "additionalProperties":
            code = "unknown_field"
        else:
            code = f"schema_{error.validator}"
        problems.append(Problem(code, path, error.message))
    if not problems:
        # ``jsonschema`` matches patterns with Python's ``re``, where ``$`` also matches before a final newline;
        # JSON Schema patterns are ECMA-262, where it does not (so "2026-09-01\n" is no date), as compiled here.
        problems.append(
            Problem(f"schema_{strict.rule}", _json_path(prefix, _parts(body, strict.path[1:])), strict.message.split(" ", 1)[-1])
        )
    return problems


def _parts(value: Any, names: list[str]) -> Iterator[Any]:
    """fastjsonschema's path (every part a string) as keys and list indices."""
    for name in names:
        part: Any = int(name) if isinstance(value, list) else name
        yield part
        value = value[part]


# Matched whole and in ASCII digits before parsing: since Python 3.11 ``fromisoformat`` also reads week dates
# ("2026-W37-4"), the basic format, offsets and a space for the "T", none of which the catalogue's formats allow.
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?Z")


def _parse_date(value: Any) -> date | None:
    """A calendar date written YYYY-MM-DD, else None."""
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def parse_timestamp(value: Any) -> datetime | None:
    """An RFC 3339 UTC time written YYYY-MM-DDTHH:MM:SS[.ffffff]Z, else None."""
    if not isinstance(value, str) or not _TIMESTAMP.fullmatch(value):
        return None
    try:
        return datetime.fromisoformat(value[:-1]).replace(tzinfo=UTC)
    except ValueError:
        return None


def _walk(schema: dict[str, Any], value: Any, path: str) -> Iterator[tuple[dict[str, Any], Any, str]]:
    """Yield (subschema, value, path) for every value the type schema describes."""
    yield schema, value, path
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in value and isinstance(sub, dict):
                yield from _walk(sub, value[name], f"{path}.{name}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            yield from _walk(schema["items"], item, f"{path}[{i}]")


@cache
def _schemes(submitters: tuple[str, ...]) -> frozenset[str]:
    """The organisation id schemes an event type's submitters name ("self" aside)."""
    return frozenset(submitters) - {"self"}


def validate(body: dict[str, Any], received_at: datetime, prefix: str = "$.payload") -> Checked:
    """Validate an event body against the catalogue. Pure apart from reading the schema files."""
    out = Checked()
    type_name = body.get("type")
    etype = event_types().get(type_name) if isinstance(type_name, str) else None
    if etype is None:
        out.problems.append(Problem("unknown_type", f"{prefix}.type", f"unknown event type {type_name!r}; see schemas/events/"))
        return out
    out.problems.extend(_schema_problems(body, etype.name, prefix))
    if out.problems:
        return out

    occurred_on = _parse_date(body["occurred_on"])
    today = received_at.date()
    if occurred_on is None:
        out.problems.append(Problem("impossible_date", f"{prefix}.occurred_on", f"{body['occurred_on']!r} is not a calendar date"))
        return out
    if occurred_on > today:
        out.problems.append(Problem("future_date", f"{prefix}.occurred_on", f"occurred_on {occurred_on} is after today ({today})"))
    if occurred_on < EARLIEST_DATE:
        out.problems.append(Problem("date_too_early", f"{prefix}.occurred_on", f"occurred_on is before {EARLIEST_DATE}"))
    reported_at = parse_timestamp(body["reported_at"])
    if reported_at is None:
        out.problems.append(Problem("impossible_date", f"{prefix}.reported_at", "reported_at is not a valid UTC timestamp"))
    elif reported_at > received_at + CLOCK_SKEW:
        out.problems.append(Problem("future_date", f"{prefix}.reported_at", "reported_at is in the future by the ledger's clock"))
    elif reported_at.date() < occurred_on:
        out.problems.append(Problem("reported_before_occurred", f"{prefix}.reported_at", "reported_at is before occurred_on"))

    year = academic_year(occurred_on)
    las = la_codes()
    submitter = body["submitter"]
    allowed = _schemes(etype.submitters)
    if "self" in etype.submitters:  # the organisation itself (e.g. rotating its own key): checked by the rules
        allowed = allowed | {org_scheme(submitter) or ""}
    problem = check_org_id(submitter, allowed, las)
    if problem:
        out.problems.append(
            Problem("submitter_not_allowed", f"{prefix}.submitter", f"{etype.name} cannot be posted by {submitter}: {problem}")
        )
    subject = body["subject"]
    if etype.subject == "pupil":
        if "upn" not in subject:
            out.problems.append(Problem("subject_kind", f"{prefix}.subject", f"{etype.name} is about a pupil: give subject.upn"))
        else:
            upn = check_upn(subject["upn"], las)
            if not upn.ok:
                out.problems.append(Problem(upn.code, f"{prefix}.subject.upn", upn.message))
            elif upn.temporary:
                out.flags.append(
                    {"code": "temporary_upn", "message": "a temporary UPN was used; post a correction when the permanent UPN is known"}
                )
    elif etype.subject == "audit":  # ledger-written access.* events name the pupil by audit pseudonym only
        if "pupil" not in subject:
            out.problems.append(
                Problem("subject_kind", f"{prefix}.subject", f"{etype.name} is about a pupil's audit pseudonym: give subject.pupil")
            )
    else:
        if "org" not in subject:
            out.problems.append(Problem("subject_kind", f"{prefix}.subject", f"{etype.name} is about an organisation: give subject.org"))
        else:
            problem = check_org_id(subject["org"], set(_common_schema()["properties"]["subject"]["properties"]["org"]["x-org-id"]), las)
            if problem:
                out.problems.append(Problem("org_id", f"{prefix}.subject.org", problem))

    data_schema = etype.schema["properties"]["data"]
    for sub, value, path in _walk(data_schema, body["data"], f"{prefix}.data"):
        if "x-code-list" in sub:
            codes = code_list(sub["x-code-list"]).codes_for(year)
            if str(value) not in codes:
                out.problems.append(Problem("unknown_code", path, f"{value!r} is not in code list {sub['x-code-list']} for {year}"))
        if "x-org-id" in sub:
            problem = check_org_id(value, set(sub["x-org-id"]), las)
            if problem:
                out.problems.append(Problem("org_id", path, problem))
        if sub.get("format") == "date":
            day = _parse_date(value)
            if day is None:
                out.problems.append(Problem("impossible_date", path, f"{value!r} is not a calendar date"))
            elif day < EARLIEST_DATE or day > today + MAX_PLANNING_HORIZON:
                out.problems.append(Problem("date_out_of_range", path, f"{day} is outside {EARLIEST_DATE}..{today + MAX_PLANNING_HORIZON}"))
            elif sub.get("x-not-before") == "occurred_on" and day < occurred_on:
                out.problems.append(Problem("end_before_start", path, f"{day} is before occurred_on {occurred_on}"))
        if sub is not data_schema and sub.get("pattern", "").endswith("Z$") and parse_timestamp(value) is None:
            out.problems.append(Problem("impossible_date", path, f"{value!r} is not a valid UTC timestamp"))
    return out
