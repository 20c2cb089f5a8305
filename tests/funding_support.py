"""A hand-written local inclusion plan, national tariffs and AP budgets (issue 25), shared by the funding, tailored
list and funding view tests. Money in integer pence."""

from __future__ import annotations

from typing import Any

LA, OTHER_LA = "la:801", "la:802"
SCHOOL_A, SCHOOL_B, PROVIDER, SPECIAL = "urn:100005", "urn:100006", "ukprn:10000047", "urn:100010"


def plan_setting(
    setting: str, name: str, provision_type: str, phases: list[str], needs: list[str], places: int, bands: list[str]
) -> dict[str, Any]:
    return {
        "setting": setting,
        "name": name,
        "provision_type": provision_type,
        "phases": phases,
        "needs": needs,
        "places": places,
        "bands": bands,
    }


PLAN_SETTINGS = [
    plan_setting(SCHOOL_A, "Avon Primary", "mainstream", ["primary"], ["SPLD", "SLCN"], 10, ["B1"]),
    plan_setting(SCHOOL_B, "Brunel Secondary ASD base", "resourced_provision", ["secondary"], ["ASD", "SLCN"], 8, ["B2"]),
    plan_setting(PROVIDER, "Harbourside AP", "alternative_provision", ["primary", "secondary"], ["SEMH"], 20, ["B3"]),
    plan_setting(SPECIAL, "Clifton Special", "special", ["primary", "secondary", "post16"], ["ASD", "SLD", "PMLD"], 30, ["B4", "B5"]),
]


def plan(
    version: int = 1,
    valid_from: str = "2026-09-01",
    valid_to: str = "2027-08-31",
    settings: list[dict[str, Any]] | None = None,
    tiers: tuple[tuple[int, int], ...] = ((1, 40), (2, 25), (3, 15)),
) -> dict[str, Any]:
    return {
        "version": version,
        "valid_from": valid_from,
        "valid_to": valid_to,
        "partners": [{"org": "icb:QUY", "kind": "icb"}, {"org": SCHOOL_A, "kind": "school"}, {"org": PROVIDER, "kind": "ap_setting"}],
        "settings": PLAN_SETTINGS if settings is None else settings,
        "ap_service": {"tiers": [{"tier": t, "capacity": c} for t, c in tiers]},
    }


def tariff(effective_from: str = "2026-04-01", **overrides: int) -> dict[str, Any]:
    """Annual prices: B1 mainstream 6,000; B2 resourced 12,000; B3 AP 18,000 and unregistered AP 15,000; B4 and B5 special
    25,000 and 40,000 (pounds). ``overrides``: ``B3_alternative_provision=2000000`` and so on, in pence."""
    prices = {
        ("B1", "mainstream"): 600_000,
        ("B2", "resourced_provision"): 1_200_000,
        ("B3", "alternative_provision"): 1_800_000,
        ("B3", "unregistered_ap"): 1_500_000,
        ("B4", "special"): 2_500_000,
        ("B5", "special"): 4_000_000,
    }
    for key, pence in overrides.items():
        band, provision_type = key.split("_", 1)
        prices[(band, provision_type)] = pence
    return {
        "effective_from": effective_from,
        "prices": [{"band": b, "provision_type": p, "annual_price_pence": v} for (b, p), v in sorted(prices.items())],
    }


def budget(year: str = "2026-27", tiers: tuple[int, int, int] = (10_000_000, 20_000_000, 30_000_000)) -> dict[str, Any]:
    return {"financial_year": year, "amount_pence": sum(tiers), "tiers": [{"tier": i + 1, "amount_pence": a} for i, a in enumerate(tiers)]}


def programme(kind: str = "safety_valve") -> dict[str, Any]:
    return {
        "programme": kind,
        "deficit_path": [
            {"financial_year": "2026-27", "deficit_pence": 900_000_000},
            {"financial_year": "2027-28", "deficit_pence": 400_000_000},
        ],
    }


def band_for_placement(
    placement_event_id: str, band: str = "B3", provision_type: str = "alternative_provision", need: str = "SEMH", la: str = LA
) -> dict[str, Any]:
    return {
        "la": la,
        "basis": "ap_placement",
        "placement_event_id": placement_event_id,
        "band": band,
        "provision_type": provision_type,
        "need": need,
    }


def band_for_ehcp(setting: str, band: str = "B4", provision_type: str = "special", need: str = "ASD", la: str = LA) -> dict[str, Any]:
    return {"la": la, "basis": "ehcp", "setting": setting, "band": band, "provision_type": provision_type, "need": need}


# Every funding figure of a story with no plans, tariffs, budgets or bands (for the hand counts of other stories).
NO_FUNDING_FIGURES: dict[str, Any] = {
    "funding_committed_ap_pence": 0,
    "funding_committed_ap_by_tier": {},
    "funding_committed_ap_by_provision_type": {},
    "funding_committed_high_needs_pence": 0,
    "funding_committed_high_needs_by_provision_type": {},
    "ap_budget_pence": 0,
    "ap_budget_committed_rate": None,
    "plan_places_by_need": {},
    "plan_placements_by_need": {},
    "plan_places_used_rate": None,
    "placements_outside_plan": 0,
    "ap_service_capacity_by_tier": {},
    "programme_deficit_agreed_pence": 0,
}
