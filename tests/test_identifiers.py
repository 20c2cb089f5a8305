"""Identifiers are matched whole (issue 18, item 4): nothing with surrounding whitespace or control characters
is ever accepted, whether the identifier is checked by ``ledger.identifiers``, by a schema ``pattern``, by a code
list or by the date and timestamp parsers. A UPN with a trailing newline would be a second identity for the same
child that no history ever shows."""

from __future__ import annotations

import copy
import unicodedata
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.core import catalogue
from ledger.core.codes import la_codes
from ledger.core.identifiers import check_org_id, check_upn, la_code_of, org_scheme

NOW = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)
UPN = "H801200001001"
ORG_IDS = {  # one valid id per scheme
    "urn": "urn:100005",
    "la": "la:801",
    "trust": "trust:TR00001",
    "ukprn": "ukprn:10000047",
    "uprov": "uprov:801-7",
    "ofsted": "ofsted",
    "cqc": "cqc",
    "dfe:regions": "dfe:regions",
    "dfe:admin": "dfe:admin",
}
EVENT_ID, OTHER_EVENT_ID = "6f1c2f3e-0000-4000-8000-000000000001", "6f1c2f3e-0000-4000-8000-000000000002"


def _body(event_type: str, submitter: str, subject: dict[str, str], data: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "event_id": EVENT_ID,
        "type": event_type,
        "schema_version": 1,
        "submitter": submitter,
        "subject": subject,
        "occurred_on": "2026-09-10",
        "reported_at": "2026-09-11T10:00:00Z",
        "data": data,
        **extra,
    }


EXCLUDED = _body(
    "pupil.excluded",
    "urn:100005",
    {"upn": UPN},
    {"school": "urn:100005", "kind": "SUSP", "sessions": 4, "reasons": ["PP"]},
    corrects=OTHER_EVENT_ID,
)
PLACED = _body(
    "pupil.ap_placement_started",
    "la:801",
    {"upn": UPN},
    {
        "commissioner": "la:801",
        "setting": "uprov:801-7",
        "setting_type": "OTH",
        "tier": 2,
        "reason": "BEHAVIOUR",
        "planned_end": "2026-12-01",
        "hours_per_week": 15,
        "dual_registered": False,
    },
)
PLACED_UKPRN = copy.deepcopy(PLACED)
PLACED_UKPRN["data"].update(setting="ukprn:10000047", setting_type="UKPRN")
REVOKED = _body(
    "org.key_revoked",
    "dfe:admin",
    {"org": "urn:100005"},
    {"key_id": "0123456789abcdef", "reason": "compromised", "revoked_at": "2026-09-11T10:00:00Z"},
)
ADDED = _body(
    "org.key_added",
    "dfe:admin",
    {"org": "urn:100005"},
    {"key_id": "0123456789abcdef", "algorithm": "ed25519", "public_key": "O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik="},
)
REGISTERED = _body(
    "org.registered", "dfe:admin", {"org": "urn:100009"}, {"kind": "school", "name": "A school", "la": "la:801", "trust": "trust:TR00001"}
)
REVIEWED = _body(
    "pupil.ap_placement_reviewed",
    "la:801",
    {"upn": UPN},
    {"placement_event_id": OTHER_EVENT_ID, "outcome": "continue", "new_planned_end": "2027-01-15"},
)
SUBJECT_ORGS = [
    _body("org.key_revoked", "dfe:admin", {"org": org_id}, {"key_id": "0123456789abcdef", "reason": "retired"})
    for org_id in ORG_IDS.values()
]
SUBMITTERS = [
    _body("org.key_revoked", org_id, {"org": org_id}, {"key_id": "0123456789abcdef", "reason": "retired"}) for org_id in ORG_IDS.values()
]

