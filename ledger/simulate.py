"""A simulated local area as signed envelopes, calibrated on published DfE figures.

Used by ``pupil-ledger demo``, ``pupil-ledger simulate`` and, later, the benchmarks. Rates come from
``../shared/domain.md`` (national figures); the mix of AP placement reasons and setting types comes
from the LA's row in the school census "AP placements arranged by schools" file when it is present.
"""

from __future__ import annotations

import csv
import hashlib
import os
import random
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import admin, envelope
from .codes import code_list, la_codes
from .identifiers import make_upn
from .schooltime import academic_year
from .secrets import private_key_pem
from .service import ADMIN_ORG, Ledger

# National rates per pupil per year (domain.md section 9): 955,000 suspensions and 10,900 permanent
# exclusions for about 9.1m pupils; EHE 1.4%; CME 0.5%; EHCP 5.3%, SEN support 14.2%.
SUSPENSION_RATE = 955_000 / 9_092_073 * 1.6  # secondary pupils are suspended more than the average
PERMANENT_EXCLUSION_RATE = 10_900 / 9_092_073 * 2
EHE_RATE, CME_RATE, EHCP_RATE, SEN_SUPPORT_RATE = 0.014, 0.005, 0.053, 0.142
AP_PLACEMENT_RATE = 24_577 / 3_669_933 * 3  # school-arranged AP (2022/23) over secondary pupils, per year
TRANSFER_RATE, MANAGED_MOVE_RATE, PART_TIME_RATE, LOOKED_AFTER_RATE = 0.04, 0.008, 0.012, 0.01

SETTING_TYPES = {
    "Education setting with URN": "URN", "Registered provider with UKPRN": "UKPRN",
    "Non-maintained further education college": "NFE", "One on one tuition": "OOT",
    "Other unregistered provider": "OTH", "Work based placement": "WBP",
}
REASONS = {
    "Medical condition (mental health need)": "MENTAL_HEALTH", "Medical condition (physical health need)": "PHYSICAL_HEALTH",
    "Off-site placement for behavioural support": "BEHAVIOUR", "Permanent exclusion (where still going through the review process)": "PERMANENT_EXCLUSION",
    "Suspension": "SUSPENSION", "Other": "OTHER",
}
# England 2022/23 (shared/data/dfe README) when the file is not available
ENGLAND_MIX = {("BEHAVIOUR", "URN"): 9000, ("BEHAVIOUR", "OTH"): 3500, ("MENTAL_HEALTH", "URN"): 2500,
               ("MENTAL_HEALTH", "OTH"): 1500, ("OTHER", "OTH"): 1400, ("OTHER", "UKPRN"): 1200,
               ("PHYSICAL_HEALTH", "URN"): 600, ("SUSPENSION", "URN"): 500, ("PERMANENT_EXCLUSION", "URN"): 400}


