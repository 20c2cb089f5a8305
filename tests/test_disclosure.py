"""Statistical disclosure control (projections/disclosure.py): no published count below the threshold, and no
suppressed cell recoverable from the row and column totals published with it, checked by an independent
exact solver (rank test over the rationals) on random releases, including tables that share figures."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projections.disclosure import SUPPRESSED, TOTAL, Release, Rules, Table, protect


def rank(rows: list[list[Fraction]]) -> int:
    """Rank by plain forward elimination (a different algorithm from the module's reduced echelon form)."""
    m = [r[:] for r in rows if any(r)]
    rank_, col = 0, 0
    width = len(m[0]) if m else 0
    while rank_ < len(m) and col < width:
        pivot = next((i for i in range(rank_, len(m)) if m[i][col] != 0), None)
        if pivot is None:
            col += 1
            continue
        m[rank_], m[pivot] = m[pivot], m[rank_]
        for i in range(rank_ + 1, len(m)):
            f = m[i][col] / m[rank_][col]
            if f:
                m[i] = [a - f * b for a, b in zip(m[i], m[rank_], strict=True)]
        rank_ += 1
        col += 1
    return rank_


def attacker_recovers(release: Release, same: dict[tuple[str, str, str], tuple[str, str, str]]) -> set[tuple[str, str, str]]:
    """What a reader of the published tables can work out: every table's sums over the cells not shown
    (suppressed or withheld), with ``same`` naming cells that are by construction the same figure. A hidden
    cell is fixed iff its unit vector lies in the row space of those sums (rank does not grow)."""

    def unknown_id(cell: tuple[str, str, str]) -> tuple[str, str, str]:
        return same.get(cell, cell)

    unknowns: list[tuple[str, str, str]] = []
    for name, t in release.tables.items():
        for row, column in t.positions():
            if release.published(name, row, column) in (None, SUPPRESSED):
                u = unknown_id((name, row, column))
                if u not in unknowns:
                    unknowns.append(u)
    index = {u: i for i, u in enumerate(unknowns)}
    system: list[list[Fraction]] = []
    for name, t in release.tables.items():
        for row in (*t.rows, TOTAL):
            terms = [((row, c), 1) for c in t.columns] + [((row, TOTAL), -1)]
            system.append(_row(release, name, terms, index, unknown_id))
        for column in (*t.columns, TOTAL):
            terms = [((r, column), 1) for r in t.rows] + [((TOTAL, column), -1)]
            system.append(_row(release, name, terms, index, unknown_id))
    base = rank(system)
    found = set()
    for u, i in index.items():
        unit = [Fraction(0)] * len(unknowns)
        unit[i] = Fraction(1)
        if rank([*system, unit]) == base:
            found.add(u)
    return found


def _row(release: Release, name: str, terms: list[tuple[tuple[str, str], int]], index: dict, unknown_id) -> list[Fraction]:  # type: ignore[type-arg]
    row = [Fraction(0)] * len(index)
    for (r, c), k in terms:
        if release.published(name, r, c) in (None, SUPPRESSED):
            row[index[unknown_id((name, r, c))]] += k
    return row


def suppressed_cells(release: Release) -> set[tuple[str, str, str]]:
    return {(n, r, c) for n, t in release.tables.items() for r, c in t.positions() if release.published(n, r, c) == SUPPRESSED}


def check(release: Release, same: dict[tuple[str, str, str], tuple[str, str, str]] | None = None) -> None:
    same = same or {}
    for name, t in release.tables.items():
        for row, column in t.positions():
            shown = release.published(name, row, column)
            if isinstance(shown, int):
                assert shown == t.value(row, column)
                assert not 0 < shown < release.rules.threshold, (name, row, column, shown)
    hidden = {same.get(c, c) for c in suppressed_cells(release) if release.tables[c[0]].value(c[1], c[2])}
    assert not attacker_recovers(release, same) & hidden  # a suppressed 0 given away discloses nothing


counts = st.one_of(st.integers(0, 12), st.integers(0, 60))


@st.composite
def tables(draw: st.DrawFn, name: str = "t", rows: tuple[str, ...] | None = None) -> Table:
    rows = rows or tuple(f"r{i}" for i in range(draw(st.integers(1, 5))))
    columns = tuple(f"{name}{j}" for j in range(draw(st.integers(1, 5))))
    cells = {(r, c): draw(counts) for r in rows for c in columns}
    return Table(name, rows, columns, cells, row_totals=draw(st.booleans()), column_totals=draw(st.booleans()))


@given(table=tables(), threshold=st.integers(1, 15))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_one_table_no_small_published_cell_and_nothing_recoverable(table: Table, threshold: int) -> None:
    check(protect([table], Rules(threshold)))


@st.composite
def linked(draw: st.DrawFn) -> tuple[list[Table], dict[tuple[str, str, str], tuple[str, str, str]]]:
    """Two breakdowns of the same row totals (e.g. placements by setting type and by tier, per LA), and a
    one-column table of those totals (the count metric), all published together."""
    rows = tuple(f"la{i}" for i in range(draw(st.integers(1, 5))))
    a = draw(tables("a", rows))
    a = Table("a", a.rows, a.columns, a.cells, row_totals=True, column_totals=draw(st.booleans()))
    totals = {r: a.value(r, TOTAL) for r in rows}
    b_columns = ("b0", "b1", "b2")
    b_cells = {}
    for r in rows:
        left = totals[r]
        for c in b_columns[:-1]:
            b_cells[(r, c)] = n = draw(st.integers(0, left))
            left -= n
        b_cells[(r, b_columns[-1])] = left
    b = Table("b", rows, b_columns, b_cells, row_totals=True, column_totals=a.column_totals)
    count = Table("n", rows, ("value",), {(r, "value"): totals[r] for r in rows}, row_totals=False, column_totals=a.column_totals)
    same = {}
    for r in (*rows, TOTAL):
        same[("b", r, TOTAL)] = ("a", r, TOTAL)
        same[("n", r, "value")] = ("a", r, TOTAL)
        same[("n", r, TOTAL)] = ("a", r, TOTAL)
    return [a, b, count], same


@given(release=linked(), threshold=st.integers(2, 12))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_tables_sharing_totals_are_protected_together(release: tuple[list[Table], dict], threshold: int) -> None:  # type: ignore[type-arg]
    tables_, same = release
    protected = protect(tables_, Rules(threshold))
    check(protected, same)
    for r in (*tables_[0].rows, TOTAL):  # a shared figure is shown in every table or in none
        shown = {protected.published("a", r, TOTAL) == SUPPRESSED, protected.published("b", r, TOTAL) == SUPPRESSED}
        if not tables_[2].withheld(r, "value"):
            shown.add(protected.published("n", r, "value") == SUPPRESSED)
        assert len(shown) == 1


def test_a_lone_small_cell_takes_a_partner_in_its_row_and_column() -> None:
    t = Table("t", ("x", "y"), ("p", "q"), {("x", "p"): 3, ("x", "q"): 40, ("y", "p"): 25, ("y", "q"): 50})
    release = protect([t])
    assert release.published("t", "x", "p") == SUPPRESSED
    assert suppressed_cells(release) == {("t", "x", "p"), ("t", "x", "q"), ("t", "y", "p"), ("t", "y", "q")}
    check(release)


def test_two_suppressed_cells_joined_by_a_bridge_are_caught() -> None:
    """Every row and column with a hidden cell has two, yet one cell is fixed (a bridge between two
    cycles): the rule 'two per line' is not enough; the exact check is."""
    rows, columns = ("a", "b", "c", "d"), ("p", "q", "r", "s")
    cells = {(r, c): 50 for r in rows for c in columns}
    small = {("a", "p"): 2, ("a", "q"): 3, ("b", "p"): 4, ("b", "q"): 5, ("c", "r"): 6, ("c", "s"): 7, ("d", "r"): 8, ("d", "s"): 9}
    cells.update(small)
    cells[("b", "r")] = 1  # joins the two blocks: a third hidden cell in row b and column r
    release = protect([Table("t", rows, columns, cells)])
    check(release)


def test_zero_is_published_and_the_symbol_is_stated() -> None:
    release = protect([Table("t", ("x",), ("p", "q"), {("x", "p"): 0, ("x", "q"): 30})])
    assert release.published("t", "x", "p") == 0
    assert any("“c”" in line for line in release.rules.statement)


def test_rates_follow_their_numerator() -> None:
    t = Table("n", ("la1", "la2", "la3"), ("value",), {("la1", "value"): 4, ("la2", "value"): 30, ("la3", "value"): 50}, row_totals=False)
    release = protect([t])
    assert release.rate("n", "la1", "value", 1.5, 300) == SUPPRESSED
    assert release.rate("n", "la3", "value", 2.5, 2000) == 2.5
    assert release.rate("n", "la3", "value", 50.0, 4) == SUPPRESSED  # denominator under the threshold
    assert release.rate("n", "la3", "value", None, 0) == "z"


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_a_table_of_non_counts_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="not a count"):
        Table("t", ("x",), ("p",), {("x", "p"): bad})  # type: ignore[dict-item]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.dictionaries(st.integers(0, 6), st.integers(-3, 3).filter(bool), min_size=1, max_size=5),
        min_size=1,
        max_size=7,
    ),
    st.sets(st.integers(0, 6)),
)
def test_the_solver_fixes_exactly_the_unknowns_whose_unit_vector_is_in_the_row_space(
    equations: list[dict[int, int]], unknown: set[int]
) -> None:
    """recoverable's integer (fraction-free) elimination against the rank test over Fractions, on systems with
    coefficients other than 1 (sums of linked tables count a figure more than once)."""
    from projections.disclosure import recoverable

    cells = {i: ("t", str(i), "c") for i in range(7)}
    system = [{cells[u]: k for u, k in e.items()} for e in equations]
    hidden = {cells[u] for u in unknown}
    columns = sorted(hidden)
    rows = [[Fraction(e.get(c, 0)) for c in columns] for e in system if any(c in e for c in columns)]
    expected = set()
    for c in columns:
        unit = [Fraction(int(c == other)) for other in columns]
        if rows and rank([*rows, unit]) == rank(rows):
            expected.add(c)
    assert recoverable(system, hidden) == expected
    assert recoverable(system, hidden, {}) == expected
