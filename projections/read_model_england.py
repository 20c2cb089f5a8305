"""England's figures kept as numbers per day (issue 20), so that a national read at the ledger's now does not scan the
pupils' rows.

A state made for national figures (``ReadModelContext(level="national")``: an England read, a national series) sums
every unit's items as England's. Asked of the rows, each metric is still a scan of every row in force, which grows with
the pupils: 530 ms of SQL at 1 M pupils in March. For the rows known now, these tables keep England's numbers instead,
which grow with the days and the labels, not the pupils:

* ``rm_england_reports`` (view ``read_model_events``): for every metric that counts the reports of the year to date
  (``read_model_months.REPORTS``), the reports known now summed per effective day and label, and for the academic year
  to each month's end (``rm_england_reports_months``). England's figure at (D, now) is the sum over the days from the
  first of September to D, read as the year to the end of the month before D's and D's month's days: the same rows as the metric's SQL, by the same
  definition (``EventCount``), as ``rm_months`` keeps them per unit and month. The AP attendance summaries are kept
  there too, per day and academic year (the label): England's attendance rate at (D, now) sums the summaries of D's
  academic year that occurred by D. The suspension cap's breaches are kept there too: a pupil counts on the first day
  of an academic year on which its suspensions pass the cap (``read_model_cap.crossings``).
* ``rm_england_state`` (view ``read_model_state``): for metrics over the state tables, each row known now adds its
  numerator and denominator on the first day it counts and takes them off on the first day it stops counting
  (``placement_changes``, ``exit_changes``, ``registration_changes``: the predicates of ``read_model_queries``' SQL, as
  runs of effective days, as ``rm_roll``'s are), so
  England's figure at (D, now) is the sum of the changes up to D. The roll's two numbers (``ROLL`` and ``YEAR``:
  pupils on the roll at D, and at a school in the academic year to date) are kept the same way: a registration alone in
  its academic years counts by itself; a pupil's registrations sharing an academic year (moves, dual registration)
  count once, as the union of their runs (``pupil_runs``), so a pupil on two rolls counts once in England. The
  placements ended in the trailing year are kept per length (``LENGTHS``, the length as the label), so that the median
  and mean lengths and the register's ended placements need not read them. The changes are kept per day, summed for
  the academic year to each month's end and per academic year (``DailyChanges``): a read sums the earlier years', the
  month before D's and D's month's days, rows that grow with the years and the labels, not with the days.

The upkeep is ``rm_roll``'s and ``rm_months``': a state row's changes are added when it becomes known now and taken
off when it stops being (``read_model.maintain_state``), a report's when it is written or superseded
(``read_model_months.after_facts``), and an erased pupil's rows are taken off before they are deleted. A read at an
earlier ledger time reads the rows, as before. Not kept, and read from the rows: the pupils in unregistered provision
at more than one placement at once (one by one, few), the placements ended (joined to the state), the post-16
destinations (the latest per pupil).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import date, timedelta
from typing import Any

from .context import TRAILING_DAYS
from .read_model_roll import DailyChanges, SumTable, earlier_end, next_year_start, registration_runs, union
from .roll import GAP_EXEMPT_DESTINATIONS, UNEXPLAINED_DESTINATIONS
from .unregistered import UNREGISTERED_SETTING_TYPES

ATTENDANCE = "ap_attendance_rate"  # kept with the reports, per day and academic year (``read_model_months.ENGLAND_REPORTS``)
ROLL = "registrations:roll"  # the pupils on the roll at D (counted once each)
YEAR = "registrations:year"  # the pupils at a school in the academic year to date (counted once each)

_COLUMNS = (
    ("metric", "TEXT NOT NULL"),
    ("day", "TEXT NOT NULL"),
    ("label", "TEXT NOT NULL"),  # '' for none
    # the writer's share of the sums (``use_shard``): every batch changes England's rows of its days, so two Kafka
    # workers adding to the same rows would wait for each other's commits (two workers ran at 0.9x one); a read sums them all
    ("shard", "INTEGER NOT NULL"),
    ("num", "BIGINT NOT NULL"),
    ("den", "BIGINT NOT NULL"),
    ("n", "BIGINT NOT NULL"),  # items
)
_KEY = ("metric", "day", "label", "shard")
# (with its sums per month, so that a read sums the whole months of the year before D's and D's month's days, not every
# day of the year: a national series summed 2,482-8,000 rows of days at each of its dates at 1 M pupils)
RM_ENGLAND_REPORTS = DailyChanges("rm_england_reports", _COLUMNS, key=_KEY, counting="n <> 0", indexes=("day",))
# (with its sums per month, so that a read sums the months before D's and D's month's days, not every day since the
# first: the ended placements' lengths add a row per day and length)
RM_ENGLAND_STATE = DailyChanges("rm_england_state", _COLUMNS, key=_KEY, counting="n <> 0 OR num <> 0 OR den <> 0", indexes=("day",))
SHARDS = 8
_shard = [0]  # this process's share: 0 for the direct projector (one writer), set by a Kafka worker


def use_shard(shard: int) -> None:
    """Write this process's changes to England's numbers as share ``shard`` (0 to SHARDS - 1): a Kafka worker takes its
    own, so that two workers rarely add to the same rows (sharing one costs waiting, never a wrong sum)."""
    if not 0 <= shard < SHARDS:
        raise ValueError(f"a shard is 0 to {SHARDS - 1}, not {shard}")
    _shard[0] = shard


def shard() -> int:
    return _shard[0]


# the metrics rm_england_state keeps (with the roll's two numbers); a read at now takes them from it
STATE_METRICS = frozenset(
    {
        "open_ap_placements_by_setting_type",
        "open_ap_placements_by_tier",
        "overdue_time_limited_placements",
        "pupils_in_unregistered_provision",  # the pupils with one placement; the others are read one by one
        "ap_reintegration_rate",
        "placements_ended_by_outcome",
        "children_without_setting_after_leaving",
        "sen_exits",
        "unexplained_exit_rate",
    }
)

# the placements ended in the trailing year, per length (label: the length in days): England's median and mean lengths
# and the register's ended placements at now, without a scan of the placements ended in the trailing year (the two
# largest statements of an England read: 37.5 and 29.7 ms at 2 M pupils, growing with the pupils)
LENGTHS = "ap_placement_length_median_days"

Change = tuple[str, str, str, int, int, int]  # metric, day, label, num, den, items


def _day_after(day: str, days: int = 1) -> str | None:
    """The day ``days`` after ``day``; None past the last day a date can hold (a planned end of 9999-12-31 is valid
    input: the placement is never overdue, and a window from it never closes)."""
    try:
        return (date.fromisoformat(day) + timedelta(days=days)).isoformat()
    except OverflowError:
        return None


def _run(metric: str, first: str, end: str | None, label: str = "", num: int = 1, den: int = 0) -> Iterator[Change]:
    """An item counting on the days [first, end) (end None: open): added on its first day, taken off on its end."""
    if end is not None and first >= end:
        return
    yield metric, first, label, num, den, 1
    if end is not None:
        yield metric, end, label, -num, -den, -1


def placement_changes(values: tuple[Any, ...], valid_from: str, valid_to: str | None) -> Iterator[Change]:
    """A placement row's changes, by ``read_model_queries``' predicates (``OPEN_PLACEMENT``, the overdue, unregistered,
    ended and reintegration queries) as runs of D. A placement ended counts once (the write side takes one end of an open
    placement), so its row's end and outcome are its end event's."""
    _, _, _, setting_type, tier, _, planned_end, _, end_on, outcome, _, deadline, places = values
    if end_on is None:  # open in this state: OPEN_PLACEMENT
        yield from _run("open_ap_placements_by_setting_type", valid_from, valid_to, setting_type)
        yield from _run("open_ap_placements_by_tier", valid_from, valid_to, str(tier))
        if int(tier) == 2 and planned_end is not None:  # overdue once D > planned_end
            overdue_from = _day_after(planned_end)
            if overdue_from is not None:
                yield from _run("overdue_time_limited_placements", max(valid_from, overdue_from), valid_to)
        if setting_type in UNREGISTERED_SETTING_TYPES and int(places) == 1:
            yield from _run("pupils_in_unregistered_provision", valid_from, valid_to)
    if end_on is not None:  # ended in D's academic year, by outcome: from the end until the first of September after it
        yield from _run("placements_ended_by_outcome", max(valid_from, end_on), earlier_end(valid_to, next_year_start(end_on)), outcome)
    if deadline is not None:  # deadline in [D - (TRAILING_DAYS - 1), D]
        reintegrated = int(outcome == "mainstream" and end_on is not None and end_on <= deadline)
        end = earlier_end(valid_to, _day_after(deadline, TRAILING_DAYS))
        yield from _run("ap_reintegration_rate", max(valid_from, deadline), end, num=reintegrated, den=1)


def length_changes(values: tuple[Any, ...], valid_from: str, valid_to: str | None) -> Iterator[Change]:
    """An ended placement row's length, counted while ``read_model_queries.ENDED_LENGTHS`` finds it: the row valid at D
    and its end in the trailing year (``end_on >= D - (TRAILING_DAYS - 1)``), as a run of D labelled by the length. Kept
    for England only: per LA the rows would be months by LAs by lengths, more than the placements they count."""
    end_on, length = values[8], values[10]
    if end_on is not None:
        yield from _run(LENGTHS, valid_from, earlier_end(valid_to, _day_after(end_on, TRAILING_DAYS)), str(length), int(length), 1)


def exit_changes(values: tuple[Any, ...], valid_from: str, valid_to: str | None) -> Iterator[Change]:
    """A removal's changes, by ``read_model_queries``' ``_exits`` predicates as runs of D (``occurred_on >= :ys``: D before
    the first of September after it; ``check_day >= :ys`` likewise)."""
    _, _, occurred_on, check_day, destination, sen_status, with_setting = values
    without_setting = destination not in GAP_EXEMPT_DESTINATIONS and int(with_setting) == 0  # WITHOUT_SETTING, from check_day on
    if without_setting:
        yield from _run(
            "children_without_setting_after_leaving", max(valid_from, check_day), earlier_end(valid_to, next_year_start(check_day))
        )
    in_year = earlier_end(valid_to, next_year_start(occurred_on))
    if sen_status is not None and sen_status != "N":
        yield from _run("sen_exits", valid_from, in_year, sen_status)
    if destination in UNEXPLAINED_DESTINATIONS:
        yield from _run("unexplained_exit_rate", valid_from, in_year)
    elif without_setting:
        yield from _run("unexplained_exit_rate", max(valid_from, check_day), in_year)


def registration_changes(row: tuple[Any, ...]) -> Iterator[Change]:
    """A registration row alone in its academic years (``year_regs`` 1), in ``read_model_roll.REGISTRATION_COLUMNS`` order."""
    _, status, start_on, end_on, _, valid_from, valid_to = row
    on_roll, in_year = registration_runs(status, start_on, end_on, valid_from, valid_to)
    if on_roll is not None:
        yield from _run(ROLL, *on_roll)
    if in_year is not None:
        yield from _run(YEAR, *in_year)


def pupil_runs(rows: Iterable[tuple[Any, ...]]) -> Iterator[Change]:
    """One pupil's registrations that share an academic year with another (``year_regs`` > 1), known now: the pupil
    counts once on each day any of them counts (``REGISTRATION_COLUMNS`` order)."""
    rolls, years = [], []
    for _, status, start_on, end_on, _, valid_from, valid_to in rows:
        on_roll, in_year = registration_runs(status, start_on, end_on, valid_from, valid_to)
        if on_roll is not None:
            rolls.append(on_roll)
        if in_year is not None:
            years.append(in_year)
    for first, end in union(rolls):
        yield from _run(ROLL, first, end)
    for first, end in union(years):
        yield from _run(YEAR, first, end)


class EnglandChanges:
    """A batch's changes to ``rm_england_state``, summed per metric, day and label, written at once (``write``)."""

    def __init__(self) -> None:
        self.sums: dict[tuple[str, str, str], list[int]] = {}

    def add(self, changes: Iterable[Change], sign: int = 1) -> None:
        for metric, day, label, num, den, n in changes:
            kept = self.sums.setdefault((metric, day, label), [0, 0, 0])
            kept[0] += sign * num
            kept[1] += sign * den
            kept[2] += sign * n

    def write(self, cur: Any, store: Any, table: SumTable | None = None) -> None:
        (table or RM_ENGLAND_STATE).add(cur, store, [(*key, shard(), *sums) for key, sums in sorted(self.sums.items()) if any(sums)])
        self.sums.clear()


