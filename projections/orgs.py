"""Establishment and trust registry view: who is in which LA and, as of a date, which trust."""

from __future__ import annotations

import functools
import threading
import weakref
from bisect import bisect_right
from collections import Counter
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
REGISTRATIONS = ("org.registered", "provider.unregistered_recorded")
Fact = tuple[Any, ...]  # FACT_COLUMNS


@dataclass
class OrgFacts:
    """The organisation facts known at one ledger time (``org_facts``), whatever their effective date, in effective
    then ledger order, folded into the directory at any D (``at``).

    Every read folds them (3,624 facts at 1 M pupils; England has some 50,000 organisations), a series at each of its
    51 dates. Nearly every organisation's one fact is its registration, which counts at every D (its trust only from its
    own date), so after the first fold those organisations' ``Org``s are made once and shared by every directory made
    from these facts (none is changed once folded), and only the others' facts are folded at each D."""

    rows: list[Fact]
    _shared: tuple[dict[str, Org], list[str], list[tuple[str, Org]], list[tuple[str, Org]], list[Fact]] | None = field(
        default=None, repr=False, compare=False
    )
    _folded: bool = field(default=False, repr=False, compare=False)

    def at(self, moment: Moment) -> Directory:
        as_of = moment.as_of.isoformat()
        shared = self._shared
        if shared is None:
            if not self._folded:  # (one read folds once: sharing would cost it a second pass)
                self._folded = True
                return _fold(self.rows, as_of, Directory())
            shared = self._shared = _shared(self.rows)
        always, registered_on, with_trust, without_trust, others = shared
        out = Directory(dict(always))
        registered = bisect_right(registered_on, as_of)  # those registered by D are in their trust at registration
        out.orgs.update(with_trust[:registered])
        out.orgs.update(without_trust[registered:])
        return _fold(others, as_of, out)


def _shared(rows: list[Fact]) -> tuple[dict[str, Org], list[str], list[tuple[str, Org]], list[tuple[str, Org]], list[Fact]]:
    """``OrgFacts``' organisations whose one fact is a registration: without a trust (the same at every D), and with one
    (in it from the registration's date, not before), by that date; and the other organisations' facts, in order."""
    facts = Counter(row[0] for row in rows)
    always: dict[str, Org] = {}
    trusted: list[tuple[str, str, Org, Org]] = []
    others: list[Fact] = []
    for row in rows:
        subject, etype, occurred_on, kind, la, trust, gias_type = row
        if facts[subject] > 1 or etype not in REGISTRATIONS:
            others.append(row)
        elif trust is None:
            always[subject] = Org(subject, kind, la, None, gias_type)
        else:
            trusted.append((occurred_on, subject, Org(subject, kind, la, trust, gias_type), Org(subject, kind, la, None, gias_type)))
    trusted.sort(key=lambda t: t[0])
    return (
        always,
        [on for on, *_ in trusted],
        [(subject, org) for _, subject, org, _ in trusted],
        [(subject, org) for _, subject, _, org in trusted],
        others,
    )


def _fold(rows: Iterable[Fact], as_of: str, out: Directory) -> Directory:
    """``rows`` folded into ``out`` at D (``as_of``): a registration counts whatever its effective date (an organisation
    the ledger learnt of later still existed before), its trust from that date; trust changes and closures count from
    their effective date."""
    for subject, etype, occurred_on, kind, la, trust, gias_type in rows:
        registration = etype in REGISTRATIONS
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


# The org facts known now, per store, with the (largest seq, count) of the table they were read at. Every read folds
# the directory (3,624 facts at 1 M pupils, about 15 ms to read; England has some 50,000 organisations), and they
# change only when an organisation's event is projected: a new fact always has a larger seq (a correction is one too),
# and a view's rows up to a seq are the same however often it is rebuilt.
# (By the store's id, with a weak reference to it: a store is a dataclass, compared by value, so not a dict key.)
_known_now: dict[int, tuple[weakref.ref[Any], tuple[int, int], OrgFacts]] = {}
_known_now_lock = threading.Lock()


def org_facts(db: Any, moment: Moment) -> OrgFacts:
    """The org facts known at ``moment``, whatever their effective date (the same for every D at one ledger time): at
    the ledger's now, from ``_known_now`` while the table holds the same facts (and its folds share their ``Org``s)."""
    store = getattr(db, "store", None)
    if moment.known_at is not None or store is None:
        return OrgFacts(db.facts(ORG_FACTS.name, moment, columns=FACT_COLUMNS, order="occurred_on, seq", effective_cut=False))
    ((largest, count),) = store.query(f"SELECT MAX(seq), COUNT(*) FROM {ORG_FACTS.name}")
    key = (int(largest or 0), int(count))
    with _known_now_lock:
        cached = _known_now.get(id(store))
    if cached is not None and cached[0]() is store and cached[1] == key:
        return cached[2]
    # read after the key: a fact projected in between is in the rows (a moment later), never one missing
    facts = OrgFacts(db.facts(ORG_FACTS.name, moment, columns=FACT_COLUMNS, order="occurred_on, seq", effective_cut=False))
    with _known_now_lock:  # forgotten with the store (a reference replaced here never calls back)
        _known_now[id(store)] = (weakref.ref(store, functools.partial(_forget, id(store))), key, facts)
    return facts


def _forget(store_id: int, store_ref: weakref.ref[Any]) -> None:
    with _known_now_lock:
        if store_id in _known_now and _known_now[store_id][0] is store_ref:
            del _known_now[store_id]


def directory(db: Any, moment: Moment) -> Directory:
    """The organisations as of ``moment``: the org facts known at its ledger time folded at its D (``OrgFacts.at``)."""
    return org_facts(db, moment).at(moment)
