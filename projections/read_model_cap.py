"""The suspension cap's breaches kept as numbers per day (issue 20): England's, and each unit's, so that no state at the
ledger's now reads every suspension of the year to find the few pupils past the cap.

``suspension_cap_breaches`` counts, at (D, T), the pupils whose suspensions in force of D's academic year to date pass
the cap (``CAP_SESSIONS``), each under the unit of the suspension at which the running total, in ledger order, first
passes it (``read_model_queries.CAP_CROSSINGS``). Asked of the rows, that is every suspension of the year and each
pupil's total: 162 of an LA state's 900 ms of SQL at 1 M pupils, for no breach at all in that workload.

For the suspensions known now (``SUSPENSIONS_KNOWN_NOW``), two tables keep the answer instead:

* ``rm_england_reports`` (``read_model_england``): England's, one on the first day of an academic year on which the
  pupil's total of that year passes the cap (``crossings``);
* ``rm_cap_units``: each unit's, as changes per unit and day (``unit_crossings``): the pupil counts under a unit from
  the first day on which the crossing is that unit's suspension, and moves when a suspension of an earlier effective
  day but later in the ledger (a late report) makes another the crossing, or leaves when a correction or retraction
  takes the pupil under the cap.

Both are read like the reports: the changes from the first of September to D (a pupil is counted in one academic
year's changes only). The upkeep (``cap_upkeep``) recomputes a touched pupil's crossings from its suspensions known
now before and after the batch, in the batch's transaction; an erasure takes the pupil's off.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import date
from typing import Any

from ledger.core.rules import SUSPENSION_CAP_DAYS
from ledger.core.schooltime import academic_year_start_of

from .read_model_england import RM_ENGLAND_REPORTS, Change, EnglandChanges
from .read_model_roll import SumTable

CAP_BREACHES = "suspension_cap_breaches"
CAP_SESSIONS = 2 * SUSPENSION_CAP_DAYS
# A pupil's suspensions known now (``read_model_queries.SUSPENSIONS``' rows: every unit's), for the cap's crossings
SUSPENSIONS_KNOWN_NOW = "e.type = 'pupil.excluded' AND e.kind = 'SUSP' AND e.superseded_at IS NULL"

RM_CAP_UNITS = SumTable(
    "rm_cap_units",
    (("unit", "TEXT NOT NULL"), ("day", "TEXT NOT NULL"), ("n", "BIGINT NOT NULL")),  # unit '' for none
    key=("unit", "day"),
    counting="n <> 0",
)

Suspension = tuple[int, str, str | None, int]  # ledger sequence, effective day, unit, sessions
UnitChange = tuple[str, str, int]  # unit ('' for none), day, pupils


def _years(suspensions: Iterable[Suspension]) -> Iterator[list[Suspension]]:
    """A pupil's suspensions by academic year (of the effective day)."""
    years: dict[int, list[Suspension]] = defaultdict(list)
    for seq, day, unit, sessions in suspensions:
        years[academic_year_start_of(date.fromisoformat(day))].append((int(seq), day, unit, int(sessions)))
    yield from years.values()


def crossings(suspensions: Iterable[tuple[str, int]]) -> Iterator[Change]:
    """England's cap breaches of one pupil, from its suspensions known now (effective day, sessions): the pupil breaches
    the cap at D when its sessions of D's academic year to date pass it, which is when the SQL finds a crossing (sessions are
    at least 1, so the running total in ledger order passes the cap at exactly one suspension once the year's total does).
    Counted once, on the first day of each academic year on which the total passes the cap, and read like the reports:
    summed from the first of September to D."""
    for rows in _years((0, day, None, sessions) for day, sessions in suspensions):
        total = 0
        for _, day, _, sessions in sorted(rows, key=lambda r: r[1]):
            total += sessions
            if total > CAP_SESSIONS:
                yield CAP_BREACHES, day, "", 1, 0, 1
                break


