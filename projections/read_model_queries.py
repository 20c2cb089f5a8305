"""The metrics of docs/metrics.md answered by SQL over the read model (``projections/read_model.py``).

Each metric in ``QUERIES`` is one SELECT of its items in force at (D, T) as ``unit, item, num, den, label``
(the fold's ``Contribution``). The database aggregates them per unit and label; only items whose key occurs
more than once (a pupil on two rolls, a provider under its commissioners) come back one by one, so the
roll-up to school, trust, LA and England (``projections.metrics.figures``, shared with the fold) counts
every item once, as the fold does. Medians come back as their values (a narrow SQL filter, finished in
Python). ``unregistered_providers_needing_registration`` and the provider watch are finished in Python from
the open placements at unregistered providers (``unregistered.watch_of``, shared with the fold).

A metric not in ``QUERIES`` (a new module's, until it is added here) is answered by the fold, lazily, in
the same ``ReadModelContext``; so is everything when the model is not usable for a read (``usable``).
"""

from __future__ import annotations

import json
import re
from calendar import monthrange
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, NamedTuple, Protocol

from ledger.core.identifiers import org_scheme
from ledger.core.rules import SUSPENSION_CAP_DAYS
from ledger.core.schooltime import academic_year

from . import ehcp, funding
from . import read_model_roll as roll
from .config import ViewSettings
from .context import ENGLAND, Context, Contribution, Metric, Placement, PlacementTally, context, scope_of
from .facts import Moment
from .metrics import METRICS_BY_NAME
from .orgs import Directory, OrgFacts, org_facts
from .plans import Funding
from .plans import funding as funding_facts
from .read_model import UNREGISTERED_IN, model_version
from .read_model_ahead import Ahead
from .read_model_cap import CAP_BREACHES, UNIT_SUMS
from .read_model_england import ENGLAND_SUMS, LENGTHS, ROLL, STATE_METRICS, YEAR
from .read_model_la import RM_UNIT_LA, UNIT_LA_JOIN, unit_la
from .read_model_la_roll import LA_ROLL_SUMS, SPANNING_RUNS
from .read_model_la_state import LA_STATE_SUMS
from .read_model_months import (
    ENGLAND_REPORTS,
    MONTH_SIDES,
    REPORTS,
    RM_LA_MONTHS,
    RM_MONTHS,
    EventCount,
    month_sums_sql,
)
from .roll import GAP_EXEMPT_DESTINATIONS, UNEXPLAINED_DESTINATIONS
from .unregistered import UNREGISTERED_SETTING_TYPES, ProviderWatch, watch_of


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


def KNOWN(e: str) -> str:  # noqa: N802 - a SQL fragment: a fact row known at T (whatever its effective date)
    return f"{e}.received_at <= :t AND ({e}.superseded_at IS NULL OR {e}.superseded_at > :t)"


def EV(e: str) -> str:  # noqa: N802 - a SQL fragment: a fact row in force at (D, T)
    return f"{KNOWN(e)} AND {e}.occurred_on <= :d"


def VALID(x: str) -> str:  # noqa: N802 - a SQL fragment: a state interval row valid on D (whenever it was known)
    return f"{x}.valid_from <= :d AND ({x}.valid_to IS NULL OR {x}.valid_to > :d)"


def ST(x: str) -> str:  # noqa: N802 - a SQL fragment: a state interval row in force at (D, T)
    return f"{VALID(x)} AND {x}.known_from <= :t AND ({x}.known_to IS NULL OR {x}.known_to > :t)"


_KNOWN_AT_T = re.compile(r"(\w+)\.known_from <= :t AND \(\1\.known_to IS NULL OR \1\.known_to > :t\)")


def at_now(sql: str) -> str:
    """``sql`` for a read at the ledger's now, whose T is after every row's ledger times (``END_OF_TIME``): ``ST``'s
    known part says only that the row is known now (``known_to IS NULL``), as the partial indexes of the rows known
    now say it. (The planner cannot tell that ``known_to > :t`` never holds: it read the open placements' rows of
    every past ledger time by the index, 22,822 rows for 471 at 2 M pupils.)"""
    return _KNOWN_AT_T.sub(r"\1.known_to IS NULL", sql)


def _of(etype: str, e: str = "e") -> str:
    return f"{e}.type = 'pupil.{etype}' AND {EV(e)}"


IN_YEAR = "e.occurred_on >= :ys"
OPEN_PLACEMENT = f"{ST('p')} AND p.end_on IS NULL"
# a removal (a row of rm_exits in force at (D, T)) after whose gap check no registration or placement had opened
WITHOUT_SETTING = f"x.destination NOT IN {_in(GAP_EXEMPT_DESTINATIONS)} AND x.check_day <= :d AND x.with_setting = 0"
# The registrations a state's roll metrics count, asked once per state (``ReadModelContext.registrations``): each row
# overlapping the year to date at its school (the unexplained-exit rate's pupils), and whether it is on the roll at D
# (the roll: pupils on roll, and the suspension and exclusion rates' denominators). Rows of a pupil whose state has one
# registration (nearly all) are counted per school and flag: from rm_roll's numbers (ROLL_COUNTS), or by one grouped scan
# (REGISTRATION_COUNTS); the others (a partial index holds them) come back one by one, so that a pupil on two rolls at
# once counts once above the school, as in the fold. ``read_model_roll.changes_of`` keeps rm_roll by these predicates.
ON_ROLL = f"CASE WHEN (r.end_on IS NULL OR r.end_on > :d) AND r.status IN {_in(roll.ON_ROLL_STATUSES)} THEN 1 ELSE 0 END"
AT_SCHOOL_IN_YEAR = f"{VALID('r')} AND r.start_on <= :d AND (r.end_on IS NULL OR r.end_on >= :ys)"  # whenever known
IN_YEAR_AT_SCHOOL = f"{ST('r')} AND r.start_on <= :d AND (r.end_on IS NULL OR r.end_on >= :ys)"
REGISTRATION_COUNTS = (
    f"SELECT r.school, {ON_ROLL}, COUNT(*) FROM rm_registrations r WHERE {IN_YEAR_AT_SCHOOL} AND r.year_regs = 1 GROUP BY 1, 2"
)
# A row of a pupil with several registrations in a year is still the pupil's only one counted at D when all the others
# sharing an academic year with it ended before D's academic year, or none has started by D (``others_from``,
# ``others_to``: NULL, one is open; a state at D holds the registrations begun by D, so the second is a safeguard): then it
# is counted in its school's number (ALONE_COUNTS), and only the others are read one by one (at 1 M pupils in late
# October, 30,402 of the 40,988 such rows are counted). The two conditions are each other's complement.
ALONE_AT_D = "(r.others_from > :d OR r.others_to < :ys)"
NOT_ALONE_AT_D = "r.others_from <= :d AND (r.others_to IS NULL OR r.others_to >= :ys)"
ALONE_COUNTS = (
    f"SELECT r.school, {ON_ROLL}, COUNT(*) FROM rm_registrations r WHERE {IN_YEAR_AT_SCHOOL} AND r.year_regs > 1 AND {ALONE_AT_D} "
    "GROUP BY 1, 2"
)
SHARED_REGISTRATIONS = (
    f"SELECT r.school, {ON_ROLL}, r.subject FROM rm_registrations r WHERE {IN_YEAR_AT_SCHOOL} AND r.year_regs > 1 AND {NOT_ALONE_AT_D}"
)
# England's count of those pupils: on the roll at D, and at a school in the year to date (each pupil once)
SHARED_PUPILS = (
    f"SELECT COUNT(DISTINCT CASE WHEN {ON_ROLL} = 1 THEN r.subject END), COUNT(DISTINCT r.subject) "
    f"FROM rm_registrations r WHERE {IN_YEAR_AT_SCHOOL} AND r.year_regs > 1"
)
# The rows known now that T did not know yet, and the rows T knew that have been replaced since: what rm_roll's numbers
# (every row known now) are corrected by for a read at T. None when T is now.
LEARNT_AFTER = "r.known_to IS NULL AND r.known_from > :t"
RETIRED_AFTER = "r.known_to > :t AND r.known_from <= :t"
# Per school: the pupils with one registration on the roll at D, and at their school in the year to date, as known at T
# (REGISTRATION_COUNTS' answer, as (school, on roll, in the year)), in one statement: one snapshot of both tables.
ROLL_COUNTS = (
    "SELECT school, SUM(roll) AS roll, SUM(year) AS year FROM ("
    "SELECT school, roll, year FROM rm_roll WHERE day <= :d "
    f"UNION ALL SELECT r.school, -{ON_ROLL}, -1 FROM rm_registrations r WHERE {LEARNT_AFTER} AND r.year_regs = 1 AND {AT_SCHOOL_IN_YEAR} "
    f"UNION ALL SELECT r.school, {ON_ROLL}, 1 FROM rm_registrations r WHERE {RETIRED_AFTER} AND r.year_regs = 1 AND {AT_SCHOOL_IN_YEAR}"
    ") c GROUP BY school"
)
# An LA state's registrations at the ledger's now (``ReadModelContext.la_registrations``), in one statement: the numbers kept
# per LA (part 1: ``read_model_la_roll.LA_ROLL_SUMS``: the pupils with one registration in the year, as ``rm_roll`` counts
# them per school, and those with several under one LA), and the pupils under more than one LA, one by one (2:
# ``SPANNING_RUNS``)
LA_REGISTRATIONS = (
    f"SELECT 1 AS part, scope AS unit, roll, year, NULL AS kind, NULL AS pupil FROM ({LA_ROLL_SUMS}) k "
    f"UNION ALL SELECT 2, scope, 0, 0, kind, subject FROM ({SPANNING_RUNS}) s"
)
# How many rows a read may correct rm_roll's numbers by before it scans the registrations instead (REGISTRATION_COUNTS):
# a read at a ledger time long past would take off nearly every row known now, one by one, which costs more than the scan.
CORRECTIONS_LIMIT = 20_000


