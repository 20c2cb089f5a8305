"""The roll kept as numbers per school and day (issue 20), so that a state's roll is not a scan of every registration.

Four metrics count registrations (``pupils_on_roll``, the suspension and permanent exclusion rates' denominators,
the unexplained-exit rate's pupils): per school, the pupils with one registration **on the roll at D** and **at
their school in the year to date** (``read_model_queries.IN_YEAR_AT_SCHOOL``). Asked of ``rm_registrations`` that
was a scan of every row in force: 127 of a state's 300 ms of SQL at 300,000 pupils, growing with the pupils.

``rm_roll`` keeps, for the rows known now (``known_to IS NULL``) of registrations alone in their academic years (``year_regs = 1``),
the changes of those two numbers per school and effective day. A row counts at D over a run of days:

* at school in the year to date: ``valid_from <= D < valid_to``, ``start_on <= D`` and ``end_on >= ys(D)`` (the
  first of September of D's academic year), that is D in ``[max(valid_from, start_on), min(valid_to, the first of
  September after end_on))``;
* on the roll: besides, ``end_on > D`` and ``status`` C or M, that is D in ``[max(valid_from, start_on),
  min(valid_to, end_on))``;

so it adds 1 to a number at the run's first day and takes 1 off at its end. The numbers at D are the sums of the
changes up to D, per school: one row per school and day on which something changed, not one per pupil.

A read at ledger time T (``read_model_queries.ROLL_COUNTS``, asked by ``ReadModelContext.roll_counts``) takes those sums, takes off the rows known now that T did not know yet
(``known_from > T``), and adds back the rows T knew that are no longer known (``known_from <= T < known_to``): both
found by their indexes, none when T is now (the pages, the API without ``known_at``), few when T is recent; the
same predicates as the scan, so the answer is the scan's (``tests/test_read_model.py`` requires the fold's answers,
and that the stored numbers equal those recomputed from the rows). All in one statement: one snapshot of both tables.
A read so far in the past that more than ``CORRECTIONS_LIMIT`` (``read_model_queries``) rows would correct the numbers scans the
registrations instead, as before (a first, bounded count of those rows says which).

The upkeep (``Changes``) adds a row's changes when it becomes known now and takes them off when it stops being
(ended, deleted to be recomputed, or its pupil erased: ``read_model.forget_state``), in the same transaction as the rows; the
batch's changes are summed per school and day first and written in key order (two Kafka workers that touch the
same school and day wait for each other; a batch split by an erasure writes twice, so two such batches can deadlock,
and the worker whose batch is rolled back applies it again: ``feed/consumer.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from functools import cached_property, lru_cache
from typing import Any, ClassVar

from ledger.core.schooltime import academic_year_start_of

from .facts import Table

ON_ROLL_STATUSES = ("C", "M")


@dataclass(frozen=True)
class SumTable(Table):
    """A table of numbers summed per key (no facts, no pupils: an erasure changes its numbers, not its rows')."""

    key: tuple[str, ...] = ()
    # the rows that count something: a sum that came back to 0 leaves its row (one order of upkeep does, another not)
    counting: str = "1 = 1"

    keyed_by_subject: ClassVar[bool] = False

    @property
    def all_columns(self) -> tuple[tuple[str, str], ...]:
        return self.columns

    def ddl(self) -> list[str]:
        cols = ", ".join(f"{n} {t}" for n, t in self.columns)
        return [
            f"CREATE TABLE IF NOT EXISTS {self.name} ({cols}, PRIMARY KEY ({', '.join(self.key)}))",
            *(f"CREATE INDEX IF NOT EXISTS {self.name}_{c.replace(', ', '_')} ON {self.name} ({c})" for c in self.indexes),
        ]

    def adding(self) -> str:
        """The clause that makes an insert of a row whose key is there add its numbers to the row's."""
        added = ", ".join(f"{n} = {self.name}.{n} + excluded.{n}" for n, _ in self.columns if n not in self.key)
        return f"ON CONFLICT ({', '.join(self.key)}) DO UPDATE SET {added}"

    def adding_sql(self) -> str:
        """The upsert that adds a row (every column, in order, ``?`` marks) to the sums of its key."""
        names = [n for n, _ in self.columns]
        return f"INSERT INTO {self.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) {self.adding()}"

    def add(self, cur: Any, store: Any, rows: list[tuple[Any, ...]]) -> None:
        """Add ``rows`` (every column, in order; in key order, so that two writers wait rather than deadlock)."""
        if rows:
            cur.executemany(store.sql(self.adding_sql()), rows)


@dataclass(frozen=True)
class YearToDate(SumTable):
    """A sum table keyed by a ``month`` ('YYYY-MM') whose row of a month holds the sums of the academic year to that
    month's end: a report of month m is added to m's row and to each later month's up to the August that ends m's
    academic year (``to_date``). The sums of the whole months of D's year before D's month are then one row per key (the
    month before D's, if it is in D's academic year), not one per month since September: in June an LA state read
    36,471 rows of the suspensions by reason per LA to sum them per LA and label (4,353 rows)."""

    def to_date(self, sums: str) -> str:
        """``sums`` (the table's key columns but its share, with ``month``, then its other columns) once under their own
        month and once under each later month of its academic year. Months are counted as whole numbers (year × 12 +
        month − 1, September being 8 modulo 12), as both databases compute them, and written back as 'YYYY-MM'; none
        after December 9999, the last month a date holds."""
        keys = [k for k in self.key if k != "shard"]
        passed = ", ".join(f"s.{k}" if k != "month" else f"{_month_text('s.i + k.k')} AS month" for k in keys)
        index = "CAST(SUBSTR(x.month, 1, 4) AS INTEGER) * 12 + CAST(SUBSTR(x.month, 6, 2) AS INTEGER) - 1"
        values = ", ".join(f"s.{n}" for n, _ in self.columns if n not in self.key)
        later = " UNION ALL ".join(f"SELECT {k} AS k" for k in range(12))
        to_august = _of_twelve(f"19 - {_of_twelve('s.i')}")  # the months after i's in its academic year (September: 11)
        return (
            f"SELECT {passed}, {values} FROM (SELECT x.*, {index} AS i FROM ({sums}) x) s "
            f"JOIN ({later}) k ON k.k <= {to_august} AND s.i + k.k < {10000 * 12}"
        )


def _of_twelve(whole: str) -> str:
    """The SQL remainder of a whole number ≥ 0 divided by 12: by division, as ``%`` is psycopg's placeholder and SQLite
    has no ``MOD`` unless built with its mathematical functions."""
    return f"(({whole}) - ({whole}) / 12 * 12)"


def _month_text(index: str) -> str:
    """The SQL text 'YYYY-MM' of a month counted as a whole number (year × 12 + month − 1), for years 1 to 9999."""
    return f"SUBSTR(CAST(10000 + ({index}) / 12 AS TEXT), 2) || '-' || SUBSTR(CAST(101 + {_of_twelve(index)} AS TEXT), 2)"


def previous_month(day: date) -> str:
    """The month before ``day``'s, as 'YYYY-MM' (the row of ``YearToDate`` holding the year's whole months before D's)."""
    year, month = divmod(day.year * 12 + day.month - 2, 12)
    return f"{year:04d}-{month + 1:02d}"


@lru_cache(maxsize=4096)
def months_to_august(month: str) -> tuple[str, ...]:
    """``month`` ('YYYY-MM') and the later months of its academic year, to its August (none after December 9999): the rows
    of a ``YearToDate`` table a change in ``month`` is added to, as ``YearToDate.to_date`` finds them in SQL. (Asked for
    every change a batch adds, of a few months: kept.)"""
    year, number = int(month[:4]), int(month[5:7])
    months = [month]
    while number != 8 and (year, number) != (9999, 12):
        year, number = (year + 1, 1) if number == 12 else (year, number + 1)
        months.append(f"{year:04d}-{number:02d}")
    return tuple(months)


@dataclass(frozen=True)
class DailyChanges(SumTable):
    """A sum table of changes per effective ``day`` (one of its key columns), kept beside their sums of the academic year
    to each month's end (``months``, a ``YearToDate`` table: the same key with ``month`` for ``day``) and per academic
    year (``years``: ``year_start``, the year it starts in, for ``day``), so that the sum of the changes up to D (``up_to``) reads
    the earlier academic years' sums, one month's row of D's academic year and D's month's days, not every day nor every
    month since the first: rows that grow with the years, not the days or months."""

    @cached_property
    def months(self) -> YearToDate:
        return YearToDate(
            f"{self.name}_months",
            tuple(("month", t) if n == "day" else (n, t) for n, t in self.columns),
            key=tuple("month" if k == "day" else k for k in self.key),
            counting=self.counting,
            indexes=("month",),  # ``up_to`` reads one month's rows of every key (every metric, scope and label)
        )

    @cached_property
    def years(self) -> SumTable:
        return SumTable(
            f"{self.name}_years",
            tuple(("year_start", "INTEGER NOT NULL") if n == "day" else (n, t) for n, t in self.columns),
            key=tuple("year_start" if k == "day" else k for k in self.key),
            counting=self.counting,
        )

    def add(self, cur: Any, store: Any, rows: list[tuple[Any, ...]]) -> None:
        """The changes per day, their sums of the year to each month's end, and per academic year."""
        super().add(cur, store, rows)
        at = [n for n, _ in self.columns].index("day")
        keys = [i for i, (n, _) in enumerate(self.columns) if n in self.key]
        months: dict[tuple[Any, ...], list[Any]] = {}
        years: dict[tuple[Any, ...], list[Any]] = {}
        for row in rows:
            day = row[at]
            for month in months_to_august(day[:7]):
                _sum_into(months, (*row[:at], month, *row[at + 1 :]), keys)
            _sum_into(years, (*row[:at], academic_year_start_of(date.fromisoformat(day)), *row[at + 1 :]), keys)
        self.months.add(cur, store, [tuple(months[k]) for k in sorted(months)])
        self.years.add(cur, store, [tuple(years[k]) for k in sorted(years)])

    def up_to(self, columns: str, where: str = "", since: str = "") -> str:
        """``columns`` of the changes on the days up to D: the academic years' sums before D's (``:yy``, the year D's
        starts in), the sums of D's academic year to the end of the month before D's (``:pm``; none in September), and
        the days of D's month (from ``:ms``) up to D; only the rows matching ``where`` (SQL, if given), and only since the
        first of D's academic year if ``since`` is ``:ym`` (the year to date: no earlier year)."""
        if since not in ("", ":ym"):
            raise ValueError(f"the changes are summed from the first day or from D's academic year, not from {since}")
        also = f" AND {where}" if where else ""
        earlier = "" if since else f"SELECT {columns} FROM {self.years.name} WHERE year_start < :yy{also} UNION ALL "
        return (
            f"{earlier}SELECT {columns} FROM {self.months.name} WHERE month = :pm AND month >= :ym{also} "
            f"UNION ALL SELECT {columns} FROM {self.name} WHERE day >= :ms AND day <= :d{also}"
        )

    @staticmethod
    def monthly(sums: str, columns: tuple[str, ...]) -> str:
        """``sums`` (SQL whose ``columns`` include ``day``) with the day's month for the day, as the ``months`` table keys
        them before they are added to the later months of the year (``YearToDate.to_date``)."""
        return "SELECT " + ", ".join("SUBSTR(day, 1, 7) AS month" if c == "day" else c for c in columns) + f" FROM ({sums}) d"

    @staticmethod
    def yearly(sums: str, columns: tuple[str, ...]) -> str:
        """``sums`` (SQL whose ``columns`` include ``day``) with the year in which the day's academic year starts for the
        day, as the ``years`` table keys them (``academic_year_start_of``)."""
        start = "CAST(SUBSTR(day, 1, 4) AS INTEGER) - CASE WHEN SUBSTR(day, 6, 2) < '09' THEN 1 ELSE 0 END AS year_start"
        return "SELECT " + ", ".join(start if c == "day" else c for c in columns) + f" FROM ({sums}) d"


def _sum_into(sums: dict[tuple[Any, ...], list[Any]], row: tuple[Any, ...], keys: list[int]) -> None:
    """Add ``row``'s other columns to the row of ``sums`` with its ``keys`` (column positions)."""
    key = tuple(row[i] for i in keys)
    kept = sums.get(key)
    if kept is None:
        sums[key] = list(row)
    else:
        for i, value in enumerate(row):
            if i not in keys:
                kept[i] += value


RM_ROLL = SumTable(
    "rm_roll",
    (("school", "TEXT NOT NULL"), ("day", "TEXT NOT NULL"), ("roll", "INTEGER NOT NULL"), ("year", "INTEGER NOT NULL")),
    key=("school", "day"),
    counting="roll <> 0 OR year <> 0",
)

# a registration row's columns as rm_registrations stores them, in this order
REGISTRATION_COLUMNS = ("school", "status", "start_on", "end_on", "year_regs", "valid_from", "valid_to")


def next_year_start(day: str) -> str:
    """The first of September after ``day`` (ISO): the first D whose academic year starts after ``day``."""
    return date(academic_year_start_of(date.fromisoformat(day)) + 1, 9, 1).isoformat()


def earlier_end(a: str | None, b: str | None) -> str | None:
    """The earlier of two ends, None being open."""
    return b if a is None else a if b is None else min(a, b)


Run = tuple[str, str | None]  # the effective days [first, end) a row counts on (end None: open)


def registration_runs(
    status: str, start_on: str, end_on: str | None, valid_from: str, valid_to: str | None
) -> tuple[Run | None, Run | None]:
    """The days a registration row counts (while known now): on the roll, and at its school in the year to date, by the
    predicates of ``read_model_queries`` (``AT_SCHOOL_IN_YEAR``, ``ON_ROLL``), which the tests hold these runs to."""
    first = max(valid_from, start_on)
    year_end = earlier_end(valid_to, next_year_start(end_on) if end_on else None)
    if year_end is not None and first >= year_end:
        return None, None
    roll_end = earlier_end(valid_to, end_on)
    on_roll = (first, roll_end) if status in ON_ROLL_STATUSES and (roll_end is None or first < roll_end) else None
    return on_roll, (first, year_end)


def union(runs: Iterable[Run]) -> list[Run]:
    """Runs of days merged where they overlap or touch."""
    out: list[Run] = []
    for first, end in sorted(runs, key=lambda r: r[0]):
        if out and (out[-1][1] is None or first <= out[-1][1]):
            last_first, last_end = out[-1]
            out[-1] = (last_first, None if end is None or last_end is None else max(last_end, end))
        else:
            out.append((first, end))
    return out


def changes_of(
    school: str, status: str, start_on: str, end_on: str | None, year_regs: int, valid_from: str, valid_to: str | None
) -> Iterator[tuple[str, str, int, int]]:
    """A row's changes to the two numbers (school, day, roll, year): 1 on the first day of each run, -1 on its end."""
    if year_regs != 1:
        return  # another registration of the pupil shares an academic year with it: read one by one (SHARED_REGISTRATIONS)
    on_roll, in_year = registration_runs(status, start_on, end_on, valid_from, valid_to)
    if in_year is None:
        return
    first, year_end = in_year
    yield school, first, int(on_roll is not None), 1
    if year_end is not None:
        yield school, year_end, 0, -1
    if on_roll is not None and on_roll[1] is not None:
        yield school, on_roll[1], -1, 0


class Changes:
    """A batch's changes to ``rm_roll``, summed per school and day, written at once (``write``)."""

    def __init__(self) -> None:
        self.sums: dict[tuple[str, str], list[int]] = {}

    def add(self, row: tuple[Any, ...], sign: int = 1) -> None:
        """``row``: a registration's columns in ``REGISTRATION_COLUMNS`` order."""
        for school, day, roll, year in changes_of(*row):
            kept = self.sums.setdefault((school, day), [0, 0])
            kept[0] += sign * roll
            kept[1] += sign * year

    def remove(self, row: tuple[Any, ...]) -> None:
        self.add(row, -1)

    def write(self, cur: Any, store: Any) -> None:
        RM_ROLL.add(cur, store, [(school, day, roll, year) for (school, day), (roll, year) in sorted(self.sums.items()) if roll or year])
        self.sums.clear()
