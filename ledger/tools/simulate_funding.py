"""Plans and funding for a simulated local area (issue 25), so the demo shows them: the national tariff (and a 5% uplift
from the January after the area's year starts, once that has passed), the LA's local inclusion plan over its schools and
AP settings, an AP budget per financial year, a Delivering Better Value programme, and a band for every AP placement
and every pupil with an EHC plan, dated when the placement or registration started."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from ledger import own_events
from ledger.core.funding_rules import financial_year_bounds, financial_year_of
from ledger.service import ADMIN_ORG, Ledger
from ledger.tools.simulate import Area

PRICES = {
    ("B1", "mainstream"): 600_000,
    ("B2", "resourced_provision"): 1_200_000,
    ("B3", "alternative_provision"): 1_800_000,
    ("B3", "unregistered_ap"): 1_500_000,
    ("B4", "special"): 2_500_000,
    ("B5", "special"): 4_000_000,
}
UPLIFT_PERCENT = 5
BUDGET_PER_PLACEMENT = 1_200_000  # pence a year per AP placement the area makes: budgets a little under the tariff's cost
# A setting's place in the plan by its kind and census phase: provision type, phases, needs met, places, bands.
PLAN_ROWS: dict[str, tuple[str, list[str], list[str], int, list[str]]] = {
    "SS": ("mainstream", ["secondary"], ["SPLD", "MLD", "SLCN"], 30, ["B1"]),
    "PS": ("mainstream", ["primary"], ["SPLD", "MLD", "SLCN"], 20, ["B1"]),
    "SP": ("special", ["primary", "secondary", "post16"], ["ASD", "SLD", "PMLD", "MLD"], 60, ["B4", "B5"]),
    "PR": ("alternative_provision", ["secondary"], ["SEMH"], 40, ["B3"]),
    "ukprn": ("alternative_provision", ["primary", "secondary"], ["SEMH", "ASD"], 30, ["B3"]),
    "uprov": ("unregistered_ap", ["secondary"], ["SEMH"], 10, ["B3"]),
}


def _reported(day: date, today: date) -> datetime:
    """10:00 the day after, or midnight today for yesterday's (as ``ledger.tools.simulate`` reports)."""
    return min(datetime.combine(day + timedelta(days=1), time(10), tzinfo=UTC), datetime.combine(today, time(0), tzinfo=UTC))


