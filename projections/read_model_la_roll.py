"""The roll kept per LA (issue 20), so that an LA state at the ledger's now reads every LA's numbers as a few sums, not
the schools' numbers nor the rows of pupils with several registrations in an academic year one by one.

Most pupils have one registration in an academic year: ``rm_roll`` keeps their numbers per school and day, and its
changes are added to ``rm_la_roll`` under each school's scope too (an LA state added each school's number up under its
LA: 61,281 rows per school and day at 1 M pupils, growing with the schools and the days). A pupil with several (a move, dual registration: ``year_regs`` > 1) counts
once in each LA it is in on D, and once in England, however many of its schools count it; so an LA state read those
rows one by one (``read_model_queries.SHARED_REGISTRATIONS``): 42,236 rows at 1 M pupils, over a third of an LA read
with their grouping per pupil in Python.

For the rows known now, these two tables keep them per scope (each school's LA as ``rm_unit_la`` says, else the school,
as ``Directory.la_of`` does):

* ``rm_shared_runs``: each such pupil's runs of days per scope, as the union of its rows' runs at the schools of that
  scope (``read_model_roll.registration_runs``: on the roll, and at a school in the year to date), as England's
  ``pupil_runs`` takes them for the whole country. ``spans`` is 1 when the pupil's runs are under more than one scope:
  such a pupil (none in the simulated nation at 1 M pupils: its moves stay in an LA) is read one by one at D, as an
  item under each of its scopes, so that England and a region count it once.
* ``rm_la_roll``: the changes per scope and day of the other pupils' runs (1 on a run's first day, -1 on its end), and
  ``rm_roll``'s, so that an LA's number at D is the sum of its changes up to D.

The upkeep (``SharedRolls``) runs with ``rm_roll``'s and England's (``read_model.KnownNow``), in the batch's
transaction: for each pupil whose rows known now changed, the stored runs are taken off (their changes off
``rm_la_roll``) and the runs of its rows known now are written, with the LAs known now. Taking off exactly what was
stored keeps the numbers right when a school's LA becomes known after its pupils' rows (a Kafka worker may apply a
school's registration after its pupils' events, from another partition): runs stored under the school's own id are
read under its LA (the read maps every scope as ``unit_la`` does), and a pupil with runs under the school and under
that LA is an item under each, which the roll-up counts once by key. An erasure takes the pupil's runs off first
(``read_model.forget_state``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from .orgs import Directory
from .read_model_england import shard
from .read_model_la import UNIT_LA_JOIN, unit_la
from .read_model_roll import DailyChanges, Run, SumTable, registration_runs, union


@dataclass(frozen=True)
class PupilRuns(SumTable):
    """A sum table whose rows are one pupil's each (an erasure deletes them by ``subject``), with an index of the rows
    ``where`` singles out."""

    keyed_by_subject: ClassVar[bool] = True
    where: str = ""

    def ddl(self) -> list[str]:
        # by the run's end: a read at D takes the runs still going on D, where runs that started by D are nearly all of
        # them once the years go by (spans is the pupil's, over all its years)
        return [*super().ddl(), f"CREATE INDEX IF NOT EXISTS {self.name}_spans_end ON {self.name} (end_on) WHERE {self.where}"]


RM_SHARED_RUNS = PupilRuns(
    "rm_shared_runs",
    (
        ("subject", "TEXT NOT NULL"),
        ("scope", "TEXT NOT NULL"),  # the LA of the schools (rm_unit_la when written), else the school
        ("kind", "TEXT NOT NULL"),  # 'roll': on the roll; 'year': at a school in the academic year to date
        ("first", "TEXT NOT NULL"),
        ("end_on", "TEXT"),  # None: open
        ("spans", "INTEGER NOT NULL"),  # 1: the pupil's runs are under more than one scope (read one by one)
    ),
    key=("subject", "scope", "kind", "first"),
    where="spans = 1",
)
RM_LA_ROLL = DailyChanges(
    "rm_la_roll",
    (
        ("scope", "TEXT NOT NULL"),
        ("day", "TEXT NOT NULL"),
        ("shard", "INTEGER NOT NULL"),  # the writer's share, as England's numbers' (``read_model_england.use_shard``)
        ("roll", "INTEGER NOT NULL"),
        ("year", "INTEGER NOT NULL"),
    ),
    key=("scope", "day", "shard"),
    counting="roll <> 0 OR year <> 0",
    indexes=("day",),  # D's month's days (``DailyChanges.up_to``)
)
KINDS = ("roll", "year")

StoredRun = tuple[str, str, str, str | None, int]  # scope, kind, first, end, spans


def scoped_runs(rows: Iterable[tuple[Any, ...]], scope_of: Any) -> set[StoredRun]:
    """A pupil's runs per scope from its registrations sharing an academic year (``REGISTRATION_COLUMNS`` order):
    the union of the runs of its rows at the schools of each scope (``scope_of(school)``)."""
    runs: dict[tuple[str, str], list[Run]] = {}
    for school, status, start_on, end_on, _, valid_from, valid_to in rows:
        scope = scope_of(school)
        for kind, run in zip(KINDS, registration_runs(status, start_on, end_on, valid_from, valid_to), strict=True):
            if run is not None:
                runs.setdefault((scope, kind), []).append(run)
    spans = int(len({scope for scope, _ in runs}) > 1)
    return {(scope, kind, first, end, spans) for (scope, kind), found in runs.items() for first, end in union(found)}


class SharedRolls:
    """A batch's changes to the runs of pupils with several registrations in an academic year, and to the roll's numbers
    per scope (those runs', and ``rm_roll``'s given to ``write``): ``update`` with each changed pupil's rows known now
    (none: the pupil's runs go)."""

    def __init__(self) -> None:
        self.pupils: dict[str, list[tuple[Any, ...]]] = {}

    def update(self, subject: str, rows: Iterable[tuple[Any, ...]]) -> None:
        self.pupils[subject] = list(rows)

    def schools(self) -> set[str]:
        """The schools whose LAs ``write`` asks for."""
        return {row[0] for rows in self.pupils.values() for row in rows}

    def write(self, cur: Any, store: Any, las: Directory, schools: Mapping[tuple[str, str], list[int]]) -> None:
        """The changes, each school's scope as ``las`` (its LA known now, ``las_of``) says; with ``schools``, the batch's
        changes to ``rm_roll`` (the pupils with one registration in the year: on the roll, in the year, per school and
        day), added to ``rm_la_roll`` under each school's scope."""
        sums: dict[tuple[str, str], list[int]] = {}
        for (school, day), (roll, year) in schools.items():
            total = sums.setdefault((las.la_of(school) or school, day), [0, 0])
            total[0], total[1] = total[0] + roll, total[1] + year
        if self.pupils:
            self._runs(cur, store, las, sums)
        RM_LA_ROLL.add(
            cur, store, [(scope, day, shard(), roll, year) for (scope, day), (roll, year) in sorted(sums.items()) if roll or year]
        )

    def _runs(self, cur: Any, store: Any, las: Directory, sums: dict[tuple[str, str], list[int]]) -> None:
        """The changed pupils' runs stored again, and their changes added to ``sums``."""
        subjects = sorted(self.pupils)
        stored: dict[str, set[StoredRun]] = {}
        for subject, scope, kind, first, end, spans in store.select_in(
            cur, f"SELECT subject, scope, kind, first, end_on, spans FROM {RM_SHARED_RUNS.name} WHERE {{where}}", "subject", subjects
        ):
            stored.setdefault(subject, set()).add((scope, kind, first, end, int(spans)))
        gone: list[tuple[str]] = []
        added: list[tuple[Any, ...]] = []
        for subject in subjects:
            before = stored.get(subject, set())
            now = scoped_runs(self.pupils[subject], lambda school: las.la_of(school) or school)
            if before == now:
                continue
            if before:
                gone.append((subject,))
            added.extend((subject, *run) for run in sorted(now, key=lambda r: r[:3]))
            for runs, sign in ((before, -1), (now, 1)):
                for scope, kind, first, end, spans in runs:
                    if spans:
                        continue
                    column = KINDS.index(kind)
                    for day, step in ((first, sign), (end, -sign)):
                        if day is not None:
                            sums.setdefault((scope, day), [0, 0])[column] += step
        self.pupils.clear()
        if gone:
            cur.executemany(store.sql(f"DELETE FROM {RM_SHARED_RUNS.name} WHERE subject = ?"), gone)
        if added:
            cur.executemany(
                store.sql(f"INSERT INTO {RM_SHARED_RUNS.name} (subject, scope, kind, first, end_on, spans) VALUES (?, ?, ?, ?, ?, ?)"),
                added,
            )


# At (D, now): the kept pupils' numbers per scope, each scope mapped as ``unit_la`` maps a unit (a school's own id, where
# its runs were written before its LA was known, reads as its LA): scope, on the roll, at a school in the year to date
LA_ROLL_SUMS = (
    f"SELECT {unit_la('c.unit')} AS scope, CAST(SUM(c.roll) AS BIGINT) AS roll, CAST(SUM(c.year) AS BIGINT) AS year FROM (SELECT scope AS unit, SUM(roll) AS roll, SUM(year) AS year "
    f"FROM ({RM_LA_ROLL.up_to('scope, roll, year')}) x GROUP BY scope) c {UNIT_LA_JOIN} GROUP BY 1"
)
# ... and the pupils under more than one scope, one by one: scope (as stored), kind, pupil
SPANNING_RUNS = (
    f"SELECT scope, kind, subject FROM {RM_SHARED_RUNS.name} WHERE spans = 1 AND first <= :d AND (end_on IS NULL OR end_on > :d)"
)
