"""Aggregate tables for researchers ("safe outputs") under the disclosure control the public reports use. Pure.

Counts of distinct pupils in a two-way table with row, column and grand totals. ``control`` is the one place the
cells are protected: a count of 1 to ``threshold - 1`` is suppressed with the DfE symbol ``c`` (primary), and
while any row or column (totals included) has exactly one suppressed cell, its smallest unsuppressed cell is
suppressed too (secondary), so no suppressed cell can be recovered by subtracting the others from a total.
Zero stays 0. (issue 22's ``projections/disclosure.py`` is to hold these rules for every output; point
``control`` at it when it lands.)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

SUPPRESSED = "c"
TOTAL = "Total"


@dataclass(frozen=True)
class Grid:
    """A two-way table with margins: ``cells[(row, column)]`` for rows and columns including ``TOTAL``."""

    rows: tuple[str, ...]
    columns: tuple[str, ...]
    cells: dict[tuple[str, str], int]


def grid(
    counts: Mapping[tuple[str, str], int],
    row_labels: Iterable[str] = (),
    column_labels: Iterable[str] = (),
    totals: Mapping[tuple[str, str], int] | None = None,
) -> Grid:
    """The table of ``counts`` with its margins. Distinct pupils do not add up across cells (a pupil can be in two),
    so the margins come from ``totals`` (distinct pupils per row, per column and overall) when given."""
    rows = tuple(sorted(set(row_labels) | {r for r, _ in counts}))
    columns = tuple(sorted(set(column_labels) | {c for _, c in counts}))
    cells = {(r, c): int(counts.get((r, c), 0)) for r in rows for c in columns}
    sums: dict[tuple[str, str], int] = defaultdict(
        int, {(TOTAL, TOTAL): 0, **{(r, TOTAL): 0 for r in rows}, **{(TOTAL, c): 0 for c in columns}}
    )
    for (r, c), n in cells.items():
        sums[(r, TOTAL)] += n
        sums[(TOTAL, c)] += n
        sums[(TOTAL, TOTAL)] += n
    for key, n in sums.items():
        cells[key] = int(totals[key]) if totals is not None and key in totals else n
    return Grid((*rows, TOTAL), (*columns, TOTAL), cells)


def control(table: Grid, threshold: int) -> dict[tuple[str, str], str]:
    """Every cell as published: its count, or ``c``."""
    hidden = {key for key, n in table.cells.items() if 0 < n < threshold}
    lines: list[Sequence[tuple[str, str]]] = [[(r, c) for c in table.columns] for r in table.rows]
    lines += [[(r, c) for r in table.rows] for c in table.columns]
    changed = True
    while changed:
        changed = False
        for line in lines:
            if sum(key in hidden for key in line) == 1:
                shown = [key for key in line if key not in hidden]
                if not shown:
                    continue
                nonzero = [key for key in shown if table.cells[key] > 0]
                hidden.add(min(nonzero or shown, key=lambda key: (table.cells[key], line.index(key))))
                changed = True
    return {key: SUPPRESSED if key in hidden else str(n) for key, n in table.cells.items()}


def recoverable(table: Grid, published: Mapping[tuple[str, str], str]) -> list[tuple[str, str]]:
    """Suppressed cells alone in their row or column, hence recoverable from the margins (none after ``control``)."""
    out = []
    for line in [[(r, c) for c in table.columns] for r in table.rows] + [[(r, c) for r in table.rows] for c in table.columns]:
        alone = [key for key in line if published[key] == SUPPRESSED]
        if len(alone) == 1:
            out.append(alone[0])
    return out


def csv_text(table: Grid, published: Mapping[tuple[str, str], str], row_name: str, column_name: str) -> str:
    """Long form, one line per cell: ``row_name,column_name,pupils`` (deterministic, LF line ends)."""
    lines = [f"{row_name},{column_name},pupils"]
    for r in table.rows:
        for c in table.columns:
            lines.append(f"{_field(r)},{_field(c)},{published[(r, c)]}")
    return "\n".join(lines) + "\n"


def _field(value: str) -> str:
    return f'"{value.replace(chr(34), chr(34) * 2)}"' if any(ch in value for ch in ',"\n\r') else value
