"""Costed placements, AP budgets and plan capacity (issue 25): every new figure computed by hand from the story below,
for LA 801, LA 802 and England, as of two dates either side of a mid-year tariff change. SQLite and PostgreSQL.

Story (money in pence; every event received on 2026-12-01, so it is known at both dates):
  Tariff T1 from 2026-04-01: B3 alternative_provision 1,800,000; B4 special 2,500,000; B5 special 4,000,000 (and others).
  Tariff T2 from 2026-11-01: B3 alternative_provision 2,000,000; B4 special 2,700,000 (others as T1).
  LA 801 joins Safety Valve on 2026-06-01 (agreed deficit 2026-27 900,000,000; 2027-28 400,000,000).
  LA 801 plan v1 2026-09-01..2027-08-31 (AP service tiers 1/2/3: 40/25/15) (tests/funding_support.py): places SPLD 10 (Avon), SLCN 10 + 8 (Avon, Brunel),
    ASD 8 + 30 (Brunel, Clifton), SEMH 20 (Harbourside), SLD 30, PMLD 30 (Clifton); 68 places in all. LA 802: no plan.
  AP budgets 2026-27: LA 801 6,000,000, corrected to 8,000,000 (2,000,000 / 2,000,000 / 4,000,000 by tier);
    LA 802 3,000,000.
  P1 school A; LA 801 places at Harbourside (tier 3) from 09-07, bands B3 AP, SEMH, from 09-08.
  P2 school B (LA 801); school B places at Harbourside (tier 2, planned end 12-18) from 09-14; LA 801 bands B3 AP, SEMH,
     from 09-15; the placement ends 10-30.
  P3 school A, EHCP; LA 801 bands B5 special at Clifton Special (in the plan), ASD, from 09-12, then corrects that to
     B4 from 09-10 (the correction supersedes it: the B5 never counts).
  P4 school A, EHCP; LA 801 bands B5 special at urn:100020 (not in the plan), ASD, from 10-01.
  P5 school urn:100030 (LA 802); LA 802 places at Harbourside (tier 1) from 09-21, bands B3 AP, SEMH, from 09-21.

As of 2026-10-15 (T1): LA 801 AP P1 + P2 = 3,600,000 (tier 2 1,800,000, tier 3 1,800,000); high needs P3 + P4 = 6,500,000;
  AP budget 8,000,000, committed 45.0%; placements by need ASD 2, SEMH 2; places used 4/68 = 5.88%; outside plan 1 (P4).
  LA 802 AP P5 = 1,800,000 (tier 1); budget 3,000,000, 60.0%; SEMH 1; no plan: used null, outside plan 1.
  England: AP 5,400,000; high needs 6,500,000; budget 11,000,000, 49.09%; ASD 2, SEMH 3; 5/68 = 7.35%; outside 2.
As of 2026-11-15 (T2; P2 ended): LA 801 AP P1 = 2,000,000 (tier 3); high needs 2,700,000 + 4,000,000 = 6,700,000;
  25.0%; ASD 2, SEMH 1; 3/68 = 4.41%; outside 1. LA 802 AP 2,000,000, 66.67%; outside 1.
  England: AP 4,000,000 (tier 1 and 3: 2,000,000 each); high needs 6,700,000; 36.36%; ASD 2, SEMH 2; 4/68 = 5.88%; outside 2.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.tools import admin
from projections.config import ViewSettings
from projections.facts import Moment
from projections.queries import accountability_metrics
from projections.runner import Projector, Reader
from tests.conftest import World, upn
from tests.funding_support import (
    LA,
    OTHER_LA,
    PROVIDER,
    SCHOOL_A,
    SCHOOL_B,
    SPECIAL,
    band_for_ehcp,
    band_for_placement,
    budget,
    plan,
    programme,
    tariff,
)

SCHOOL_802, OUTSIDE = "urn:100030", "urn:100020"
D1, D2 = date(2026, 10, 15), date(2026, 11, 15)
FUNDING = (
    "funding_committed_ap_pence",
    "funding_committed_ap_by_tier",
    "funding_committed_ap_by_provision_type",
    "funding_committed_high_needs_pence",
    "funding_committed_high_needs_by_provision_type",
    "ap_budget_pence",
    "ap_budget_committed_rate",
    "plan_places_by_need",
    "plan_placements_by_need",
    "plan_places_used_rate",
    "placements_outside_plan",
)
PLACES = {"ASD": 38, "PMLD": 30, "SEMH": 20, "SLCN": 18, "SLD": 30, "SPLD": 10}

EXPECTED: dict[tuple[date, str, str], tuple[Any, ...]] = {
    (D1, "la", LA): (
        3_600_000,
        {"2": 1_800_000, "3": 1_800_000},
        {"alternative_provision": 3_600_000},
        6_500_000,
        {"special": 6_500_000},
        8_000_000,
        45.0,
        PLACES,
        {"ASD": 2, "SEMH": 2},
        5.88,
        1,
    ),
    (D1, "la", OTHER_LA): (
        1_800_000,
        {"1": 1_800_000},
        {"alternative_provision": 1_800_000},
        0,
        {},
        3_000_000,
        60.0,
        {},
        {"SEMH": 1},
        None,
        1,
    ),
    (D1, "national", "england"): (
        5_400_000,
        {"1": 1_800_000, "2": 1_800_000, "3": 1_800_000},
        {"alternative_provision": 5_400_000},
        6_500_000,
        {"special": 6_500_000},
        11_000_000,
        49.09,
        PLACES,
        {"ASD": 2, "SEMH": 3},
        7.35,
        2,
    ),
    (D2, "la", LA): (
        2_000_000,
        {"3": 2_000_000},
        {"alternative_provision": 2_000_000},
        6_700_000,
        {"special": 6_700_000},
        8_000_000,
        25.0,
        PLACES,
        {"ASD": 2, "SEMH": 1},
        4.41,
        1,
    ),
    (D2, "la", OTHER_LA): (
        2_000_000,
        {"1": 2_000_000},
        {"alternative_provision": 2_000_000},
        0,
        {},
        3_000_000,
        66.67,
        {},
        {"SEMH": 1},
        None,
        1,
    ),
    (D2, "national", "england"): (
        4_000_000,
        {"1": 2_000_000, "3": 2_000_000},
        {"alternative_provision": 4_000_000},
        6_700_000,
        {"special": 6_700_000},
        11_000_000,
        36.36,
        PLACES,
        {"ASD": 2, "SEMH": 2},
        5.88,
        2,
    ),
}


def placement(commissioner: str, tier: int, planned_end: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "commissioner": commissioner,
        "setting": PROVIDER,
        "setting_type": "UKPRN",
        "tier": tier,
        "reason": "BEHAVIOUR",
        "hours_per_week": 25,
        "dual_registered": False,
    }
    return {**data, "planned_end": planned_end} if planned_end else data


def story(world: World) -> dict[str, str]:
    """The story of the module docstring; returns the event ids the tests refer to."""
    for org, kind, la in ((OTHER_LA, "la", None), (SCHOOL_802, "school", OTHER_LA), ("dfe:regions", "regions", None)):
        admin.add_org(world.ledger, org, kind, f"Test {org}", la)
        world.keys[org] = Ed25519PrivateKey.generate()
        admin.add_key(world.ledger, org, world.keys[org].public_key())
    world.keys["dfe:admin"] = world.ledger.secrets.signing_key
    world.clock.now = datetime(2026, 12, 1, 10, tzinfo=UTC)

    def on(day: date, event_type: str, submitter: str, data: dict[str, Any], **kw: Any) -> str:
        return str(world.post(event_type, submitter, data, occurred_on=day, **kw).event_id)

    ids: dict[str, str] = {}
    on(date(2026, 4, 1), "funding.tariff_published", "dfe:admin", tariff("2026-04-01"), org="dfe:admin")
    on(
        date(2026, 10, 20),
        "funding.tariff_published",
        "dfe:admin",
        tariff("2026-11-01", B3_alternative_provision=2_000_000, B4_special=2_700_000),
        org="dfe:admin",
    )
    on(date(2026, 9, 1), "inclusion_plan.published", LA, plan())
    on(date(2026, 6, 1), "funding.programme_joined", LA, programme())
    ids["budget"] = on(date(2026, 4, 1), "funding.ap_budget_allocated", LA, budget(tiers=(1_000_000, 2_000_000, 3_000_000)))
    world.clock.now = datetime(2026, 12, 1, 11, tzinfo=UTC)
    on(date(2026, 4, 1), "funding.ap_budget_allocated", LA, budget(tiers=(2_000_000, 2_000_000, 4_000_000)), corrects=ids["budget"])
    on(date(2026, 4, 1), "funding.ap_budget_allocated", OTHER_LA, budget(tiers=(0, 1_000_000, 2_000_000)))
    for n, school, sen in ((1, SCHOOL_A, "N"), (2, SCHOOL_B, "N"), (3, SCHOOL_A, "E"), (4, SCHOOL_A, "E"), (5, SCHOOL_802, "N")):
        world.admit(upn(n), school, sen=sen, occurred_on=date(2026, 9, 2))
    p1 = on(date(2026, 9, 7), "pupil.ap_placement_started", LA, placement(LA, 3), upn=upn(1))
    on(date(2026, 9, 8), "funding.band_assigned", LA, band_for_placement(p1), upn=upn(1))
    p2 = on(date(2026, 9, 14), "pupil.ap_placement_started", SCHOOL_B, placement(SCHOOL_B, 2, "2026-12-18"), upn=upn(2))
    on(date(2026, 9, 15), "funding.band_assigned", LA, band_for_placement(p2), upn=upn(2))
    on(date(2026, 10, 30), "pupil.ap_placement_ended", SCHOOL_B, {"placement_event_id": p2, "outcome": "mainstream"}, upn=upn(2))
    wrong = on(date(2026, 9, 12), "funding.band_assigned", LA, band_for_ehcp(SPECIAL, "B5"), upn=upn(3))
    on(date(2026, 9, 10), "funding.band_assigned", LA, band_for_ehcp(SPECIAL, "B4"), upn=upn(3), corrects=wrong)
    on(date(2026, 10, 1), "funding.band_assigned", LA, band_for_ehcp(OUTSIDE, "B5"), upn=upn(4))
    p5 = on(date(2026, 9, 21), "pupil.ap_placement_started", OTHER_LA, placement(OTHER_LA, 1), upn=upn(5))
    on(date(2026, 9, 21), "funding.band_assigned", OTHER_LA, band_for_placement(p5, la=OTHER_LA), upn=upn(5))
    Projector(world.ledger.store).catch_up()
    return ids


# The AP service of LA 801's plan (tiers 1, 2, 3: 40, 25, 15 places) and its Safety Valve path (2026-27: 900,000,000
# pence), the same at both dates (both in 2026-27); LA 802 has neither.
SERVICE_AND_PROGRAMME = {
    LA: ({"1": 40, "2": 25, "3": 15}, 900_000_000),
    OTHER_LA: ({}, 0),
    "england": ({"1": 40, "2": 25, "3": 15}, 900_000_000),
}


def metrics(world: World, day: date, level: str, scope: str, known_at: datetime | None = None) -> dict[str, Any]:
    return accountability_metrics(Reader(world.ledger.store), ViewSettings(), Moment(day, known_at), level, scope)["metrics"]


def test_every_funding_figure_by_hand_at_two_dates_either_side_of_a_tariff_change(world: World) -> None:
    story(world)
    for (day, level, scope), expected in EXPECTED.items():
        got = metrics(world, day, level, scope)
        assert {name: got[name]["value"] for name in FUNDING} == dict(zip(FUNDING, expected, strict=True)), (day, scope)
        assert (got["ap_service_capacity_by_tier"]["value"], got["programme_deficit_agreed_pence"]["value"]) == SERVICE_AND_PROGRAMME[scope]
    la = metrics(world, D1, "la", LA)
    assert la["ap_budget_committed_rate"]["numerator"] == 3_600_000 and la["ap_budget_committed_rate"]["denominator"] == 8_000_000
    assert la["ap_budget_committed_rate"]["national_value"] == 49.09 and la["ap_budget_committed_rate"]["rank"] == 2  # LA 802: 60.0
    assert type(la["funding_committed_ap_pence"]["value"]) is int


def test_the_budget_as_known_before_its_correction(world: World) -> None:
    story(world)
    between = datetime(2026, 12, 1, 10, 30, tzinfo=UTC)  # after the first budget, before its correction
    assert metrics(world, D1, "la", LA, between)["ap_budget_pence"]["value"] == 6_000_000
    assert metrics(world, D1, "la", LA, between)["ap_budget_committed_rate"]["denominator"] == 6_000_000


def test_a_regions_group_concern_cites_a_funding_figure(world: World) -> None:
    story(world)
    figure = metrics(world, D2, "la", OTHER_LA)["ap_budget_committed_rate"]
    world.post(
        "accountability.concern_raised",
        "dfe:regions",
        {
            "category": "budget_overspend",
            "metric": "ap_budget_committed_rate",
            "metric_value": figure["value"],
            "national_value": figure["national_value"],
            "metric_as_of": D2.isoformat(),
        },
        org=OTHER_LA,
    )


@pytest.mark.parametrize("name", (*FUNDING, "ap_service_capacity_by_tier", "programme_deficit_agreed_pence"))
def test_each_funding_metric_is_defined_in_the_docs(name: str) -> None:
    from api.web.catalogue import entry

    assert entry(name).definition.get("numerator"), name


def test_public_reports_leave_out_spend_and_dashboards_show_it(world: World) -> None:
    """A spend total is a sum of tariff prices: with one placement it would disclose the placement. The public report has
    the plan's places and the placement counts, not the spend; a signed-in LA sees the spend."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from projections.funding import NOT_PUBLIC

    story(world)
    admin.sealer(world.ledger).seal_all()
    world.clock.advance(seconds=1)
    with TestClient(create_app(world.ledger), base_url="https://testserver") as client:
        report = client.get("/reports/la/802.json", params={"as_of": D1.isoformat()})
        assert report.status_code == 200, report.text
        published = {f["metric"] for f in report.json()["figures"]}
        assert "plan_places_by_need" in published and "placements_outside_plan" in published and "ap_budget_pence" in published
        assert not published & NOT_PUBLIC
        assert "funding_committed_ap_pence" not in client.get("/reports/la/802.csv", params={"as_of": D1.isoformat()}).text
        token = world.ledger.issue_token(OTHER_LA, "la")
        mine = client.get(
            "/views/metrics", params={"level": "la", "org": OTHER_LA, "as_of": D1.isoformat()}, headers={"authorization": f"Bearer {token}"}
        ).json()["metrics"]
        assert mine["funding_committed_ap_pence"]["value"] == 1_800_000  # one placement: for the LA's own eyes only


def test_an_erased_pupil_s_band_is_forgotten_by_the_funding_figures(world: World) -> None:
    from projections.runner import forget_pupil

    story(world)
    assert forget_pupil(world.ledger.store, world.ledger.secrets.pupil_id(upn(4))) == 2  # P4's admission and band
    la = metrics(world, D1, "la", LA)
    assert la["placements_outside_plan"]["value"] == 0 and la["funding_committed_high_needs_pence"]["value"] == 2_500_000
