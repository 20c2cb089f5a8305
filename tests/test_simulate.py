"""The national-shaped simulator: sized like England's LAs, unique ids, every event accepted by the ledger."""

from __future__ import annotations

import json
import random
import subprocess
from collections import Counter
from datetime import UTC, date, datetime, time
from pathlib import Path

import pytest

from ledger import dfe
from ledger.config import Settings
from ledger.core import catalogue, envelope
from ledger.core.rules import Record, check_pupil
from ledger.tools import admin, simulate
from ledger.tools.simulate import national_shape, simulate_nation
from ledger.tools.simulate_calibration import PUPILS_PER_SCHOOL, la_weights, national_plan, placement_mix
from ledger.tools.simulate_load import export, load_areas

from .processes import CLI, env_for, free_port

TODAY = date(2026, 11, 20)


def test_national_plan_splits_pupils_like_the_las() -> None:
    plan = dict(national_plan(100_000))
    assert sum(plan.values()) == 100_000 and len(plan) >= 140
    weights = la_weights()
    biggest, smallest = max(weights, key=weights.__getitem__), min(weights, key=weights.__getitem__)
    assert plan[biggest] > 10 * plan[smallest]
    assert sum(n for _, n in national_plan(7)) == 7 and all(n >= 1 for _, n in national_plan(7))


def test_national_shape_has_englands_pupils_per_school() -> None:
    shape = national_shape(372_000, 0)
    schools = shape.primary_schools + shape.secondary_schools
    assert abs(schools - 372_000 / PUPILS_PER_SCHOOL) <= 2
    assert shape.primary_schools > 3 * shape.secondary_schools and shape.special_schools >= 30


def test_areas_have_unique_ids_and_valid_events() -> None:
    areas = list(simulate_nation(3_000, seed=3, today=TODAY))
    owners = Counter(org for a in areas for org in a.orgs)
    assert {org for org, n in owners.items() if n > 1} == {"ofsted", "dfe:regions"}
    first_registrations = Counter(b["subject"]["upn"] for a in areas for _, b in a.events if b["type"] == "pupil.registered")
    assert len(first_registrations) == 3_000, "one UPN per pupil, none shared between areas"
    types = Counter(b["type"] for a in areas for _, b in a.events)
    assert types["pupil.excluded"] > 100 and types["pupil.deregistered"] > 50 and types["pupil.ap_placement_started"] > 5
    for area in areas[:20]:
        for _, body in area.events:
            checked = catalogue.validate(body, datetime.combine(TODAY, time(12), tzinfo=UTC))
            assert not checked.problems, checked.problems


