"""The state metrics kept per LA (issue 20), as England's are kept per day, so that an LA state at the ledger's now does
not scan the placements and removals in force for each of them.

``rm_england_state`` keeps, for the state rows known now, England's changes per metric, day and label
(``read_model_england.placement_changes`` and ``exit_changes``: the predicates of ``read_model_queries``' SQL as runs of
effective days). ``rm_la_state`` keeps the same changes per scope too: the LA of the unit each item counts under (the
commissioner for the open, overdue and unregistered placements, the setting for the reintegration rate, the school
left for the removals), as ``rm_unit_la`` says when written, else the unit. An LA's figure at (D, now) is the sum of
its changes up to D, every LA's in one statement (``LA_STATE_SUMS``): at 1 M pupils 65,922 rows (metric, day, scope and
label) for the 120,153 changes, where the seven statements it replaces scanned the placements and removals in force.

The items are unique (a placement, a removal), so a row's changes may be taken off under another scope than they were
added under: when a Kafka worker applies a unit's rows before its registration, they are added under the unit's own
id and taken off under its LA later, and the read, which maps every scope as ``unit_la`` does, adds both up under the
LA. The pupils in unregistered provision at several placements at once are read one by one, as England's are
(``read_model_queries.UNREGISTERED_AT_SEVERAL``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .orgs import Directory
from .read_model_england import Change, shard
from .read_model_la import UNIT_LA_JOIN, unit_la
from .read_model_roll import DailyChanges

RM_LA_STATE = DailyChanges(
    "rm_la_state",
    (
        ("metric", "TEXT NOT NULL"),
        ("day", "TEXT NOT NULL"),
        ("scope", "TEXT NOT NULL"),  # the unit's LA (rm_unit_la when written), else the unit
        ("label", "TEXT NOT NULL"),  # '' for none
        ("shard", "INTEGER NOT NULL"),  # the writer's share, as England's numbers' (``read_model_england.use_shard``)
        ("num", "BIGINT NOT NULL"),
        ("den", "BIGINT NOT NULL"),
        ("n", "BIGINT NOT NULL"),
    ),
    key=("metric", "day", "scope", "label", "shard"),
    counting="n <> 0 OR num <> 0 OR den <> 0",
    indexes=("day",),  # D's month's days (``DailyChanges.up_to``)
)


def placement_unit(metric: str, values: tuple[Any, ...]) -> str:
    """The unit a placement row's item of ``metric`` counts under: the setting for the reintegration rate, else the
    commissioner (as ``read_model_queries``' SQL gives them)."""
    return str(values[2] if metric == "ap_reintegration_rate" else values[1])


class LaChanges:
    """A batch's changes to ``rm_la_state``, summed per metric, day, unit and label; each unit's scope is looked up
    when they are written (``write``)."""

    def __init__(self) -> None:
        self.sums: dict[tuple[str, str, str, str], list[int]] = {}

    def add(self, changes: Iterable[Change], unit_of: Any, sign: int = 1) -> None:
        """``changes`` of one row, each counting under ``unit_of(metric)``."""
        for metric, day, label, num, den, n in changes:
            kept = self.sums.setdefault((metric, day, unit_of(metric), label), [0, 0, 0])
            kept[0] += sign * num
            kept[1] += sign * den
            kept[2] += sign * n

    def units(self) -> set[str]:
        """The units whose LAs ``write`` asks for."""
        return {unit for _, _, unit, _ in self.sums}

    def write(self, cur: Any, store: Any, las: Directory) -> None:
        """The changes, each unit's scope as ``las`` (its LA known now, ``las_of``) says."""
        if not self.sums:
            return
        scoped: dict[tuple[str, str, str, str], list[int]] = {}
        for (metric, day, unit, label), sums in self.sums.items():
            kept = scoped.setdefault((metric, day, las.la_of(unit) or unit, label), [0, 0, 0])
            for i in range(3):
                kept[i] += sums[i]
        self.sums.clear()
        RM_LA_STATE.add(cur, store, [(*key, shard(), *sums) for key, sums in sorted(scoped.items()) if any(sums)])


# Every LA's kept state figures at (D, now), as ``read_model_queries.aggregated``'s rows with the metric first: each
# scope's changes up to D, the scope mapped as ``unit_la`` maps a unit (a unit's own id, where its rows were written
# before its LA was known, reads as its LA). A metric and label whose items all stopped counting are left out.
LA_STATE_SUMS = (
    f"SELECT c.metric, {unit_la('c.unit')} AS scope, c.label, CAST(SUM(c.num) AS BIGINT), CAST(SUM(c.den) AS BIGINT), "
    f"CAST(SUM(c.n) AS BIGINT) FROM (SELECT metric, scope AS unit, label, SUM(num) AS num, SUM(den) AS den, SUM(n) AS n "
    f"FROM ({RM_LA_STATE.up_to('metric, scope, label, num, den, n')}) x GROUP BY metric, scope, label) c {UNIT_LA_JOIN} "
    "GROUP BY 1, 2, 3 HAVING SUM(c.n) <> 0"
)
