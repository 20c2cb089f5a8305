"""Each unit's LA as the organisations' facts known now say (issue 20), so that the database adds an LA state's sums up
per LA at the ledger's now, rather than sending a sum per unit for Python to add up.

A state made for LA figures (``read_model_queries.ReadModelContext(level="la")``) gives each unit's sums under the unit's
LA: the directory's ``la_of`` (``projections.orgs``). Added up in Python, that was 81,000 rows sent and regrouped per
state at 1 M pupils. ``rm_unit_la`` keeps the LA of each organisation registered with one; ``unit_la`` is ``la_of`` in
SQL over it: an LA's own id, else the registered LA, else the LA code in an unregistered provider's id, else none (the
unit keeps its own sums, as ``ReadModelContext.under`` keeps them). The write side takes one registration per
organisation and no correction of it, so the answer is the same at every D and never changes once the organisation is
registered. A read at an earlier ledger time may know fewer registrations: it adds the sums up in Python, as before.

The upkeep (``record_las``) runs in the batch's transaction with the read model's other numbers
(``read_model_months.after_facts``). Sums written under a unit's own id before its registration was applied (a Kafka
worker may apply a school's reports first, from another partition) are added up under its LA once it is, by the
state's ``regrouped``, which maps every row's unit as the directory does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .facts import LogEvent
from .orgs import Directory, Org
from .orgs import rows as org_rows
from .read_model_roll import SumTable

RM_UNIT_LA = SumTable("rm_unit_la", (("unit", "TEXT NOT NULL"), ("la", "TEXT NOT NULL")), key=("unit",))

REGISTRATIONS = ("org.registered", "provider.unregistered_recorded")  # as ``projections.orgs.directory`` reads them


def record_las(cur: Any, store: Any, events: Sequence[LogEvent]) -> None:
    """The LAs of the organisations the batch registers into ``rm_unit_la``, as the orgs view's rows say them
    (``orgs.rows``). The write side takes one registration per organisation, and no correction of it
    (``already_registered``), so a unit's LA is set once."""
    found = [(ev.subject, row["la"]) for ev in events if ev.record.type in REGISTRATIONS for _, row in org_rows(ev) if row["la"]]
    if found:
        cur.executemany(
            store.sql(f"INSERT INTO {RM_UNIT_LA.name} (unit, la) VALUES (?, ?) ON CONFLICT (unit) DO UPDATE SET la = excluded.la"),
            sorted(found),
        )


def unit_la(unit: str) -> str:
    """``Directory.la_of`` of the unit ``unit`` (a SQL expression), joined to ``rm_unit_la m`` on it; the unit itself
    where it has no LA."""
    return (
        f"CASE WHEN SUBSTR({unit}, 1, 3) = 'la:' THEN {unit} ELSE COALESCE(NULLIF(m.la, ''), "
        f"CASE WHEN SUBSTR({unit}, 1, 6) = 'uprov:' THEN 'la:' || SUBSTR({unit}, 7, 3) END, {unit}) END"
    )


UNIT_LA_JOIN = f"LEFT JOIN {RM_UNIT_LA.name} m ON m.unit = c.unit"


def directory_of(las: Iterable[tuple[str, str]]) -> Directory:
    """A directory of units' LAs (``rm_unit_la``'s rows), whose ``la_of`` is ``unit_la`` in Python."""
    return Directory({unit: Org(unit, la=la) for unit, la in las})


def las_of(cur: Any, store: Any, units: Sequence[str]) -> Directory:
    """The LAs of ``units`` as ``rm_unit_la`` says in the caller's transaction, as a directory."""
    if not units:
        return directory_of([])
    return directory_of(store.select_in(cur, f"SELECT unit, la FROM {RM_UNIT_LA.name} WHERE {{where}}", "unit", units))