def _tariff(effective_from: date, percent: int = 0) -> dict[str, Any]:
    return {
        "effective_from": effective_from.isoformat(),
        "prices": [
            {"band": b, "provision_type": p, "annual_price_pence": price * (100 + percent) // 100}
            for (b, p), price in sorted(PRICES.items())
        ],
    }


def funding_bodies(area: Area, today: date) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the operator's tariff bodies, the LA's bodies) for ``area``, in the order to submit them."""
    la = area.la
    bodies = [b for _, b in area.events]
    start = min(date.fromisoformat(b["occurred_on"]) for b in bodies if b["type"] == "pupil.registered")
    year_start = financial_year_bounds(financial_year_of(start))[0]
    tariffs = [
        own_events.event_body(
            "funding.tariff_published", ADMIN_ORG, {"org": ADMIN_ORG}, _tariff(year_start), year_start, _reported(year_start, today)
        )
    ]
    uplift = date(start.year + 1, 1, 1)
    if uplift < today:
        published = uplift - timedelta(days=31)
        tariffs.append(
            own_events.event_body(
                "funding.tariff_published",
                ADMIN_ORG,
                {"org": ADMIN_ORG},
                _tariff(uplift, UPLIFT_PERCENT),
                published,
                _reported(published, today),
            )
        )

    def la_event(event_type: str, subject: dict[str, str], data: dict[str, Any], day: date) -> dict[str, Any]:
        return own_events.event_body(event_type, la, subject, data, day, _reported(day, today))

    settings = []
    for org in area.orgs.values():
        key = "ukprn" if org.org_id.startswith("ukprn:") else org.extra.get("phase", "")
        if key in PLAN_ROWS and org.kind in ("school", "ap_setting"):
            provision_type, phases, needs, places, bands = PLAN_ROWS[key]
            settings.append(
                {
                    "setting": org.org_id,
                    "name": org.name,
                    "provision_type": provision_type,
                    "phases": phases,
                    "needs": needs,
                    "places": places,
                    "bands": bands,
                }
            )
    uprov = next((b["subject"]["org"] for b in bodies if b["type"] == "provider.unregistered_recorded"), None)
    if uprov:
        provision_type, phases, needs, places, bands = PLAN_ROWS["uprov"]
        settings.append(
            {
                "setting": uprov,
                "name": "Simulated Outdoor Learning CIC",
                "provision_type": provision_type,
                "phases": phases,
                "needs": needs,
                "places": places,
                "bands": bands,
            }
        )
    plan = {
        "version": 1,
        "valid_from": start.isoformat(),
        "valid_to": (date(start.year + 2, start.month, 1) - timedelta(days=1)).isoformat(),
        "partners": [
            {"org": org.org_id, "kind": "school" if org.kind == "school" else "ap_setting"}
            for org in area.orgs.values()
            if org.kind in ("school", "ap_setting")
        ][:20]
        + [{"org": "icb:QUY", "kind": "icb"}],
        "settings": settings,
        "ap_service": {"tiers": [{"tier": 1, "capacity": 60}, {"tier": 2, "capacity": 30}, {"tier": 3, "capacity": 20}]},
        "summary": "Simulated local inclusion plan",
    }
    out = [la_event("inclusion_plan.published", {"org": la}, plan, start)]
    placements = [b for b in bodies if b["type"] == "pupil.ap_placement_started"]
    years = sorted({financial_year_of(start), financial_year_of(today - timedelta(days=1))})
    for year in years:
        amount = max(1, len(placements)) * BUDGET_PER_PLACEMENT
        split = (amount // 5, 2 * amount // 5, amount - amount // 5 - 2 * amount // 5)
        first = max(financial_year_bounds(year)[0], start)
        out.append(
            la_event(
                "funding.ap_budget_allocated",
                {"org": la},
                {
                    "financial_year": year,
                    "amount_pence": amount,
                    "tiers": [{"tier": i + 1, "amount_pence": a} for i, a in enumerate(split)],
                },
                first,
            )
        )
    out.append(
        la_event(
            "funding.programme_joined",
            {"org": la},
            {
                "programme": "dbv",
                "deficit_path": [{"financial_year": year, "deficit_pence": 250_000_000 - 100_000_000 * i} for i, year in enumerate(years)],
            },
            start,
        )
    )
    for b in placements:
        d = b["data"]
        provision_type = "unregistered_ap" if d["setting"].startswith("uprov:") else "alternative_provision"
        out.append(
            la_event(
                "funding.band_assigned",
                b["subject"],
                {
                    "la": la,
                    "basis": "ap_placement",
                    "placement_event_id": b["event_id"],
                    "band": "B3",
                    "provision_type": provision_type,
                    "need": "SEMH",
                },
                date.fromisoformat(b["occurred_on"]),
            )
        )
    specials = {org.org_id for org in area.orgs.values() if org.extra.get("phase") == "SP"}
    for b in bodies:
        if b["type"] == "pupil.registered" and b["data"]["sen_status"] == "E":
            school = b["data"]["school"]
            band, provision_type, need = ("B4", "special", "ASD") if school in specials else ("B1", "mainstream", "SLCN")
            out.append(
                la_event(
                    "funding.band_assigned",
                    b["subject"],
                    {"la": la, "basis": "ehcp", "setting": school, "band": band, "provision_type": provision_type, "need": need},
                    date.fromisoformat(b["occurred_on"]),
                )
            )
    return tariffs, out


def load_funding(ledger: Ledger, area: Area, batch_size: int = 500) -> int:
    """Submit the area's plans and funding (after ``ledger.tools.simulate_load.load_area``); returns the number of events."""
    tariffs, bodies = funding_bodies(area, ledger.clock().date())
    known = {r.data["effective_from"] for r in ledger_tariffs(ledger)}
    envelopes = [own_events.signed(t, ledger.secrets.signing_key) for t in tariffs if t["data"]["effective_from"] not in known]
    if envelopes:
        ledger.submit_batch(envelopes)
    key = area.orgs[area.la].key
    signed = [own_events.signed(b, key) for b in bodies]
    for i in range(0, len(signed), batch_size):
        ledger.submit_batch(signed[i : i + batch_size])
    return len(envelopes) + len(signed)


def ledger_tariffs(ledger: Ledger) -> list[Any]:
    """The tariffs the ledger holds (one national tariff serves every simulated area)."""
    subject = ledger.store.subject(ledger.secrets.org_id(ADMIN_ORG))
    return [r for r in (subject.records if subject else []) if r.type == "funding.tariff_published"]
