"""Who may read and post what: the one access policy (design.md 6, the matrix in docs/access.md). Pure.

A principal (bearer token: organisation + role) reads a pupil's identified record only through a relationship that the pupil's own
accepted records establish (on roll, placement commissioned or hosted, LA residence duty, trust
academy, ...), while it is current or ended less than a window ago. Every allowed read names a purpose
from ``schemas/codes/access_purposes.json``, and the caller records it (``access.record_viewed``).
An inspector's scope is the LA areas its organisation is inspecting today (``inspection.started``, from..to:
``inspection_scope``), never a list held on the token; a token may only narrow it.

A relationship the reader's own organisation asserted (its own registration, notice or placement) shows only
what happened from its start, plus a summary of the pupil's setting just before (``Grant.since``,
``visible``, ``setting_before``): posting an event about a pupil must not open the pupil's whole past.

Over 400 lines as one concept: the access policy, whose roles, relationships, windows, purposes and decisions are
read together (split, the matrix in docs/access.md would have no one place in the code).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from enum import StrEnum

from ledger.core.codes import code_list
from ledger.core.ehcp_rules import fold_ehcp
from ledger.core.errors import Category, LedgerError, Problem
from ledger.core.identifiers import org_scheme
from ledger.core.inspection_rules import Inspection
from ledger.core.rules import Episode, Record, Registration, effective, fold_pupil

ROLES = ("school", "la", "trust", "ap_setting", "inspector", "regions", "researcher", "admin", "tribunal", "mediation")

# Which organisation id schemes may hold a token of each role (researchers: any registered organisation).
ROLE_SCHEMES: dict[str, tuple[str, ...] | None] = {
    "school": ("urn",),
    "ap_setting": ("urn", "ukprn"),
    "la": ("la",),
    "trust": ("trust",),
    "inspector": ("ofsted", "cqc"),
    "regions": ("dfe:regions",),
    "admin": ("dfe:admin",),
    "researcher": None,
    "tribunal": ("tribunal",),
    "mediation": ("mediation",),
}

# Event type families each role may post (the catalogue's x-submitters and the rules narrow further).
# access.* is written by the ledger itself and never accepted from a token.
SUBMITS: dict[str, tuple[str, ...]] = {
    "school": ("pupil.", "org.key_"),
    "ap_setting": ("pupil.", "org.key_"),
    "la": ("pupil.", "provider.", "ehcp.", "dispute.", "funding.", "inclusion_plan.", "org.key_"),
    "trust": ("org.key_",),
    "inspector": ("inspection.", "org.key_"),
    "regions": ("accountability.", "org.key_"),
    "admin": ("org.", "research.project_", "funding.tariff_"),
    "researcher": (),
    "tribunal": ("dispute.", "org.key_"),  # appeals (dispute.appeal_*), about decisions recorded on the pupil
    "mediation": ("dispute.", "org.key_"),  # mediation (dispute.mediation_*), likewise
}


class Link(StrEnum):
    """Kinds of relationship between an organisation and a pupil, read from the pupil's records."""

    ON_ROLL = "on_roll"  # a registration at the school (main, single or subsidiary)
    MOVE_HOST = "managed_move_host"  # the host school of a managed move
    COMMISSIONED = "placement_commissioned"  # a school or LA commissioned an AP placement
    PLACED = "placement_setting"  # the AP setting of a placement
    RESIDENT = "resident"  # the LA recorded a CME episode or elective home education
    MAINTAINED = "maintained_school"  # the LA maintains a school the pupil is on roll at
    ACADEMY = "trust_academy"  # the trust runs the academy the pupil is on roll at
    EHCP = "ehcp_la"  # the LA is assessing the pupil for an EHC plan, or maintains the pupil's plan


