"""Published DfE figures shown beside the live ones (school census 2022/23, "AP placements arranged
by schools", from the directory named by PUPIL_LEDGER_DFE_DATA; absent -> no published figures)."""

from __future__ import annotations

import csv
import os
from functools import cache
from pathlib import Path
from typing import Any

SETTING_TYPE_LABELS = {
    "URN": "Education setting with URN", "UKPRN": "Registered provider with UKPRN",
    "NFE": "Non-maintained further education college", "OOT": "One on one tuition",
    "OTH": "Other unregistered provider", "WBP": "Work based placement",
}
SOURCE = "DfE, Special educational needs in England 2022/23 (school census): AP placements arranged by schools, by setting type"


def data_dir() -> Path:
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "dfe"
    return Path(os.environ.get("PUPIL_LEDGER_DFE_DATA", str(default)))


@cache
def _ap_settings(path: Path) -> dict[str, dict[str, int]]:
    """LA code (or 'england') -> setting type code -> placements."""
    out: dict[str, dict[str, int]] = {}
    if not path.exists():
        return out
    codes = {label: code for code, label in SETTING_TYPE_LABELS.items()}
    with path.open(encoding="utf-8-sig", newline="") as f:
        for row in csv.DictReader(f):
            code = codes.get(row["setting_type"])
            if code is None or not row["placements"].isdigit():
                continue
            where = "england" if row["geographic_level"] == "National" else f"la:{row['old_la_code']}"
            out.setdefault(where, {})[code] = out.get(where, {}).get(code, 0) + int(row["placements"])
    if "england" not in out:  # the file holds LA rows only: England is their sum
        total: dict[str, int] = {}
        for counts in list(out.values()):
            for code, n in counts.items():
                total[code] = total.get(code, 0) + n
        out["england"] = total
    return out


def ap_placements_by_setting_type(scope: str) -> dict[str, Any] | None:
    """Published placements by setting type for an LA (``la:NNN``) or England, or None."""
    counts = _ap_settings(data_dir() / "spc_ap_setting.csv").get(scope)
    if counts is None:
        return None
    return {"period": "2022/23", "source": SOURCE, "by_setting_type": dict(sorted(counts.items())), "total": sum(counts.values())}
