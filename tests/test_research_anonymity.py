"""The anonymisation itself: a property test over random populations and specs whose stated k and l pycanon must
measure too; the aggregate tables' disclosure control; a motivated intruder's re-identification rate; and the
rows a pupil's history becomes."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.research_release import release
from ledger.core.rules import Record
from ledger.research import operator
from ledger.research.releases import project_key, pseudonym
from ledger.tools import admin
from ledger.tools.simulate import simulate_area
from ledger.tools.simulate_load import load_area
from projections.research import package
from projections.research.anonymise import anonymise
from projections.research.rows import pupil_rows
from projections.research.tables import control, grid, recoverable
from projections.research.variables import DATES, YEAR_GROUP, establishment_hierarchy, hierarchy, month_to_term

from .conftest import World
from .research_oracle import Oracle, csv_columns
from .test_research import RESEARCHER, oracle, seal  # noqa: F401 - the session's pycanon

LA_OF = {
    "urn:100101": "la:801",
    "urn:100102": "la:801",
    "urn:100103": "la:801",
    "urn:100201": "la:202",
    "urn:100202": "la:202",
    "urn:133001": "la:330",
    "la:801": "la:801",
}
DOMAINS: dict[str, list[str]] = {
    "start": [
        f"{y}-{m:02d}" for y, m in [(2025, 9), (2025, 10), (2025, 11), (2025, 12), (2026, 1), (2026, 2), (2026, 3), (2026, 5), (2026, 7)]
    ],
    "establishment": list(LA_OF),
    "year_group": ["R", "3", "6", "7", "8", "9", "10", "11", "12"],
    "sen_status": ["N", "N", "N", "N", "K", "K", "E"],
    "looked_after": ["false"] * 12 + ["true"],
    "kind": ["placement", "exclusion", "exclusion", "registration", "registration", "registration"],
    "reason": ["BEHAVIOUR", "MENTAL_HEALTH", "OTHER", "PHYSICAL_HEALTH", "z", "z", "z"],
    "outcome": ["mainstream", "special", "other_ap", "z", "z"],
}
QI_CHOICES = ["start", "establishment", "year_group", "sen_status", "looked_after", "kind"]
SA_CHOICES = ["reason", "outcome", "sen_status"]


def population(seed: int, pupils: int, columns: list[str]) -> pa.Table:
    """Skewed random rows: each pupil one to three rows, values drawn with Zipf-like weights (so rare combinations abound)."""
    rng = random.Random(seed)
    data: dict[str, list[str]] = defaultdict(list)
    for p in range(pupils):
        fixed = {name: rng.choice(DOMAINS[name]) for name in ("year_group", "sen_status", "looked_after", "establishment")}
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            data["pseudonym"].append(f"{p:032x}")
            for name in columns:
                values = DOMAINS[name]
                data[name].append(
                    fixed[name] if name in fixed and rng.random() < 0.9 else values[min(int(rng.paretovariate(1.2)) - 1, len(values) - 1)]
                )
    return pa.table({name: pa.array(data[name], pa.string()) for name in ["pseudonym", *columns]})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 10**6),
    pupils=st.integers(1, 150),
    k=st.integers(2, 12),
    l=st.integers(1, 3),  # noqa: E741
    qis=st.lists(st.sampled_from(QI_CHOICES), min_size=1, max_size=4, unique=True),
    sas=st.lists(st.sampled_from(SA_CHOICES), max_size=2, unique=True),
    establishment_level=st.sampled_from(["school", "la", "region"]),
    date_detail=st.sampled_from(["month", "term"]),
    max_suppressed=st.sampled_from([0.0, 0.05, 0.3]),
)
def test_stated_k_and_l_are_what_pycanon_measures(
    oracle: Oracle,  # noqa: F811
    seed: int,
    pupils: int,
    k: int,
    l: int,  # noqa: E741
    qis: list[str],
    sas: list[str],
    establishment_level: str,
    date_detail: str,
    max_suppressed: float,
) -> None:
    sas = [s for s in sas if s not in qis]
    columns = sorted(set(qis) | set(sas) | {"kind", "reason"})
    table = population(seed, pupils, columns)
    hierarchies = {name: hierarchy(name, LA_OF) for name in columns}
    minimum = {"start": {"month": 0, "term": 1}[date_detail], "establishment": {"school": 0, "la": 1, "region": 2}[establishment_level]}
    outcome = anonymise(table, hierarchies, minimum, qis, sas, k, l, max_suppressed)
    released = outcome.table
    measured = oracle.measure({name: released[name].to_pylist() for name in released.column_names}, qis, sas)
    assert measured == {"k": outcome.anonymity.k, "k_rows": outcome.anonymity.k_rows, "l": outcome.anonymity.l if sas else None}
    assert outcome.suppressed_rows == table.num_rows - released.num_rows
    # The same rows dictionary-encoded in two chunks, each with its own dictionary (as the export's readers hand them
    # over), give the same release: the work on codes depends on the values only.
    half = table.num_rows // 2
    encoded = pa.concat_tables(
        [
            pa.table([c.combine_chunks().dictionary_encode() for c in part.columns], names=part.column_names)
            for part in (table.slice(0, half), table.slice(half))
        ]
    )
    again = anonymise(encoded, hierarchies, minimum, qis, sas, k, l, max_suppressed)
    assert again.table.equals(released)
    assert released.equals(released.sort_by([(n, "ascending") for n in released.column_names]))  # sorted by value, not by code
    assert (again.levels, again.suppressed_rows, again.grouped, again.anonymity) == (
        outcome.levels,
        outcome.suppressed_rows,
        outcome.grouped,
        outcome.anonymity,
    )
    if released.num_rows:
        assert outcome.anonymity.k is not None and outcome.anonymity.k >= k
        assert not sas or (outcome.anonymity.l is not None and outcome.anonymity.l >= l)
    # never finer than approved: no school below school level, no month below month detail
    if "establishment" in columns and establishment_level != "school":
        assert not any(v.startswith("urn:") for v in released["establishment"].to_pylist())
    if "start" in columns and date_detail == "term":
        assert not any(len(v) == 7 and v[4] == "-" for v in released["start"].to_pylist())
    assert released.column_names == ["pseudonym", *columns]


def test_hierarchies_generalise_step_by_step() -> None:
    assert DATES.at("2025-10", 0, 1) == month_to_term("2025-10") == "2025/26 autumn"
    assert DATES.at("2026-04", 0, 2) == "2025/26" and DATES.at("2026-04", 0, 3) == "c" and DATES.at("open", 0, 2) == "open"
    assert [YEAR_GROUP.at("9", 0, n) for n in range(4)] == ["9", "KS3", "secondary", "c"]
    est = establishment_hierarchy(LA_OF)
    assert [est.at("urn:100201", 0, n) for n in range(4)] == ["urn:100201", "la:202", "E12000007", "c"]
    assert est.at("urn:999999", 0, 1) == "x"  # an unknown organisation's LA is not known, never guessed


@settings(max_examples=200, deadline=None)
@given(
    counts=st.dictionaries(st.tuples(st.sampled_from("ABCDE"), st.sampled_from("vwxyz")), st.integers(0, 40), max_size=25),
    threshold=st.integers(2, 12),
)
def test_no_small_cell_is_published_and_no_suppressed_cell_is_recoverable(counts: dict[tuple[str, str], int], threshold: int) -> None:
    table = grid(counts)
    published = control(table, threshold)
    for key, value in published.items():
        assert value == "c" or int(value) == 0 or int(value) >= threshold, (key, value)
        if value != "c":
            assert int(value) == table.cells[key]
    assert recoverable(table, published) == []


def record(
    event_type: str, day: str, data: dict[str, Any], event_id: str, corrects: str | None = None, submitter: str = "urn:100101"
) -> Record:
    return Record(
        event_id, event_type, submitter, "H801200001001", date.fromisoformat(day), datetime(2026, 9, 1, tzinfo=UTC), data, corrects
    )


def test_a_pupils_history_as_episodes_and_events() -> None:
    reg = {"school": "urn:100101", "enrolment_status": "C", "year_group": "8", "sen_status": "K", "looked_after": False}
    history = [
        record("pupil.registered", "2024-09-04", reg, "e1"),
        record(
            "pupil.ap_placement_started",
            "2025-10-06",
            {
                "commissioner": "urn:100101",
                "setting": "ukprn:10000047",
                "setting_type": "UKPRN",
                "tier": 2,
                "reason": "BEHAVIOUR",
                "hours_per_week": 20,
                "dual_registered": True,
            },
            "e2",
        ),
        record(
            "pupil.ap_placement_started",
            "2025-10-07",
            {
                "commissioner": "urn:100101",
                "setting": "ukprn:10000047",
                "setting_type": "OTH",
                "tier": 2,
                "reason": "BEHAVIOUR",
                "hours_per_week": 9,
                "dual_registered": True,
            },
            "e3",
            corrects="e2",
        ),
        record("pupil.ap_placement_ended", "2025-12-12", {"placement_event_id": "e3", "outcome": "mainstream"}, "e4"),
        record("pupil.excluded", "2026-01-20", {"school": "urn:100101", "kind": "SUSP", "sessions": 4, "reasons": ["PP"]}, "e5"),
        record("pupil.excluded", "2026-02-20", {"school": "urn:100101", "kind": "SUSP", "sessions": 2, "reasons": ["PP"]}, "e6"),
        record("pupil.record_retracted", "2026-02-21", {"reason": "recorded_in_error"}, "e7", corrects="e6"),
        record("pupil.deregistered", "2026-03-31", {"school": "urn:100101", "ground": "moved_away", "destination": "moved_away"}, "e8"),
    ]
    episodes = {row.kind: row for row in pupil_rows(history, "episode")}
    assert set(episodes) == {"registration", "placement", "exclusion"}  # the correction replaced e2; the retraction removed e6
    placement = episodes["placement"]
    assert (placement.start, placement.end, placement.where) == (date(2025, 10, 7), date(2025, 12, 12), "urn:100101")
    expected = {
        "setting_type": "OTH",
        "hours": "0-9",
        "outcome": "mainstream",
        "reason": "BEHAVIOUR",
        "year_group": "9",
        "age": "13",
        "sen_status": "K",
        "looked_after": "false",
        "duration": "1-3 months",
    }
    assert {name: placement.values[name] for name in expected} == expected
    assert episodes["exclusion"].values["sessions"] == "3-5" and episodes["exclusion"].values["duration"] == "z"
    registration = episodes["registration"]
    assert (registration.end, registration.values["reason"], registration.values["outcome"]) == (
        date(2026, 3, 31),
        "moved_away",
        "moved_away",
    )
    assert registration.values["year_group"] == "8"  # on its own start date
    events = pupil_rows(history, "event")
    assert [r.kind for r in events] == [
        "pupil.registered",
        "pupil.ap_placement_started",
        "pupil.ap_placement_ended",
        "pupil.excluded",
        "pupil.deregistered",
    ]
    assert events[2].where == "urn:100101" and events[2].values["outcome"] == "mainstream"


def test_a_motivated_intruder_reidentifies_at_most_one_in_k(world: World, oracle: Oracle) -> None:  # noqa: F811
    """The intruder knows a child's school, year group and the month of one move (a placement started, a registration
    begun), and reads the public transparency figures (the LA's placements register); joined with the release, the
    chance of picking out the child's pseudonym is measured for every child who moved: never above 1/k."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from projections.runner import Projector

    ledger = world.ledger
    area = simulate_area(pupils=1500, seed=5, la_code="202", today=world.clock.now.date())
    load_area(ledger, area)
    admin.add_org(ledger, RESEARCHER, "researcher", "University of Bristol")
    k = 10
    operator.approve_project(
        ledger,
        RESEARCHER,
        {
            "project": "moves",
            "purpose": "Moves",
            "unit": "episode",
            "variables": ["kind", "start", "establishment", "year_group", "reason", "setting_type"],
            "quasi_identifiers": ["start", "establishment", "year_group", "kind"],
            "sensitive": ["reason"],
            "establishment_level": "school",
            "period": {"from": "2024-09-01", "to": "2026-10-05"},
            "expires_on": "2027-01-01",
            "k": k,
            "l": 1,
        },
    )
    seal(world)
    made = release(ledger, "moves")
    files = made["built"].files
    manifest = made["manifest"]
    columns = csv_columns(files[package.ROWS_CSV])
    assert oracle.measure(columns, manifest["anonymity"]["quasi_identifiers"], ["reason"])["k"] == manifest["anonymity"]["k"] >= k
    levels = manifest["anonymity"]["levels"]

    # public figures: the LA's placements register (setting types in use), read as anyone may read published figures
    Projector(ledger.store).catch_up()
    register = (
        TestClient(create_app(ledger), headers={"authorization": f"Bearer {world.admin_token}"})
        .get("/views/placements", params={"level": "la", "org": "la:202", "as_of": "2026-03-02"})
        .json()["placements"]
    )
    setting_types_in_use = {t for t, n in register["by_setting_type"].items() if n}
    assert setting_types_in_use  # the public figures are there to be joined

    la_of = {o: v.la for o, v in area.orgs.items()}
    hierarchies = {name: hierarchy(name, la_of) for name in ("start", "establishment", "year_group", "kind")}
    level_index = {name: hierarchies[name].levels.index(levels[name]) for name in hierarchies}
    index: dict[tuple[str, ...], set[str]] = defaultdict(set)
    for i, who in enumerate(columns["pseudonym"]):
        # joined with the public figures: a placement row of a setting type the LA's register never shows is not the child's
        if columns["kind"][i] == "placement" and columns["setting_type"][i] not in setting_types_in_use | {"other", "c", "z"}:
            continue
        index[tuple(columns[name][i] for name in ("kind", "start", "establishment", "year_group"))].add(who)
    key = project_key(ledger.secrets.pseudonym_key, "moves")

    chances: list[float] = []
    year_at: dict[str, str] = {}
    for _, body in area.events:
        if body["type"] == "pupil.registered":
            year_at.setdefault(body["subject"]["upn"], body["data"]["year_group"])
    for _, body in area.events:
        kind = {"pupil.ap_placement_started": "placement", "pupil.registered": "registration"}.get(body["type"])
        if kind is None or body["subject"]["upn"] not in year_at:
            continue
        upn = body["subject"]["upn"]
        school = body["data"].get("school") or body["data"].get("commissioner")
        rows = [r for r in pupil_rows(_records(area, upn), "episode") if r.kind == kind and r.start.isoformat() == body["occurred_on"]]
        if not rows or not school:
            continue
        known = {"kind": kind, "start": rows[0].start.isoformat()[:7], "establishment": school, "year_group": rows[0].values["year_group"]}
        generalised = tuple(hierarchies[n].at(known[n], 0, level_index[n]) for n in ("kind", "start", "establishment", "year_group"))
        candidates = index.get(generalised, set())
        target = pseudonym(key, ledger.secrets.pupil_id(upn))
        chances.append(1 / len(candidates) if target in candidates else 0.0)
    assert len(chances) > 500
    print(
        f"motivated intruder: {len(chances)} children's moves, k={manifest['anonymity']['k']}, {manifest['suppressed_rows']} of "
        f"{manifest['rows'] + manifest['suppressed_rows']} rows suppressed, levels {levels}; re-identification chance max "
        f"{max(chances):.4f}, mean {sum(chances) / len(chances):.4f}, targets found in the release {sum(c > 0 for c in chances)}"
    )
    assert max(chances) <= 1 / k, max(chances)
    assert sum(chances) / len(chances) <= 1 / k


def _records(area: Any, upn: str) -> list[Record]:
    received = datetime(2026, 10, 5, tzinfo=UTC)
    return [Record.from_body(body, received) for _, body in area.events if body["subject"].get("upn") == upn]
