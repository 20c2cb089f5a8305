"""A simulated local area as signed envelopes: its organisations and each pupil's timeline.

Used by ``pupil-ledger demo``, ``pupil-ledger simulate`` and the benchmarks. The rates and mixes it draws from
are published DfE figures, in ``ledger.tools.simulate_calibration``; getting an area into a ledger or into files
is ``ledger.tools.simulate_load``; EHCP journeys and funding are added by ``simulate_ehcp`` and ``simulate_funding``.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import own_events
from ledger.core import envelope
from ledger.core.codes import code_list, la_codes
from ledger.core.identifiers import make_upn
from ledger.core.schooltime import academic_year
from ledger.storage.secrets import private_key_pem
from ledger.tools.simulate_calibration import (
    AP_PLACEMENT_RATE,
    CME_RATE,
    EHCP_RATE,
    EHE_RATE,
    LOOKED_AFTER_RATE,
    MANAGED_MOVE_RATE,
    PART_TIME_RATE,
    PERMANENT_EXCLUSION_RATE,
    PRIMARY_SECONDARY_SCHOOL_SIZE,
    PRIMARY_SHARE,
    PRIMARY_SUSPENSION_FACTOR,
    PUPILS_PER_SCHOOL,
    SEN_SUPPORT_RATE,
    SPECIAL_PER_SCHOOL,
    SUSPENSION_RATE,
    TRANSFER_RATE,
    national_plan,
    placement_mix,
)


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
        return [
            {
                "org": o.org_id,
                "kind": o.kind,
                "name": o.name,
                "la": o.la,
                **o.extra,
                "key_id": envelope.key_id(o.key.public_key()),
                "private_key_pem": private_key_pem(o.key).decode("ascii"),
            }
            for o in self.orgs.values()
        ]


def _key(seed: int, org_id: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(f"{seed}:{org_id}".encode()).digest())


def utc_today() -> date:
    """The ledger's date (its clock is UTC), the last day a simulated population reaches by default."""
    return datetime.now(UTC).date()


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
        """An event of ``day`` (before today), reported at 10:00 the day after, or at midnight UTC starting today for
        yesterday's: 10:00 today would be in the future for a ledger loading it in the small hours."""
        reported = min(
            datetime.combine(day + timedelta(days=1), time(10, 0), tzinfo=UTC), datetime.combine(self.today, time(0), tzinfo=UTC)
        )
        body = own_events.event_body(event_type, submitter, {"upn": self.upn}, data, day, reported, event_id=str(_uuid(self.rng)))
        self.events.append((day, submitter, body))
        return str(body["event_id"])


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


@dataclass(frozen=True)
class Shape:
    """How one simulated local area is laid out: its schools, and the ids that must be unique nationally."""

    secondary_schools: int = 4
    primary_schools: int = 0
    special_schools: int = 1
    index: int | None = None  # position in a national plan: deterministic, collision-free URNs and ids

    def base_urn(self, rng: random.Random) -> int:
        return 100000 + (self.index * URNS_PER_LA if self.index is not None else rng.randrange(800000))


URNS_PER_LA = 5000


