"""Establishment and trust registry view: who is in which LA and, as of a date, which trust."""

from __future__ import annotations

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


def directory(db: Any, moment: Moment) -> Directory:
    """Fold the org facts known at ``moment`` (effective order, then ledger order). A registration
    counts whatever its effective date (an organisation the ledger learnt of later still existed
    before); trust changes and closures count from their effective date."""
    out = Directory()
    as_of = moment.as_of.isoformat()
    for subject, etype, occurred_on, kind, la, trust, gias_type in db.facts(
        ORG_FACTS.name,
        moment,
        columns="subject, type, occurred_on, kind, la, trust, gias_type",
        order="occurred_on, seq",
        effective_cut=False,
    ):
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
