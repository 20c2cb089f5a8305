"""Identifiers: UPN check letter (DfE rule, domain.md 1.1) and organisation ids (design.md 3.1)."""

from __future__ import annotations

import operator
import re
from collections.abc import Container
from dataclasses import dataclass

CHECK_LETTERS = "ABCDEFGHJKLMNPQRTUVWXYZ"  # I, O and S are never used
# Every identifier is matched whole (``fullmatch``): with ``match`` and ``$``, "H801200001001\n" would pass, a second
# identity for the same child. ``[0-9]`` and ``[A-Z]`` are ASCII only (unlike ``\d``, which takes any Unicode digit).
_UPN = re.compile(r"[A-Z][0-9]{11}[0-9A-Z]")


@dataclass(frozen=True)
class UpnCheck:
    ok: bool
    temporary: bool = False
    code: str = ""
    message: str = ""


_CHECK_VALUE = {**{str(d): d for d in range(10)}, **{c: i for i, c in enumerate(CHECK_LETTERS)}}  # a digit, or a letter's place
_WEIGHTS = range(2, 14)


def upn_check_letter(upn: str) -> str:
    """The check letter for characters 2..13 of a UPN (weights 2..13, sum mod 23)."""
    return CHECK_LETTERS[sum(map(operator.mul, _WEIGHTS, map(_CHECK_VALUE.__getitem__, upn[1:13]))) % 23]


def check_upn(upn: object, la_codes: Container[str]) -> UpnCheck:
    if not isinstance(upn, str) or not _UPN.fullmatch(upn):
        return UpnCheck(False, code="upn_format", message="a UPN is a letter, 11 digits, then a digit or letter")
    last = upn[12]
    if last.isalpha() and last not in CHECK_LETTERS:
        return UpnCheck(False, code="upn_format", message=f"{last!r} is not used in temporary UPNs")
    if upn[0] != upn_check_letter(upn):
        return UpnCheck(False, code="upn_check_letter", message="the UPN's check letter (character 1) is wrong")
    if upn[1:4] not in la_codes:
        return UpnCheck(False, code="upn_la_code", message=f"characters 2-4 ({upn[1:4]}) are not a recognised LA code")
    return UpnCheck(True, temporary=last.isalpha())


def make_upn(la_code: str, year2: int, serial: int) -> str:
    """A permanent UPN with a correct check letter (for simulation and tests)."""
    body = f"{la_code}{year2:02d}{serial:06d}0"[:12]
    return upn_check_letter("X" + body) + body


_ORG_PATTERNS: dict[str, re.Pattern[str]] = {
    "urn": re.compile(r"urn:[1-9][0-9]{5}"),
    "la": re.compile(r"la:[0-9]{3}"),
    "trust": re.compile(r"trust:TR[0-9]{5}"),
    "ukprn": re.compile(r"ukprn:1[0-9]{7}"),
    "uprov": re.compile(r"uprov:[0-9]{3}-[1-9][0-9]{0,6}"),
    "ofsted": re.compile(r"ofsted"),
    "cqc": re.compile(r"cqc"),
    "dfe:regions": re.compile(r"dfe:regions"),
    "dfe:admin": re.compile(r"dfe:admin"),
    "research": re.compile(r"research:[a-z0-9][a-z0-9-]{0,62}"),  # an approved researcher organisation (design 8)
    "icb": re.compile(r"icb:Q[A-Z0-9]{2}"),  # an Integrated Care Board by its ODS code, e.g. icb:QE1 (design 8)
    "tribunal": re.compile(r"tribunal:send"),  # the First-tier Tribunal (SEND)
    "mediation": re.compile(r"mediation:[a-z0-9][a-z0-9-]{0,62}"),  # a SEND mediation service
}


def org_scheme(org_id: str) -> str | None:
    """The scheme of an organisation id (``urn``, ``la``, ``dfe:admin``...), or None if malformed."""
    for scheme, pattern in _ORG_PATTERNS.items():
        if pattern.fullmatch(org_id):
            return scheme
    return None


def la_code_of(org_id: str) -> str | None:
    """The 3-digit LA code of an ``la:NNN`` or ``uprov:NNN-n`` id (None for other schemes)."""
    scheme = org_scheme(org_id)
    return org_id.split(":", 1)[1][:3] if scheme in ("la", "uprov") else None


def check_org_id(org_id: object, allowed: Container[str], la_codes: Container[str]) -> str | None:
    """None when ``org_id`` is a well-formed id of an allowed scheme, else the reason."""
    if not isinstance(org_id, str):
        return "an organisation id must be a string"
    scheme = org_scheme(org_id)
    if scheme is None:
        return f"{org_id!r} is not an organisation id (urn:NNNNNN, la:NNN, trust:TRNNNNN, ukprn:1NNNNNNN, uprov:LLL-N, ...)"
    if scheme not in allowed:
        return f"{scheme} ids are not allowed here (expected {', '.join(sorted(allowed))})"  # type: ignore[call-overload]
    la = la_code_of(org_id)
    if la is not None and la not in la_codes:
        return f"{la} is not a recognised LA code"
    return None