# Which links give each role a reading relationship.
READS_THROUGH: dict[str, tuple[Link, ...]] = {
    "school": (Link.ON_ROLL, Link.MOVE_HOST, Link.COMMISSIONED),
    "ap_setting": (Link.ON_ROLL, Link.PLACED),
    "la": (Link.MAINTAINED, Link.COMMISSIONED, Link.RESIDENT, Link.EHCP),
    "trust": (Link.ACADEMY,),
    "inspector": tuple(Link),  # any link of a school or area in its scope (the areas it is inspecting: inspection_scope)
}

# Purposes: the default for the role (None: the caller must state one) and the others it may state.
PURPOSES: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "school": ("direct_education", ("direct_education", "subject_access_request", "data_correction")),
    "ap_setting": ("direct_education", ("direct_education", "subject_access_request", "data_correction")),
    "la": ("statutory_duty", ("statutory_duty", "subject_access_request", "data_correction")),
    "trust": ("trust_oversight", ("trust_oversight", "subject_access_request")),
    "inspector": (None, ("inspection",)),
    "admin": (None, ("subject_access_request", "data_correction", "legal_obligation")),
    "regions": (None, ()),
    "researcher": (None, ()),
    "tribunal": (None, ()),
    "mediation": (None, ()),
}


class Standing(StrEnum):
    CURRENT = "current"  # the relationship holds today
    RECENT = "recent"  # it ended within the window: still allowed
    LAPSED = "lapsed"  # it ended longer ago than the window
    NONE = "none"


@dataclass(frozen=True)
class Principal:
    org: str
    role: str
    token_id: str = ""
    # inspectors: the areas (la:...) and schools (urn:...) it reads. As authenticated, what the token names (may be
    # empty: every inspected area); ``inspection_scope`` turns it into the areas under inspection today.
    scope: frozenset[str] = frozenset()


@dataclass(frozen=True)
class OrgFacts:
    """What the policy needs to know about an organisation named in a pupil's record."""

    la: str | None = None
    trust: str | None = None


@dataclass(frozen=True)
class PupilLink:
    kind: Link
    org: str
    start: date
    end: date | None  # None: still holds
    area: str | None = None  # the LA the organisation is in (inspectors of an area)
    asserted_by: str | None = None  # the organisation whose event established the link

    @property
    def self_asserted(self) -> bool:
        """The linked organisation established the link itself (its own registration, notice or placement)."""
        return self.asserted_by == self.org


@dataclass(frozen=True)
class Windows:
    """How long after a relationship ends it still allows reading (days)."""

    after_end: int = 30
    inspection: int = 730


@dataclass(frozen=True)
class Grant:
    purpose: str
    basis: str  # e.g. "on_roll urn:100005 current", recorded with the view
    since: date | None = None  # None: the whole history; else only what occurred from this day (and the reader's own)


def forbidden(code: str, path: str, message: str) -> LedgerError:
    return LedgerError.one(code, path, message, Category.FORBIDDEN)


# -- principals -----------------------------------------------------------------------------------


def role_problem(org: str, role: str) -> str | None:
    """None when a token of ``role`` may be bound to ``org``, else why not."""
    if role not in ROLES:
        return f"role must be one of {', '.join(ROLES)}"
    schemes = ROLE_SCHEMES[role]
    if schemes is not None and org_scheme(org) not in schemes:
        return f"a {role} token belongs to an organisation id of scheme {' or '.join(schemes)}, not {org}"
    return None


def in_force(inspection: Inspection, inspectorate: str, today: date) -> bool:
    """Whether ``inspection`` gives ``inspectorate``'s inspectors the area today: its own, from its first to its last day."""
    return inspection.inspectorate == inspectorate and inspection.start <= today <= inspection.end


def inspection_scope(
    principal: Principal, inspections: Mapping[str, Iterable[Inspection]], today: date, school_la: Mapping[str, str | None]
) -> Principal:
    """An inspector as it may read today: its scope is the areas (``la:NNN``) with an ``inspection.started`` by its
    organisation in force (``inspections``: each LA's inspections). A token that names areas or schools narrows
    that to those named (a school counts when its LA, ``school_la``, is under inspection); it never widens it."""
    areas = frozenset(area for area, found in inspections.items() if any(in_force(i, principal.org, today) for i in found))
    if principal.scope:
        areas = frozenset(s for s in principal.scope if s in areas or school_la.get(s) in areas)
    return replace(principal, scope=areas)