# (body, where the identifier is, the JSON path a problem must name): every kind of identifier the catalogue checks
SLOTS: list[tuple[dict[str, Any], tuple[Any, ...], str]] = [
    (EXCLUDED, ("subject", "upn"), "$.payload.subject.upn"),  # UPN: identifiers.check_upn
    (EXCLUDED, ("submitter",), "$.payload.submitter"),  # organisation ids: identifiers.check_org_id
    (EXCLUDED, ("data", "school"), "$.payload.data.school"),
    (PLACED, ("data", "commissioner"), "$.payload.data.commissioner"),
    (PLACED, ("data", "setting"), "$.payload.data.setting"),
    (PLACED_UKPRN, ("data", "setting"), "$.payload.data.setting"),
    (REGISTERED, ("data", "la"), "$.payload.data.la"),
    (REGISTERED, ("data", "trust"), "$.payload.data.trust"),
    *[(body, ("subject", "org"), "$.payload.subject.org") for body in SUBJECT_ORGS],
    *[(body, ("submitter",), "$.payload.submitter") for body in SUBMITTERS],
    (EXCLUDED, ("event_id",), "$.payload.event_id"),  # schema patterns
    (EXCLUDED, ("corrects",), "$.payload.corrects"),
    (REVIEWED, ("data", "placement_event_id"), "$.payload.data.placement_event_id"),
    (REVOKED, ("data", "key_id"), "$.payload.data.key_id"),  # key ids
    (ADDED, ("data", "key_id"), "$.payload.data.key_id"),
    (ADDED, ("data", "public_key"), "$.payload.data.public_key"),
    (EXCLUDED, ("type",), "$.payload.type"),
    (EXCLUDED, ("occurred_on",), "$.payload.occurred_on"),  # dates and timestamps
    (EXCLUDED, ("reported_at",), "$.payload.reported_at"),
    (PLACED, ("data", "planned_end"), "$.payload.data.planned_end"),
    (REVIEWED, ("data", "new_planned_end"), "$.payload.data.new_planned_end"),
    (REVOKED, ("data", "revoked_at"), "$.payload.data.revoked_at"),
    (EXCLUDED, ("data", "kind"), "$.payload.data.kind"),  # codes
    (EXCLUDED, ("data", "reasons", 0), "$.payload.data.reasons[0]"),
    (PLACED, ("data", "setting_type"), "$.payload.data.setting_type"),
    (PLACED, ("data", "reason"), "$.payload.data.reason"),
    (REGISTERED, ("data", "kind"), "$.payload.data.kind"),
]


def _with(body: dict[str, Any], where: tuple[Any, ...], value: str) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    target = changed
    for part in where[:-1]:
        target = target[part]
    target[where[-1]] = value
    return changed


def _get(body: dict[str, Any], where: tuple[Any, ...]) -> str:
    value: Any = body
    for part in where:
        value = value[part]
    assert isinstance(value, str)
    return value


def _problems(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p.code, p.path) for p in catalogue.validate(body, NOW).problems]


def test_every_slot_holds_a_valid_identifier_to_begin_with() -> None:
    for body in {id(b): b for b, _, _ in SLOTS}.values():
        assert _problems(body) == [], body["type"]


# Whitespace (str.isspace: Zs, Zl, Zp and the ASCII/C1 separators) and control characters (Cc), the kinds that print
# as nothing or as a line break; plus the invisible format characters most often pasted with an id.
SPACE_OR_CONTROL = st.sampled_from(
    [c for c in map(chr, range(0x3001)) if c.isspace() or unicodedata.category(c) == "Cc"] + ["\ufeff", "\u200b", "\u2060", "\u180e"]
)
AROUND = st.tuples(st.text(SPACE_OR_CONTROL, max_size=3), st.text(SPACE_OR_CONTROL, max_size=3)).filter(lambda t: t[0] or t[1])


@settings(max_examples=300, deadline=None)
@given(slot=st.sampled_from(SLOTS), around=AROUND)
def test_no_identifier_with_surrounding_whitespace_or_control_characters_is_accepted(
    slot: tuple[dict[str, Any], tuple[Any, ...], str], around: tuple[str, str]
) -> None:
    body, where, path = slot
    before, after = around
    problems = _problems(_with(body, where, before + _get(body, where) + after))
    assert any(p == path for _, p in problems), (repr(before + _get(body, where) + after), problems)


@given(around=AROUND, scheme=st.sampled_from(sorted(ORG_IDS)))
def test_organisation_ids_and_upns_are_matched_whole(around: tuple[str, str], scheme: str) -> None:
    before, after = around
    org_id = before + ORG_IDS[scheme] + after
    assert org_scheme(org_id) is None and la_code_of(org_id) is None
    assert check_org_id(org_id, set(ORG_IDS), la_codes()) is not None
    upn = check_upn(before + UPN + after, la_codes())
    assert not upn.ok and upn.code == "upn_format"