def corrections(rows: str, learnt: str, retired: str) -> str:
    """How many of ``rows`` (a table and its alias) a read at T corrects numbers kept over the rows known now by: those
    T did not know yet (``learnt``) and those it knew that have been superseded since (``retired``), counted up to
    ``CORRECTIONS_LIMIT``, past which the read scans the rows instead."""
    return (
        f"SELECT COUNT(*) FROM (SELECT 1 FROM (SELECT 1 FROM {rows} WHERE {learnt} "
        f"UNION ALL SELECT 1 FROM {rows} WHERE {retired}) u LIMIT {CORRECTIONS_LIMIT}) c"
    )


# The reports known now that T did not know yet, and those T knew that have been superseded since (``rm_events``' partial
# indexes ``learnt`` and ``superseded``): what the kept months' sums (every report known now) are corrected by for a read
# at T, as rm_roll's numbers are by LEARNT_AFTER and RETIRED_AFTER.
LEARNT_SINCE = "e.superseded_at IS NULL AND e.received_at > :t"
RETIRED_SINCE = "e.superseded_at > :t AND e.received_at <= :t"
REPORTS_SINCE = corrections("rm_events e", LEARNT_SINCE, RETIRED_SINCE)
CORRECTIONS = corrections("rm_registrations r", LEARNT_AFTER, RETIRED_AFTER)


# The metrics a national state at the ledger's now reads from England's numbers kept per day (``read_model_england``)
KEPT_FOR_ENGLAND = frozenset({*ENGLAND_REPORTS, *STATE_METRICS, CAP_BREACHES, LENGTHS})

# The pupils in unregistered provision with more than one placement in their state, one by one (an England read at now
# takes the others' count from rm_england_state); the roll-up counts each pupil once, by key
UNREGISTERED_AT_SEVERAL = (
    "SELECT p.commissioner AS unit, '' AS label, 1 AS num, 0 AS den, 1 AS n, p.subject AS item FROM rm_placements p "
    f"WHERE {OPEN_PLACEMENT} AND p.setting_type IN {UNREGISTERED_IN} AND p.places > 1"
)


def _open_by(label: str, where: str = "") -> str:
    return f"SELECT p.commissioner AS unit, p.placement_id AS item, 1 AS num, 0 AS den, {label} AS label FROM rm_placements p WHERE {OPEN_PLACEMENT}{where}"


def _exits(where: str, label: str = "''") -> str:
    return f"SELECT x.school AS unit, x.event_id AS item, 1 AS num, 0 AS den, {label} AS label FROM rm_exits x WHERE {ST('x')} AND {where}"


ENDED_LENGTHS = (
    "SELECT p.setting AS unit, p.placement_id AS item, p.length_days AS num, 1 AS den, '' AS label FROM rm_placements p "
    f"WHERE {ST('p')} AND p.end_on IS NOT NULL AND p.end_on >= :ts"
)


@dataclass(frozen=True)
class Query:
    sql: str = ""  # the metric's items ("" when the registrations below are all it counts)
    unique: bool = True  # each item key occurs once (an event or placement id); else the query has a ``shared`` column
    # ("roll" or "year", "num" or "den"): the pupils of ``ReadModelContext.registrations`` on the roll at D (or at their school in the
    # year to date) are also items of the metric, each counting 1 in its numerator or its denominator
    registrations: tuple[str, str] | None = None
    # another metric (of a unique query) whose items, summed per unit (labels dropped), are this one's: the suspension
    # rate's numerator is the suspensions by reason summed, the mean length the median's lengths summed (one scan, not
    # two; the sums are made from that metric's contributions, which the state keeps anyway)
    reuses: str | None = None
    # a count of the year's reports (``read_model_months.REPORTS``): at the ledger's now, the whole months' items come summed,
    # per unit from ``rm_months`` if the count is ``kept``, else per LA from ``rm_la_months`` for a state made for LA
    # figures, and only D's month's are read as rows (``month_sums_sql``)
    counted: EventCount | None = None
    # the name of a scan of ``SCANS`` that gives this metric's aggregated rows with other metrics', at every moment
    # (``sql`` stays its definition: a test holds the scan's rows to its own query's)
    scan: str | None = None


# The suspensions of the year to date in force, as the suspensions by reason count them; the cap's breaches are the
# suspension at which a pupil's sessions of the year, in ledger order, first pass the cap (its unit; the pupil, the item)
SUSPENSIONS = REPORTS["suspensions_by_reason"].rows(
    f"{EV('e')} AND {IN_YEAR}", "e.subject AS subject, e.seq AS seq, e.sessions AS sessions"
)
CAP_CROSSINGS = (
    "SELECT unit, item FROM (SELECT unit, subject AS item, sessions, "
    "SUM(sessions) OVER (PARTITION BY subject ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS total "
    "FROM ({s}) s) x WHERE total > :cap AND total - sessions <= :cap"
)
# Metrics whose items come from one scan, asked once per state (``ReadModelContext.scanned``): its rows are the metrics'
# aggregated rows (``aggregated``'s columns) with the metric's name first. Both suspension metrics read every suspension
# of the year (100,128 rows at 1 M pupils at the end of March: 83 and 138 ms as two queries); the cap's breaches
# only of the pupils whose sessions of the year to date pass the cap.
PAST_THE_CAP = "SELECT * FROM s WHERE subject IN (SELECT subject FROM s GROUP BY subject HAVING SUM(sessions) > :cap)"
SCANS = {  # "{unit}", "{keys}" and "{join}": the state's ``Grouping``
    "suspensions": (
        f"WITH s AS MATERIALIZED ({SUSPENSIONS}) "
        "SELECT 'suspensions_by_reason' AS metric, {unit} AS unit, c.label, SUM(c.num) AS num, SUM(c.den) AS den, COUNT(*) AS n, "
        "NULL AS item FROM s c {join} GROUP BY {keys}c.label "
        "UNION ALL SELECT 'suspension_cap_breaches', {unit}, c.label, COUNT(*), 0, COUNT(*), NULL "
        f"FROM (SELECT unit, '' AS label FROM ({CAP_CROSSINGS.format(s=PAST_THE_CAP)}) x) c {{join}} GROUP BY {{keys}}c.label"
    ),
}


def _counted(metric: str) -> Query:
    """The query of a metric of ``REPORTS``: its reports in force at (D, T) in the year to date."""
    count = REPORTS[metric]
    return Query(count.rows(f"{EV('e')} AND {IN_YEAR}"), counted=count)