def unit_crossings(suspensions: Iterable[Suspension]) -> Iterator[UnitChange]:
    """One pupil's cap breaches per unit, from its suspensions known now: at each effective day D of a year's
    suspensions, the crossing among those of the year up to D, in ledger order (the SQL's), names the unit the pupil
    counts under from D on, until the next such day names another (or none). Read like the reports: the changes summed
    from the first of September to D."""
    for rows in _years(suspensions):
        counted: str | None = None  # the unit the pupil counts under so far this year (None: not counted)
        for day in sorted({r[1] for r in rows}):
            total, crossing = 0, None
            for _, _, unit, sessions in sorted(r for r in rows if r[1] <= day):
                total += sessions
                if total > CAP_SESSIONS:
                    crossing = unit or ""
                    break
            if crossing != counted:
                if counted is not None:
                    yield counted, day, -1
                if crossing is not None:
                    yield crossing, day, 1
                counted = crossing


class UnitChanges:
    """A batch's changes to ``rm_cap_units``, summed per unit and day, written at once in key order."""

    def __init__(self) -> None:
        self.sums: dict[tuple[str, str], int] = defaultdict(int)

    def add(self, changes: Iterable[UnitChange], sign: int = 1) -> None:
        for unit, day, n in changes:
            self.sums[unit, day] += sign * n

    def write(self, cur: Any, store: Any) -> None:
        RM_CAP_UNITS.add(cur, store, [(unit, day, n) for (unit, day), n in sorted(self.sums.items()) if n])
        self.sums.clear()


_COLUMNS = "e.subject, e.event_id, e.seq, e.occurred_on, e.unit, e.sessions"


def cap_upkeep(cur: Any, store: Any, subjects: Iterable[str], new: set[str], superseded: Iterable[str], forgotten: bool = False) -> None:
    """Change England's and the units' cap breaches of ``subjects`` by a batch that wrote the reports ``new`` and
    superseded ``superseded`` (rows before the batch: those known now but the new, and the superseded); ``forgotten``:
    take the subjects' breaches off (an erasure)."""
    subjects = sorted(set(subjects))
    if not subjects:
        return
    after: dict[str, list[tuple[str, Suspension]]] = defaultdict(list)
    for subject, event_id, seq, day, unit, sessions in store.select_in(
        cur, f"SELECT {_COLUMNS} FROM rm_events e WHERE {{where}} AND {SUSPENSIONS_KNOWN_NOW}", "e.subject", subjects
    ):
        after[subject].append((event_id, (int(seq), day, unit, int(sessions))))
    before = {subject: [r for r in rows if r[0] not in new] for subject, rows in after.items()}
    gone = [i for i in superseded if i not in new]
    if gone:
        for subject, event_id, seq, day, unit, sessions in store.select_in(
            cur, f"SELECT {_COLUMNS} FROM rm_events e WHERE {{where}} AND e.type = 'pupil.excluded' AND e.kind = 'SUSP'", "e.event_id", gone
        ):
            before.setdefault(subject, []).append((event_id, (int(seq), day, unit, int(sessions))))
    england, units = EnglandChanges(), UnitChanges()
    for subject in set(after) | set(before):
        was = [s for _, s in before.get(subject, [])]
        england.add(crossings((day, n) for _, day, _, n in was), -1)
        units.add(unit_crossings(was), -1)
        if not forgotten:
            now = [s for _, s in after.get(subject, [])]
            england.add(crossings((day, n) for _, day, _, n in now))
            units.add(unit_crossings(now))
    england.write(cur, store, RM_ENGLAND_REPORTS)
    units.write(cur, store)


# each unit's breaches at (D, now), as ``read_model_queries.aggregated``'s rows (a pupil counts under one unit at D: its
# items are summed per unit)
UNIT_SUMS = (
    f"SELECT NULLIF(unit, '') AS unit, '' AS label, CAST(SUM(n) AS BIGINT) AS num, 0 AS den, CAST(SUM(n) AS BIGINT) AS n, "
    f"NULL AS item FROM {RM_CAP_UNITS.name} WHERE day >= :ys AND day <= :d GROUP BY unit HAVING SUM(n) <> 0"
)
