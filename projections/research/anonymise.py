"""k-anonymity and l-diversity by generalisation, then suppression; rare categories grouped. Pure (Arrow tables in, out).

An equivalence class is the set of rows sharing every quasi-identifier's value. A class is safe when it holds at
least ``k`` distinct pupils (not rows: one pupil's many rows must not make a class look bigger) and, for every
sensitive attribute, at least ``l`` distinct values. Full-domain generalisation, greedily: while the rows of unsafe
classes exceed ``max_suppressed`` of all rows, the quasi-identifier whose next level up its hierarchy leaves the fewest
unsafe rows goes up; then the rows of the classes still unsafe are suppressed (left out). The
figures reported are measured afterwards on the table released (``measure``), not taken from the loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from .variables import NOT_GROUPED, OTHER, PSEUDONYM, SYMBOLS, Hierarchy


@dataclass(frozen=True)
class Anonymity:
    k: int | None  # smallest class, in distinct pupils (None: no rows)
    k_rows: int | None  # smallest class, in rows
    l: int | None  # noqa: E741 - fewest distinct values of a sensitive attribute in a class (None: no rows or none declared)


@dataclass
class Outcome:
    table: pa.Table
    levels: dict[str, str]  # variable -> the level released
    suppressed_rows: int
    grouped: dict[str, list[str]] = field(default_factory=dict)  # variable -> categories grouped into "other"
    anonymity: Anonymity = Anonymity(None, None, None)


def generalise(column: pa.ChunkedArray | pa.Array, hierarchy: Hierarchy, start: int, end: int) -> pa.Array:
    """The column's values from level ``start`` to level ``end``, mapped once per distinct value."""
    encoded = pc.dictionary_encode(column).combine_chunks() if isinstance(column, pa.ChunkedArray) else pc.dictionary_encode(column)
    mapped = pa.array([hierarchy.at(v, start, end) for v in encoded.dictionary.to_pylist()], pa.string())
    return mapped.take(encoded.indices)


def _classes(table: pa.Table, qis: Sequence[str], sensitive: Sequence[str]) -> pa.Table:
    """One row per class: its quasi-identifier values, rows, distinct pupils and distinct values of each sensitive attribute."""
    aggregates = [(PSEUDONYM, "count"), (PSEUDONYM, "count_distinct")] + [(s, "count_distinct") for s in sensitive]
    return table.group_by(list(qis), use_threads=False).aggregate(aggregates)


def _unsafe(classes: pa.Table, sensitive: Sequence[str], k: int, l: int) -> pa.Array:  # noqa: E741
    unsafe = pc.less(classes[f"{PSEUDONYM}_count_distinct"], k)
    for s in sensitive:
        unsafe = pc.or_(unsafe, pc.less(classes[f"{s}_count_distinct"], l))
    return unsafe


def unsafe_rows(table: pa.Table, qis: Sequence[str], sensitive: Sequence[str], k: int, l: int) -> int:  # noqa: E741
    classes = _classes(table, qis, sensitive)
    return int(pc.sum(pc.filter(classes[f"{PSEUDONYM}_count"], _unsafe(classes, sensitive, k, l))).as_py() or 0)


def suppress(table: pa.Table, qis: Sequence[str], sensitive: Sequence[str], k: int, l: int) -> pa.Table:  # noqa: E741
    """The table without the rows of unsafe classes."""
    classes = _classes(table, qis, sensitive)
    unsafe = classes.filter(_unsafe(classes, sensitive, k, l)).select(list(qis))
    if unsafe.num_rows == 0:
        return table
    return table.join(unsafe, keys=list(qis), join_type="left anti", use_threads=False)


