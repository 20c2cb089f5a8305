"""Identifiers, code lists and catalogue validation (pure)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import fastjsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from ledger.core import catalogue
from ledger.core.codes import SCHEMAS_DIR, code_list, la_codes
from ledger.core.identifiers import check_upn, make_upn, upn_check_letter
from ledger.core.schooltime import academic_year, school_days_between

NOW = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "upn,ok,code,temporary",
    [
        ("H801200001001", True, "", False),
        ("Z801200001001", False, "upn_check_letter", False),
        ("R900400001001", False, "upn_la_code", False),
        ("G80120000101A", True, "", True),
        ("H80120000100", False, "upn_format", False),
        ("h801200001001", False, "upn_format", False),
        ("H80120000100I", False, "upn_format", False),
    ],
)
def test_dfe_upn_examples(upn: str, ok: bool, code: str, temporary: bool) -> None:
    result = check_upn(upn, la_codes())
    assert (result.ok, result.code, result.temporary) == (ok, code, temporary)


def test_made_upns_are_valid() -> None:
    for n in range(1, 500, 37):
        upn = make_upn("202", 25, n)
        assert check_upn(upn, la_codes()).ok and upn[0] == upn_check_letter(upn)


def test_every_schema_is_valid_json_schema_and_names_existing_code_lists() -> None:
    files = [SCHEMAS_DIR / "event.schema.json", SCHEMAS_DIR / "envelope.schema.json", *sorted((SCHEMAS_DIR / "events").glob("*.json"))]
    names = set()
    for path in files:
        schema = json.loads(path.read_text())
        Draft202012Validator.check_schema(schema)
        text = path.read_text()
        for name in {part.split('"')[0] for part in text.split('"x-code-list": "')[1:]}:
            names.add(name)
            assert code_list(name).versions, name
    assert {"exclusion_reasons", "deregistration_grounds", "ap_setting_types", "gias_establishment_types"} <= names


def test_catalogue_covers_design_section_4() -> None:
    expected = {
        "pupil.registered",
        "pupil.deregistered",
        "pupil.excluded",
        "pupil.exclusion_reviewed",
        "pupil.ap_placement_started",
        "pupil.ap_placement_reviewed",
        "pupil.ap_placement_ended",
        "pupil.managed_move_started",
        "pupil.managed_move_ended",
        "pupil.part_time_timetable_started",
        "pupil.part_time_timetable_ended",
        "pupil.home_education_notified",
        "pupil.missing_education_recorded",
        "pupil.missing_education_resolved",
        "pupil.attendance_summary_recorded",
        "pupil.post16_destination_recorded",
        "org.registered",
        "org.joined_trust",
        "org.left_trust",
        "org.closed",
        "org.key_added",
        "org.key_revoked",
        "provider.unregistered_recorded",
        "provider.quality_assured",
        "provider.concern_raised",
        "provider.closed",
    }
    assert expected <= set(catalogue.event_types())


def body(**over: object) -> dict:
    b = {
        "event_id": "6f1c2f3e-0000-4000-8000-000000000001",
        "type": "pupil.excluded",
        "schema_version": 1,
        "submitter": "urn:100005",
        "subject": {"upn": "H801200001001"},
        "occurred_on": "2026-09-10",
        "reported_at": "2026-09-11T10:00:00Z",
        "data": {"school": "urn:100005", "kind": "SUSP", "sessions": 4, "reasons": ["PP"]},
    }
    b.update(over)
    return b


def codes(b: dict) -> list[tuple[str, str]]:
    return [(p.code, p.path) for p in catalogue.validate(b, NOW).problems]


def test_valid_event_has_no_problems() -> None:
    assert codes(body()) == []


def test_exclusion_reason_codes_depend_on_academic_year() -> None:
    vape = {"school": "urn:100005", "kind": "SUSP", "sessions": 2, "reasons": ["VR"]}
    assert codes(body(data=vape)) == []
    assert codes(body(data=vape, occurred_on="2024-03-01", reported_at="2024-03-01T10:00:00Z")) == [
        ("unknown_code", "$.payload.data.reasons[0]")
    ]
    assert academic_year(date(2024, 3, 1)) == "2023/24"


@pytest.mark.parametrize(
    "over,expected",
    [
        ({"occurred_on": "2026-02-30"}, ("impossible_date", "$.payload.occurred_on")),
        ({"occurred_on": "2027-01-01", "reported_at": "2026-09-11T10:00:00Z"}, ("future_date", "$.payload.occurred_on")),
        ({"occurred_on": "1900-01-01"}, ("date_too_early", "$.payload.occurred_on")),
        ({"reported_at": "2026-09-31T10:00:00Z"}, ("impossible_date", "$.payload.reported_at")),
        ({"subject": {"upn": "Z801200001001"}}, ("upn_check_letter", "$.payload.subject.upn")),
        ({"subject": {"upn": "R900400001001"}}, ("upn_la_code", "$.payload.subject.upn")),
        ({"type": "pupil.teleported"}, ("unknown_type", "$.payload.type")),
        ({"submitter": "la:801"}, ("submitter_not_allowed", "$.payload.submitter")),
        ({"submitter": "urn:12"}, ("submitter_not_allowed", "$.payload.submitter")),
        ({"data": {"school": "urn:100005", "kind": "SUSP", "reasons": ["PP"]}}, ("required", "$.payload.data.sessions")),
        ({"data": {"school": "urn:100005", "kind": "XXX", "sessions": 2, "reasons": ["PP"]}}, ("unknown_code", "$.payload.data.kind")),
        (
            {"data": {"school": "urn:100005", "kind": "SUSP", "sessions": 2, "reasons": ["PP", "PA", "VP", "VA"]}},
            ("schema_maxItems", "$.payload.data.reasons"),
        ),
        (
            {"data": {"school": "urn:100005", "kind": "SUSP", "sessions": 2, "reasons": ["PP"], "pupil_name": "x"}},
            ("unknown_field", "$.payload.data"),
        ),
        ({"event_id": "not-a-uuid"}, ("schema_pattern", "$.payload.event_id")),
        ({"subject": {"org": "urn:100005"}}, ("subject_kind", "$.payload.subject")),
    ],
)
def test_invalid_events_name_code_and_path(over: dict, expected: tuple[str, str]) -> None:
    assert expected in codes(body(**over))


def test_end_date_before_start_is_rejected() -> None:
    b = body(
        type="pupil.ap_placement_started",
        data={
            "commissioner": "urn:100005",
            "setting": "ukprn:10000047",
            "setting_type": "UKPRN",
            "tier": 2,
            "reason": "BEHAVIOUR",
            "planned_end": "2026-09-01",
            "hours_per_week": 15,
            "dual_registered": False,
        },
    )
    assert codes(b) == [("end_before_start", "$.payload.data.planned_end")]
    b["data"].pop("planned_end")
    assert codes(b) == [("required", "$.payload.data.planned_end")]  # tier 2 is time-limited


def test_temporary_upn_is_accepted_and_flagged() -> None:
    checked = catalogue.validate(body(subject={"upn": "G80120000101A"}), NOW)
    assert checked.problems == [] and [f["code"] for f in checked.flags] == ["temporary_upn"]


def test_school_days() -> None:
    assert school_days_between(date(2026, 10, 2), date(2026, 10, 9)) == 5  # Fri -> next Fri
    assert school_days_between(date(2026, 10, 2), date(2026, 10, 12)) == 6
    assert school_days_between(date(2026, 10, 2), date(2026, 10, 9), frozenset({date(2026, 10, 5)})) == 4


# -- the compiled validator agrees with jsonschema -----------------------------------------------------

ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def near_instances(draw: st.DrawFn, schema: dict) -> object:
    """Mostly-valid instances of ``schema`` (the keywords the catalogue uses), with a random fault now and then."""
    if draw(st.integers(0, 30)) == 0:
        return draw(ANY_JSON)  # a fault: any value at all in this place
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return draw(st.sampled_from(schema["enum"]))
    kind = schema.get("type")
    kind = draw(st.sampled_from(kind)) if isinstance(kind, list) else kind
    if "allOf" in schema:
        out: dict = {}
        for part in schema["allOf"]:
            value = draw(near_instances(part))
            if isinstance(value, dict):
                out.update(value)
        return out
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        names = [n for n in props if n in schema.get("required", []) or draw(st.booleans())]
        out = {n: draw(near_instances(props[n])) for n in names if draw(st.integers(0, 40))}  # now and then a required one is dropped
        if draw(st.integers(0, 20)) == 0:
            out[draw(st.text(min_size=1, max_size=5))] = draw(ANY_JSON)
        return out
    if kind == "array":
        items = schema.get("items", {})
        return [draw(near_instances(items)) for _ in range(draw(st.integers(schema.get("minItems", 0), schema.get("maxItems", 3) + 1)))]
    if kind == "integer":
        return draw(st.integers(schema.get("minimum", -3) - 1, schema.get("maximum", 10**5) + 1))
    if kind == "number":
        return draw(st.floats(schema.get("minimum", -3) - 1, schema.get("maximum", 10**5) + 1))
    if kind == "boolean":
        return draw(st.booleans())
    if kind == "string":
        if "pattern" in schema:
            text = draw(st.from_regex(schema["pattern"], fullmatch=draw(st.integers(0, 10)) > 0))
        else:
            text = draw(st.text(max_size=schema.get("maxLength", 20) + 2))
        return text
    return draw(ANY_JSON)


@pytest.mark.parametrize("type_name", sorted(catalogue.event_types()))
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large]
)
@given(data=st.data())
def test_compiled_validator_agrees_with_jsonschema(type_name: str, data: st.DataObject) -> None:
    """The compiled validator is the fast path: it must never accept what jsonschema rejects, and it rejects what
    jsonschema accepts only where JSON Schema's ECMA-262 patterns differ from Python's (a final newline before ``$``)."""
    schema = {"allOf": [catalogue._common_schema(), catalogue.event_types()[type_name].schema]}
    instance = data.draw(near_instances(schema))
    reference = not list(catalogue._validator(type_name).iter_errors(instance))
    try:
        catalogue._compiled(type_name)(instance)
        fast = True
    except fastjsonschema.JsonSchemaException:
        fast = False
    if reference and not fast:
        assert "\\n" in json.dumps(instance), instance  # an escaped newline
        assert [p.code for p in catalogue._schema_problems(instance, type_name, "$")] == ["schema_pattern"]
    else:
        assert fast == reference, instance


def test_a_final_newline_does_not_match_a_pattern() -> None:
    assert codes(body(event_id="6f1c2f3e-0000-4000-8000-000000000001\n")) == [("schema_pattern", "$.payload.event_id")]
    assert codes(body(reported_at="2026-09-11T10:00:00Z\n")) == [("schema_pattern", "$.payload.reported_at")]


def test_the_compiled_validator_accepts_the_simulated_nation() -> None:
    from ledger.tools.simulate import simulate_nation

    bodies = [body for area in simulate_nation(400, 3) for _, body in area.events]
    assert len({b["type"] for b in bodies}) >= 10
    for b in bodies:
        catalogue._compiled(b["type"])(b)