QUERIES: dict[str, Query] = {
    "open_ap_placements": Query(reuses="open_ap_placements_by_setting_type"),
    "overdue_time_limited_placements": Query(_open_by("''", " AND p.tier = 2 AND p.planned_end IS NOT NULL AND p.planned_end < :d")),
    "open_ap_placements_by_setting_type": Query(_open_by("p.setting_type")),
    "open_ap_placements_by_tier": Query(_open_by("CAST(p.tier AS TEXT)")),
    "placements_started_by_setting_type": _counted("placements_started_by_setting_type"),
    "placements_started_by_tier": _counted("placements_started_by_tier"),
    "placements_started_by_reason": _counted("placements_started_by_reason"),
    "placements_ended_by_outcome": Query(
        "SELECT p.commissioner AS unit, e.event_id AS item, 1 AS num, 0 AS den, e.outcome AS label FROM rm_events e "
        f"JOIN rm_placements p ON p.subject = e.subject AND p.placement_id = e.placement_id AND {ST('p')} "
        f"WHERE {_of('ap_placement_ended')} AND {IN_YEAR}"
    ),
    "pupils_in_unregistered_provision": Query(
        "SELECT p.commissioner AS unit, p.subject AS item, 1 AS num, 0 AS den, '' AS label, CASE WHEN p.places > 1 THEN 1 ELSE 0 END AS shared "
        "FROM rm_placements p "
        f"WHERE {OPEN_PLACEMENT} AND p.setting_type IN {UNREGISTERED_IN}",
        unique=False,
    ),
    "removals_unknown_destination": _counted("removals_unknown_destination"),
    "children_without_setting_after_leaving": Query(_exits(f"x.check_day >= :ys AND {WITHOUT_SETTING}")),
    "sen_exits": Query(_exits("x.occurred_on >= :ys AND x.sen_status <> 'N'", label="x.sen_status")),
    "backdated_removals": _counted("backdated_removals"),
    "late_report_rate": _counted("late_report_rate"),
    "unexplained_exit_rate": Query(
        _exits(f"x.occurred_on >= :ys AND (x.destination IN {_in(UNEXPLAINED_DESTINATIONS)} OR ({WITHOUT_SETTING}))"),
        registrations=("year", "den"),
    ),
    "pupils_on_roll": Query(registrations=("roll", "num")),
    "suspension_rate": Query(reuses="suspensions_by_reason", registrations=("roll", "den")),
    "permanent_exclusion_rate": Query(reuses="permanent_exclusions_by_reason", registrations=("roll", "den")),
    "suspensions_by_reason": Query(SUSPENSIONS, scan="suspensions", counted=REPORTS["suspensions_by_reason"]),
    "permanent_exclusions_by_reason": _counted("permanent_exclusions_by_reason"),
    "suspension_cap_breaches": Query(
        f"SELECT unit, item, 1 AS num, 0 AS den, '' AS label FROM ({CAP_CROSSINGS.format(s=SUSPENSIONS)}) x", scan="suspensions"
    ),
    "ap_attendance_rate": Query(
        "SELECT e.setting AS unit, e.event_id AS item, e.attended AS num, e.possible AS den, '' AS label FROM rm_events e "
        f"WHERE {_of('attendance_summary_recorded')} AND e.academic_year = :ay"
    ),
    "ap_reintegration_rate": Query(
        "SELECT p.setting AS unit, p.placement_id AS item, CASE WHEN p.outcome = 'mainstream' AND p.end_on IS NOT NULL AND p.end_on <= p.deadline "
        f"THEN 1 ELSE 0 END AS num, 1 AS den, '' AS label FROM rm_placements p WHERE {ST('p')} AND p.deadline IS NOT NULL "
        "AND p.deadline >= :ts AND p.deadline <= :d"
    ),
    "ap_sustained_post16_rate": Query(
        "SELECT unit, item, num, 1 AS den, '' AS label FROM (SELECT e.submitter AS unit, e.subject || ':' || e.submitter AS item, "
        "e.sustained AS num, ROW_NUMBER() OVER (PARTITION BY e.subject, e.submitter ORDER BY e.seq DESC) AS n FROM rm_events e "
        f"WHERE {_of('post16_destination_recorded')} AND e.occurred_on >= :ts) x WHERE n = 1"
    ),
    "ap_placement_length_mean_days": Query(reuses="ap_placement_length_median_days"),
    "ap_placement_length_median_days": Query(ENDED_LENGTHS),
}
# Finished in Python on this context: the provider watch's metric from the open placements; the EHCP figures from their
# own view (``ctx.db``) and the funding figures from the plans view and the open placements (``ctx.funding``,
# ``ctx.placements``): none of them folds pupils, so none needs the fold.
COMPUTED = frozenset({"unregistered_providers_needing_registration", *(m.name for m in ehcp.METRICS), *(m.name for m in funding.METRICS)})


def positional(sql: str, values: dict[str, Any]) -> tuple[str, list[Any]]:
    """``:name`` parameters as ``?`` marks and their values in order."""
    params: list[Any] = []

    def mark(m: re.Match[str]) -> str:
        params.append(values[m.group(1)])
        return "?"

    return re.sub(r":([a-z]+)\b", mark, sql), params


class Grouping(NamedTuple):
    """What a state's sums are grouped by, besides the label (``ReadModelContext.level``)."""

    unit: str  # the unit each sum is given under (a SQL expression over the items ``c``)
    keys: str  # what is grouped by before the label ("": the label alone)
    join: str = ""  # a table the expression reads, joined to the items ``c``


# each unit, for figures at every level; or every unit as England, for a state only national figures are read from (every
# unit's items count towards England: ``context.scope_of``); or each unit's LA known now (``read_model_la``), for a state
# LA figures are read from at the ledger's now
PER_UNIT = Grouping("unit", "unit, ")
AS_ENGLAND = Grouping(f"'{ENGLAND}'", "")
PER_LA_NOW = Grouping(unit_la("c.unit"), f"{unit_la('c.unit')}, ", UNIT_LA_JOIN)


def aggregated(query: Query, kind: str, grouping: Grouping = PER_UNIT) -> str:
    """The query's items summed per unit (or as ``grouping`` says) and label, and the items whose key repeats one by one
    (last column: the key).

    A query whose keys may repeat (``unique=False``: a pupil's key, under each school the pupil is on the roll of)
    says in its ``shared`` column which rows may (the pupil's state has more than one registration or placement):
    only those are looked at for repeats, so the rest, nearly every row, is summed in one pass."""
    unit, keys, join = grouping
    if query.unique:
        source = f"({query.sql}) c"
        if join:  # each unit mapped in an inner SELECT, grouped by the column (PostgreSQL sorted by the expression: slower)
            source = f"(SELECT {unit} AS unit, c.label, c.num, c.den FROM ({query.sql}) c {join}) c"
            unit, keys = "c.unit", "c.unit, "
        if kind == "median":
            # each value once per unit and label, with its items' count (den 1 each) as den: the median and the mean
            # weigh it by that (``weighted``); an item keyed by the unit and value, so scopes above count each once
            return (
                f"SELECT {unit} AS unit, c.label, SUM(c.num) AS num, SUM(c.den) AS den, COUNT(*) AS n, "
                f"'v:' || {unit} || ':' || c.label || ':' || CAST(c.num AS TEXT) AS item FROM {source} GROUP BY {keys}c.label, c.num"
            )
        return (
            f"SELECT {unit} AS unit, c.label, SUM(c.num) AS num, SUM(c.den) AS den, COUNT(*) AS n, NULL AS item FROM {source} "
            f"GROUP BY {keys}c.label"
        )
    return (
        f"WITH c AS MATERIALIZED ({query.sql}), "
        "repeated AS MATERIALIZED (SELECT item FROM c WHERE shared = 1 GROUP BY item HAVING COUNT(*) > 1) "
        f"SELECT {unit} AS unit, c.label, SUM(c.num) AS num, SUM(c.den) AS den, COUNT(*) AS n, NULL AS item FROM c {join} "
        f"WHERE c.shared = 0 OR c.item NOT IN (SELECT item FROM repeated) GROUP BY {keys}c.label "
        "UNION ALL SELECT unit, label, num, den, 1 AS n, item FROM c WHERE shared = 1 AND item IN (SELECT item FROM repeated)"
    )


