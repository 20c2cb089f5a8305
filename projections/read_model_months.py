"""Reports of the year to date kept as numbers per unit and month (issue 20), so that a state does not scan every
report of the year.

Eight metrics count the reports (``rm_events`` rows) of the academic year to date, per unit and label (``REPORTS``).
Asked of ``rm_events`` each is a scan of the year's rows in force: the late-report rate (every report, by submitter)
alone was 263 of a state's 707 ms of SQL at 1 M pupils in February, and it grows with the year and the pupils.

``rm_months`` keeps, for the rows known now (``superseded_at IS NULL``), each kept metric's (``COUNTED``) sums per unit, label and month
of the effective date: the numerator, the denominator and the number of reports. A read at (D, now) takes the sums
of the whole months from the first of September to the first of D's month, and the rows of D's own month one by
one, as before (``read_model_queries.ReadModelContext``): the same rows by the same predicates (``EventCount``:
one definition gives the metric's SQL and its sums), so the same figures. The sums know only the rows known now: a
read at an earlier ledger time T takes them less the rows known now that T did not know, plus the rows T knew that
have been superseded since (``month_sums_sql``'s ``since``), when those are few; else it reads the rows, as before.

``rm_la_months`` keeps all eight per LA known now (``read_model_la``), for a state made for LA figures at the
ledger's now: the kept ones too, so that such a state reads a few sums per LA rather than every unit's month mapped to
its LA (``MODEL_VERSION`` 23). Its row of a month holds the academic year's sums to that month's end (``YearToDate``:
a report is added to its own month's row and to each later month's of its academic year), so such a state reads one
month's row per scope and label, not every month since September (``MODEL_VERSION`` 25).

The upkeep runs after the batch's facts are written (``View.after``, in the same transaction): it adds the sums of
the batch's new rows still known at its end, and takes off those of the rows its corrections and retractions
superseded, each once (the ledger refuses a second correction of an event: ``already_corrected``). An erasure
takes the pupil's rows off first (``forget``). The sums are written in key order, as ``rm_roll``'s are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ledger.storage.store import execute_in

from .config import ViewSettings
from .facts import LogEvent
from .read_model_cap import cap_upkeep
from .read_model_england import ATTENDANCE, RM_ENGLAND_REPORTS, shard
from .read_model_la import RM_UNIT_LA, record_las, unit_la
from .read_model_roll import SumTable, YearToDate

RM_MONTHS = SumTable(
    "rm_months",
    (
        ("metric", "TEXT NOT NULL"),
        ("month", "TEXT NOT NULL"),  # the effective date's year and month: 2026-02
        ("unit", "TEXT NOT NULL"),  # '' for none
        ("label", "TEXT NOT NULL"),  # '' for none
        ("num", "BIGINT NOT NULL"),
        ("den", "BIGINT NOT NULL"),
        ("n", "BIGINT NOT NULL"),  # reports
    ),
    key=("metric", "month", "unit", "label"),
    counting="n <> 0",
)


# The sums per scope (each unit's LA known now, ``read_model_la.unit_la``, else the unit), label and month of every REPORTS
# metric, for a state made for LA figures at the ledger's now: a few sums per LA, of the academic year to each month's end
RM_LA_MONTHS = YearToDate(
    "rm_la_months",
    (
        ("metric", "TEXT NOT NULL"),
        ("month", "TEXT NOT NULL"),
        ("scope", "TEXT NOT NULL"),  # '' for none
        ("label", "TEXT NOT NULL"),
        ("shard", "INTEGER NOT NULL"),  # the writer's share, as England's numbers' (``read_model_england.use_shard``)
        ("num", "BIGINT NOT NULL"),
        ("den", "BIGINT NOT NULL"),
        ("n", "BIGINT NOT NULL"),
    ),
    key=("metric", "month", "scope", "label", "shard"),
    counting="n <> 0",
)


@dataclass(frozen=True)
class EventCount:
    """A metric whose items are the reports (``rm_events`` rows, alias ``e``) matching ``where`` in the year to date:
    each a unit, a label and a numerator and denominator part (SQL expressions; ``:late`` is the late-report threshold)."""

    where: str
    unit: str = "e.unit"
    label: str = "''"
    num: str = "1"
    den: str = "0"
    kept: bool = False  # summed per unit, label and month in rm_months (COUNTED)

    def rows(self, extra: str, columns: str = "") -> str:
        """The metric's items as ``unit, item, num, den, label`` (then ``columns``, of ``e``, if given), among the rows
        that also match ``extra``."""
        return (
            f"SELECT {self.unit} AS unit, e.event_id AS item, {self.num} AS num, {self.den} AS den, {self.label} AS label"
            f"{', ' + columns if columns else ''} FROM rm_events e WHERE {self.where} AND {extra}"
        )

    def day_sums(self, metric: str) -> str:
        """The metric's parts of each report of ``b`` (the batch's rows), as ``rm_england_reports`` keeps them (England's,
        per effective day and label)."""
        return (
            f"SELECT '{metric}' AS metric, e.occurred_on AS day, COALESCE({self.label}, '') AS label, {self.num} AS num, "
            f"{self.den} AS den FROM b e WHERE {self.where}"
        )

    def la_sums(self, metric: str) -> str:
        """The metric's parts of each report of ``b`` (the batch's rows), as ``rm_la_months`` keeps them: under the scope
        of its unit, by ``rm_unit_la`` as it stands."""
        return (
            f"SELECT '{metric}' AS metric, SUBSTR(e.occurred_on, 1, 7) AS month, COALESCE({unit_la(self.unit)}, '') AS scope, "
            f"COALESCE({self.label}, '') AS label, {self.num} AS num, {self.den} AS den FROM b e "
            f"LEFT JOIN {RM_UNIT_LA.name} m ON m.unit = {self.unit} WHERE {self.where}"
        )

    def sums(self, metric: str) -> str:
        """The metric's parts of each report of ``b`` (the batch's rows), as ``rm_months`` keeps them."""
        return (
            f"SELECT '{metric}' AS metric, SUBSTR(e.occurred_on, 1, 7) AS month, COALESCE({self.unit}, '') AS unit, "
            f"COALESCE({self.label}, '') AS label, {self.num} AS num, {self.den} AS den FROM b e WHERE {self.where}"
        )


def _type(etype: str) -> str:
    return f"e.type = 'pupil.{etype}'"


def _started_by(column: str) -> EventCount:
    return EventCount(_type("ap_placement_started"), label=f"e.{column}")


# The metrics that count the reports of the year to date, by one definition each (``read_model_queries`` reads them).
# Those ``kept`` are summed in ``rm_months``: their sums are far fewer than their rows (many reports per unit, label and
# month), or their rows are a few among many of their type. The others are not: at 1 M pupils the suspensions' sums
# were 114,233 rows against about as many reports, and reading them took 79 ms against 59 for the rows; the
# placements started gained about a millisecond each.
REPORTS: dict[str, EventCount] = {
    "late_report_rate": EventCount("1 = 1", "e.submitter", num="CASE WHEN e.late_days > :late THEN 1 ELSE 0 END", den="1", kept=True),
    "suspensions_by_reason": EventCount(f"{_type('excluded')} AND e.kind = 'SUSP'", label="e.label"),
    "permanent_exclusions_by_reason": EventCount(f"{_type('excluded')} AND e.kind = 'PERM'", label="e.label", kept=True),
    "placements_started_by_setting_type": _started_by("setting_type"),
    "placements_started_by_tier": _started_by("tier"),
    "placements_started_by_reason": _started_by("label"),
    "removals_unknown_destination": EventCount(f"{_type('deregistered')} AND e.destination = 'unknown'", kept=True),
    "backdated_removals": EventCount(f"{_type('deregistered')} AND e.backdated = 1", kept=True),
}
COUNTED = {metric: count for metric, count in REPORTS.items() if count.kept}
# The AP attendance rate counts the summaries of D's academic year (their label here) that occurred by D, whatever their
# day: England's are kept in ``rm_england_reports`` with the other reports', per day and academic year, and read by the
# year (``read_model_england.ENGLAND_SUMS``). At 7.95 M events its scan was the largest statement of a national series
# (1,435 ms summed over 51 states)
ENGLAND_REPORTS = {
    **REPORTS,
    ATTENDANCE: EventCount(_type("attendance_summary_recorded"), "e.setting", "e.academic_year", "e.attended", "e.possible"),
}


# England's reports of each metric in D's month, up to D and after it (``rm_england_reports``' numbers per day: a few rows
# per day), so that a kept count reads D's month from the side with fewer of its rows (``ReadModelContext``). The nearer
# end by days is not enough where the reports come in a spike: every registration of a new academic year is reported in
# its first days, so a read at the middle of September read them one by one (an LA's year before at 2025-09-15 spent
# 580 ms of its 666 on the late-report rate's rows at 1 M pupils, against 77 ms five days later)
MONTH_SIDES = (
    "SELECT metric, CAST(SUM(CASE WHEN day <= :d THEN n ELSE 0 END) AS BIGINT) AS up_to, "
    "CAST(SUM(CASE WHEN day > :d THEN n ELSE 0 END) AS BIGINT) AS after "
    f"FROM {RM_ENGLAND_REPORTS.name} WHERE day >= :ms AND day < :nm GROUP BY metric"
)


def month_sums_sql(
    metric: str,
    month_rows: str,
    grouping: tuple[str, str, str] = ("unit", "unit, ", ""),
    kept: SumTable = RM_MONTHS,
    after_d: bool = False,
    since: tuple[str, str] | None = None,
) -> str:
    """The metric's items summed per unit (or as ``grouping`` says: ``read_model_queries.Grouping``) and label, as
    ``read_model_queries.aggregated`` gives them: the kept sums of the whole months of the year before D's (``:ym`` <=
    month < ``:dm``), and ``month_rows`` (the rows of D's month in force, as ``unit, item, num, den, label``).
    ``after_d``: ``month_rows`` are instead the rows of D's month after D (those that would be in force were D the
    month's last day), taken off D's whole month's kept sums: the same numbers, from the month's other end (a read at the
    end of September read every registration of the year's first days one by one: 1.1 s of an LA read at 1 M pupils).
    A unit and label whose reports were all superseded keeps a row of zeros, which ``HAVING`` leaves out (the rows give none).
    ``kept``: ``rm_months`` (per unit), or ``rm_la_months`` (per scope: for the grouping per LA known now, ``PER_LA_NOW``),
    whose row of a month holds the year to that month's end (``YearToDate``: the row of the month before D's, ``:pm``,
    or of D's month with ``after_d``; ``month >= :ym`` leaves out the last academic year's August in September).
    A grouping that joins a table maps each row's unit in an inner SELECT, and the outer GROUP BY is of the column:
    PostgreSQL sorted by the expression, twice as slow. ``rm_la_months``' scopes are not mapped: they are LAs, or a unit's
    own id where a Kafka worker summed its reports before its registration was applied, which the state's ``regrouped``
    adds up under the unit's LA, as it does every row's unit.
    ``since``: for a read at an earlier ledger time T, the kept months' rows known now that T did not know (taken off)
    and those T knew that have been superseded since (added back), as ``unit, item, num, den, label``: the kept sums
    know only the rows known now."""
    unit, keys, join = grouping
    column = "scope" if kept is RM_LA_MONTHS else "unit"
    months, sign = ("month <= :dm", "-") if after_d else ("month < :dm", "")
    if isinstance(kept, YearToDate):  # the year to the month's end: D's month's row, or the month before's if in D's year
        months = "month = :dm" if after_d else "month = :pm"
    kept_rows = (
        f"SELECT NULLIF({column}, '') AS unit, label, num, den, n FROM {kept.name} WHERE metric = '{metric}' AND month >= :ym AND {months}"
    )
    current = f"SELECT unit, label, {sign}num, {sign}den, {sign}1 AS n FROM ({month_rows}) c"
    if join:
        current = f"SELECT {unit} AS unit, c.label, {sign}c.num, {sign}c.den, {sign}1 AS n FROM ({month_rows}) c {join}"
        if kept is not RM_LA_MONTHS:  # (its scopes are LAs already, or, rarely, a unit's own id: ``regrouped`` adds those)
            kept_rows = f"SELECT {unit} AS unit, c.label, c.num, c.den, c.n FROM ({kept_rows}) c {join}"
        unit, keys = "unit", "unit, "
    if since is not None:
        if join:
            raise ValueError("the kept sums are corrected to an earlier ledger time per unit only")
        learnt, retired = since
        current += (
            f" UNION ALL SELECT unit, label, -num, -den, -1 AS n FROM ({learnt}) l"
            f" UNION ALL SELECT unit, label, num, den, 1 AS n FROM ({retired}) r"
        )
    return (
        # (PostgreSQL sums BIGINT as NUMERIC, which comes back as Decimal: cast back to whole numbers)
        f"SELECT {unit} AS unit, label, CAST(SUM(num) AS BIGINT) AS num, CAST(SUM(den) AS BIGINT) AS den, "
        f"CAST(SUM(n) AS BIGINT) AS n, NULL AS item FROM ({kept_rows} UNION ALL {current}) c GROUP BY {keys}label HAVING SUM(n) <> 0"
    )


def _adding(table: SumTable, sums: str, sign: int) -> str:
    """The statement that adds (``sign`` 1) or takes off (-1) the rows of ``sums`` (the table's key columns but the
    writer's share, then ``num`` and ``den``, over the reports ``b``) summed per key, in key order, to ``table``; a table
    keyed by a share (``shard``) gets this writer's."""
    keys = ", ".join(k for k in table.key if k != "shard")
    share = f", {int(shard())}" if "shard" in table.key else ""
    counted = f"SELECT {keys}, num, den, 1 AS n FROM ({sums}) r"  # (each report: one)
    if isinstance(table, YearToDate):  # summed per month first, then under the later months: a few rows, not every report's
        counted = table.to_date(f"SELECT {keys}, SUM(num) AS num, SUM(den) AS den, SUM(n) AS n FROM ({counted}) m GROUP BY {keys}")
    return (
        f"INSERT INTO {table.name} ({', '.join(table.key)}, num, den, n) "
        f"SELECT {keys}{share}, {sign} * SUM(num), {sign} * SUM(den), {sign} * SUM(n) FROM ({counted}) s "
        f"WHERE 1 = 1 GROUP BY {keys} ORDER BY {keys} "  # (WHERE: SQLite reads ON CONFLICT after a bare SELECT as a join's)
        f"{table.adding()}"
    )


ENGLAND_PARTS = ("metric", "day", "label", "num", "den")  # England's parts of a report (``england`` in ``_write``)


def _write(cur: Any, store: Any, rows_of_b: str, params: Sequence[Any], sign: int, settings: ViewSettings) -> None:
    """Add (``sign`` 1) or take off (-1) the sums of the reports ``rows_of_b`` selects: the counted metrics' per unit
    (``rm_months``), every report metric's and the attendance summaries' England's per day (and month), and every report
    metric's per LA (``rm_la_months``, under their units' LAs as ``rm_unit_la`` stands: the counted ones too, so that an LA
    state reads them per LA rather than mapping every unit's months to its LA; at 1 M pupils the late-report rate's, every
    report by submitter, was the largest statement of an LA state and of its year before's one-LA state).

    On PostgreSQL they are one statement, the reports ``b`` read once for all four tables (each of three statements
    read them again by their ids: a quarter of the read model's catch-up) and England's parts made once for its two;
    SQLite has no INSERT in a WITH, so there they are one statement per table."""
    england = "SELECT metric, day, label, num, den FROM england"  # (England's parts per day, made once for both tables)
    writes = [
        _adding(RM_MONTHS, " UNION ALL ".join(c.sums(m) for m, c in COUNTED.items()), sign),
        _adding(RM_ENGLAND_REPORTS, england, sign),
        _adding(RM_ENGLAND_REPORTS.months, RM_ENGLAND_REPORTS.monthly(england, ENGLAND_PARTS), sign),
        _adding(RM_ENGLAND_REPORTS.years, RM_ENGLAND_REPORTS.yearly(england, ENGLAND_PARTS), sign),
        _adding(RM_LA_MONTHS, " UNION ALL ".join(c.la_sums(m) for m, c in REPORTS.items()), sign),
    ]
    days = " UNION ALL ".join(c.day_sums(m) for m, c in ENGLAND_REPORTS.items())
    if store.is_postgres:  # (data-modifying WITH clauses run once each, to completion, whether or not they are read)
        *first, last = writes
        shared = f"WITH b AS MATERIALIZED ({rows_of_b}), england AS MATERIALIZED ({days}), "
        statements = [shared + ", ".join(f"w{i} AS ({w})" for i, w in enumerate(first)) + " " + last]
    else:
        statements = [f"WITH b AS ({rows_of_b}), england AS ({days}) {w}" for w in writes]
    late = str(int(settings.late_school_days))
    for statement in statements:
        execute_in(cur, store.sql(statement.replace(":late", late)), params, store.is_postgres)


def new_rows(store: Any, seqs: Sequence[int]) -> tuple[str, list[Any]]:
    """The statement selecting a batch's rows still known now, by the sequences of its events, and its parameters: an
    event's row carries its sequence and no other row does, and the batch's are the newest entries of its unique index,
    where their ids are scattered over the primary key (``read_model.RM_EVENTS``)."""
    where, params = store.where_in("e.seq", seqs, sql_type="bigint")
    return f"SELECT e.* FROM rm_events e WHERE {where} AND e.superseded_at IS NULL", params


def after_facts(settings: ViewSettings) -> Callable[[Any, Any, Sequence[LogEvent]], None]:
    """``View.after`` of ``read_model_events``, once the batch's rows are written: the LAs it registers into ``rm_unit_la``,
    its reports into ``rm_months``, England's numbers (the attendance summaries among them) and ``rm_la_months``, and the cap's breaches of the pupils it touches."""

    def upkeep(cur: Any, store: Any, events: Sequence[LogEvent]) -> None:
        record_las(cur, store, events)  # first: the batch's reports are summed under the LAs it registers
        pupils = [ev for ev in events if ev.record.type.startswith("pupil.")]
        if not pupils:
            return
        new = {ev.record.event_id for ev in pupils}
        superseded = [ev.record.corrects for ev in events if ev.record.corrects and ev.record.corrects not in new]
        _write(cur, store, *new_rows(store, [ev.seq for ev in pupils]), 1, settings)
        if superseded:  # counted when their batch came; superseded now (an event is corrected at most once)
            where, params = store.where_in("e.event_id", superseded)
            _write(cur, store, f"SELECT e.* FROM rm_events e WHERE {where}", params, -1, settings)
        # the pupils whose suspensions the batch may change (a suspension, its correction or a retraction): England's cap breaches
        touched = [ev.subject for ev in events if ev.record.type in ("pupil.excluded", "pupil.record_retracted")]
        cap_upkeep(cur, store, touched, new, superseded)

    return upkeep


def forget_reports(settings: ViewSettings) -> Callable[[Any, Any, str], None]:
    """``View.forget`` of ``read_model_events``: an erased pupil's reports known now off the sums (before its rows are
    deleted, in the same transaction)."""

    def forget(cur: Any, store: Any, subject: str) -> None:
        _write(cur, store, "SELECT e.* FROM rm_events e WHERE e.subject = ? AND e.superseded_at IS NULL", [subject], -1, settings)
        cap_upkeep(cur, store, [subject], set(), [], forgotten=True)

    return forget
