"""The published DfE figures the views show, checked against the CSV in data/dfe/ read here on its own."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import pytest

from ledger import dfe
from projections.published import ap_placements_by_setting_type

CSV = Path(__file__).resolve().parents[1] / "data" / "dfe" / "spc_ap_setting.csv"


def published_rows() -> dict[str, dict[str, int]]:
    """Scope -> setting type label -> placements, straight from the file (LA and England rows)."""
    out: dict[str, dict[str, int]] = defaultdict(dict)
    with CSV.open(encoding="utf-8-sig", newline="") as f:
        for row in csv.DictReader(f):
            if row["geographic_level"] == "National":
                out["england"][row["setting_type"]] = int(row["placements"])
            elif row["geographic_level"] == "Local authority":
                out[f"la:{row['old_la_code']}"][row["setting_type"]] = int(row["placements"])
    return out


def test_england_counts_every_published_category_unknown_included() -> None:
    england = ap_placements_by_setting_type("england")
    assert england is not None
    assert england["total"] == 41_319  # the published England total (it was 41,315: the 4 "Unknown" were dropped)
    assert england["by_setting_type"] == {"NFE": 707, "OOT": 3_541, "OTH": 2_557, "UKPRN": 1_245, "UNKNOWN": 4, "URN": 33_008, "WBP": 257}
    assert sum(england["by_setting_type"].values()) == england["total"]
    tower_hamlets = ap_placements_by_setting_type("la:211")
    assert tower_hamlets is not None and (tower_hamlets["by_setting_type"], tower_hamlets["total"]) == ({"UNKNOWN": 4, "URN": 108}, 112)


def test_every_scope_matches_the_file() -> None:
    rows = published_rows()
    assert len(rows) == 152  # 151 LAs and England
    for scope, by_label in rows.items():
        got = ap_placements_by_setting_type(scope)
        assert got is not None, scope
        assert got["total"] == by_label["Total"], scope
        assert sum(got["by_setting_type"].values()) == by_label["Total"], scope
        assert len(got["by_setting_type"]) == len(by_label) - 1, scope  # every category but the total
        assert got["period"] == "2022/23"


def test_a_scope_without_published_figures_has_none() -> None:
    assert ap_placements_by_setting_type("la:942") is None  # Cumberland: created in 2023, after the 2022/23 census
    assert ap_placements_by_setting_type("la:999") is None


def test_a_missing_file_is_an_error_naming_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(dfe.ENVIRONMENT, str(tmp_path))
    with pytest.raises(dfe.MissingPublishedData, match=str(tmp_path / "spc_ap_setting.csv")):
        ap_placements_by_setting_type("england")
    with pytest.raises(dfe.MissingPublishedData, match="spc_school_ap_placement.csv"):
        dfe.check()


def test_the_environment_names_another_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A newer release in another folder is read instead of the repository's copy."""
    with CSV.open(encoding="utf-8-sig", newline="") as f:
        rows = [row for row in csv.DictReader(f) if row["geographic_level"] == "National"]
    for row in rows:
        row["placements"] = str(int(row["placements"]) * 2)
    with (tmp_path / "spc_ap_setting.csv").open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    monkeypatch.setenv(dfe.ENVIRONMENT, str(tmp_path))
    england = ap_placements_by_setting_type("england")
    assert england is not None and england["total"] == 2 * 41_319
    assert ap_placements_by_setting_type("la:211") is None