def group_rare(table: pa.Table, columns: Sequence[str], k: int) -> tuple[pa.Table, dict[str, list[str]]]:
    """Categories of ``columns`` held by fewer than ``k`` distinct pupils become ``other`` (symbols stay)."""
    grouped: dict[str, list[str]] = {}
    for name in columns:
        counts = table.group_by([name], use_threads=False).aggregate([(PSEUDONYM, "count_distinct")])
        rare = sorted(
            v
            for v, n in zip(counts[name].to_pylist(), counts[f"{PSEUDONYM}_count_distinct"].to_pylist(), strict=True)
            if n < k and v not in SYMBOLS
        )
        if rare:
            grouped[name] = rare
            column = table[name]
            table = table.set_column(
                table.schema.get_field_index(name), name, pc.if_else(pc.is_in(column, value_set=pa.array(rare, pa.string())), OTHER, column)
            )
    return table, grouped


def measure(table: pa.Table, qis: Sequence[str], sensitive: Sequence[str]) -> Anonymity:
    """k (distinct pupils), k in rows and l of a table as released."""
    if table.num_rows == 0:
        return Anonymity(None, None, None)
    classes = _classes(table, qis, sensitive)
    k = int(pc.min(classes[f"{PSEUDONYM}_count_distinct"]).as_py())
    k_rows = int(pc.min(classes[f"{PSEUDONYM}_count"]).as_py())
    l = min((int(pc.min(classes[f"{s}_count_distinct"]).as_py()) for s in sensitive), default=None)  # noqa: E741
    return Anonymity(k, k_rows, l)


def anonymise(
    table: pa.Table,
    hierarchies: Mapping[str, Hierarchy],
    minimum: Mapping[str, int],
    qis: Sequence[str],
    sensitive: Sequence[str],
    k: int,
    l: int,  # noqa: E741
    max_suppressed: float,
) -> Outcome:
    """Generalise and suppress ``table`` (a ``pseudonym`` column and one string column per variable, at level 0)."""
    variables = [name for name in table.column_names if name != PSEUDONYM]
    original = table.num_rows
    levels = {name: minimum.get(name, 0) for name in variables}
    for name in variables:
        if levels[name]:
            table = table.set_column(table.schema.get_field_index(name), name, generalise(table[name], hierarchies[name], 0, levels[name]))
    table, grouped = group_rare(table, [v for v in variables if v not in qis and v not in NOT_GROUPED], k)
    budget = int(max_suppressed * table.num_rows)
    while table.num_rows and unsafe_rows(table, qis, sensitive, k, l) > budget:
        candidates = [q for q in qis if levels[q] < hierarchies[q].top]
        if not candidates:
            break
        # Greedy: the quasi-identifier whose next level leaves the fewest rows in unsafe classes goes up (ties: the one
        # with more distinct values, as Datafly would choose, then the first declared), so detail is given up where it buys most.
        trials = []
        for q in candidates:
            column = generalise(table[q], hierarchies[q], levels[q], levels[q] + 1)
            tried = table.set_column(table.schema.get_field_index(q), q, column)
            trials.append((unsafe_rows(tried, qis, sensitive, k, l), -pc.count_distinct(table[q]).as_py(), qis.index(q), q, tried))
        _, _, _, chosen, table = min(trials, key=lambda t: t[:3])
        levels[chosen] += 1
    table = suppress(table, qis, sensitive, k, l)
    # Suppression can leave a category of another variable with fewer than k pupils: group it, and suppress again any
    # class that grouping left with fewer than l distinct sensitive values (it only ever merges values).
    for _ in range(10):
        table, more = group_rare(table, [v for v in variables if v not in qis and v not in NOT_GROUPED], k)
        for name, values in more.items():
            grouped[name] = sorted(set(grouped.get(name, [])) | set(values))
        if not more:
            break
        table = suppress(table, qis, sensitive, k, l)
    table = table.sort_by([(name, "ascending") for name in table.column_names])
    return Outcome(
        table,
        {name: hierarchies[name].levels[level] for name, level in levels.items()},
        original - table.num_rows,
        grouped,
        measure(table, qis, sensitive),
    )
