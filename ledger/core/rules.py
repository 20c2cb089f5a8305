"""Domain rules per subject. Pure: state is folded from the subject's accepted records.

A rule either rejects (the event cannot be true given what the ledger knows) or flags
(lawful but concerning, or late), see README "What the ledger checks". Corrections: a record named by a later
record's ``corrects`` is superseded and drops out of the state; history still shows it.

Rules that weigh an organisation's own facts (its kind, LA, trust, closure) ask an ``OrgLookup`` the service
passes in, and only when they need them, so that most events never ask. A rejection message never says where
else the pupil is or since when: what is decided from other organisations' records (``CROSS_ORG_CODES``) is
said without naming them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from ledger.core import ehcp_rules
from ledger.core.errors import Category, Problem
from ledger.core.identifiers import org_scheme
from ledger.core.schooltime import academic_year, school_days_between

LATE_AFTER_SCHOOL_DAYS = 5
SUSPENSION_CAP_DAYS = 45
MAIN_STATUSES = ("C", "M")
# Removals after which the pupil may turn up in another area: a new LA's first claim is then plausible (flagged).
NEW_AREA_DESTINATIONS = frozenset({"moved_away", "unknown", "cme", "ehe"})

# Rejections decided from records other organisations submitted (their registrations, placements, exclusions,
# events): each answer says something about the pupil's relationships elsewhere, so the service records and limits
# them (issue 18, items 3 and 5). The messages say that a conflict exists, never where or since when.
CROSS_ORG_CODES = frozenset({
    "second_main_registration",  # another school's main registration overlaps
    "implausible_claim",  # no registration, placement or earlier record links the claimant to the pupil
    "writer_not_related",  # the writer's relationship (placements, registrations, the excluding school's LA)
    "correction_not_own",  # the corrected event is another organisation's
    "exclusion_school",  # the exclusion reviewed is another school's
    "not_owner",  # the placement, move, timetable or CME case is another organisation's
})


@dataclass(frozen=True)
class OrgFacts:
    """What the rules may ask about an organisation, from its own ``org.*`` / ``provider.*`` records."""

    kind: str = ""
    la: str | None = None
    trust: str | None = None
    closed: date | None = None  # the day it closed (org.closed, provider.closed); None while open
    registered: bool = False


UNKNOWN_ORG = OrgFacts()
OrgLookup = Callable[[str], OrgFacts]


def no_org_facts(org: str) -> OrgFacts:
    """The lookup when the caller gives none: nothing is known about any organisation (a claim that needs an
    organisation's LA or kind to be plausible is then refused)."""
    return UNKNOWN_ORG


@dataclass(frozen=True)
class Record:
    """One accepted event as the rules see it."""

    event_id: str
    type: str
    submitter: str
    subject: str  # the UPN, organisation id, or (access.* events) audit pseudonym the event is about
    occurred_on: date
    received_at: datetime
    data: dict[str, Any]
    corrects: str | None = None

    @classmethod
    def from_body(cls, body: dict[str, Any], received_at: datetime) -> Record:
        return cls(
            body["event_id"], body["type"], body["submitter"],
            body["subject"].get("upn") or body["subject"].get("pupil") or body["subject"]["org"], date.fromisoformat(body["occurred_on"]),
            received_at, body["data"], body.get("corrects"),
        )


@dataclass
class Registration:
    school: str
    status: str
    start: date
    end: date | None
    sen_status: str
    looked_after: bool
    destination: str | None = None  # where the pupil went, once removed

    def open_on(self, day: date) -> bool:
        return self.start <= day and (self.end is None or day < self.end)


@dataclass
class Episode:
    """An open-ended thing started by one event and ended by another (placement, move, CME...)."""

    kind: str
    start_event_id: str
    owner: str
    start: date
    end: date | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class PupilState:
    registrations: list[Registration] = field(default_factory=list)
    episodes: dict[str, Episode] = field(default_factory=dict)
    exclusions: dict[str, Record] = field(default_factory=dict)
    suspension_sessions: dict[str, int] = field(default_factory=dict)  # academic year -> sessions
    latest_by_submitter: dict[str, date] = field(default_factory=dict)
    submitters_seen: set[str] = field(default_factory=set)

    def open_registrations(self) -> list[Registration]:
        return [r for r in self.registrations if r.end is None]

    def registration_at(self, school: str) -> Registration | None:
        matches = [r for r in self.registrations if r.school == school and r.end is None]
        return matches[-1] if matches else None

    def registration_on(self, school: str, day: date) -> Registration | None:
        matches = [r for r in self.registrations if r.school == school and r.start <= day and (r.end is None or day <= r.end)]
        return matches[-1] if matches else None

    def ever_at(self, school: str) -> bool:
        return any(r.school == school for r in self.registrations)


EPISODE_STARTS = {
    "pupil.ap_placement_started": "placement",
    "pupil.managed_move_started": "managed_move",
    "pupil.part_time_timetable_started": "part_time_timetable",
    "pupil.missing_education_recorded": "missing_education",
}
EPISODE_ENDS = {
    "pupil.ap_placement_ended": ("placement", "placement_event_id"),
    "pupil.managed_move_ended": ("managed_move", "managed_move_event_id"),
    "pupil.part_time_timetable_ended": ("part_time_timetable", "timetable_event_id"),
    "pupil.missing_education_resolved": ("missing_education", "cme_event_id"),
}
# Events that start a relationship with the pupil (a closed organisation starts none).
STARTS = frozenset({"pupil.registered", "pupil.home_education_notified", *EPISODE_STARTS})


def effective(records: Sequence[Record]) -> list[Record]:
    """Records not superseded by a later correction or retraction."""
    superseded = {r.corrects for r in records if r.corrects}
    return [r for r in records if r.event_id not in superseded and r.type != "pupil.record_retracted"]


def fold_pupil(records: Sequence[Record]) -> PupilState:
    state = PupilState()
    for record in effective(records):
        apply_pupil(state, record)
    return state


def apply_pupil(state: PupilState, r: Record) -> None:
    d = r.data
    state.submitters_seen.add(r.submitter)
    previous = state.latest_by_submitter.get(r.submitter)
    if previous is None or r.occurred_on > previous:
        state.latest_by_submitter[r.submitter] = r.occurred_on
    if r.type == "pupil.registered":
        state.registrations.append(
            Registration(d["school"], d["enrolment_status"], r.occurred_on, None, d["sen_status"], d["looked_after"])
        )
    elif r.type == "pupil.deregistered":
        reg = state.registration_at(d["school"])
        if reg is not None:
            reg.end, reg.destination = r.occurred_on, d["destination"]
    elif r.type == "pupil.excluded":
        state.exclusions[r.event_id] = r
        if d["kind"] == "SUSP":
            year = academic_year(r.occurred_on)
            state.suspension_sessions[year] = state.suspension_sessions.get(year, 0) + d["sessions"]
    elif r.type in EPISODE_STARTS:
        state.episodes[r.event_id] = Episode(EPISODE_STARTS[r.type], r.event_id, r.submitter, r.occurred_on, details=dict(d))
    elif r.type in EPISODE_ENDS:
        episode = state.episodes.get(d[EPISODE_ENDS[r.type][1]])
        if episode is not None:
            episode.end = r.occurred_on
    elif r.type == "pupil.ap_placement_reviewed":
        episode = state.episodes.get(d["placement_event_id"])
        if episode is not None and "new_planned_end" in d:
            episode.details["planned_end"] = d["new_planned_end"]


def _reject(code: str, path: str, message: str, category: Category = Category.INVALID) -> Problem:
    return Problem(code, f"$.payload.data.{path}" if path else "$.payload", message, category)


def corrected_chain(records: Sequence[Record], event_id: str) -> set[str]:
    """``event_id`` and every event it corrects, link by link: for E1 <- E2 <- E3, E3's chain is all three."""
    by_id = {r.event_id: r for r in records}
    chain: set[str] = set()
    current: str | None = event_id
    while current is not None and current not in chain:
        chain.add(current)
        record = by_id.get(current)
        current = record.corrects if record else None
    return chain


def check_correction(records: Sequence[Record], new: Record) -> list[Problem]:
    path = "$.payload.corrects"
    if new.corrects is None:
        if new.type == "pupil.record_retracted":
            return [Problem("corrects_required", path, "a retraction names the event it retracts (corrects)")]
        return []
    target = next((r for r in records if r.event_id == new.corrects), None)
    if target is None:
        return [Problem("correction_target_unknown", path, f"no event {new.corrects} is recorded for this subject")]
    if target.submitter != new.submitter:
        return [Problem("correction_not_own", path, f"event {new.corrects} was posted by another organisation; only its submitter may correct it",
                        Category.FORBIDDEN)]
    later = next((r for r in records if r.corrects == new.corrects), None)
    if later is not None:
        return [Problem("already_corrected", path, f"event {new.corrects} is already superseded by {later.event_id}; correct that one instead")]
    if target.type == "pupil.record_retracted":
        return [Problem("correction_type", path, "a retraction is final: post the event again, with a new event_id")]
    if new.type not in (target.type, "pupil.record_retracted"):
        return [Problem("correction_type", path, f"a correction of a {target.type} must have the same type (or be pupil.record_retracted)")]
    return []


def check_pupil(records: Sequence[Record], new: Record, orgs: OrgLookup = no_org_facts) -> tuple[list[Problem], list[dict[str, str]]]:
    """Problems that reject ``new`` and flags to record with it, given the subject's records and, for the rules
    that weigh them, organisations' facts (``orgs``)."""
    problems = check_correction(records, new)
    if problems:
        return problems, []
    # A correction is judged as if the events it supersedes, the whole chain back to the first, were never posted.
    chain = corrected_chain(records, new.corrects) if new.corrects else set()
    kept = [r for r in records if r.event_id not in chain]
    rules = _PupilRules(fold_pupil(kept), new, orgs)
    rules.check()
    if not rules.problems and new.type.startswith(ehcp_rules.FAMILIES):  # the EHCP timeline (ledger/core/ehcp_rules.py)
        problems, flags = ehcp_rules.check_ehcp(effective(kept), new, lambda: rules.la_relation() == "linked")
        rules.problems.extend(problems)
        rules.flags.extend(flags)
    if not rules.problems:
        late = school_days_between(new.occurred_on, new.received_at.date())
        if late > LATE_AFTER_SCHOOL_DAYS:
            rules.flag("late_report", f"received {late} school days after occurred_on (limit {LATE_AFTER_SCHOOL_DAYS})")
    return rules.problems, rules.flags


def la_link(state: PupilState, new: Record, orgs: OrgLookup = no_org_facts) -> str | None:
    """The link of the LA posting ``new`` to the pupil whose ``state`` this is: "linked", "new_area" or None (for rules
    outside this module that need it, e.g. ``ledger.funding_rules``)."""
    return _PupilRules(state, new, orgs).la_relation()


class _PupilRules:
    """The checks of one new pupil event against the state folded from the pupil's other records.

    Who may write what about a pupil is the table in docs/access.md ("Who may write about a pupil").
    """

    def __init__(self, state: PupilState, new: Record, orgs: OrgLookup):
        self.state, self.new, self.orgs = state, new, orgs
        self.d, self.who, self.day = new.data, new.submitter, new.occurred_on
        self.scheme = org_scheme(new.submitter)
        self.problems: list[Problem] = []
        self.flags: list[dict[str, str]] = []

    def reject(self, code: str, path: str, message: str, category: Category = Category.INVALID) -> None:
        self.problems.append(_reject(code, path, message, category))

    def flag(self, code: str, message: str) -> None:
        self.flags.append({"code": code, "message": message})

    def check(self) -> None:
        self.submitter_open()
        if self.problems:
            return
        t = self.new.type
        if t == "pupil.registered":
            self.registration()
        elif t == "pupil.deregistered":
            self.removal()
        elif t == "pupil.excluded":
            self.exclusion()
        elif t == "pupil.exclusion_reviewed":
            self.exclusion_review()
        elif t in EPISODE_STARTS:
            self.episode_start()
        elif t in EPISODE_ENDS or t == "pupil.ap_placement_reviewed":
            self.episode_update()
        elif t == "pupil.home_education_notified":
            self.own("la")
            if not self.problems:
                self.la_claim()
        elif t == "pupil.attendance_summary_recorded":
            self.attendance()
        elif t == "pupil.post16_destination_recorded":
            self.post16_destination()
        elif t == "ehcp.assessment_requested":
            self.own("la")  # its link to the pupil: ledger/core/ehcp_rules.py

    # -- the writer ---------------------------------------------------------------------------------

    def own(self, field_name: str) -> None:
        if self.d.get(field_name) != self.who:
            self.reject("not_submitter", field_name, f"{field_name} must be the submitter ({self.who})", Category.FORBIDDEN)

    def off_roll(self, path: str, when: str) -> None:
        if self.state.ever_at(self.who):
            self.reject("not_on_roll", path, f"the pupil was not on {self.who}'s roll {when}")
        else:
            self.reject("unknown_pupil", path, f"{self.who} has never had this pupil on roll")

    def on_roll_required(self) -> None:
        if self.state.registration_on(self.who, self.day) is None:
            self.off_roll("", f"on {self.day}")

    def submitter_open(self) -> None:
        """A closed organisation records only what happened before it closed, and starts nothing new (a
        correction of its own earlier event is not new)."""
        closed = self.orgs(self.who).closed
        if closed is None:
            return
        if self.day > closed:
            self.problems.append(Problem("org_closed", "$.payload.occurred_on",
                                         f"{self.who} closed on {closed}: it may post only events dated on or before its closure"))
        elif self.new.type in STARTS and self.new.corrects is None:
            self.problems.append(Problem("org_closed", "$.payload.type", f"{self.who} has closed: it starts no new registration, placement "
                                         "or case (it may still record removals, ends and corrections dated on or before its closure)"))

    # -- registrations -----------------------------------------------------------------------------

    def registration(self) -> None:
        self.own("school")
        if self.problems:
            return
        # Every registration open at any time the new one covers (from its date on): a backdated admission
        # overlaps an admission elsewhere that it predates.
        covering = [r for r in self.state.registrations if r.end is None or r.end > self.day]
        status = self.d["enrolment_status"]
        if any(r.school == self.who for r in covering):
            self.reject("already_registered", "school", f"the pupil is on {self.who}'s roll on or after {self.day}")
        elif status in MAIN_STATUSES:
            if any(r.status in MAIN_STATUSES for r in covering):
                self.reject("second_main_registration", "enrolment_status",
                            "the pupil has a main registration at another school open on or after this date; that school must post "
                            "pupil.deregistered first (dated on or before this admission), or register this one as S (subsidiary)")
        elif not self.subsidiary_plausible():
            self.reject("implausible_claim", "enrolment_status",
                        "a subsidiary (S) registration is made by the pupil's AP setting (an ap_setting, or the setting of a placement open "
                        "that day) or by a school in the same LA or trust as the pupil's main school that day; no such link is recorded")
        elif not any(r.status == "M" for r in self.state.open_registrations()):
            self.flag("subsidiary_without_main", "dual (subsidiary) registration but no open main registration is recorded")

    def subsidiary_plausible(self) -> bool:
        """A dual registration links a school to the pupil: its AP setting, or a school near the main one."""
        if any(e.kind == "placement" and e.details.get("setting") == self.who and e.start <= self.day and (e.end is None or self.day < e.end)
               for e in self.state.episodes.values()):
            return True
        me = self.orgs(self.who)
        if me.kind == "ap_setting":
            return True
        for reg in self.state.registrations:
            if reg.status in MAIN_STATUSES and reg.open_on(self.day):
                main = self.orgs(reg.school)
                if (me.la is not None and main.la == me.la) or (me.trust is not None and main.trust == me.trust):
                    return True
        return False

    def removal(self) -> None:
        self.own("school")
        reg = self.state.registration_at(self.who)
        if reg is None:
            self.off_roll("school", "now, so cannot be removed from it")
        elif self.day < reg.start:
            self.reject("removal_before_admission", "", f"removal on {self.day} is before admission on {reg.start}")
        elif not self.problems:
            latest = self.state.latest_by_submitter.get(self.who)
            if latest is not None and self.day < latest:
                self.flag("backdated_removal", f"removal dated {self.day}, before {self.who}'s earlier report dated {latest}")
            if self.d["destination"] == "unknown":
                self.flag("unknown_destination", "removed from roll with no known destination")
            if reg.sen_status != "N":
                self.flag("sen_exit", f"a pupil with SEN status {reg.sen_status} left the roll")

    # -- exclusions --------------------------------------------------------------------------------

    def exclusion(self) -> None:
        self.own("school")
        self.on_roll_required()
        if self.d["kind"] == "SUSP" and not self.problems:
            year = academic_year(self.day)
            if self.state.suspension_sessions.get(year, 0) + self.d["sessions"] > 2 * SUSPENSION_CAP_DAYS:
                # the total counts other schools' suspensions (the cap is the pupil's): it is not given
                self.flag("suspension_cap_exceeded", f"more than {SUSPENSION_CAP_DAYS} suspension days in {year}, counting every school's")

    def exclusion_review(self) -> None:
        exclusion = self.state.exclusions.get(self.d["exclusion_event_id"])
        if exclusion is None:
            self.reject("exclusion_unknown", "exclusion_event_id", "no exclusion with that event_id is recorded for this pupil")
        elif exclusion.data["school"] != self.d["school"]:
            self.reject("exclusion_school", "school", f"that exclusion was not recorded by {self.d['school']}")
        elif self.scheme == "urn" and self.who != self.d["school"]:
            self.reject("not_submitter", "school", f"school must be the submitter ({self.who})", Category.FORBIDDEN)
        elif self.scheme == "la" and self.orgs(self.d["school"]).la != self.who:
            self.reject("writer_not_related", "school", "a review of an exclusion is recorded by the excluding school or the LA it is in")

    # -- placements, managed moves, part-time timetables, CME ---------------------------------------

    def episode_start(self) -> None:
        t = self.new.type
        if t == "pupil.ap_placement_started":
            self.own("commissioner")
            if self.scheme == "urn":
                self.on_roll_required()
            elif not self.problems:
                self.la_claim()
            # A second placement at the same setting by another commissioner is lawful (hours are summed per
            # pupil); the same commissioner's is a duplicate: it reviews or ends the one it has.
            if any(e.kind == "placement" and e.end is None and e.owner == self.who and e.details.get("setting") == self.d["setting"]
                   for e in self.state.episodes.values()):
                self.reject("placement_already_open", "setting", f"{self.who} already has an open placement of this pupil at {self.d['setting']}; "
                            "review it (hours, planned end) or end it first")
            expected = {"urn": ("URN",), "ukprn": ("UKPRN",), "uprov": ("NFE", "OOT", "OTH", "WBP")}[org_scheme(self.d["setting"]) or ""]
            if self.d["setting_type"] not in expected:
                self.reject("setting_type_mismatch", "setting_type", f"a setting {self.d['setting']} has setting_type {' or '.join(expected)}")
        elif t in ("pupil.managed_move_started", "pupil.part_time_timetable_started"):
            self.own("school")
            self.on_roll_required()
        else:
            self.own("la")
            if not self.problems:
                self.la_claim()

    def episode_update(self) -> None:
        t = self.new.type
        kind, ref = EPISODE_ENDS.get(t, ("placement", "placement_event_id"))
        episode = self.state.episodes.get(self.d[ref])
        what = kind.replace("_", " ")
        if episode is None or episode.kind != kind or episode.end is not None:
            self.reject(f"{kind}_not_open", ref, f"no open {what} started by event {self.d[ref]}")
        elif episode.owner != self.who and not (t == "pupil.ap_placement_ended" and episode.details.get("setting") == self.who):
            # before any of its dates are compared: they are another organisation's
            self.reject("not_owner", ref, f"only the organisation that started this {what}" + (" (or its setting)" if kind == "placement" else "")
                        + " may update it", Category.FORBIDDEN)
        elif self.day < episode.start:
            self.reject("end_before_start", "", f"{self.day} is before the start on {episode.start}")
        elif t == "pupil.missing_education_resolved":
            self.own("la")

    def la_claim(self) -> None:
        """An LA's notice or placement gives it a link to the pupil (and so a reading relationship): it must be
        plausible. A first contact, or one after a removal to an unknown place, is accepted and flagged."""
        relation = self.la_relation()
        if relation is None:
            self.reject("implausible_claim", "", f"{self.who} has no recorded link to this pupil: the pupil is not on roll (nor was last) at a "
                        "school in its area, it has no earlier record of the pupil, and the pupil's last removal was not to an unknown place, "
                        "home education, CME or out of the area")
        elif relation == "new_area":
            self.flag("claim_new_area", f"{self.who} records this pupil without an earlier link (a first record, or after a move out of the "
                      "pupil's last area); shown to the operator")

    def la_relation(self) -> str | None:
        """"linked", "new_area" (plausible, flagged) or None (implausible), for the LA posting the event."""
        state, la, day = self.state, self.who, self.day
        if la in state.submitters_seen:
            return "linked"  # it has an accepted record of the pupil already (a placement, a notice...)
        if not state.registrations:
            return "new_area"  # first contact: the ledger knows no school of the pupil
        open_then = [r for r in state.registrations if r.open_on(day)]
        ended = [r for r in state.registrations if r.end is not None and r.end <= day]
        latest = max(ended, key=lambda r: r.end or day) if ended else None
        if any(self.orgs(r.school).la == la for r in [*open_then, *([latest] if latest else [])]):
            return "linked"
        if not open_then and latest is not None and latest.destination in NEW_AREA_DESTINATIONS:
            return "new_area"
        return None

    # -- attendance and destinations ---------------------------------------------------------------

    def had_at_placement(self, setting: str) -> bool:
        return any(e.kind == "placement" and e.details.get("setting") == setting for e in self.state.episodes.values())

    def attendance(self) -> None:
        if self.d["attended_sessions"] > self.d["possible_sessions"]:
            self.reject("attended_over_possible", "attended_sessions", "attended_sessions exceeds possible_sessions")
        setting = self.d["setting"]
        commissioned = any(e.kind == "placement" and e.owner == self.who and e.details.get("setting") == setting for e in self.state.episodes.values())
        own_setting = setting == self.who and (self.state.ever_at(self.who) or self.had_at_placement(self.who))
        if not (commissioned or own_setting):
            self.reject("writer_not_related", "setting", f"{self.who} records attendance at a setting where it had the pupil (on roll, or as "
                        "the setting of a placement) or at the setting of a placement it commissioned")

    def post16_destination(self) -> None:
        if self.scheme == "la":
            related = self.who in self.state.submitters_seen or any(self.orgs(r.school).la == self.who for r in self.state.registrations)
        else:
            related = self.state.ever_at(self.who) or self.had_at_placement(self.who)
        if not related:
            self.reject("writer_not_related", "", f"{self.who} has had no relationship with this pupil (on roll, as a placement's setting, or "
                        "as the LA of a school the pupil attended or with an earlier record of the pupil)")
