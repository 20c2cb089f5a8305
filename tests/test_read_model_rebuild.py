"""The read model's rows do not depend on how its upkeep was batched, nor on whether the pupils view was ahead of it:
caught up batch by batch with every view, rebuilt alone (the pupils view at the log's end, its later facts left to
their own batches), in small or large batches, the interval tables hold the same rows, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings

from projections import read_model
from projections.config import ViewSettings
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
