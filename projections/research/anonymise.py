"""k-anonymity and l-diversity by generalisation, then suppression; rare categories grouped. Pure (Arrow tables in, out).

An equivalence class is the set of rows sharing every quasi-identifier's value. A class is safe when it holds at
least ``k`` distinct pupils (not rows: one pupil's many rows must not make a class look bigger) and, for every
sensitive attribute, at least ``l`` distinct values. Full-domain generalisation, greedily: while the rows of unsafe
classes exceed ``max_suppressed`` of all rows, the quasi-identifier whose next level up its hierarchy leaves the fewest
unsafe rows goes up; then the rows of the classes still unsafe are suppressed (left out). The
figures reported are measured afterwards on the table released (``measure``), not taken from the loop.

The work is done on **codes**, not strings (``Coded``): each column is its sorted distinct values and, per row, the
position of the row's value among them. Equal codes are equal values and code order is value order, so classes,
counts of distinct values, suppression and the final sort are the same over codes as over strings; generalising or
grouping a column maps its few distinct values, not its million cells; and a million rows of codes take a few
megabytes a column where strings take tens (docs/research.md, memory). Strings are made once, for the table released.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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


def _sorted_distinct(values: pa.Array) -> pa.Array:
    distinct = pc.unique(values)
    return distinct.take(pc.array_sort_indices(distinct))


def encode(column: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, pa.Array]:
    """A string column (plain or dictionary-encoded, in any number of chunks, each with its own dictionary) as its sorted
    distinct values and each row's code (int32): the position of its value among them."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    encoded = [c if pa.types.is_dictionary(c.type) else pc.dictionary_encode(c) for c in chunks]
    if not encoded:
        return pa.array([], pa.string()), pa.array([], pa.int32())
    values = _sorted_distinct(pa.concat_arrays([e.dictionary.cast(pa.string()) for e in encoded]))
    codes = [pc.index_in(e.dictionary.cast(pa.string()), value_set=values).take(e.indices).cast(pa.int32()) for e in encoded]
    return values, pa.concat_arrays(codes)


def recode(
    values: pa.Array, codes: pa.Array | pa.ChunkedArray, change: Callable[[str], str]
) -> tuple[pa.Array, pa.Array | pa.ChunkedArray]:
    """The column with ``change`` applied to each value: its distinct values are mapped, then the codes through them."""
    mapped = pa.array([change(v) for v in values.to_pylist()], pa.string())
    new_values = _sorted_distinct(mapped)
    return new_values, pc.index_in(mapped, value_set=new_values).cast(pa.int32()).take(codes)


@dataclass
class Coded:
    """A table as codes: ``codes`` holds one int32 column per column, ``values[name]`` the sorted distinct values its codes index."""

    values: dict[str, pa.Array]
    codes: pa.Table

    @classmethod
    def of(cls, table: pa.Table) -> Coded:
        values: dict[str, pa.Array] = {}
        columns = []
        for name in table.column_names:
            values[name], codes = encode(table[name])
            columns.append(codes)
        return cls(values, pa.table(columns, names=table.column_names))

    def recoded(self, name: str, change: Callable[[str], str]) -> Coded:
        values, codes = recode(self.values[name], self.codes[name], change)
        return Coded({**self.values, name: values}, self.codes.set_column(self.codes.schema.get_field_index(name), name, codes))

    def generalised(self, name: str, hierarchy: Hierarchy, start: int, end: int) -> Coded:
        return self.recoded(name, lambda v: hierarchy.at(v, start, end))

    def distinct(self, name: str) -> int:
        return int(pc.count_distinct(self.codes[name]).as_py())

    def decoded(self) -> pa.Table:
        """The strings, column by column."""
        return pa.table([self.values[n].take(self.codes[n]) for n in self.codes.column_names], names=self.codes.column_names)


def _classes(codes: pa.Table, qis: Sequence[str], sensitive: Sequence[str]) -> pa.Table:
    """One row per class: its quasi-identifier codes, rows, distinct pupils and distinct values of each sensitive attribute."""
    aggregates = [(PSEUDONYM, "count"), (PSEUDONYM, "count_distinct")] + [(s, "count_distinct") for s in sensitive]
    return codes.group_by(list(qis), use_threads=False).aggregate(aggregates)


def _unsafe(classes: pa.Table, sensitive: Sequence[str], k: int, l: int) -> pa.Array:  # noqa: E741
    unsafe = pc.less(classes[f"{PSEUDONYM}_count_distinct"], k)
    for s in sensitive:
        unsafe = pc.or_(unsafe, pc.less(classes[f"{s}_count_distinct"], l))
    return unsafe


def unsafe_rows(codes: pa.Table, qis: Sequence[str], sensitive: Sequence[str], k: int, l: int) -> int:  # noqa: E741
    classes = _classes(codes, qis, sensitive)
    return int(pc.sum(pc.filter(classes[f"{PSEUDONYM}_count"], _unsafe(classes, sensitive, k, l))).as_py() or 0)


