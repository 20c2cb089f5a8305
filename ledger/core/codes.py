"""Versioned code lists loaded from ``schemas/codes/*.json`` (data, not code)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ledger.core.schooltime import academic_year_start

SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"


@dataclass(frozen=True)
class CodeListVersion:
    first_year: int  # academic year start, e.g. 2024 for 2024/25
    last_year: int | None
    codes: dict[str, str]


@dataclass(frozen=True)
class CodeList:
    name: str
    title: str
    versions: tuple[CodeListVersion, ...]

    def codes_for(self, year_label: str) -> dict[str, str]:
        year = academic_year_start(year_label)
        for version in self.versions:
            if version.first_year <= year and (version.last_year is None or year <= version.last_year):
                return version.codes
        return {}

    def all_codes(self) -> set[str]:
        return {code for version in self.versions for code in version.codes}


@cache
def code_list(name: str) -> CodeList:
    raw = json.loads((SCHEMAS_DIR / "codes" / f"{name}.json").read_text("utf-8"))
    versions = tuple(
        CodeListVersion(
            academic_year_start(v["from"]),
            academic_year_start(v["to"]) if v.get("to") else None,
            dict(v["codes"]),
        )
        for v in raw["versions"]
    )
    return CodeList(raw["name"], raw["title"], versions)


@cache
def la_codes() -> frozenset[str]:
    return frozenset(code_list("la_codes").all_codes())