# -- relationships --------------------------------------------------------------------------------


def pupil_links(records: Sequence[Record], orgs: Mapping[str, OrgFacts]) -> list[PupilLink]:
    """Every relationship the pupil's accepted records establish, with when it held."""
    state = fold_pupil(records)
    links: list[PupilLink] = []

    def add(kind: Link, org: object, start: date, end: date | None, asserted_by: str) -> None:
        if isinstance(org, str):
            facts = orgs.get(org, OrgFacts())
            links.append(PupilLink(kind, org, start, end, org if org_scheme(org) == "la" else facts.la, asserted_by))

    for reg in state.registrations:  # a registration is posted by the school itself (rules: data.school = submitter)
        add(Link.ON_ROLL, reg.school, reg.start, reg.end, reg.school)
        facts = orgs.get(reg.school, OrgFacts())
        if facts.trust:
            add(Link.ACADEMY, facts.trust, reg.start, reg.end, reg.school)
        elif facts.la:
            add(Link.MAINTAINED, facts.la, reg.start, reg.end, reg.school)
    for episode in state.episodes.values():  # an episode is asserted by whoever posted its start (its owner)
        if episode.kind == "placement":
            add(Link.COMMISSIONED, episode.details.get("commissioner"), episode.start, episode.end, episode.owner)
            add(Link.PLACED, episode.details.get("setting"), episode.start, episode.end, episode.owner)
        elif episode.kind == "managed_move":
            add(Link.MOVE_HOST, episode.details.get("host_school"), episode.start, episode.end, episode.owner)
        elif episode.kind == "missing_education":
            add(Link.RESIDENT, episode.details.get("la"), episode.start, episode.end, episode.owner)
    ehcp = fold_ehcp([r for r in effective(records) if r.type.startswith("ehcp.")])
    for assessment in ehcp.assessments.values():  # the LA asked to assess, until its decision ends the assessment
        add(Link.EHCP, assessment.la, assessment.requested_on, assessment.closed_on, assessment.la)
    if ehcp.plan is not None:  # each LA that maintained the plan (one it received by transfer was named by the LA before)
        for n, (la, start, end) in enumerate(ehcp.plan.holders()):
            add(Link.EHCP, la, start, end, la if n == 0 else ehcp.plan.holders()[n - 1][0])
    for record in effective(records):
        if record.type == "pupil.home_education_notified":
            later = [r.start for r in state.registrations if r.start > record.occurred_on]
            add(Link.RESIDENT, record.data.get("la"), record.occurred_on, min(later) if later else None, record.submitter)
    return links


def standing_of(link: PupilLink, today: date, window_days: int) -> Standing:
    if link.start > today:
        return Standing.NONE
    if link.end is None or today < link.end:
        return Standing.CURRENT
    return Standing.RECENT if (today - link.end).days <= window_days else Standing.LAPSED


ALLOWING = (Standing.CURRENT, Standing.RECENT)


def graded_links(principal: Principal, links: Sequence[PupilLink], today: date, windows: Windows) -> list[tuple[Standing, PupilLink]]:
    """The principal's links with the pupil and their standing, best standing first."""
    kinds = READS_THROUGH.get(principal.role, ())
    if principal.role == "inspector":
        mine = [lk for lk in links if lk.org in principal.scope or (lk.area is not None and lk.area in principal.scope)]
        window = windows.inspection
    else:
        mine = [lk for lk in links if lk.kind in kinds and lk.org == principal.org]
        window = windows.after_end
    order = [Standing.CURRENT, Standing.RECENT, Standing.LAPSED, Standing.NONE]
    return sorted(((standing_of(lk, today, window), lk) for lk in mine), key=lambda pair: order.index(pair[0]))