def suppress(table: Coded, qis: Sequence[str], sensitive: Sequence[str], k: int, l: int) -> Coded:  # noqa: E741
    """The table without the rows of unsafe classes."""
    classes = _classes(table.codes, qis, sensitive)
    unsafe = classes.filter(_unsafe(classes, sensitive, k, l)).select(list(qis))
    if unsafe.num_rows == 0:
        return table
    kept = table.codes.join(unsafe, keys=list(qis), join_type="left anti", use_threads=False)
    return Coded(table.values, kept.select(table.codes.column_names))


def group_rare(table: Coded, columns: Sequence[str], k: int) -> tuple[Coded, dict[str, list[str]]]:
    """Categories of ``columns`` held by fewer than ``k`` distinct pupils become ``other`` (symbols stay)."""
    grouped: dict[str, list[str]] = {}
    for name in columns:
        counts = table.codes.group_by([name], use_threads=False).aggregate([(PSEUDONYM, "count_distinct")])
        values = table.values[name]
        rare = sorted(
            values[c].as_py()
            for c, n in zip(counts[name].to_pylist(), counts[f"{PSEUDONYM}_count_distinct"].to_pylist(), strict=True)
            if n < k and values[c].as_py() not in SYMBOLS
        )
        if rare:
            grouped[name] = rare
            table = table.recoded(name, _other_if_in(frozenset(rare)))
    return table, grouped


def _other_if_in(rare: frozenset[str]) -> Callable[[str], str]:
    return lambda value: OTHER if value in rare else value


def measure(table: pa.Table, qis: Sequence[str], sensitive: Sequence[str]) -> Anonymity:
    """k (distinct pupils), k in rows and l of a table as released (strings or codes: the same classes)."""
    if table.num_rows == 0:
        return Anonymity(None, None, None)
    classes = _classes(table, qis, sensitive)
    k = int(pc.min(classes[f"{PSEUDONYM}_count_distinct"]).as_py())
    k_rows = int(pc.min(classes[f"{PSEUDONYM}_count"]).as_py())
    l = min((int(pc.min(classes[f"{s}_count_distinct"]).as_py()) for s in sensitive), default=None)  # noqa: E741
    return Anonymity(k, k_rows, l)


def anonymise(
    table: pa.Table | Coded,
    hierarchies: Mapping[str, Hierarchy],
    minimum: Mapping[str, int],
    qis: Sequence[str],
    sensitive: Sequence[str],
    k: int,
    l: int,  # noqa: E741
    max_suppressed: float,
) -> Outcome:
    """Generalise and suppress ``table`` (a ``pseudonym`` column and one string column per variable, at level 0; or the
    same as ``Coded``, which spares making the strings of a large table only to encode them again)."""
    coded = table if isinstance(table, Coded) else Coded.of(table)
    del table
    names = coded.codes.column_names
    variables = [name for name in names if name != PSEUDONYM]
    original = coded.codes.num_rows
    levels = {name: minimum.get(name, 0) for name in variables}
    for name in variables:
        if levels[name]:
            coded = coded.generalised(name, hierarchies[name], 0, levels[name])
    others = [v for v in variables if v not in qis and v not in NOT_GROUPED]
    coded, grouped = group_rare(coded, others, k)
    budget = int(max_suppressed * coded.codes.num_rows)
    while coded.codes.num_rows and unsafe_rows(coded.codes, qis, sensitive, k, l) > budget:
        candidates = [q for q in qis if levels[q] < hierarchies[q].top]
        if not candidates:
            break
        # Greedy: the quasi-identifier whose next level leaves the fewest rows in unsafe classes goes up (ties: the one
        # with more distinct values, as Datafly would choose, then the first declared), so detail is given up where it buys most.
        trials = []
        for q in candidates:
            tried = coded.generalised(q, hierarchies[q], levels[q], levels[q] + 1)
            trials.append((unsafe_rows(tried.codes, qis, sensitive, k, l), -coded.distinct(q), qis.index(q), q, tried))
        _, _, _, chosen, coded = min(trials, key=lambda t: t[:3])
        del trials
        levels[chosen] += 1
    coded = suppress(coded, qis, sensitive, k, l)
    # Suppression can leave a category of another variable with fewer than k pupils: group it, and suppress again any
    # class that grouping left with fewer than l distinct sensitive values (it only ever merges values).
    for _ in range(10):
        coded, more = group_rare(coded, others, k)
        for name, values in more.items():
            grouped[name] = sorted(set(grouped.get(name, [])) | set(values))
        if not more:
            break
        coded = suppress(coded, qis, sensitive, k, l)
    # Code order is value order, so sorting the codes sorts the strings.
    coded = Coded(coded.values, coded.codes.sort_by([(name, "ascending") for name in names]))
    return Outcome(
        coded.decoded(),
        {name: hierarchies[name].levels[level] for name, level in levels.items()},
        original - coded.codes.num_rows,
        grouped,
        measure(coded.codes, qis, sensitive),
    )
