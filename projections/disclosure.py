"""Statistical disclosure control for published tables, as DfE releases do it (shared domain notes §8.1):
small counts are suppressed and shown with a stated symbol, and further cells are suppressed
(secondary suppression) so that no suppressed figure can be worked out from the totals published
beside it. Pure: no database, no clock; the public reports and the research exports use it.

A release is a set of two-way tables of counts (rows x columns, e.g. local authorities x placement
setting types), each with its row totals and column totals published or withheld. Every table
satisfies its own sums: each row's cells add up to its row total, each column's to its column total,
and the totals to the grand total. A reader who sees the published cells knows those linear
equations, so a suppressed cell is *recoverable* when the equations fix its value. The protection
below checks that exactly (Gaussian elimination over the rationals) and suppresses more until no
suppressed cell is recoverable, in the whole release at once: cells of different tables that are the
same figure (a local authority's total that two breakdowns both publish, the numerator of a rate that
a breakdown also totals) are one unknown, so a figure hidden in one table cannot be read off another.

Rules (stated on every published page, ``Rules.statement``):

- a count from 1 to ``threshold - 1`` is suppressed (primary suppression); 0 is published;
- secondary suppression takes, for each recoverable cell, the smallest non-zero published cell that
  shares one of its sums (fewest pupils hidden; a 0 only when nothing else is left), ties in table
  order, until no suppressed non-zero figure is recoverable (a hidden 0 that the sums give away
  discloses nothing);
- counts are not rounded; a rate or an average is published only where the count it is built on is
  published and its denominator is at least the threshold.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from math import gcd

SUPPRESSED = "c"  # GSS convention: confidential, suppressed
NOT_APPLICABLE = "z"  # DfE: not applicable (a rate with a zero denominator)
UNAVAILABLE = "x"  # DfE: not available
TOTAL = "Total"  # the row or column key of a margin

DEFAULT_THRESHOLD = 10  # ONS and UK LLC output checking flag cells under 10 (domain notes §8.1)

Published = int | str  # a count, or one of the symbols above


@dataclass(frozen=True)
class Rules:
    threshold: int = DEFAULT_THRESHOLD

    def __post_init__(self) -> None:
        if self.threshold < 1:
            raise ValueError("the disclosure threshold must be at least 1")

    @property
    def statement(self) -> list[str]:
        """The rules in words, for the pages and files that publish protected figures."""
        return [
            f"Counts from 1 to {self.threshold - 1} are suppressed and shown as “{SUPPRESSED}”; 0 is shown as 0.",
            f"Further counts are suppressed (also “{SUPPRESSED}”) wherever a suppressed count could otherwise be worked out "
            "from the totals published with it, in any table of the release.",
            "Counts are not rounded. Rates per 100 and averages are rounded to 2 decimal places; a rate or an average is shown only "
            f"where the count it is built on is shown and its denominator is at least {self.threshold}.",
            f"“{NOT_APPLICABLE}” means not applicable (no denominator); “{UNAVAILABLE}” means not available.",
        ]

    def is_small(self, count: int) -> bool:
        return 0 < count < self.threshold


@dataclass(frozen=True)
class Table:
    """A two-way table of counts to publish. ``cells`` maps (row, column) to a count (missing: 0).

    ``row_totals`` / ``column_totals``: whether each row's total / each column's total (and the grand
    total) is published; a withheld total is still a true sum, so it still links the cells.
    """

    name: str
    rows: tuple[str, ...]
    columns: tuple[str, ...]
    cells: Mapping[tuple[str, str], int]
    row_totals: bool = True
    column_totals: bool = True

    def __post_init__(self) -> None:
        if TOTAL in self.rows or TOTAL in self.columns:
            raise ValueError(f"{TOTAL!r} is the margins' key; it cannot name a row or a column")
        if len(set(self.rows)) != len(self.rows) or len(set(self.columns)) != len(self.columns):
            raise ValueError(f"table {self.name}: rows and columns must be distinct")
        for key, count in self.cells.items():
            if key[0] not in self.rows or key[1] not in self.columns:
                raise ValueError(f"table {self.name}: cell {key} is outside the table")
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise ValueError(f"table {self.name}: cell {key} is not a count: {count!r}")

    def value(self, row: str, column: str) -> int:
        """A cell or a margin (``TOTAL`` as the row and/or the column)."""
        if row != TOTAL and column != TOTAL:
            return self.cells.get((row, column), 0)
        return self._margins[(row, column)]

    @cached_property
    def _margins(self) -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = defaultdict(int)
        for (r, c), count in self.cells.items():
            out[(r, TOTAL)] += count
            out[(TOTAL, c)] += count
            out[(TOTAL, TOTAL)] += count
        return out

    def positions(self) -> Iterable[tuple[str, str]]:
        """Every cell and margin, in reading order (rows, then the totals row)."""
        for row in (*self.rows, TOTAL):
            for column in (*self.columns, TOTAL):
                yield row, column

    def withheld(self, row: str, column: str) -> bool:
        if column == TOTAL and row != TOTAL:
            return not self.row_totals
        if row == TOTAL:
            return not self.column_totals
        return False

    def equations(self) -> Iterable[list[tuple[tuple[str, str], int]]]:
        """The sums a reader knows hold, each as (key, coefficient) terms adding up to 0."""
        for row in (*self.rows, TOTAL):
            yield [*(((row, c), 1) for c in self.columns), ((row, TOTAL), -1)]
        for column in (*self.columns, TOTAL):
            yield [*(((r, column), 1) for r in self.rows), ((TOTAL, column), -1)]


CellId = tuple[str, str, str]  # (table, row, column)


@dataclass
class Release:
    """The protected figures of a set of tables published together."""

    rules: Rules
    tables: dict[str, Table]
    suppressed: set[CellId] = field(default_factory=set)

    def published(self, table: str, row: str, column: str) -> Published | None:
        """The figure as published: the count, ``SUPPRESSED``, or None where the table withholds it."""
        t = self.tables[table]
        if t.withheld(row, column):
            return None
        return SUPPRESSED if (table, row, column) in self.suppressed else t.value(row, column)

    def rate(self, table: str, row: str, column: str, value: float | None, denominator: float | None) -> Published | float:
        """A rate or average whose numerator (or item count) is the cell (``table``, ``row``, ``column``)."""
        if value is None or not denominator:
            return NOT_APPLICABLE
        if self.published(table, row, column) == SUPPRESSED or denominator < self.rules.threshold:
            return SUPPRESSED
        return value


def _ids(tables: Sequence[Table], link_equal_columns: bool) -> dict[CellId, CellId]:
    """Each cell's unknown: itself, or one canonical cell of another table holding the same figure.

    The columns that may hold a figure another table also holds are the row totals, and the one column of a
    one-column table (a count per area). Two such columns of different tables over the same rows whose
    figures are equal in every row and in total are taken to be the same figure (the areas' totals of one
    population, broken down two ways): protected as one, so it is hidden in both or in neither."""
    canonical: dict[CellId, CellId] = {}
    if not link_equal_columns:
        return canonical
    first: dict[tuple[tuple[str, ...], tuple[int, ...]], tuple[str, str]] = {}
    for t in tables:
        linkable = (TOTAL, *t.columns) if len(t.columns) == 1 else (TOTAL,)
        for column in linkable:
            vector = tuple(t.value(r, column) for r in (*t.rows, TOTAL))
            if not any(vector):
                continue  # all-zero columns are published as zeros, never suppressed: nothing to link
            key = (t.rows, vector)
            if key not in first:
                first[key] = (t.name, column)
                continue
            other, other_column = first[key]
            for row in (*t.rows, TOTAL):
                canonical[(t.name, row, column)] = (other, row, other_column)
    return canonical


def protect(tables: Sequence[Table], rules: Rules = Rules()) -> Release:
    """Suppress small counts, then as few further counts as it takes that no suppressed figure of the
    release is fixed by the sums published beside it (checked exactly)."""
    names = [t.name for t in tables]
    if len(set(names)) != len(names):
        raise ValueError("tables of a release need distinct names")
    by_name = {t.name: t for t in tables}
    same = _ids(tables, link_equal_columns=True)

    def unknown_of(cell: CellId) -> CellId:
        return same.get(cell, cell)

    values: dict[CellId, int] = {}
    order: dict[CellId, int] = {}
    withheld: set[CellId] = set()
    for t in tables:
        for row, column in t.positions():
            cell = (t.name, row, column)
            order[cell] = len(order)
            values[cell] = t.value(row, column)
            if t.withheld(row, column):
                withheld.add(cell)
    # a figure is shown if any table shows it; it is hidden everywhere or nowhere
    shown_somewhere = {unknown_of(c) for c in values if c not in withheld}
    hidden = {u for u in shown_somewhere if rules.is_small(values[u])}
    # equations over the unknowns (canonical ids), each term (unknown, coefficient)
    equations: list[dict[CellId, int]] = []
    for t in tables:
        for terms in t.equations():
            combined: dict[CellId, int] = defaultdict(int)
            for (row, column), coefficient in terms:
                combined[unknown_of((t.name, row, column))] += coefficient
            equations.append({u: k for u, k in combined.items() if k})
    never_shown = {unknown_of(c) for c in withheld} - shown_somewhere

    # A hidden 0 that the sums give away discloses nothing (0 is published anyway): only non-zero figures count.
    solved: dict[Group, set[CellId]] = {}
    while exposed := {u for u in recoverable(equations, hidden | never_shown, solved) & hidden if values[u]}:
        # One secondary suppression at a time (it may cover others too), for the first exposed cell that a single
        # sum gives away, else the first exposed: a cell fixed only through others is covered by covering them.
        unknown = hidden | never_shown
        ranked = sorted(exposed, key=order.__getitem__)
        cell = next((c for c in ranked if any(_alone(c, e, unknown) for e in equations if c in e)), ranked[0])
        hidden.add(_secondary(cell, equations, unknown, values, order))
    suppressed = {c for c in values if c not in withheld and unknown_of(c) in hidden}
    return Release(rules, by_name, suppressed)


def _alone(cell: CellId, equation: Mapping[CellId, int], unknown: set[CellId]) -> bool:
    return not any(u in unknown for u in equation if u != cell)


def _secondary(
    cell: CellId, equations: list[dict[CellId, int]], unknown: set[CellId], values: Mapping[CellId, int], order: Mapping[CellId, int]
) -> CellId:
    """The published figure to suppress so that ``cell`` is no longer fixed: the smallest in a sum where it is
    the only figure not shown (the sum that gives it away), else the smallest sharing any sum with it (or,
    failing that, with any unknown it is tied to)."""
    sharing = [e for e in equations if cell in e]
    alone = [e for e in sharing if _alone(cell, e, unknown)]
    candidates = {u for e in alone for u in e if u not in unknown} or {u for e in sharing for u in e if u not in unknown}
    if not candidates:
        tied = {u for e in sharing for u in e}
        candidates = {u for e in equations if tied & e.keys() for u in e if u not in unknown}
    if not candidates:
        candidates = {u for e in equations for u in e if u not in unknown}
    if not candidates:
        raise ValueError(f"{cell} is fixed by the sums yet every figure is hidden: the table's figures are inconsistent")
    return min(candidates, key=lambda u: (values[u] == 0, values[u], order[u]))  # a hidden 0 protects least: last resort


Group = frozenset[tuple[tuple[CellId, int], ...]]


def recoverable(
    equations: Sequence[Mapping[CellId, int]], unknown: set[CellId], solved: dict[Group, set[CellId]] | None = None
) -> set[CellId]:
    """The unknowns whose value the equations fix, given every other figure: exact, over the rationals.

    Each connected group of unknowns (linked through shared equations) is solved on its own: an unknown is
    fixed exactly when no solution of the homogeneous system moves it, i.e. it is a pivot of the reduced
    row echelon form whose row has no free column. Which are fixed depends on the group's rows alone (their
    row space), so ``solved`` keeps each group's answer for the next call (``protect`` asks again after each
    further suppression, which changes one group)."""
    rows = [{u: k for u, k in e.items() if u in unknown} for e in equations]
    rows = [r for r in rows if r]
    parent: dict[CellId, CellId] = {}

    def find(u: CellId) -> CellId:
        while parent.setdefault(u, u) != u:
            parent[u] = parent[parent[u]]
            u = parent[u]
        return u

    for r in rows:
        first, *rest = r
        for u in rest:
            parent[find(u)] = find(first)
    groups: dict[CellId, list[dict[CellId, int]]] = defaultdict(list)
    for r in rows:
        groups[find(next(iter(r)))].append(r)
    fixed: set[CellId] = set()
    known = {} if solved is None else solved
    for group in groups.values():
        key = frozenset(tuple(sorted(r.items())) for r in group)
        if key not in known:
            known[key] = _fixed(group)
        fixed |= known[key]
    return fixed


def _fixed(equations: list[dict[CellId, int]]) -> set[CellId]:
    """Unknowns fixed by the equations: reduced row echelon form over the rationals, rows kept sparse. In the
    reduced form each row holds one pivot and otherwise only free unknowns; a pivot is fixed iff its row
    holds nothing else.

    The rows are kept as integers, each a rational row times a nonzero number (fraction-free: ``_combined``), which
    is exact and about ten times faster than ``Fraction`` arithmetic; a row's pivot need not be 1, and which
    coefficients are zero, all that decides the answer, is the same as in the rational form."""
    basis: list[tuple[CellId, dict[CellId, int]]] = []
    for equation in equations:
        row = dict(equation)
        for pivot, reduced in basis:
            factor = row.get(pivot)
            if factor:
                row = _combined(row, reduced[pivot], reduced, factor)
        if not row:
            continue
        pivot = min(row)  # any nonzero column will do; the smallest keeps the result independent of dict order
        for i, (other, reduced) in enumerate(basis):
            factor = reduced.get(pivot)
            if factor:
                basis[i] = (other, _combined(reduced, row[pivot], row, factor))
        basis.append((pivot, row))
    return {pivot for pivot, row in basis if row.keys() == {pivot}}


def _combined(a: Mapping[CellId, int], times_a: int, b: Mapping[CellId, int], times_b: int) -> dict[CellId, int]:
    """``times_a * a - times_b * b`` without its zero terms, divided by the gcd of its coefficients (so they stay small)."""
    out = {u: k * times_a for u, k in a.items()}
    for u, k in b.items():
        out[u] = out.get(u, 0) - times_b * k
    out = {u: k for u, k in out.items() if k}
    divisor = gcd(*out.values())
    return {u: k // divisor for u, k in out.items()} if divisor > 1 else out
