"""The read model's rows do not depend on how its upkeep was batched, nor on whether the pupils view was ahead of it:
caught up batch by batch with every view, rebuilt alone (the pupils view at the log's end, its later facts left to
their own batches), in small or large batches, the interval tables hold the same rows, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings

from ledger.config import Settings
from ledger.tools import admin
from projections import read_model
from projections.config import ViewSettings
from projections.read_model_months import new_rows
from projections.read_model_roll import SumTable
from projections.runner import VIEWS, Projector

from .test_projections import OPS, fresh_settings, play, small_world

MODEL_TABLES = tuple(t for v in read_model.views(ViewSettings()) for t in v.tables)
TABLES = tuple(t.name for t in MODEL_TABLES)
COUNTING = {t.name: f" WHERE {t.counting}" for t in MODEL_TABLES if isinstance(t, SumTable)}


def rows(store: Any) -> dict[str, list[tuple[str, ...]]]:
    """Every table's rows (the sums' rows that came to 0 aside: one order of upkeep leaves them, another not)."""
    return {t: sorted(tuple(map(str, r)) for r in store.query(f"SELECT * FROM {t}" + COUNTING.get(t, ""))) for t in TABLES}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
@hsettings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(ops=OPS)
@example(ops=[("place", 0, 0, 3, 1), ("review", 0, 0, 5, 2), ("correct", 0, 0, 4, 2), ("end", 0, 0, 9, 1), ("leave", 1, 1, 2, 1)])
def test_a_rebuild_of_the_model_alone_gives_the_rows_of_the_catch_up(backend: str, ops: list[tuple[str, int, int, int, int]]) -> None:
    with fresh_settings(backend) as settings:
        w = small_world(settings)
        try:
            store = w.ledger.store
            play(w, ops, Projector(store, batch_size=3))  # every view together, in the random steps' batches
            Projector(store, batch_size=2).catch_up()
            caught_up = rows(store)
            assert caught_up["rm_registrations"]
            model = tuple(v for v in VIEWS if v.name.startswith(read_model.VIEW_PREFIX))
            for batch in (1, 3, 1000):  # the pupils view ahead of the model: its later facts wait for their batch
                Projector(store, views=model, batch_size=batch).rebuild()
                assert rows(store) == caught_up, batch
        finally:
            store.close()


def test_a_row_key_names_its_content() -> None:
    """Rows that differ in any column get different keys, equal rows the same; a value orjson declines (an integer
    beyond 64 bits, which no schema lets through) still gets one, by json's serialisation."""
    table = read_model.RM_PLACEMENTS
    values = ("e1", "urn:100001", "URN123", "ap_registered", 2, "2025-09-01", None, 25.0, None, None, None, "2025-12-19", 1)
    row = (table, values, "2025-09-01", None)
    # the same content built anew (as the upkeep's fold builds it again, batch after batch) names the same row
    rebuilt = (table, tuple(list(values[:7]) + [float("25")] + list(values[8:])), "2025-09-01", None)
    assert rebuilt is not row and read_model.row_key(rebuilt) == read_model.row_key(row)
    variants = [
        (table, values, "2025-09-02", None),
        (table, values, "2025-09-01", "2025-10-01"),
        (read_model.RM_EXITS, values, "2025-09-01", None),
        *(
            (table, values[:i] + (f"{v}x" if isinstance(v, str) else 1 if v is None else v + 1,) + values[i + 1 :], "2025-09-01", None)
            for i, v in enumerate(values)
        ),
    ]
    keys = {read_model.row_key(v) for v in variants}
    assert len(keys) == len(variants) and read_model.row_key(row) not in keys
    huge = (table, values[:4] + (2**70,) + values[5:], "2025-09-01", None)
    assert len(read_model.row_key(huge)) == 24 and read_model.row_key(huge) != read_model.row_key(row)


def _plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(node for child in plan.get("Plans", []) for node in _plan_nodes(child))]


def test_a_batchs_rows_are_found_by_their_sequences_in_a_table_without_statistics(pg_url: str, tmp_path: Path) -> None:
    """The upkeep finds a batch's new rows again in ``rm_events`` (``read_model_months.new_rows``) while the table has no
    statistics: rebuilt, with autovacuum off or not yet round. By the unique index on the sequence, the planner knows a
    list of 500 sequences (a batch at the log's end) finds 500 rows; by a column it does not know unique it expected
    most of the table and scanned it, and an index of the rows known now alone (``superseded_at IS NULL``, as until
    ``MODEL_VERSION`` 24) it took for a small one and read whole (200 ms a batch of 4,000 at 1.34 M events, against 3
    by the sequences)."""
    store = admin.initialise(Settings(home=tmp_path / "home", database_url=pg_url)).ledger.store
    try:
        with store.cursor(commit=True) as cur:
            cur.execute("DROP TABLE IF EXISTS rm_events")
            for statement in read_model.RM_EVENTS.ddl():
                cur.execute(statement)
            cur.execute(  # 200,000 reports over two years, a few superseded; never analysed
                "INSERT INTO rm_events (event_id, seq, type, subject, occurred_on, received_at, superseded_at, submitter, unit) "
                "SELECT md5(n::text), n, 'pupil.excluded', md5((n % 50000)::text), "
                "to_char(DATE '2024-09-01' + n % 700, 'YYYY-MM-DD'), to_char(n, 'FM000000000'), "
                "CASE WHEN n % 97 = 0 THEN to_char(n + 1, 'FM000000000') END, 'urn:1', 'urn:' || (n % 900)::text "
                "FROM generate_series(1, 200000) n"
            )
        assert store.query("SELECT reltuples FROM pg_class WHERE relname = 'rm_events'")[0][0] == -1  # no statistics
        sql, params = new_rows(store, list(range(199_501, 200_001)))
        plan = store.query("EXPLAIN (FORMAT JSON) " + sql, params)[0][0][0]["Plan"]
        nodes = _plan_nodes(plan)
        scanned = {n.get("Index Name") for n in nodes if "Scan" in n["Node Type"] and n["Node Type"] != "Bitmap Heap Scan"}
        assert scanned == {"rm_events_seq"}, plan
        assert len(store.query(sql, params)) == 500 - len([n for n in range(199_501, 200_001) if n % 97 == 0])
    finally:
        store.close()