def relationship(principal: Principal, links: Sequence[PupilLink], today: date, windows: Windows) -> tuple[Standing, list[PupilLink]]:
    """The principal's best standing towards the pupil, and the links that give it."""
    graded = graded_links(principal, links, today, windows)
    if not graded:
        return Standing.NONE, []
    best = graded[0][0]
    return best, [lk for s, lk in graded if s is best]


def widest(principal: Principal, allowing: Sequence[tuple[Standing, PupilLink]]) -> tuple[Standing, PupilLink, date | None]:
    """Of the links that allow a read, the one that shows most, and from when (None: the whole history). A link
    another organisation asserted (the LA of a school's registration, the setting a commissioner named, the host
    a home school named), and any link in an inspector's scope, shows the whole history; one the reader's
    organisation asserted itself shows what occurred from its start, the earliest such start if there are several."""
    for standing, link in allowing:
        if principal.role == "inspector" or not link.self_asserted:
            return standing, link, None
    standing, link = min(allowing, key=lambda pair: pair[1].start)
    return standing, link, link.start


# -- decisions ------------------------------------------------------------------------------------


def purpose_for(principal: Principal, stated: str | None) -> str:
    """The purpose to record for a read of an identified pupil record, or the error (400/403/422). A problem with the
    stated purpose is at ``$.purpose``, the value's own name (over HTTP it is a query parameter: ``api.params.named_as_query``)."""
    default, allowed = PURPOSES.get(principal.role, (None, ()))
    if not allowed:
        raise forbidden(
            "role_cannot_read_pupils",
            "$",
            f"a {principal.role} token cannot read identified pupil records"
            + (" (only exports)" if principal.role == "researcher" else " (aggregates and cases only)"),
        )
    if stated is None:
        if default is None:
            raise LedgerError.one(
                "purpose_required",
                "$.purpose",
                f"a {principal.role} must state a purpose: one of {', '.join(allowed)}",
                Category.MALFORMED,
            )
        return default
    if stated not in code_list("access_purposes").all_codes():
        raise LedgerError.one("unknown_code", "$.purpose", f"{stated!r} is not in code list access_purposes")
    if stated not in allowed:
        raise forbidden("purpose_not_allowed", "$.purpose", f"a {principal.role} may read for {', '.join(allowed)}, not {stated}")
    return stated


def authorise_pupil_read(
    principal: Principal,
    stated_purpose: str | None,
    links: Sequence[PupilLink],
    today: date,
    windows: Windows,
    own_submission: bool = False,
) -> Grant:
    """Allow a read of one pupil's identified record, or raise (403 no relationship, 400 no purpose...).

    ``own_submission``: the principal's organisation posted the event being read (getEvent), which it may
    always read back.
    """
    purpose = purpose_for(principal, stated_purpose)
    if principal.role == "admin":
        return Grant(purpose, "operator")
    if own_submission:
        return Grant(purpose, f"own submission of {principal.org}")
    graded = graded_links(principal, links, today, windows)
    allowing = [(s, lk) for s, lk in graded if s in ALLOWING]
    if allowing:
        standing, link, since = widest(principal, allowing)
        if since is None:
            return Grant(purpose, f"{link.kind} {link.org} {standing}")
        return Grant(purpose, f"{link.kind} {link.org} {standing}, self-asserted: from {since.isoformat()}", since)
    standing = graded[0][0] if graded else Standing.NONE
    why = {
        Standing.LAPSED: f"{principal.org}'s relationship with this pupil ended more than "
        f"{windows.inspection if principal.role == 'inspector' else windows.after_end} days ago",
        Standing.NONE: f"{principal.org} has no relationship with this pupil"
        + (" within the inspected schools or areas" if principal.role == "inspector" else ""),
    }[standing]
    raise forbidden("not_related", "$.upn", why)