@pytest.mark.parametrize(
    "value",
    [
        UPN + "\n",
        UPN + "\r\n",
        "\n" + UPN,
        UPN + " ",
        " " + UPN,
        UPN + "\x00",
        UPN + "\u2028",
        UPN + "\u0085",
        UPN + "\t",
        UPN[:6] + "\n" + UPN[7:],
        UPN.lower(),
        "Ｈ801200001001",
        "H８01200001001",
        "H801200001001" * 2,
        "",
    ],
)
def test_upn_extreme_cases(value: str) -> None:
    """Trailing and leading breaks, NUL, Unicode line separators, full-width letters and digits (which Python's
    ``\\d`` and ``str.isdigit`` would take for digits), doubled and empty: none is a UPN."""
    assert not check_upn(value, la_codes()).ok
    assert ("upn_format", "$.payload.subject.upn") in _problems(_with(EXCLUDED, ("subject", "upn"), value))


@pytest.mark.parametrize(
    "value",
    [
        "urn:100005\n",
        "urn:100005\r",
        "urn:100005\x00",
        " urn:100005",
        "la:801\n",
        "la:٨٠١",
        "la:８01",
        "trust:TR00001\n",
        "ukprn:10000047\n",
        "uprov:801-7\n",
        "uprov:801-7\u2029",
        "ofsted\n",
        "cqc ",
        "dfe:admin\n",
        "dfe:regions\t",
        "URN:100005",
    ],
)
def test_organisation_id_extreme_cases(value: str) -> None:
    """Arabic-Indic and full-width digits are digits to Python's ``\\d`` and ``int``: never to an id."""
    assert org_scheme(value) is None
    assert check_org_id(value, set(ORG_IDS), la_codes()) is not None


@pytest.mark.parametrize(
    "value",
    [
        "2026-09-10\n",
        "2026-09-10 ",
        "\t2026-09-10",
        "2026-9-10",
        "20260910",
        "2026-W37-4",
        "2026-253",
        "２０２６-09-10",
        "2026-09-1٠",
    ],
)
def test_dates_are_iso_calendar_dates_only(value: str) -> None:
    """``date.fromisoformat`` also reads week dates and the basic format since Python 3.11; a date here is YYYY-MM-DD."""
    assert catalogue._parse_date(value) is None
    assert _problems(_with(EXCLUDED, ("occurred_on",), value)), value
    assert _problems(_with(PLACED, ("data", "planned_end"), value)), value


@pytest.mark.parametrize(
    "value",
    [
        "2026-09-11T10:00:00Z\n",
        " 2026-09-11T10:00:00Z",
        "2026-09-11T10:00:00+00:00Z",
        "2026-09-11 10:00:00Z",
        "2026-09-11T10:00Z",
        "20260911T100000Z",
        "2026-09-11T10:00:00.1234567Z",
        "2026-09-11T1０:00:00Z",
        "2026-09-11T10:00:00z",
    ],
)
def test_timestamps_are_rfc3339_utc_only(value: str) -> None:
    assert catalogue.parse_timestamp(value) is None
    assert _problems(_with(REVOKED, ("data", "revoked_at"), value)), value
    assert _problems(_with(EXCLUDED, ("reported_at",), value)), value


def test_valid_dates_and_timestamps_still_parse() -> None:
    assert catalogue._parse_date("2026-09-10").isoformat() == "2026-09-10"
    assert catalogue.parse_timestamp("2026-09-11T10:00:00.123456Z") == datetime(2026, 9, 11, 10, 0, 0, 123456, tzinfo=UTC)
    assert catalogue.parse_timestamp("2026-09-11T10:00:00Z") == datetime(2026, 9, 11, 10, tzinfo=UTC)


def test_a_public_key_is_canonical_base64_of_32_bytes() -> None:
    """Base64 whose unused last bits are set decodes to the same key: one key, one spelling."""
    key = ADDED["data"]["public_key"]
    assert _problems(ADDED) == []
    for other in (key[:42] + "l=", key[:42] + "k", key + "=", key[:-1] + "A", key[:10] + "_" + key[11:], key[:10] + "-" + key[11:]):
        assert ("schema_pattern", "$.payload.data.public_key") in _problems(_with(ADDED, ("data", "public_key"), other)), other