def usable(store: Any, settings: ViewSettings) -> bool:
    """The model answers reads when it was built with these settings and has reached the fact views."""
    rows = dict((v, (int(p), int(ver))) for v, p, ver in store.query("SELECT view, position, version FROM pv_positions"))
    wanted = model_version(settings)
    model = [rows.get(name) for name in ("read_model_events", "read_model_state")]
    if any(m is None or m[1] != wanted for m in model):
        return False
    reached = min(m[0] for m in model if m is not None)
    return all(rows.get(v, (0, 0))[0] <= reached for v in ("pupils", "orgs"))


@dataclass(frozen=True)
class Registrations:
    """Pupils counted per school: a number per school, and, for the pupils at several schools at once, one item under
    each of those schools per set of schools, holding how many pupils share that set (a roll-up above the schools counts
    a set's pupils once per scope, by the set's key, as it would count each pupil once by the pupil's). Only those few
    are kept, not every pupil with more than one registration (a state is kept for later reads, and a series keeps a
    dozen); and by set, not by pupil: pupils who move between the same schools share one item under each (at 1 M
    pupils in May, 42,518 items by pupil, 20,446 by set)."""

    counts: dict[str, int]
    at_several: list[tuple[str, str, int]]  # (school, the set's key, its pupils)

    @staticmethod
    def of(counted: Iterable[tuple[str, int]], shared: Iterable[tuple[str, str]]) -> Registrations:
        """From the numbers of pupils with one registration (school, n) and the others' rows (school, pupil)."""
        counts: dict[str, int] = {}
        for school, n in counted:
            counts[school] = counts.get(school, 0) + n
        # nearly every such pupil has its rows at one school or at two: a pupil's first school, and its schools in order
        # once there is a second (a set per pupil, then sorted, was 175 ms of a national read at 1 M pupils)
        first: dict[str, str] = {}
        several: dict[str, tuple[str, ...]] = {}
        for school, pupil in shared:
            one = first.setdefault(pupil, school)
            if one != school:
                known = several.get(pupil)
                if known is None:
                    several[pupil] = (one, school) if one < school else (school, one)
                elif school not in known:
                    several[pupil] = tuple(sorted((*known, school)))
        sets: dict[tuple[str, ...], int] = {}
        for pupil, school in first.items():
            schools = several.get(pupil)
            if schools is None:
                counts[school] = counts.get(school, 0) + 1
            else:
                sets[schools] = sets.get(schools, 0) + 1
        return Registrations(counts, [(s, set_key(schools), n) for schools, n in sets.items() for s in schools])

    def under(self, scope: Callable[[str], str]) -> Registrations:
        """The numbers summed per ``scope`` of their schools. The pupils of a set of schools that share one scope (a move
        within an LA) count once in that scope's number; those of a set in several scopes stay an item under each (the
        roll-up counts them once per scope, and once for England, by the set's key)."""
        counts: dict[str, int] = {}
        for school, n in self.counts.items():
            under = scope(school)
            counts[under] = counts.get(under, 0) + n
        scopes: dict[str, set[str]] = {}
        pupils: dict[str, int] = {}
        for school, key, n in self.at_several:
            scopes.setdefault(key, set()).add(scope(school))
            pupils[key] = n
        at_several: list[tuple[str, str, int]] = []
        for key, found in scopes.items():
            if len(found) == 1:
                (under,) = found
                counts[under] = counts.get(under, 0) + pupils[key]
            else:
                at_several.extend((under, key, pupils[key]) for under in sorted(found))
        return Registrations(counts, at_several)

    def contributions(self, numerator: bool) -> list[Contribution]:
        out = [Contribution(school, key, n if numerator else 0, 0 if numerator else n) for school, key, n in self.at_several]
        out.extend(Contribution(school, f"{school}\x01", n if numerator else 0, 0 if numerator else n) for school, n in self.counts.items())
        return out


def set_key(schools: tuple[str, ...]) -> str:
    """The key of the items of the pupils at each of ``schools`` (in order) at once: the same under each of them, and no
    other item's (an organisation's id holds no comma: the patterns of ``org_scheme``)."""
    return "s:" + ",".join(schools)


class Known(NamedTuple):
    """The facts a state reads whatever its D, which depend only on its ledger time: the organisations' (``org_facts``;
    each state folds them at its D) and the plans and funding (``plans.funding``: each carries its own dates). A
    series' states, at one ledger time, read them once rather than once for each of its 51 dates."""

    known_at: Any  # the ledger time (None: now)
    org_facts: OrgFacts
    funding: Funding

    @staticmethod
    def at(db: Any, moment: Moment) -> Known:
        return Known(moment.known_at, org_facts(db, moment), funding_facts(db, moment))


# The levels a state can be made for (``ReadModelContext.level``): None, every level (a sum per unit and label)
STATE_LEVELS = (None, "national", "la")


def state_level(level: str) -> str | None:
    """The state a read of figures at ``level`` asks for: the one made for that level where there is one, else a state
    of every unit (a school's rank needs every school's figure; a trust read keeps its units, as ``scope_of`` gives a
    trust's own id no trust)."""
    return level if level in STATE_LEVELS else None