# England's kept numbers at (D, now), as ``read_model_queries.aggregated``'s rows with the metric first: the reports of
# the year to date (the whole months' sums from September and D's month's days), the attendance summaries of D's
# academic year by D, and the state's changes up to D (the whole months' sums and D's month's days). A metric and label
# whose items all stopped counting keep a row of zeros, which HAVING leaves out (as the rows give none).
_NOT_ATTENDANCE, _ATTENDANCE_OF_D = f"metric <> '{ATTENDANCE}'", f"metric = '{ATTENDANCE}' AND label = :ay"
ENGLAND_SUMS = (
    "SELECT metric, label, CAST(SUM(num) AS BIGINT), CAST(SUM(den) AS BIGINT), CAST(SUM(n) AS BIGINT) "
    f"FROM ({RM_ENGLAND_REPORTS.up_to('metric, label, num, den, n', _NOT_ATTENDANCE, since=':ym')}) x "
    "GROUP BY metric, label HAVING SUM(n) <> 0 "
    # the attendance summaries of D's academic year (the label) that occurred by D, on whichever day
    "UNION ALL SELECT metric, '', CAST(SUM(num) AS BIGINT), CAST(SUM(den) AS BIGINT), CAST(SUM(n) AS BIGINT) "
    f"FROM ({RM_ENGLAND_REPORTS.up_to('metric, num, den, n', _ATTENDANCE_OF_D)}) x "
    "GROUP BY metric HAVING SUM(n) <> 0 "
    "UNION ALL SELECT metric, label, CAST(SUM(num) AS BIGINT), CAST(SUM(den) AS BIGINT), CAST(SUM(n) AS BIGINT) "
    f"FROM ({RM_ENGLAND_STATE.up_to('metric, label, num, den, n')}) x GROUP BY metric, label HAVING SUM(n) <> 0"
)
