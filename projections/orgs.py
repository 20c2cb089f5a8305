"""Establishment and trust registry view: who is in which LA and, as of a date, which trust."""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ledger.core.identifiers import la_code_of

from .facts import LogEvent, Moment, Table, View

ORG_FACTS = Table(
    "pv_org_facts",
    (
        ("kind", "TEXT"),
        ("la", "TEXT"),
        ("trust", "TEXT"),
        ("gias_type", "TEXT"),
        ("phase", "TEXT"),
        ("predecessor", "TEXT"),
    ),
    indexes=("subject",),
)

ORG_TYPES = ("org.registered", "provider.unregistered_recorded", "org.joined_trust", "org.left_trust", "org.closed", "provider.closed")


def rows(ev: LogEvent) -> Iterable[tuple[Table, dict[str, Any]]]:
    r = ev.record
    if r.type not in ORG_TYPES:
        return
    d = r.data
    if r.type == "provider.unregistered_recorded":
        yield ORG_FACTS, {"kind": "unregistered_provider", "la": r.submitter}
    else:
        yield ORG_FACTS, {k: d.get(k) for k in ("kind", "la", "trust", "gias_type", "phase", "predecessor")}


VIEW = View("orgs", 1, (ORG_FACTS,), rows)


@dataclass
class Org:
    org: str
    kind: str = ""
    la: str | None = None
    trust: str | None = None
    gias_type: str | None = None
    open: bool = True


@dataclass
class Directory:
    """Organisations as of a moment: kind, LA and trust (membership is historical)."""

    orgs: dict[str, Org] = field(default_factory=dict)
    # each unit's scope by level, as the roll-up looks them up (``projections.metrics.figures``): kept once the
    # directory is complete, as ``directory`` returns it; the scopes of ``orgs`` changed afterwards are not seen
    _scopes: dict[str, dict[str, str | None]] = field(default_factory=dict, repr=False, compare=False)

    def scopes(self, level: str) -> dict[str, str | None]:
        """The units' scopes at ``level`` found so far (``context.scope_of``'s answers, filled in by its callers)."""
        return self._scopes.setdefault(level, {})

    def la_of(self, org: str) -> str | None:
        if org.startswith("la:"):
            return org
        found = self.orgs.get(org)
        if found is not None and found.la:
            return found.la
        code = la_code_of(org)
        return f"la:{code}" if code else None

    def trust_of(self, org: str) -> str | None:
        found = self.orgs.get(org)
        return found.trust if found else None

    def of_kind(self, *kinds: str) -> list[str]:
        return sorted(o.org for o in self.orgs.values() if o.kind in kinds)


FACT_COLUMNS = "subject, type, occurred_on, kind, la, trust, gias_type"
# The org facts known now, per store, with the (largest seq, count) of the table they were read at. Every read folds
# the directory (3,624 facts at 1 M pupils, about 15 ms to read; England has some 50,000 organisations), and they
# change only when an organisation's event is projected: a new fact always has a larger seq (a correction is one too),
# and a view's rows up to a seq are the same however often it is rebuilt.
# (By the store's id, with a weak reference to it: a store is a dataclass, compared by value, so not a dict key.)
_known_now: dict[int, tuple[weakref.ref[Any], tuple[int, int], list[tuple[Any, ...]]]] = {}
_known_now_lock = threading.Lock()


def org_facts(db: Any, moment: Moment) -> list[tuple[Any, ...]]:
    """``FACT_COLUMNS`` of the org facts known at ``moment``, whatever their effective date (the same for every D at one
    ledger time), in effective then ledger order: at the ledger's now, from ``_known_now`` while the table holds the
    same facts."""
    store = getattr(db, "store", None)
    if moment.known_at is not None or store is None:
        rows: list[tuple[Any, ...]] = db.facts(ORG_FACTS.name, moment, columns=FACT_COLUMNS, order="occurred_on, seq", effective_cut=False)
        return rows
    ((largest, count),) = store.query(f"SELECT MAX(seq), COUNT(*) FROM {ORG_FACTS.name}")
    key = (int(largest or 0), int(count))
    with _known_now_lock:
        cached = _known_now.get(id(store))
    if cached is not None and cached[0]() is store and cached[1] == key:
        return cached[2]
    # read after the key: a fact projected in between is in the rows (a moment later), never one missing
    rows = db.facts(ORG_FACTS.name, moment, columns=FACT_COLUMNS, order="occurred_on, seq", effective_cut=False)
    with _known_now_lock:  # forgotten with the store (a reference replaced here never calls back)
        _known_now[id(store)] = (weakref.ref(store, functools.partial(_forget, id(store))), key, rows)
    return rows


def _forget(store_id: int, store_ref: weakref.ref[Any]) -> None:
    with _known_now_lock:
        if store_id in _known_now and _known_now[store_id][0] is store_ref:
            del _known_now[store_id]


def directory(db: Any, moment: Moment) -> Directory:
    """Fold the org facts known at ``moment`` (effective order, then ledger order). A registration
    counts whatever its effective date (an organisation the ledger learnt of later still existed
    before); trust changes and closures count from their effective date."""
    return directory_from(org_facts(db, moment), moment)


def directory_from(facts: Iterable[tuple[Any, ...]], moment: Moment) -> Directory:
    """``directory`` of the facts ``org_facts`` gave at ``moment``'s ledger time, at ``moment``'s D."""
    out = Directory()
    as_of = moment.as_of.isoformat()
    for subject, etype, occurred_on, kind, la, trust, gias_type in facts:
        registration = etype in ("org.registered", "provider.unregistered_recorded")
        if occurred_on > as_of and not registration:
            continue
        org = out.orgs.setdefault(subject, Org(subject))
        if registration:
            if occurred_on > as_of:  # its trust at registration applies from its effective date only
                trust = None
            org.kind, org.la, org.trust, org.gias_type = kind, la, trust, gias_type
        elif etype == "org.joined_trust":
            org.trust = trust
        elif etype == "org.left_trust" and org.trust == trust:
            org.trust = None
        elif etype in ("org.closed", "provider.closed"):
            org.open = False
    return out