class ReadModelContext(Context):
    """A ``Context`` whose metrics, placements and provider watch come from the read model by SQL; anything
    else (a metric not in ``QUERIES``, code that reads ``pupils``) falls back to the fold, computed once.

    ``level="national"`` makes a state that only national figures are read from (an England read, a national series):
    the database sums every unit's items as England's, so the state holds a few sums per metric rather than one per
    unit and label (111,000 contributions at 1 M pupils, rolled up in Python), and ``serves`` refuses other levels.

    ``level="la"`` makes a state that LA and national figures are read from (an LA read, an LA series): the database's
    sums are added up per LA (each unit's LA, the directory's ``la_of``: the same answer ``metrics.figures`` gives): by
    the database at the ledger's now (``PER_LA_NOW``: ``rm_unit_la``, and ``rm_la_months``' sums per LA), else per unit
    as they come (``regrouped``), so the roll-up reads a few sums per LA instead of one per unit. The items whose
    key may repeat (a pupil at two schools) stay items, under their unit's LA, and are still counted once per scope
    by key. A unit without an LA keeps its own sums (they count for England only, as in a state of every unit).

    ``only`` (a level and a scope: ``own_scope``) makes a state of one school's (or AP setting's) items, of one trust's
    schools' as of D, or of one LA's sums (at level "la"): every statement's rows are those of its units alone (``_own``),
    and only that scope's figures are read from it (``serves``): the year before's values of an ``accountabilityMetrics``
    body, which need no other scope's figure (no rank). A state of every unit read about as long as the body's own state
    for them (about 300 ms at 1 M pupils), most of it every school's rows; an LA state 74 ms against 44 for one LA's."""

    def __init__(
        self,
        db: Any,
        moment: Moment,
        settings: ViewSettings,
        level: str | None = None,
        known: Known | None = None,
        ahead: str | None = None,
        only: tuple[str, str] | None = None,
    ):
        """``known``: the facts known at the moment's ledger time that every state reads whatever its D, read once for
        several states (a series'); by default read for this one. ``ahead``: what the state is read for
        (``read_model_ahead.REPORT``, ``YEAR_BEFORE``): it asks ahead, on PostgreSQL, the statements the previous state
        read for the same asked (``read_model_ahead``); None: none."""
        if known is None:
            known = Known.at(db, moment)
        elif known.known_at != moment.known_at:
            raise ValueError(f"facts known at {known.known_at or 'now'} are not those of a state known at {moment.known_at or 'now'}")
        super().__init__(moment, settings, known.org_facts.at(moment), [], known.funding)
        if level not in STATE_LEVELS:
            raise ValueError(f"a read model state is made for every level, for LA figures or for national figures only, not {level!r}")
        # (a state of one scope's items is made at the level a read of that scope asks for: a school's and a trust's of
        # their units' items, an LA's of the LA's sums)
        if only is not None and (own_scope(*only) != only or level != state_level(only[0])):
            raise ValueError(
                f"a state of one scope's items is made for a school's, AP setting's or trust's figures (at no level) or an LA's "
                f"(at level 'la'), not {only!r} at level {level!r}"
            )
        self.level = level
        self.only = only
        # the units whose items it holds: the school itself, the trust's schools as of D (``scope_of``'s, as the roll-up
        # finds them: every unit whose trust is the scope in this state's directory), or the LA (its sums' scope)
        self.units: tuple[str, ...] | None = None
        if only is not None:
            self.units = (
                tuple(sorted(o for o in self.directory.orgs if self.directory.trust_of(o) == only[1])) if only[0] == "trust" else (only[1],)
            )
        self.known = known
        self._national: ReadModelContext | None = None  # ``national_contributions``' state
        # at the ledger's now, an LA state's sums are added up per LA by the database, from each unit's LA known now
        self.grouping = AS_ENGLAND if level == "national" else PER_LA_NOW if level == "la" and moment.known_at is None else PER_UNIT
        self.db, self.store = db, db.store
        self._fold: Context | None = None
        self._registrations: dict[str, Registrations] | None = None
        self._scans: dict[str, dict[str, list[tuple[Any, ...]]]] = {}
        self._england: dict[str, list[tuple[Any, ...]]] | None = None
        self._la_state: dict[str, list[tuple[Any, ...]]] | None = None
        self._units: dict[str, str] = {}  # each unit's sums' scope in a state made for LA figures (``under``)
        self._recent: list[tuple[Any, ...]] | None = None  # ``_recent_placement_rows``
        self._month_sides: dict[str, tuple[int, int]] | None = None  # ``_from_the_months_end``
        self._reports_since: int | None = None  # ``_kept_at_t``
        self._open_placements: list[Placement] | None = None
        self._open_unregistered: list[Placement] | None = None
        # the statements the previous state of this kind asked, asked ahead on other connections (PostgreSQL)
        self._values = {**self.params(), **self._units_values()}  # (the moment's, and the units': the same for every statement)
        kind = (ahead, level, self.known_now, None if only is None else only[0]) if ahead is not None else None
        self._ahead = Ahead(kind, _statements(self.store, self._values, self.known_now), enabled=self.store.is_postgres)

    @property
    def pupils(self) -> list[Any]:
        return self.fold().pupils

    @pupils.setter
    def pupils(self, value: list[Any]) -> None:
        pass  # the dataclass sets it; this context folds pupils only when asked

    def serves(self, level: str, scope: str | None = None) -> bool:
        if self.only is not None:
            return (level, scope) == self.only
        return self.level is None or level in (self.level, "national")

    def _own(self, sql: str, column: str = "unit") -> str:
        """``sql``'s rows whose ``column`` is one of this state's units, in a state of one scope's items; else all of them.
        (Its rows are each unit's sums, or items under a unit: the scope's units' rows are all its figures read. The
        database takes the condition into the statement's grouping and scans: a trust's units are one text parameter,
        split by PostgreSQL, read as JSON by SQLite. An LA's are its sums, where the database sums per LA.)"""
        if self.only is None:
            return sql
        if self.only[0] == "la":
            if self.grouping is not PER_LA_NOW:  # (every unit's rows, regrouped per LA in Python: none is left out)
                return sql
            # the LA's sums, and the rows still under a unit's own id (``regrouped`` adds those up under the unit's LA);
            # every other LA's sums are left out
            return f"SELECT * FROM ({sql}) own WHERE own.{column} = :unit OR SUBSTR(own.{column}, 1, 3) <> 'la:'"
        if self.only[0] == "school":
            return f"SELECT * FROM ({sql}) own WHERE own.{column} = :unit"
        among = "= ANY(string_to_array(:units, ','))" if self.store.is_postgres else "IN (SELECT value FROM json_each(:units))"
        return f"SELECT * FROM ({sql}) own WHERE own.{column} {among}"

    def under(self, unit: str) -> str:
        """The scope a unit's sums are kept under in a state made for LA figures: its LA, where it has one; else the
        unit (its items count for England only)."""
        found = self._units.get(unit)
        if found is None:
            found = self._units[unit] = self.directory.la_of(unit) or unit
        return found

    def regrouped(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """``aggregated``'s rows with each unit's sums added up under its scope (``under``), as the same columns; the
        rows of single items keep their key, under their unit's scope. (A tight loop: 81,000 rows at 1 M pupils.)"""
        if self.level != "la":
            return rows
        scopes, under = self._units, self.under
        sums: dict[tuple[str, str], list[int]] = {}
        out: list[tuple[Any, ...]] = []
        for unit, label, num, den, n, item in rows:
            scope = scopes.get(unit) or under(unit)
            if item is not None:
                out.append((scope, label, num, den, n, item))
                continue
            key = (scope, label or "")
            total = sums.get(key)
            if total is None:
                sums[key] = [num or 0, den or 0, n or 0]
            else:
                total[0] += num or 0
                total[1] += den or 0
                total[2] += n or 0
        out.extend((scope, label, num, den, n, None) for (scope, label), (num, den, n) in sums.items())
        return out

    def fold(self) -> Context:
        if self._fold is None:
            self._fold = context(self.db, self.moment, self.settings)
        return self._fold

    def params(self) -> dict[str, Any]:
        return {
            "d": self.day.isoformat(),
            "t": self.moment.known,
            "ys": self.year_start.isoformat(),
            "ym": self.year_start.isoformat()[:7],  # rm_months' whole months of the year to date: ym <= month < dm
            "dm": self.day.isoformat()[:7],
            "pm": roll.previous_month(self.day),  # the row of a ``YearToDate`` table holding the year's whole months before D's
            "yy": self.year_start.year,  # the year D's academic year starts in: ``DailyChanges.years`` before it
            "ms": self.day.replace(day=1).isoformat(),  # the first of D's month: its rows are read one by one
            "nm": _next_month(self.day),  # the first of the month after D's (``_from_the_months_end``)
            "ts": self.trailing_start.isoformat(),
            "ay": academic_year(self.day),
            "late": self.settings.late_school_days,
            "cap": 2 * SUSPENSION_CAP_DAYS,
        }

    def _units_values(self) -> dict[str, Any]:
        """The units of a state of one scope's items as ``_own`` binds them: a school's or an LA's id, or a trust's schools
        as one text (an organisation's id holds no comma: the patterns of ``org_scheme``)."""
        if self.only is None or self.units is None:
            return {}
        if self.only[0] != "trust":
            return {"unit": self.only[1]}
        units = list(self.units)
        return {"units": ",".join(units) if self.store.is_postgres else json.dumps(units)}

    def _from_the_months_end(self, metric: str) -> bool:
        """Whether a kept count of the year's reports takes D's whole month's sums less the month's rows after D, rather
        than the month's rows up to D (``month_sums_sql``): where England has fewer of the metric's reports after D in
        D's month than up to D (``MONTH_SIDES``, asked once per state); where it has as many (none), where D is nearer
        its month's end than its start. Either gives the same figures: this chooses which rows are read one by one."""
        if self._month_sides is None:
            self._month_sides = {name: (int(up_to), int(after)) for name, up_to, after in self.query(MONTH_SIDES)}
        up_to, after = self._month_sides.get(metric, (0, 0))
        if up_to != after:
            return after < up_to
        days_in_month = monthrange(self.day.year, self.day.month)[1]
        return days_in_month - self.day.day < self.day.day - 1

    def _bound(self, sql: str, extra: dict[str, Any]) -> tuple[str, list[Any]]:
        """``sql`` with ``?`` marks and its values: this state's parameters (``params``) and ``extra``; at the ledger's
        now, asking for the rows known now (``at_now``)."""
        return _bound(sql, {**self._values, **extra}, self.known_now)

    def query(self, sql: str, **extra: Any) -> list[tuple[Any, ...]]:
        """``sql`` with this state's parameters (``params``) and any ``extra`` ones bound (``_bound``); without ``extra``
        values, read ahead where the previous state of this kind asked it too (``read_model_ahead``)."""
        if not extra:
            return self._ahead.rows(sql)
        rows: list[tuple[Any, ...]] = self.store.query(*self._bound(sql, extra))
        return rows

    def query_in(self, sql: str, column: str, values: list[str]) -> list[tuple[Any, ...]]:
        """``query`` of ``sql`` whose ``{where}``, before its other parameters, says ``column`` is one of ``values``
        (``Store.select_in``: never prepared, a plan for the list as it is)."""
        statement, params = self._bound(sql, {})
        with self.store.cursor(commit=False) as cur:
            rows: list[tuple[Any, ...]] = self.store.select_in(cur, statement, column, values, *params)
        return rows

    def contributions(self, metric: Metric) -> list[Contribution]:
        if metric.name not in self._contributions:
            query = QUERIES.get(metric.name)
            if query is not None:
                if query.reuses is not None:
                    found = summed(self.contributions(METRICS_BY_NAME[query.reuses]))
                else:
                    found = [
                        Contribution(unit, item if item is not None else f"{unit}\x00{label}", int(num or 0), int(den or 0), label or "")
                        for unit, label, num, den, _, item in self.regrouped(self._items(metric, query))
                    ]
                if query.registrations is not None:
                    found.extend(self.registration_items(*query.registrations))
                self._contributions[metric.name] = found
            elif metric.name in COMPUTED:
                self._contributions[metric.name] = list(metric.compute(self))
            else:
                self._contributions[metric.name] = self.fold().contributions(metric)
        return self._contributions[metric.name]

    def national_contributions(self, metric: Metric) -> list[Contribution]:
        """England's items: at the ledger's now, of a metric the database answers (``QUERIES``), those of a state made for
        national figures at this moment (England's numbers kept), not this state's every unit's (a school read rolled up
        57,071 items at 1 M pupils for them); of a metric finished in Python (``COMPUTED``), this state's own, which that
        state would only compute again from the same facts (the EHCP view and the open placements read twice)."""
        if self.level == "national" or not self.known_now or metric.name not in QUERIES:
            return self.contributions(metric)
        if self._national is None:
            self._national = ReadModelContext(self.db, self.moment, self.settings, "national", self.known)
        return self._national.contributions(metric)

    def _items(self, metric: Metric, query: Query) -> list[tuple[Any, ...]]:
        """The metric's aggregated rows (``aggregated``'s columns): from England's kept numbers, its scan, its sums or its
        own query."""
        if self.kept_for_england and metric.name in KEPT_FOR_ENGLAND:
            rows = self.england().get(metric.name, [])
            if metric.name == "pupils_in_unregistered_provision":
                rows = rows + self.query(UNREGISTERED_AT_SEVERAL)
            return rows
        if self.grouping is PER_LA_NOW and metric.name in STATE_METRICS:
            rows = self.la_state().get(metric.name, [])
            if metric.name == "pupils_in_unregistered_provision":
                rows = rows + self.query(UNREGISTERED_AT_SEVERAL)
            return rows
        if self.known_now and metric.name == CAP_BREACHES:  # (a national state at now took England's above: summed per unit)
            return self.query(self._own(UNIT_SUMS))
        if query.scan is not None and not self.known_now:  # (at now, the cap's breaches are kept: its scan's other rows alone)
            return self.scanned(query.scan).get(metric.name, [])
        return self.query(self._own(self._items_sql(metric, query))) if query.sql else []

    @property
    def known_now(self) -> bool:
        """A read at the ledger's now: the numbers kept over the rows known now (``rm_months``, ``rm_cap_units``,
        England's) answer it."""
        return self.moment.known_at is None

    @property
    def kept_for_england(self) -> bool:
        """England's figures at the ledger's now come from the numbers kept per day (``read_model_england``), which know
        only the rows known now."""
        return self.level == "national" and self.known_now

    def england(self) -> dict[str, list[tuple[Any, ...]]]:
        """``ENGLAND_SUMS`` at this moment, by metric, as ``aggregated``'s rows (asked once per state)."""
        if self._england is None:
            found: dict[str, list[tuple[Any, ...]]] = {}  # (filled, then kept: another request may read this state meanwhile)
            for metric, label, num, den, n in self.query(ENGLAND_SUMS):
                # a length (the label) held by n placements is the median's item of that value, as ``aggregated`` gives it
                item = f"v:{ENGLAND}::{label}" if metric == LENGTHS else None
                found.setdefault(metric, []).append((ENGLAND, "" if item else label, num, den, n, item))
            self._england = found
        return self._england

    def la_state(self) -> dict[str, list[tuple[Any, ...]]]:
        """``LA_STATE_SUMS`` at this moment, by metric, as ``aggregated``'s rows (asked once per state)."""
        if self._la_state is None:
            found: dict[str, list[tuple[Any, ...]]] = {}  # (filled, then kept: another request may read this state meanwhile)
            for metric, scope, label, num, den, n in self.query(self._own(LA_STATE_SUMS, "scope")):
                found.setdefault(metric, []).append((scope, label, num, den, n, None))
            self._la_state = found
        return self._la_state

    def scanned(self, scan: str) -> dict[str, list[tuple[Any, ...]]]:
        """The rows of one of ``SCANS`` at this moment, by metric, asked once for every metric it serves."""
        if scan not in self._scans:
            by_metric: dict[str, list[tuple[Any, ...]]] = {}
            for metric, *row in self.query(self._own(SCANS[scan].format(**self.grouping._asdict()))):
                by_metric.setdefault(metric, []).append(tuple(row))
            self._scans[scan] = by_metric
        return self._scans[scan]

    def _items_sql(self, metric: Metric, query: Query) -> str:
        """The metric's items, summed where they can be: when the query counts reports and the read is at the ledger's now
        (the sums know only the rows known now), from the whole months' sums (``rm_la_months`` per LA for a state made for LA
        figures, else ``rm_months`` per unit for a kept count) and D's month's rows; at an earlier ledger time, a kept
        count's per unit, corrected by the reports learnt or superseded since (``_kept_at_t``); else from the rows."""
        count = query.counted
        summed_now = count is not None and self.known_now and (count.kept or self.grouping is PER_LA_NOW)
        if count is not None and (summed_now or (count.kept and self._kept_at_t())):
            kept = RM_LA_MONTHS if self.grouping is PER_LA_NOW else RM_MONTHS  # (every count per LA; the kept ones per unit)
            end = self._from_the_months_end(metric.name)
            since = None
            if not self.known_now:  # the kept months' reports learnt or superseded since T (``REPORTS_SINCE``)
                months = f"SUBSTR(e.occurred_on, 1, 7) >= :ym AND SUBSTR(e.occurred_on, 1, 7) {'<=' if end else '<'} :dm"
                since = (count.rows(f"{LEARNT_SINCE} AND {months}"), count.rows(f"{RETIRED_SINCE} AND {months}"))
            if end:  # D's month's kept sums less its rows after D
                after_d = count.rows(f"{KNOWN('e')} AND e.occurred_on > :d AND e.occurred_on < :nm")
                return month_sums_sql(metric.name, after_d, self.grouping, kept, after_d=True, since=since)
            current = count.rows(f"{EV('e')} AND {IN_YEAR} AND e.occurred_on >= :ms")
            return month_sums_sql(metric.name, current, self.grouping, kept, since=since)
        return aggregated(query, metric.kind, self.grouping)

    def _kept_at_t(self) -> bool:
        """Whether a read at an earlier ledger time takes the counts ``rm_months`` keeps, corrected by the reports learnt
        or superseded since (``REPORTS_SINCE``: fewer than ``CORRECTIONS_LIMIT``), rather than the year's reports; asked
        once per state. (At the ledger's now a state made for LA figures sums per LA known now, from ``rm_la_months``;
        at an earlier time it sums per unit, as a state of every unit does, and a national state as England.)"""
        if self.known_now or self.grouping.join:
            return False
        if self._reports_since is None:
            self._reports_since = int(self.query(REPORTS_SINCE)[0][0])
        return self._reports_since < CORRECTIONS_LIMIT

    def registrations(self) -> dict[str, Registrations]:
        """``REGISTRATION_COUNTS`` (from ``rm_roll``: ``ROLL_COUNTS``) and ``SHARED_REGISTRATIONS`` at this moment, asked once for every metric that counts them: "roll" and "year"."""
        if self._registrations is None and self.level == "national":
            self._registrations = self.national_registrations()
        if self._registrations is None and self.grouping is PER_LA_NOW:
            self._registrations = self.la_registrations()
        if self._registrations is None:
            # on the roll at D: 1. (A state of one school reads its pupils alone: a pupil at it and another school counts
            # once in its number rather than as an item under each, which that school's figures count alike.)
            counted = self.roll_counts() + self.query(self._own(ALONE_COUNTS, "school"))
            shared = self.query(self._own(SHARED_REGISTRATIONS, "school"))
            self._registrations = {
                "roll": Registrations.of(
                    ((s, int(n)) for s, on_roll, n in counted if on_roll), ((s, p) for s, on_roll, p in shared if on_roll)
                ),
                "year": Registrations.of(((s, int(n)) for s, _, n in counted), ((s, p) for s, _, p in shared)),
            }
            if self.level == "la":
                self._registrations = {which: found.under(self.under) for which, found in self._registrations.items()}
        return self._registrations

    def registration_items(self, which: str, side: str) -> list[Contribution]:
        """The pupils of ``registrations()[which]`` as items counting 1 in the numerator (``side`` "num") or the
        denominator, made once for the metrics that count them alike (the suspension and exclusion rates)."""
        key = f"registrations:{which}:{side}"
        if key not in self._derived:
            self._derived[key] = self.registrations()[which].contributions(side == "num")
        return self._derived[key]  # type: ignore[no-any-return]

    def la_registrations(self) -> dict[str, Registrations]:
        """``registrations`` of an LA state at the ledger's now, in one statement (one snapshot, ``LA_REGISTRATIONS``): the
        numbers kept per LA (``read_model_la_roll``: the schools' numbers of ``rm_roll`` and the pupils with several
        registrations in the year under one LA), and the pupils under more than one LA as items under each. (Adding
        ``rm_roll``'s numbers up per LA here read 61,281 rows per school and day at 1 M pupils, 40-55 ms a read.)"""
        rows = self.query(self._own(LA_REGISTRATIONS))
        out: dict[str, Registrations] = {}
        for kind, column in (("roll", 2), ("year", 3)):
            found = Registrations.of([], ((unit, pupil) for part, unit, _, _, which, pupil in rows if part == 2 and which == kind)).under(
                self.under
            )
            counts = dict(found.counts)
            for row in rows:
                if row[0] == 1 and row[column]:  # (mapped as the state's directory maps, as part 2's items are)
                    scope = self.under(row[1])
                    counts[scope] = counts.get(scope, 0) + int(row[column])
            out[kind] = Registrations(counts, found.at_several)
        return out

    def national_registrations(self) -> dict[str, Registrations]:
        """``registrations`` as England's numbers: the schools' numbers summed, and each pupil of the other rows once
        (a pupil counted in a school's number has no other registration in D's academic year, so no other row counted)."""
        if self.kept_for_england:
            kept = self.england()
            roll, year = (sum(int(num) for _, _, num, *_ in kept.get(name, [])) for name in (ROLL, YEAR))
            return {"roll": Registrations({ENGLAND: roll}, []), "year": Registrations({ENGLAND: year}, [])}
        roll = year = 0
        for _, on_roll, n in self.roll_counts():
            roll, year = roll + int(n) * int(on_roll), year + int(n)
        ((shared_roll, shared_year),) = self.query(SHARED_PUPILS)
        return {
            "roll": Registrations({ENGLAND: roll + int(shared_roll)}, []),
            "year": Registrations({ENGLAND: year + int(shared_year)}, []),
        }

    def roll_counts(self) -> list[tuple[Any, ...]]:
        """``REGISTRATION_COUNTS``' answer: from ``rm_roll``'s numbers, unless a read so far in the past would correct them
        by more rows than a scan of the registrations costs (``CORRECTIONS_LIMIT``; a read at now corrects nothing)."""
        if self.moment.known_at is None or int(self.query(CORRECTIONS)[0][0]) < CORRECTIONS_LIMIT:
            return _as_registration_counts(self.query(self._own(ROLL_COUNTS, "school")))
        return self.query(self._own(REGISTRATION_COUNTS, "school"))

    def _placement_rows(self, where: str) -> list[tuple[Any, ...]]:
        """The placements in force at (D, T) that also meet ``where`` (``_placement``'s columns, in the fold's order)."""
        return self.query(
            f"SELECT {PLACEMENT_COLUMNS} FROM rm_placements p WHERE {ST('p')} AND {where} ORDER BY p.subject, p.start_on, p.placement_id"
        )

    def _recent_placement_rows(self) -> list[tuple[Any, ...]]:
        """The placements open at D, or ended in the trailing year (from ``trailing_start``): all that their readers
        here count (a trust's register, or an LA's at a past ledger time: ``placement_tally``; the metrics that count
        older ended ones are this state's SQL). Placements ended long ago outnumber the open ones more each year. Asked
        once per state, when every scope's are wanted."""
        if self._recent is None:
            self._recent = self._placement_rows(RECENT_PLACEMENT)
        return self._recent

    @property
    def placements(self) -> list[Placement]:
        if self._placements is None:
            self._placements = [_placement(row) for row in self._recent_placement_rows()]
        return self._placements

    @property
    def open_placements(self) -> list[Placement]:
        """The open placements alone (a read at 1 M pupils made 9,729 placements into objects where the provider watch
        and the funding count 263)."""
        if self._open_placements is None:
            recent = self._recent
            rows = self._placement_rows("p.end_on IS NULL") if recent is None else [row for row in recent if row[9] is None]
            self._open_placements = [_placement(row) for row in rows]
        return self._open_placements

    @property
    def open_unregistered(self) -> list[Placement]:
        """The open placements at unregistered providers, all that the provider watch counts: from the open placements
        where this state has read them (an England read's register), else alone, by their own index (a national series
        read every open placement at each of its 51 dates for the watch: a third of them are at such providers)."""
        if self._open_unregistered is None:
            if self._open_placements is None and self._recent is None:
                rows = self._placement_rows(f"p.end_on IS NULL AND p.setting_type IN {UNREGISTERED_IN}")
                self._open_unregistered = [_placement(row) for row in rows]
            else:
                self._open_unregistered = [p for p in self.open_placements if p.setting_type in UNREGISTERED_SETTING_TYPES]
        return self._open_unregistered

    def open_placements_by_id(self, ids: Collection[str]) -> dict[str, Placement]:
        """The placements of ``ids`` open at D: from the open placements where this state has read them, else looked up
        by id (the funding's banded placements: none, or a few, where there are hundreds open)."""
        if not ids:
            return {}
        if self._open_placements is not None or self._recent is not None:
            return super().open_placements_by_id(ids)
        return {row[0]: _placement(row) for row in self.query_in(OPEN_BY_ID, "p.placement_id", sorted(ids))}

    def placement_tally(self, level: str, scope: str) -> PlacementTally:
        """The register's counts: England's at the ledger's now from its open placements and its lengths kept; grouped
        by the database (``PLACEMENT_TALLY``) for England at a past ledger time, an LA at the ledger's now (by each
        commissioner's LA known now, as ``PER_LA_NOW`` adds up its sums) and a school (its own placements); else from
        the state's recent placements, each put in its scope here (a trust's, or an LA's at a past ledger time)."""
        if level == "national" and scope == ENGLAND and self.known_now:
            # the open placements this state reads anyway (the provider watch's and the funding's: 263 at 1 M pupils),
            # and the ended ones from England's numbers kept per length (a length's items: its placements)
            kept = Counter({int(num) // int(den): int(den) for _, _, num, den, _, _ in self.england().get(LENGTHS, [])})
            return PlacementTally(PlacementTally.of(self.open_placements, self.day, self.trailing_start).open, kept)
        if level == "national" and scope == ENGLAND:
            join, where = "", ""
        elif level == "la" and self.grouping is PER_LA_NOW:
            join, where = f"LEFT JOIN {RM_UNIT_LA.name} m ON m.unit = p.commissioner", LA_COMMISSIONED
        elif level == "school" and scope_of(scope, level, self.directory) == scope:  # a school's only unit is itself
            join, where = "", " AND p.commissioner = :scope"
        else:
            return super().placement_tally(level, scope)
        open_now: Counter[tuple[str, int, bool, date]] = Counter()
        ended: Counter[int] = Counter()
        for part, setting_type, tier, overdue, start, length, n in self.query(PLACEMENT_TALLY.format(join=join, where=where), scope=scope):
            if part == 1:
                open_now[(setting_type, int(tier), bool(overdue), date.fromisoformat(start))] += int(n)
            else:
                ended[int(length)] += int(n)
        return PlacementTally(open_now, ended)

    def derived(self, name: str, compute: Callable[[Context], Any]) -> Any:
        if name == "provider_watch" and name not in self._derived:
            self._derived[name] = self.provider_watch()
        return super().derived(name, compute)

    def provider_watch(self) -> list[ProviderWatch]:
        """The watch of the open placements this state reads anyway, with which of their pupils at unregistered
        providers have SEN or are looked after: those pupils' registrations, looked up by pupil (a join of the
        placements to the registrations read the open placements again: 14-15 ms at 2 M pupils, for 150 pupils)."""
        at_unregistered = sorted({p.pupil for p in self.open_unregistered})
        vulnerable = {subject for (subject,) in self.query_in(VULNERABLE, "r.subject", at_unregistered)} if at_unregistered else set()
        return watch_of(self.open_unregistered, vulnerable, self)


def _next_month(day: date) -> str:
    """The first day of the month after ``day``'s, as the fact tables' text dates compare it; after December 9999 (the
    last month a date holds) a text after each of its days."""
    if (day.year, day.month) == (9999, 12):
        return "9999-12-32"
    return (day.replace(day=1) + timedelta(days=32)).replace(day=1).isoformat()


def _bound(sql: str, values: dict[str, Any], known_now: bool) -> tuple[str, list[Any]]:
    return positional(at_now(sql) if known_now else sql, values)


def _statements(store: Any, values: dict[str, Any], known_now: bool) -> Callable[[str], list[tuple[Any, ...]]]:
    """The rows of a statement with a state's parameters bound (``ReadModelContext._bound`` without ``extra``), for its
    ``Ahead``: a function of the store and the values alone, not of the state, which would otherwise be held in a cycle
    (the state, its ``Ahead``, the state's method) until the cyclic collector ran: in the API, whose states are dropped
    from its cache read after read, the peak RSS rose from 230 to 426 MB over 16 school reads at 1 M pupils."""

    def rows(sql: str) -> list[tuple[Any, ...]]:
        found: list[tuple[Any, ...]] = store.query(*_bound(sql, values, known_now))
        return found

    return rows


def summed(contributions: Iterable[Contribution]) -> list[Contribution]:
    """Distinct items (a unique query's: no key repeats) summed per unit, labels dropped: one item per unit."""
    totals: dict[str, list[int]] = {}
    for c in contributions:
        total = totals.setdefault(c.unit, [0, 0])
        total[0] += int(c.num)
        total[1] += int(c.den)
    return [Contribution(unit, f"{unit}\x00", num, den) for unit, (num, den) in totals.items()]


def _as_registration_counts(rows: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """``ROLL_COUNTS``' answer (school, on the roll, in the year) as ``REGISTRATION_COUNTS`` gives it: (school, on the
    roll at D: 1 or 0, pupils)."""
    out: list[tuple[Any, ...]] = []
    for school, on_roll, in_year in rows:
        on_roll, in_year = int(on_roll or 0), int(in_year or 0)
        if on_roll:
            out.append((school, 1, on_roll))
        if in_year - on_roll:
            out.append((school, 0, in_year - on_roll))
    return out


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


# the pupils among a list (``{where}``) with a registration in force at (D, T) with SEN or looked after (the provider
# watch's vulnerable pupils)
VULNERABLE = (
    f"SELECT DISTINCT r.subject FROM rm_registrations r WHERE {{where}} AND {ST('r')} AND r.start_on <= :d "
    "AND (r.end_on IS NULL OR r.end_on > :d) AND (r.sen_status <> 'N' OR r.looked_after = 1)"
)
PLACEMENT_COLUMNS = (
    "p.placement_id, p.subject, p.commissioner, p.setting, p.setting_type, p.tier, p.start_on, p.planned_end, p.hours, p.end_on, p.outcome"
)
RECENT_PLACEMENT = "(p.end_on IS NULL OR p.end_on >= :ts)"
OPEN_BY_ID = f"SELECT {PLACEMENT_COLUMNS} FROM rm_placements p WHERE {{where}} AND {OPEN_PLACEMENT}"  # ("{where}": the ids)
# A scope's placements as the register counts them (``PlacementTally``), in one scan of the placements open at D or
# ended in the trailing year: the open ones (part 1) per setting type, tier, whether overdue (``Placement.is_overdue``)
# and start day; the ended ones (2) per length, each with its number of placements ("{join}", "{where}": the scope's)
PLACEMENT_TALLY = (
    "SELECT CASE WHEN p.end_on IS NULL THEN 1 ELSE 2 END AS part, "
    "CASE WHEN p.end_on IS NULL THEN p.setting_type END AS setting_type, CASE WHEN p.end_on IS NULL THEN p.tier END AS tier, "
    "CASE WHEN p.end_on IS NULL AND p.tier = 2 AND p.planned_end IS NOT NULL AND p.planned_end < :d THEN 1 ELSE 0 END AS overdue, "
    "CASE WHEN p.end_on IS NULL THEN p.start_on END AS start_on, p.length_days, COUNT(*) AS n FROM rm_placements p {join} "
    f"WHERE {ST('p')} AND {RECENT_PLACEMENT}{{where}} GROUP BY 1, 2, 3, 4, 5, 6"
)


# An LA's placements in ``PLACEMENT_TALLY``: those whose commissioner's LA known now (``unit_la``) is the LA, looked up by
# the commissioners that can have it, the LA's units in ``rm_unit_la`` and the LA itself, not by reading every placement
# of England (24 ms of an LA read at 1 M pupils, and growing with England's placements, against 5 ms). A commissioner is
# a school or an LA (``pupil.ap_placement_started``'s schema), so no other unit's LA is the LA: a school without an LA in
# ``rm_unit_la`` is its own scope, an ``la:`` unit its own LA.
LA_COMMISSIONED = (
    f" AND p.commissioner IN (SELECT unit FROM {RM_UNIT_LA.name} WHERE la = :scope UNION ALL SELECT :scope) "
    f"AND {unit_la('p.commissioner')} = :scope"
)


def _placement(row: tuple[Any, ...]) -> Placement:
    """A placement from ``PLACEMENT_COLUMNS``."""
    pid, subject, commissioner, setting, setting_type, tier, start, planned, hours, end, outcome = row
    return Placement(
        pid,
        subject,
        commissioner,
        setting,
        setting_type,
        int(tier),
        date.fromisoformat(start),
        _day(planned),
        float(hours),
        _day(end),
        outcome,
    )


def own_scope(level: str, scope: str) -> tuple[str, str] | None:
    """``(level, scope)`` where a state of that scope's items alone gives its own figures (no rank: ``ReadModelContext``'s
    ``only``): a school's or AP setting's (its only unit, ``context.scope_of``), a trust's (its schools) or an LA's (its
    sums, left out of every other LA's: at the ledger's now, where the database sums them per LA); None for England,
    whose state is England's sums already, and for a scope that is not of its level."""
    if level == "school" and scope_of(scope, level, Directory()) == scope:
        return level, scope
    if level in ("trust", "la") and org_scheme(scope) == level:
        return level, scope
    return None


class StateMaker(Protocol):
    """The state at D (``states_at``): of every unit at the maker's level, or of ``only``'s items (``own_scope``)."""

    def __call__(self, day: date, only: tuple[str, str] | None = None) -> Context: ...


def states_at(db: Any, settings: ViewSettings, level: str | None, first: Moment, ahead: str | None = None) -> StateMaker:
    """``read_model_context`` at each D of ``first``'s ledger time (a series' dates), of every unit at ``level`` or of one
    scope's items (the maker's ``only``), asking once whether the model is usable and reading once the facts every
    state reads whatever its D (``Known``); ``ahead`` and ``only``: as ``ReadModelContext``'s (a folded state serves
    every scope)."""
    store = getattr(db, "store", None)
    if store is None or not usable(store, settings):

        def folded(day: date, only: tuple[str, str] | None = None) -> Context:
            return context(db, Moment(day, first.known_at), settings)

        return folded
    known = Known.at(db, first)

    def made(day: date, only: tuple[str, str] | None = None) -> Context:
        return ReadModelContext(db, Moment(day, first.known_at), settings, level, known, ahead, only)

    return made


def read_model_context(
    db: Any, moment: Moment, settings: ViewSettings, level: str | None = None, ahead: str | None = None, only: tuple[str, str] | None = None
) -> Context:
    """The state the metrics read at ``moment``: from the read model when it is usable, else folded. ``level``
    "national" or "la": a state only figures of that level (and England's) are read from (``ReadModelContext``),
    cheaper at national scale; ``state_level`` says which a read asks for. ``ahead``: what it is read for
    (``read_model_ahead.REPORT``, ``YEAR_BEFORE``), for its statements to be asked ahead. ``only``: a state of that school's,
    trust's or LA's items alone, read for its figures only (``ReadModelContext``)."""
    return states_at(db, settings, level, moment, ahead)(moment.as_of, only)
