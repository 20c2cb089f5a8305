"""Published DfE figures shown beside the live ones: school census 2022/23, "AP placements arranged by
schools", placements by setting type (``data/dfe/spc_ap_setting.csv``, found by ``ledger.dfe``; a
missing file is an error naming its path, never an empty figure)."""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path
from typing import Any

from ledger import dfe

SETTING_TYPE_LABELS = {
    "URN": "Education setting with URN",
    "UKPRN": "Registered provider with UKPRN",
    "NFE": "Non-maintained further education college",
    "OOT": "One on one tuition",
    "OTH": "Other unregistered provider",
    "WBP": "Work based placement",
    "UNKNOWN": "Unknown",  # published as its own category (4 placements in England, all in Tower Hamlets): part of the total
}
TOTAL_LABEL = "Total"
SOURCE = "DfE, Special educational needs in England 2022/23 (school census): AP placements arranged by schools, by setting type"


@cache
def _ap_settings(path: Path) -> dict[str, dict[str, int]]:
    """LA code (``la:NNN``) or ``england`` -> setting type code (or ``Total``) -> placements, as published."""
    out: dict[str, dict[str, int]] = {}
    codes = {label: code for code, label in SETTING_TYPE_LABELS.items()} | {TOTAL_LABEL: TOTAL_LABEL}
    with path.open(encoding="utf-8-sig", newline="") as f:
        for row in csv.DictReader(f):
            where = {"National": "england", "Local authority": f"la:{row['old_la_code']}"}.get(row["geographic_level"])
            if where is None or not row["placements"].isdigit():
                continue  # regional rows; suppressed cells
            if row["setting_type"] not in codes:
                raise ValueError(f"{path}: unknown setting type {row['setting_type']!r} (known: {', '.join(codes)})")
            out.setdefault(where, {})[codes[row["setting_type"]]] = int(row["placements"])
    return out


def ap_placements_by_setting_type(scope: str) -> dict[str, Any] | None:
    """Published placements by setting type for an LA (``la:NNN``) or England, or None where none is
    published. The total is the published one, which counts every category, "Unknown" included."""
    counts = dict(_ap_settings(dfe.data_file(dfe.AP_PLACEMENTS_BY_SETTING)).get(scope) or {})
    if not counts:
        return None
    by_type = {code: n for code, n in sorted(counts.items()) if code != TOTAL_LABEL}
    return {"period": "2022/23", "source": SOURCE, "by_setting_type": by_type, "total": counts.get(TOTAL_LABEL, sum(by_type.values()))}
