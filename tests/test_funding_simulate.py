"""The demo's plans and funding (issue 25): a simulated area's plan, tariffs, budgets, programme and bands all pass the
ledger's rules, on SQLite and PostgreSQL, and show in the views and the tailored list."""

from __future__ import annotations

from datetime import UTC, date, datetime

from fastapi.testclient import TestClient

from api.app import create_app
from ledger.config import Settings
from ledger.tools import admin
from ledger.tools.simulate import simulate_area
from ledger.tools.simulate_funding import funding_bodies, load_funding
from ledger.tools.simulate_load import load_areas
from projections.config import ViewSettings
from projections.facts import Moment
from projections.queries import accountability_metrics
from projections.runner import Projector, Reader
from tests.conftest import Clock

TODAY = date(2026, 10, 5)


def test_a_simulated_area_publishes_a_plan_tariffs_budgets_and_bands_that_the_ledger_accepts(settings: Settings) -> None:
    ledger = admin.initialise(settings, Clock(datetime(2026, 10, 5, 9, tzinfo=UTC))).ledger
    area = simulate_area(pupils=300, seed=3, la_code="801", today=TODAY)
    second = simulate_area(pupils=50, seed=4, la_code="802", today=TODAY)
    load_areas(ledger, [area, second])
    tariffs, bodies = funding_bodies(area, TODAY)
    types = [b["type"] for b in bodies]
    assert len(tariffs) == 2 and types[0] == "inclusion_plan.published" and "funding.ap_budget_allocated" in types
    assert types.count("funding.band_assigned") >= 5
    assert load_funding(ledger, area) == len(tariffs) + len(bodies)  # every one accepted (a batch is all or nothing)
    assert load_funding(ledger, second) == len(funding_bodies(second, TODAY)[1])  # the national tariffs are not posted twice
    Projector(ledger.store).catch_up()
    figures = accountability_metrics(Reader(ledger.store), ViewSettings(), Moment(date(2026, 3, 2)), "la", "la:801")["metrics"]
    assert figures["ap_budget_pence"]["value"] > 0 and figures["funding_committed_ap_pence"]["value"] > 0
    assert figures["plan_places_by_need"]["value"]["SEMH"] > 0
    with TestClient(create_app(ledger, [])) as client:
        listed = client.get("/tailored-list", params={"la": "la:801", "need": "SEMH", "phase": "secondary", "as_of": "2026-03-02"}).json()
    assert listed["plan"]["version"] == 1 and {s["provision_type"] for s in listed["settings"]} >= {"alternative_provision"}
    ledger.store.close()