@pytest.mark.parametrize("seed", [1, 2])
def test_every_simulated_pupil_event_passes_the_pupil_rules_whatever_the_rates(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each pupil's events, in the order the ledger receives them, pass ``check_pupil`` even with every rare path
    common. (At national rates a placement that never ended, followed by a move, once put the old school's
    placement after the pupil had left: 6 of 2 million events, so the rates are raised here to find it.)"""
    for name, rate in [
        ("AP_PLACEMENT_RATE", 0.5),
        ("PART_TIME_RATE", 0.3),
        ("MANAGED_MOVE_RATE", 0.3),
        ("TRANSFER_RATE", 0.4),
        ("SUSPENSION_RATE", 0.5),
    ]:
        monkeypatch.setattr(simulate, name, rate)
    histories: dict[str, list[Record]] = {}
    received = datetime.combine(TODAY, time(12), tzinfo=UTC)
    for area in simulate_nation(4_000, seed=seed, today=TODAY):
        for _, body in area.events:
            if "upn" not in body["subject"]:
                continue
            record = Record.from_body(body, received)
            history = histories.setdefault(body["subject"]["upn"], [])
            problems, _ = check_pupil(history, record)
            assert not problems, (body, problems)
            history.append(record)
    assert len(histories) == 4_000


def test_a_national_population_loads_with_nothing_rejected(settings: Settings) -> None:
    ledger = admin.initialise(settings).ledger
    areas = list(simulate_nation(600, seed=5))
    load_areas(ledger, areas, batch_size=200)
    setup = 2 + 2 * len({org for a in areas for org in a.orgs})
    assert ledger.store.count_events() == setup + sum(len(a.events) for a in areas)
    ledger.store.close()


def test_export_is_the_same_with_one_or_two_workers(tmp_path: Path) -> None:
    assert export(tmp_path / "one", 400, seed=2, today=TODAY, workers=1) == export(tmp_path / "two", 400, seed=2, today=TODAY, workers=2)
    one, two = (tmp_path / "one" / "events.jsonl").read_bytes(), (tmp_path / "two" / "events.jsonl").read_bytes()
    assert one == two and not (tmp_path / "two" / "parts").exists()
    keys = {o["org"]: o["key_id"] for o in json.loads((tmp_path / "two" / "orgs.json").read_text())}
    for line in one.decode().splitlines()[:200]:
        env = envelope.decode(json.loads(line))
        assert env.signatures[0][0] == keys[env.body["submitter"]]


def test_no_event_is_reported_after_the_start_of_its_today_in_utc() -> None:
    """A ledger takes the population at any hour of ``today``: yesterday's event is reported at midnight UTC, not at
    10:00 today (which the ledger refused as in the future when it ran in the small hours)."""
    start_of_today = datetime.combine(TODAY, time(0), tzinfo=UTC)
    timeline = simulate._Timeline(random.Random(1), "A801200000012", TODAY)
    timeline.add(date(2026, 11, 19), "urn:100000", "pupil.registered", {"school": "urn:100000", "enrolment_status": "C", "year_group": "7"})
    timeline.add(date(2026, 11, 18), "urn:100000", "pupil.registered", {"school": "urn:100000", "enrolment_status": "C", "year_group": "7"})
    assert [body["reported_at"] for _, _, body in timeline.events] == ["2026-11-20T00:00:00Z", "2026-11-19T10:00:00Z"]
    reported = [
        datetime.fromisoformat(body["reported_at"]) for area in simulate_nation(3_000, seed=3, today=TODAY) for _, body in area.events
    ]
    assert max(reported) <= start_of_today


def test_an_areas_placement_mix_is_its_published_figures() -> None:
    """Bristol (801) from its own rows of the school census file (read by hand: 274 pupils); an LA code
    without published rows (Cumberland, 942, created in 2023) from England's rows of the same file
    (24,577 pupils, 13,725 placed for behavioural support, 6,449 in other unregistered providers), never
    from figures built into the code."""
    bristol = placement_mix("801")
    assert sum(bristol.values()) == 274
    assert (bristol[("MENTAL_HEALTH", "URN")], bristol[("BEHAVIOUR", "OTH")], bristol[("PERMANENT_EXCLUSION", "URN")]) == (88, 38, 2)
    england = placement_mix("942")
    assert sum(england.values()) == 24_577
    assert sum(n for (reason, _), n in england.items() if reason == "BEHAVIOUR") == 13_725
    assert sum(n for (_, setting), n in england.items() if setting == "OTH") == 6_449


def test_without_the_published_files_the_simulation_stops_naming_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(dfe.ENVIRONMENT, str(tmp_path))
    with pytest.raises(dfe.MissingPublishedData, match=str(tmp_path / "spc_school_ap_placement.csv")):
        simulate.simulate_area(50, seed=1, la_code="801", today=TODAY)
    with pytest.raises(dfe.MissingPublishedData, match=str(tmp_path / "sen2_mi.csv")):
        national_plan(1_000)


@pytest.mark.parametrize("command", [("simulate", "OUT", "--la", "801", "--pupils", "50"), ("demo", "--port", "PORT")])
def test_the_command_line_says_which_file_is_missing(command: tuple[str, ...], tmp_path: Path) -> None:
    """`simulate` and `demo` exit 2 with the missing path, before writing anything (no events, no ledger home)."""
    settings = Settings(home=tmp_path / "home")
    empty = tmp_path / "no-data"
    empty.mkdir()
    args = [str(tmp_path / "out") if a == "OUT" else str(free_port()) if a == "PORT" else a for a in command]
    done = subprocess.run([*CLI, *args], env={**env_for(settings), dfe.ENVIRONMENT: str(empty)}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"not found: {empty}/" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "home").exists()
