"""What the simulated local areas are calibrated on: published DfE figures.

National rates per pupil per year (the constants below, each with its source); the mix of AP placement reasons and
setting types from the LA's rows of the school census "AP placements arranged by schools" file
(:func:`placement_mix`); England's schools per pupil; and each LA's relative size from SEN2 (:func:`la_weights`),
which splits a national population over the LAs (:func:`national_plan`). The files are in ``data/dfe/``
(``ledger.dfe``); without them the simulation stops with an error naming the missing path. The generator that
uses these figures is ``ledger.tools.simulate``.
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from functools import cache
from pathlib import Path

from ledger import dfe
from ledger.core.codes import la_codes

# National rates per pupil per year, from DfE statistics: 955,000 suspensions and 10,900 permanent exclusions
# in 2023/24 ("Suspensions and permanent exclusions in England") for 9,092,073 pupils in January 2024
# ("Schools, pupils and their characteristics"); elective home education 1.4% and children missing education
# 0.5% on census day, autumn 2024; EHC plans 5.3% and SEN support 14.2% in January 2025 ("Special
# educational needs in England"); school-arranged AP 24,577 pupils in 2022/23 (data/dfe/README.md).
SUSPENSION_RATE = 955_000 / 9_092_073 * 1.6  # secondary pupils are suspended more than the average
PERMANENT_EXCLUSION_RATE = 10_900 / 9_092_073 * 2
EHE_RATE, CME_RATE, EHCP_RATE, SEN_SUPPORT_RATE = 0.014, 0.005, 0.053, 0.142
AP_PLACEMENT_RATE = 24_577 / 3_669_933 * 3  # school-arranged AP (2022/23) over secondary pupils, per year
TRANSFER_RATE, MANAGED_MOVE_RATE, PART_TIME_RATE, LOOKED_AFTER_RATE = 0.04, 0.008, 0.012, 0.01

SETTING_TYPES = {
    "Education setting with URN": "URN",
    "Registered provider with UKPRN": "UKPRN",
    "Non-maintained further education college": "NFE",
    "One on one tuition": "OOT",
    "Other unregistered provider": "OTH",
    "Work based placement": "WBP",
}
REASONS = {
    "Medical condition (mental health need)": "MENTAL_HEALTH",
    "Medical condition (physical health need)": "PHYSICAL_HEALTH",
    "Off-site placement for behavioural support": "BEHAVIOUR",
    "Permanent exclusion (where still going through the review process)": "PERMANENT_EXCLUSION",
    "Suspension": "SUSPENSION",
    "Other": "OTHER",
}
ENGLAND = "england"


def placement_mix(la_code: str) -> dict[tuple[str, str], int]:
    """(reason, setting type) -> pupils, from the LA's published 2022/23 school-arranged AP figures; an LA
    code without published rows (abolished before 2022/23, created since, or too small to publish) takes
    England's published mix from the same file."""
    mixes = _placement_mixes(dfe.data_file(dfe.AP_PLACEMENTS_BY_REASON))
    return dict(mixes.get(la_code) or mixes[ENGLAND])


@cache
def _placement_mixes(path: Path) -> dict[str, Counter[tuple[str, str]]]:
    """Every LA's mix and England's, from one read of the published file (a national simulation asks for ~150 LAs)."""
    mixes: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
    with path.open(encoding="utf-8-sig") as f:
        for row in csv.DictReader(f):
            where = {"National": ENGLAND, "Local authority": row["old_la_code"]}.get(row["geographic_level"])
            if where and row["characteristic_grouping"] == "Placement Reason" and row["pupils"].isdigit():
                reason, setting = REASONS.get(row["pupil_characteristic"]), SETTING_TYPES.get(row["setting_type"])
                if reason and setting:
                    mixes[where][(reason, setting)] += int(row["pupils"])
    if not mixes[ENGLAND]:
        raise ValueError(f"{path} has no England rows of AP placements by reason and setting type")
    return dict(mixes)


PUPILS_PER_SCHOOL = 9_092_073 / 24_453  # pupils / schools, England, January 2024 ("Schools, pupils and their characteristics")
PRIMARY_SHARE = 4_614_990 / (4_614_990 + 3_669_933)  # of state primary + secondary pupils
SPECIAL_PER_SCHOOL = 1_022 / 24_453
PRIMARY_SECONDARY_SCHOOL_SIZE = 280 / 1_060  # average primary school roll over average secondary roll
PRIMARY_SUSPENSION_FACTOR = 0.15  # primary pupils are suspended far less than secondary ones


def la_weights() -> dict[str, float]:
    """Relative size of each LA: its new EHC plans in the latest SEN2 year (a published per-LA count that
    tracks the pupil population)."""
    path = dfe.data_file(dfe.SEN2)
    known = la_codes()
    weights: dict[str, float] = {}
    with path.open(encoding="utf-8-sig") as f:
        rows = [r for r in csv.DictReader(f) if r["geographic_level"] == "Local authority"]
    latest = max((r["time_period"] for r in rows), default="")
    for r in rows:
        code, value = r["old_la_code"], r["new_all_ehc"]
        if r["time_period"] == latest and code in known and value.replace(".", "", 1).isdigit() and float(value) > 0:
            weights[code] = float(value)
    if not weights:
        raise ValueError(f"{path} has no local authority with new EHC plans in its latest year")
    return weights


def national_plan(pupils: int) -> list[tuple[str, int]]:
    """(LA code, pupils) for a national population of ``pupils``, split like England's LAs (largest remainder)."""
    weights = la_weights()
    total = sum(weights.values())
    shares = {code: pupils * w / total for code, w in weights.items()}
    plan = {code: int(share) for code, share in shares.items()}
    for code in sorted(shares, key=lambda c: shares[c] - plan[c], reverse=True)[: pupils - sum(plan.values())]:
        plan[code] += 1
    return [(code, n) for code, n in sorted(plan.items()) if n > 0]