def simulate_area(pupils: int, seed: int = 1, la_code: str = "801", today: date | None = None, shape: Shape | None = None) -> Area:
    """One local area's organisations and ``pupils`` pupils' timelines, consistent with the ledger's rules."""
    if la_code not in la_codes():
        raise ValueError(f"{la_code} is not an LA code")
    shape = shape or Shape()
    rng = random.Random(f"{seed}:{la_code}" if shape.index is not None else seed)
    today = today or utc_today()
    start = _weekday(date(today.year - 1 if today.month >= 9 else today.year - 2, 9, 3))
    la = f"la:{la_code}"
    base_urn = shape.base_urn(rng)
    secondary = [f"urn:{base_urn + i}" for i in range(shape.secondary_schools)]
    primary = [f"urn:{base_urn + shape.secondary_schools + i}" for i in range(shape.primary_schools)]
    specials = [f"urn:{base_urn + shape.secondary_schools + shape.primary_schools + 10 + i}" for i in range(shape.special_schools)]
    pru = f"urn:{base_urn + shape.secondary_schools + shape.primary_schools + shape.special_schools + 11}"
    if shape.index is None:
        ukprn, trust = f"ukprn:1{rng.randrange(10**7):07d}", f"trust:TR{rng.randrange(10**5):05d}"
    else:
        ukprn, trust = f"ukprn:1{shape.index:07d}", f"trust:TR{10000 + shape.index:05d}"
    uprov = f"uprov:{la_code}-1"
    orgs: dict[str, Org] = {}

    def org(org_id: str, kind: str, name: str, org_la: str | None = la, **extra: str) -> None:
        orgs[org_id] = Org(org_id, kind, name, org_la, _key(seed, org_id), dict(extra))

    org(la, "la", f"Local authority {la_code}", None)
    org(trust, "trust", "Simulated Learning Trust", None)
    for i, urn in enumerate(secondary):
        org(
            urn,
            "school",
            f"Simulated Secondary {i + 1}",
            gias_type="34" if i % 2 == 0 else "01",
            phase="SS",
            **({"trust": trust} if i % 2 == 0 else {}),
        )
    for i, urn in enumerate(primary):
        org(
            urn,
            "school",
            f"Simulated Primary {i + 1}",
            gias_type="34" if i % 3 == 0 else "02",
            phase="PS",
            **({"trust": trust} if i % 3 == 0 else {}),
        )
    for i, urn in enumerate(specials):
        org(urn, "school", f"Simulated Special School {i + 1}", gias_type="07", phase="SP")
    org(pru, "ap_setting", "Simulated Pupil Referral Unit", gias_type="14", phase="PR")
    org(ukprn, "ap_setting", "Simulated Registered AP Provider")
    org("ofsted", "inspectorate", "Ofsted", None)
    org("dfe:regions", "regions", "DfE Regions Group", None)

    mix = placement_mix(la_code)
    mix_keys, mix_weights = list(mix), list(mix.values())
    events: list[tuple[date, int, str, dict[str, Any]]] = []
    provider_day = start
    events.append(
        (
            provider_day,
            -1,
            la,
            own_events.event_body(
                "provider.unregistered_recorded",
                la,
                {"org": uprov},
                {"name": "Simulated Outdoor Learning CIC", "postcode": "BS1 4DJ", "services": ["outdoor education", "mentoring"]},
                provider_day,
                datetime.combine(provider_day, time(9), tzinfo=UTC),
                event_id=str(_uuid(rng)),
            ),
        )
    )
    example = ""
    horizon = (today - start).days
    primary_share = PRIMARY_SHARE if primary else 0.0
    for n in range(pupils):
        upn = make_upn(la_code, 10 + rng.randrange(10), n + 1)
        t = _Timeline(rng, upn, today)
        r = rng.random()
        sen = "E" if r < EHCP_RATE else "K" if r < EHCP_RATE + SEN_SUPPORT_RATE else "N"
        in_primary = rng.random() < primary_share
        schools = primary if in_primary else secondary
        school = rng.choice(specials) if sen == "E" and specials and rng.random() < 0.4 else rng.choice(schools)
        year_group = str(rng.randrange(1, 7) if in_primary else rng.randrange(7, 12))
        rate_factor = PRIMARY_SUSPENSION_FACTOR if in_primary else 1.0
        t.add(
            start,
            school,
            "pupil.registered",
            {
                "school": school,
                "enrolment_status": "C",
                "year_group": year_group,
                "sen_status": sen,
                "looked_after": rng.random() < LOOKED_AFTER_RATE,
            },
        )

        def day_after(day: date, lo: int, hi: int) -> date | None:
            d = _weekday(day + timedelta(days=rng.randrange(lo, hi)))
            return d if d < today else None

        cursor = start
        if rng.random() < SUSPENSION_RATE * rate_factor:
            for _ in range(rng.choice((1, 1, 2, 3))):
                d = day_after(cursor, 5, max(6, horizon // 2))
                if d is None:
                    break
                reasons = sorted(code_list("exclusion_reasons").codes_for(academic_year(d)))
                t.add(
                    d,
                    school,
                    "pupil.excluded",
                    {
                        "school": school,
                        "kind": "SUSP",
                        "sessions": rng.choice((2, 2, 4, 6, 10)),
                        "reasons": rng.sample(reasons, rng.choice((1, 1, 2))),
                    },
                )
                cursor = d
        if rng.random() < AP_PLACEMENT_RATE * rate_factor and (d := day_after(cursor, 3, max(4, horizon // 2))):
            reason, setting_type = rng.choices(mix_keys, mix_weights)[0]
            setting = {"URN": pru, "UKPRN": ukprn}.get(setting_type, uprov)
            tier = rng.choice((2, 2, 3))
            planned_end = d + timedelta(weeks=rng.choice((6, 8, 12)))
            placement = t.add(
                d,
                school,
                "pupil.ap_placement_started",
                {
                    "commissioner": school,
                    "setting": setting,
                    "setting_type": setting_type,
                    "tier": tier,
                    "reason": reason,
                    "hours_per_week": rng.choice((10, 15, 20, 25)),
                    "dual_registered": False,
                    **({"planned_end": planned_end.isoformat()} if tier == 2 else {}),
                },
            )
            cursor = d  # whatever follows (a move, a removal) comes after the start, ended or not
            end = day_after(d, 30, 120)
            if end:
                t.add(
                    end,
                    school,
                    "pupil.attendance_summary_recorded",
                    {
                        "setting": setting,
                        "academic_year": academic_year(end),
                        "term": "autumn",
                        "possible_sessions": 60,
                        "attended_sessions": rng.randrange(20, 61),
                    },
                )
                t.add(
                    end,
                    school,
                    "pupil.ap_placement_ended",
                    {"placement_event_id": placement, "outcome": rng.choice(("mainstream", "mainstream", "special", "other_ap"))},
                )
                cursor = end
            example = example or upn
        if rng.random() < PART_TIME_RATE and (d := day_after(cursor, 3, 60)):
            timetable = t.add(
                d, school, "pupil.part_time_timetable_started", {"school": school, "hours_per_week": rng.choice((10, 15, 20))}
            )
            cursor = d
            if end := day_after(d, 10, 50):
                t.add(end, school, "pupil.part_time_timetable_ended", {"timetable_event_id": timetable})
                cursor = end
        peers = [s for s in schools if s != school]
        if peers and rng.random() < MANAGED_MOVE_RATE and (d := day_after(cursor, 3, 60)):
            host = rng.choice(peers)
            move = t.add(d, school, "pupil.managed_move_started", {"school": school, "host_school": host})
            cursor = d
            if end := day_after(d, 20, 60):
                t.add(
                    end,
                    school,
                    "pupil.managed_move_ended",
                    {"managed_move_event_id": move, "outcome": rng.choice(("made_permanent", "returned"))},
                )
                cursor = end
        leave = rng.random()
        d = day_after(cursor, 5, max(6, horizon))
        if d is not None:
            if leave < PERMANENT_EXCLUSION_RATE * rate_factor:
                t.add(d, school, "pupil.excluded", {"school": school, "kind": "PERM", "reasons": ["PA"]})
                t.add(
                    d,
                    school,
                    "pupil.deregistered",
                    {"school": school, "ground": "permanently_excluded", "destination": "school", "destination_school": pru},
                )
                t.add(
                    d,
                    pru,
                    "pupil.registered",
                    {"school": pru, "enrolment_status": "C", "year_group": year_group, "sen_status": sen, "looked_after": False},
                )
            elif peers and PERMANENT_EXCLUSION_RATE <= leave < PERMANENT_EXCLUSION_RATE + TRANSFER_RATE:
                other = rng.choice(peers)
                t.add(
                    d,
                    school,
                    "pupil.deregistered",
                    {"school": school, "ground": "registered_elsewhere", "destination": "school", "destination_school": other},
                )
                t.add(
                    d,
                    other,
                    "pupil.registered",
                    {"school": other, "enrolment_status": "C", "year_group": year_group, "sen_status": sen, "looked_after": False},
                )
            elif PERMANENT_EXCLUSION_RATE + TRANSFER_RATE <= leave < PERMANENT_EXCLUSION_RATE + TRANSFER_RATE + EHE_RATE:
                t.add(d, school, "pupil.deregistered", {"school": school, "ground": "ehe_written_notice", "destination": "ehe"})
                t.add(d, la, "pupil.home_education_notified", {"la": la, "previous_school": school})
            elif (
                PERMANENT_EXCLUSION_RATE + TRANSFER_RATE + EHE_RATE
                <= leave
                < PERMANENT_EXCLUSION_RATE + TRANSFER_RATE + EHE_RATE + CME_RATE
            ):
                t.add(d, school, "pupil.deregistered", {"school": school, "ground": "continuous_absence_20_days", "destination": "unknown"})
                t.add(d, la, "pupil.missing_education_recorded", {"la": la})
        for seq, (day, submitter, body) in enumerate(t.events):
            events.append((day, n * 100 + seq, submitter, body))
    events.sort(key=lambda e: (e[0], e[1]))
    return Area(la, orgs, [(submitter, body) for _, _, submitter, body in events], secondary + primary, example or make_upn(la_code, 10, 1))


def national_shape(pupils: int, index: int) -> Shape:
    """Schools for an LA of ``pupils``: England's pupils per school, primary/secondary split and special schools."""
    schools = pupils / PUPILS_PER_SCHOOL
    secondary_share = (
        (1 - PRIMARY_SHARE) * PRIMARY_SECONDARY_SCHOOL_SIZE / (PRIMARY_SHARE + (1 - PRIMARY_SHARE) * PRIMARY_SECONDARY_SCHOOL_SIZE)
    )
    secondary = max(2, round(schools * secondary_share))
    return Shape(
        secondary_schools=secondary,
        primary_schools=max(2, round(schools - secondary)),
        special_schools=max(1, round(schools * SPECIAL_PER_SCHOOL)),
        index=index,
    )


def simulate_nation(pupils: int, seed: int = 1, today: date | None = None) -> Iterator[Area]:
    """A national-shaped population, one local area at a time (each area's events in date order)."""
    for index, (la_code, n) in enumerate(national_plan(pupils)):
        yield simulate_area(n, seed, la_code, today, national_shape(n, index))