def visible(record: Record, grant: Grant, reader_org: str) -> bool:
    """Whether a reader granted ``grant`` sees this record of the pupil: everything through a whole-history grant;
    through a self-asserted one, what occurred from its start and what the reader's organisation posted itself."""
    return grant.since is None or record.occurred_on >= grant.since or record.submitter == reader_org


def shows_registration(registration: Registration, grant: Grant | None, reader_org: str) -> bool:
    """Whether the pupil's state shown through ``grant`` (None: a trusted local read) lists this registration: through
    a self-asserted link, those begun from its start, the reader's own, and those of the setting before it."""
    if grant is None or grant.since is None:
        return True
    return registration.start >= grant.since or registration.school == reader_org or registration.open_on(grant.since - timedelta(days=1))


def shows_episode(episode: Episode, grant: Grant | None, reader_org: str) -> bool:
    """Whether the state shown through ``grant`` lists this open episode: through a self-asserted link, those begun
    from its start and the reader's own."""
    return grant is None or grant.since is None or episode.start >= grant.since or episode.owner == reader_org


def setting_before(records: Sequence[Record], since: date) -> list[dict[str, str]]:
    """The minimal summary a self-asserted link shows of the pupil's past: the registrations open the day before
    it started (school, enrolment status, SEN status, since when), from the records in force."""
    eve = since - timedelta(days=1)
    return [
        {"school": r.school, "enrolment_status": r.status, "sen_status": r.sen_status, "since": r.start.isoformat()}
        for r in fold_pupil(records).registrations
        if r.open_on(eve)
    ]


def may_read_event(principal: Principal, event_type: str) -> bool:
    """Events not about an identified pupil: organisation and provider events, and the access log."""
    if principal.role == "researcher":
        return False
    if event_type.startswith("access."):
        return principal.role == "admin"
    return True


def may_read_access_log(principal: Principal, viewer_org: str | None) -> bool:
    """Oversight of who looked: the operator sees every view; an organisation sees its own principals' views."""
    if principal.role == "admin":
        return True
    return principal.role != "researcher" and viewer_org == principal.org


def may_read_claims_report(principal: Principal) -> bool:
    """The report of unusual claims and of rejections that depended on other organisations' records: the operator's."""
    return principal.role == "admin"


def submit_problems(principal: Principal, body: Mapping[str, object]) -> list[Problem]:
    """Why the bearer may not post this event body (paths relative to the payload)."""
    submitter, event_type = body.get("submitter"), str(body.get("type"))
    if principal.org != submitter:
        return [
            Problem(
                "submitter_mismatch",
                "$.submitter",
                f"the bearer token is for {principal.org} but the event's submitter is {submitter}",
                Category.FORBIDDEN,
            )
        ]
    if not any(event_type.startswith(prefix) for prefix in SUBMITS.get(principal.role, ())):
        return [Problem("role_cannot_submit", "$.type", f"a {principal.role} token cannot post {event_type}", Category.FORBIDDEN)]
    return []


def aggregate_scope_allowed(principal: Principal, level: str, org: str | None, facts: OrgFacts | None = None) -> bool:
    """Aggregates (metrics, registers) at ``level`` national | la | trust | school for ``org``.

    National figures are published statistics: every role reads them. The Regions Group and the operator
    read every organisation's; inspectors those within their scope; an LA its own and its schools'; a
    trust its own and its academies'; a school or setting its own. Researchers read exports only.
    """
    role = principal.role
    if role in ("admin", "regions") or level == "national":
        return True
    if role in ("researcher", "tribunal", "mediation"):
        return False
    facts = facts or OrgFacts()
    if role == "inspector":
        return org in principal.scope or (facts.la is not None and facts.la in principal.scope)
    if org == principal.org:
        return True
    if role == "la":
        return level == "school" and facts.la == principal.org
    if role == "trust":
        return level == "school" and facts.trust == principal.org
    return False
