"""Each unit's LA as the organisations' facts known now say (issue 20), so that the database adds an LA state's sums up
per LA at the ledger's now, rather than sending a sum per unit for Python to add up.

A state made for LA figures (``read_model_queries.ReadModelContext(level="la")``) gives each unit's sums under the unit's
LA: the directory's ``la_of`` (``projections.orgs``). Added up in Python, that was 81,000 rows sent and regrouped per
state at 1 M pupils. ``rm_unit_la`` keeps what ``la_of`` reads, for the registrations known now: per organisation, the
LA of its registration last in effective order, then ledger order (the directory's fold; a registration counts whatever
its effective date, so the answer is the same at every D). ``UNIT_LA`` is ``la_of`` in SQL over it: an LA's own id,
else the registered LA, else the LA code in an unregistered provider's id, else none (the unit keeps its own sums, as
``ReadModelContext.under`` keeps them). A read at an earlier ledger time may know fewer registrations: it adds the
sums up in Python, as before.

The upkeep (``after_orgs``) runs in the batch's transaction, with the read model's other numbers, and reads the
organisations' facts as the directory does (a correction of a registration included).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ledger.core.identifiers import la_code_of
from ledger.storage.store import execute_in, fetch_tuples

from .facts import LogEvent
from .orgs import ORG_FACTS
from .read_model_roll import SumTable

RM_UNIT_LA = SumTable("rm_unit_la", (("unit", "TEXT NOT NULL"), ("la", "TEXT NOT NULL")), key=("unit",))  # la '' for none

REGISTRATIONS = ("org.registered", "provider.unregistered_recorded")  # as ``projections.orgs.directory`` reads them


def registered_las(cur: Any, store: Any, events: Sequence[LogEvent]) -> dict[str, str]:
    """The LA ('' for none) of each organisation the batch registered (or corrected a registration of), from its
    registrations known now up to the batch (the orgs view's facts, written before the read model's in the runner's
    order): the last in effective order, then ledger order, as the directory folds them. An organisation whose
    registrations are all superseded has none."""
    units = sorted({ev.subject for ev in events if ev.record.type in REGISTRATIONS})
    if not units:
        return {}
    where, params = store.where_in("subject", units)
    execute_in(
        cur,
        store.sql(
            f"SELECT subject, la FROM {ORG_FACTS.name} WHERE {where} AND type IN ('org.registered', 'provider.unregistered_recorded') "
            "AND superseded_at IS NULL AND seq <= ? ORDER BY subject, occurred_on, seq"
        ),
        [*params, max(ev.seq for ev in events)],
        store.is_postgres,
    )
    found = {unit: "" for unit in units}
    found.update((subject, la or "") for subject, la in fetch_tuples(cur))  # (each unit's last row, in that order)
    return found


def kept_las(cur: Any, store: Any, units: Sequence[str]) -> dict[str, str]:
    """``rm_unit_la``'s LA of each of ``units`` ('' for none)."""
    where, params = store.where_in("unit", list(units))
    execute_in(cur, store.sql(f"SELECT unit, la FROM {RM_UNIT_LA.name} WHERE {where}"), params, store.is_postgres)
    return {unit: "" for unit in units} | {unit: la for unit, la in fetch_tuples(cur)}


def write_las(cur: Any, store: Any, las: dict[str, str]) -> None:
    """``rm_unit_la`` of these units as given ('' for none: no row)."""
    where, params = store.where_in("unit", sorted(las))
    execute_in(cur, store.sql(f"DELETE FROM {RM_UNIT_LA.name} WHERE {where}"), params, store.is_postgres)
    rows = sorted((unit, la) for unit, la in las.items() if la)
    if rows:
        cur.executemany(store.sql(f"INSERT INTO {RM_UNIT_LA.name} (unit, la) VALUES (?, ?)"), rows)


def scope_of(unit: str, la: str) -> str:
    """``unit_la`` in Python: the scope of ``unit`` whose registered LA is ``la`` ('' for none)."""
    if unit.startswith("la:"):
        return unit
    code = la_code_of(unit)
    return la or (f"la:{code}" if code else unit)


def unit_la(unit: str) -> str:
    """``Directory.la_of`` of the unit ``unit`` (a SQL expression), joined to ``rm_unit_la m`` on it; the unit itself
    where it has no LA."""
    return (
        f"CASE WHEN SUBSTR({unit}, 1, 3) = 'la:' THEN {unit} ELSE COALESCE(NULLIF(m.la, ''), "
        f"CASE WHEN SUBSTR({unit}, 1, 6) = 'uprov:' THEN 'la:' || SUBSTR({unit}, 7, 3) END, {unit}) END"
    )


UNIT_LA_JOIN = f"LEFT JOIN {RM_UNIT_LA.name} m ON m.unit = c.unit"