def shared_dir() -> Path:
    return Path(os.environ.get("PUPIL_LEDGER_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def placement_mix(la_code: str) -> dict[tuple[str, str], int]:
    """(reason, setting type) -> pupils, from the LA's published 2022/23 school-arranged AP figures."""
    path = shared_dir() / "data" / "dfe" / "spc_school_ap_placement.csv"
    if not path.exists():
        return dict(ENGLAND_MIX)
    mix: Counter[tuple[str, str]] = Counter()
    with path.open(encoding="utf-8-sig") as f:
        for row in csv.DictReader(f):
            if row["old_la_code"] == la_code and row["characteristic_grouping"] == "Placement Reason" and row["pupils"].isdigit():
                reason, setting = REASONS.get(row["pupil_characteristic"]), SETTING_TYPES.get(row["setting_type"])
                if reason and setting:
                    mix[(reason, setting)] += int(row["pupils"])
    return dict(mix) or dict(ENGLAND_MIX)


@dataclass
class Org:
    org_id: str
    kind: str
    name: str
    la: str | None
    key: Ed25519PrivateKey
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class Area:
    la: str
    orgs: dict[str, Org]
    events: list[tuple[str, dict[str, Any]]]  # (signing org, body)
    schools: list[str]
    example_upn: str

    def signed_events(self) -> Iterator[dict[str, Any]]:
        for org_id, body in self.events:
            yield envelope.sign(body, self.orgs[org_id].key)

    def orgs_json(self) -> list[dict[str, Any]]:
        return [{"org": o.org_id, "kind": o.kind, "name": o.name, "la": o.la, **o.extra,
                 "key_id": envelope.key_id(o.key.public_key()), "private_key_pem": private_key_pem(o.key).decode("ascii")}
                for o in self.orgs.values()]


def _key(seed: int, org_id: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(f"{seed}:{org_id}".encode()).digest())


def _weekday(day: date) -> date:
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


class _Timeline:
    """Builds one pupil's events in order, keeping them consistent with the ledger's rules."""

    def __init__(self, rng: random.Random, upn: str, today: date):
        self.rng, self.upn, self.today = rng, upn, today
        self.events: list[tuple[date, str, dict[str, Any]]] = []

    def add(self, day: date, submitter: str, event_type: str, data: dict[str, Any]) -> str:
        body = admin.event_body(event_type, submitter, {"upn": self.upn}, data, day,
                                datetime.combine(min(day + timedelta(days=1), self.today), time(10, 0), tzinfo=UTC),
                                event_id=str(_uuid(self.rng)))
        self.events.append((day, submitter, body))
        return str(body["event_id"])


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def simulate_area(pupils: int, seed: int = 1, la_code: str = "801", today: date | None = None) -> Area:
    if la_code not in la_codes():
        raise ValueError(f"{la_code} is not an LA code")
    rng = random.Random(seed)
    today = today or date.today()
    start = _weekday(date(today.year - 1 if today.month >= 9 else today.year - 2, 9, 3))
    la = f"la:{la_code}"
    base_urn = 100000 + rng.randrange(800000)
    schools = [f"urn:{base_urn + i}" for i in range(4)]
    special, pru = f"urn:{base_urn + 10}", f"urn:{base_urn + 11}"
    ukprn, uprov, trust = f"ukprn:1{rng.randrange(10**7):07d}", f"uprov:{la_code}-1", f"trust:TR{rng.randrange(10**5):05d}"
    orgs: dict[str, Org] = {}

    def org(org_id: str, kind: str, name: str, org_la: str | None = la, **extra: str) -> None:
        orgs[org_id] = Org(org_id, kind, name, org_la, _key(seed, org_id), dict(extra))

    org(la, "la", f"Local authority {la_code}", None)
    org(trust, "trust", "Simulated Learning Trust", None)
    for i, urn in enumerate(schools):
        org(urn, "school", f"Simulated Secondary {i + 1}", gias_type="34" if i < 2 else "01", phase="SS", **({"trust": trust} if i < 2 else {}))
    org(special, "school", "Simulated Special School", gias_type="07", phase="SP")
    org(pru, "ap_setting", "Simulated Pupil Referral Unit", gias_type="14", phase="PR")
    org(ukprn, "ap_setting", "Simulated Registered AP Provider")
    org("ofsted", "inspectorate", "Ofsted", None)
    org("dfe:regions", "regions", "DfE Regions Group", None)

    mix = placement_mix(la_code)
    mix_keys, mix_weights = list(mix), list(mix.values())
    events: list[tuple[date, int, str, dict[str, Any]]] = []
    provider_day = start
    events.append((provider_day, -1, la, admin.event_body("provider.unregistered_recorded", la, {"org": uprov},
                   {"name": "Simulated Outdoor Learning CIC", "postcode": "BS1 4DJ", "services": ["outdoor education", "mentoring"]},
                   provider_day, datetime.combine(provider_day, time(9), tzinfo=UTC), event_id=str(_uuid(rng)))))
    example = ""
    horizon = (today - start).days
    for n in range(pupils):
        upn = make_upn(la_code, 10 + rng.randrange(10), n + 1)
        t = _Timeline(rng, upn, today)
        r = rng.random()
        sen = "E" if r < EHCP_RATE else "K" if r < EHCP_RATE + SEN_SUPPORT_RATE else "N"
        school = special if sen == "E" and rng.random() < 0.4 else rng.choice(schools)
        year_group = str(rng.randrange(7, 12))
        t.add(start, school, "pupil.registered", {"school": school, "enrolment_status": "C", "year_group": year_group,
                                                  "sen_status": sen, "looked_after": rng.random() < LOOKED_AFTER_RATE})

        def day_after(day: date, lo: int, hi: int) -> date | None:
            d = _weekday(day + timedelta(days=rng.randrange(lo, hi)))
            return d if d < today else None

        cursor = start
        if rng.random() < SUSPENSION_RATE:
            for _ in range(rng.choice((1, 1, 2, 3))):
                d = day_after(cursor, 5, max(6, horizon // 2))
                if d is None:
                    break
                reasons = sorted(code_list("exclusion_reasons").codes_for(academic_year(d)))
                t.add(d, school, "pupil.excluded", {"school": school, "kind": "SUSP", "sessions": rng.choice((2, 2, 4, 6, 10)),
                                                    "reasons": rng.sample(reasons, rng.choice((1, 1, 2)))})
                cursor = d
        if rng.random() < AP_PLACEMENT_RATE and (d := day_after(cursor, 3, max(4, horizon // 2))):
            reason, setting_type = rng.choices(mix_keys, mix_weights)[0]
            setting = {"URN": pru, "UKPRN": ukprn}.get(setting_type, uprov)
            tier = rng.choice((2, 2, 3))
            planned_end = d + timedelta(weeks=rng.choice((6, 8, 12)))
            placement = t.add(d, school, "pupil.ap_placement_started", {
                "commissioner": school, "setting": setting, "setting_type": setting_type, "tier": tier, "reason": reason,
                "hours_per_week": rng.choice((10, 15, 20, 25)), "dual_registered": False,
                **({"planned_end": planned_end.isoformat()} if tier == 2 else {})})
            end = day_after(d, 30, 120)
            if end:
                t.add(end, school, "pupil.attendance_summary_recorded", {"setting": setting, "academic_year": academic_year(end), "term": "autumn",
                                                                         "possible_sessions": 60, "attended_sessions": rng.randrange(20, 61)})
                t.add(end, school, "pupil.ap_placement_ended", {"placement_event_id": placement, "outcome": rng.choice(("mainstream", "mainstream", "special", "other_ap"))})
                cursor = end
            example = example or upn
        if rng.random() < PART_TIME_RATE and (d := day_after(cursor, 3, 60)):
            timetable = t.add(d, school, "pupil.part_time_timetable_started", {"school": school, "hours_per_week": rng.choice((10, 15, 20))})
            if end := day_after(d, 10, 50):
                t.add(end, school, "pupil.part_time_timetable_ended", {"timetable_event_id": timetable})
                cursor = end
        if rng.random() < MANAGED_MOVE_RATE and (d := day_after(cursor, 3, 60)):
            host = rng.choice([s for s in schools if s != school])
            move = t.add(d, school, "pupil.managed_move_started", {"school": school, "host_school": host})
            if end := day_after(d, 20, 60):
                t.add(end, school, "pupil.managed_move_ended", {"managed_move_event_id": move, "outcome": rng.choice(("made_permanent", "returned"))})
                cursor = end
        leave = rng.random()
        d = day_after(cursor, 5, max(6, horizon))
        if d is not None:
            if leave < PERMANENT_EXCLUSION_RATE:
                t.add(d, school, "pupil.excluded", {"school": school, "kind": "PERM", "reasons": ["PA"]})
                t.add(d, school, "pupil.deregistered", {"school": school, "ground": "permanently_excluded", "destination": "school", "destination_school": pru})
                t.add(d, pru, "pupil.registered", {"school": pru, "enrolment_status": "C", "year_group": year_group, "sen_status": sen, "looked_after": False})
            elif leave < PERMANENT_EXCLUSION_RATE + TRANSFER_RATE:
                other = rng.choice([s for s in schools if s != school])
                t.add(d, school, "pupil.deregistered", {"school": school, "ground": "registered_elsewhere", "destination": "school", "destination_school": other})
                t.add(d, other, "pupil.registered", {"school": other, "enrolment_status": "C", "year_group": year_group, "sen_status": sen, "looked_after": False})
            elif leave < PERMANENT_EXCLUSION_RATE + TRANSFER_RATE + EHE_RATE:
                t.add(d, school, "pupil.deregistered", {"school": school, "ground": "ehe_written_notice", "destination": "ehe"})
                t.add(d, la, "pupil.home_education_notified", {"la": la, "previous_school": school})
            elif leave < PERMANENT_EXCLUSION_RATE + TRANSFER_RATE + EHE_RATE + CME_RATE:
                t.add(d, school, "pupil.deregistered", {"school": school, "ground": "continuous_absence_20_days", "destination": "unknown"})
                t.add(d, la, "pupil.missing_education_recorded", {"la": la})
        for seq, (day, submitter, body) in enumerate(t.events):
            events.append((day, n * 100 + seq, submitter, body))
    events.sort(key=lambda e: (e[0], e[1]))
    return Area(la, orgs, [(submitter, body) for _, _, submitter, body in events], schools, example or make_upn(la_code, 10, 1))


def load_area(ledger: Ledger, area: Area, batch_size: int = 500, on_progress: Callable[[int], None] = lambda n: None) -> None:
    """Register the area's organisations and keys (as dfe:admin), then submit its events in batches."""
    setup = []
    for o in area.orgs.values():
        data: dict[str, Any] = {"kind": o.kind, "name": o.name, **o.extra}
        if o.la:
            data["la"] = o.la
        setup.append(admin.admin_event(ledger, "org.registered", o.org_id, data))
        setup.append(admin.admin_event(ledger, "org.key_added", o.org_id, admin.key_data(o.key.public_key())))
    ledger.submit_batch(setup)
    assert all(submitter != ADMIN_ORG for submitter, _ in area.events)
    signed = list(area.signed_events())
    for i in range(0, len(signed), batch_size):
        ledger.submit_batch(signed[i:i + batch_size])
        on_progress(len(signed[i:i + batch_size]))
