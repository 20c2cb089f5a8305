"""The EHCP lifecycle as rules (issue 24; domain.md 5). Pure.

The statutory timeline (SEND Code of Practice 0-25, ch. 9) as rules over one pupil's ``ehcp.*`` records: a step that
cannot follow from what is recorded is rejected (no draft before an agreed assessment, no final plan before a draft,
no review of a ceased plan); a lawful step that misses a time limit is flagged (a decision on assessment after 6
weeks, a final plan after 20 weeks with or without the regulation's exceptions, a review after 12 months) and so is
a plan with no named setting. The checks ``assessment_request``, ``assessment_step`` and ``plan_step`` are the
entries for these event types in ``ledger.core.rules.PUPIL_CHECKS``. The pupil's EHCP state (:func:`fold_ehcp`)
also holds the appealable decisions and the disputes about them, which ``ledger.core.redress_rules`` checks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date

from ledger.core.errors import Category, Problem
from ledger.core.la_claims import la_link
from ledger.core.pupil_case import PupilCase
from ledger.core.records import Record, effective

FAMILIES = ("ehcp.", "dispute.")
DECISION_WEEKS = 6  # request to decision on whether to assess
FINAL_PLAN_WEEKS = 20  # request to final plan
REVIEW_MONTHS = 12  # between reviews (from the final plan for the first)

# What each appealable decision may be disputed about (domain.md 5.2). An agreement to assess is not appealable.
GROUNDS_BY_DECISION: dict[str, frozenset[str]] = {
    "ehcp.assessment_decided": frozenset({"refusal_to_assess", "refusal_to_reassess"}),
    "ehcp.refused_to_issue": frozenset({"refusal_to_issue"}),
    "ehcp.final_issued": frozenset({"section_b", "section_f", "section_i"}),
    "ehcp.amended": frozenset({"section_b", "section_f", "section_i"}),
    "ehcp.annual_review_held": frozenset({"refusal_to_amend", "section_b", "section_f", "section_i", "ceasing"}),
    "ehcp.ceased": frozenset({"ceasing"}),
}
# The SEN2 columns (discontinued_*, with their _ehc / _noncomp parts) each reason of code list ehcp_cease_reasons is
# published in: the views' published figure and the simulation's calibration read them.
SEN2_CEASE_COLUMNS = {
    "moved_abroad": ("discontinued_abroad",),
    "age_limit": ("discontinued_age",),
    "deceased": ("discontinued_deceased",),
    "employment": ("discontinued_employment",),
    "disengaged": ("discontinued_engage",),
    "further_or_higher_education": ("discontinued_he",),
    "moved_to_other_la": ("discontinued_lea", "discontinued_lea_ehc", "discontinued_lea_noncomp"),
    "left_education": ("discontinued_left", "discontinued_left_ehc"),
    "needs_met": ("discontinued_met", "discontinued_met_ehc", "discontinued_met_noncomp"),
    "other": ("discontinued_other", "discontinued_other_ehc", "discontinued_other_noncomp", "discontinued_unknown"),
}


def add_months(day: date, months: int) -> date:
    """The same day ``months`` later (the month's last day when it has no such day: 31 Jan + 1 = 28/29 Feb)."""
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    for last in (31, 30, 29, 28):
        try:
            return date(year, month, min(day.day, last))
        except ValueError:
            continue
    raise AssertionError("unreachable")


@dataclass
class Assessment:
    """One request for an EHC needs assessment and the LA's steps on it."""

    request_event_id: str
    la: str
    requested_on: date
    decision: str | None = None  # agree | refuse
    decided_on: date | None = None
    draft_on: date | None = None
    outcome: str | None = None  # refused (to assess) | not_issued | issued; None while open
    closed_on: date | None = None


@dataclass
class Plan:
    la: str  # the LA maintaining it (changes on ehcp.transferred)
    issued_on: date
    final_event_id: str
    named_setting: str | None
    last_review_on: date
    ceased_on: date | None = None
    transfers: list[tuple[str, date]] = field(default_factory=list)  # (the LA it passed from, the day)

    def holders(self) -> list[tuple[str, date, date | None]]:
        """Each LA that maintained the plan, from when until when (None: still, unless it ceased)."""
        las = [la for la, _ in self.transfers] + [self.la]
        starts = [self.issued_on] + [day for _, day in self.transfers]
        ends: list[date | None] = [day for _, day in self.transfers]
        ends.append(self.ceased_on)
        return list(zip(las, starts, ends, strict=True))


@dataclass
class Decision:
    """An appealable LA decision on the pupil (the ``decision_event_id`` of a mediation or appeal)."""

    event_id: str
    type: str
    la: str
    on: date


@dataclass
class Dispute:
    """A mediation request or an appeal."""

    event_id: str
    decision: Decision
    grounds: frozenset[str]
    on: date
    settled: bool = False  # a certificate issued (mediation) or a decision recorded (appeal)


@dataclass
class EhcpState:
    assessments: dict[str, Assessment] = field(default_factory=dict)
    plan: Plan | None = None  # the latest plan issued
    decisions: dict[str, Decision] = field(default_factory=dict)
    mediations: dict[str, Dispute] = field(default_factory=dict)
    appeals: dict[str, Dispute] = field(default_factory=dict)

    def open_assessment(self, la: str) -> Assessment | None:
        """``la``'s assessment of the pupil still open (requested, and not refused, ended without a plan or issued)."""
        return next((a for a in self.assessments.values() if a.outcome is None and a.la == la), None)

    def active_plan(self) -> Plan | None:
        return self.plan if self.plan is not None and self.plan.ceased_on is None else None


def fold_ehcp(records: Sequence[Record]) -> EhcpState:
    """The EHCP state from a pupil's records in force (``ledger.core.records.effective``), oldest first."""
    state = EhcpState()
    for r in records:
        if r.type.startswith(FAMILIES):
            apply_ehcp(state, r)
    return state


def apply_ehcp(state: EhcpState, r: Record) -> None:
    d, t = r.data, r.type
    if t == "ehcp.assessment_requested":
        state.assessments[r.event_id] = Assessment(r.event_id, r.submitter, r.occurred_on)
        return
    if t == "ehcp.transferred":
        if state.plan is not None:
            state.plan.transfers.append((state.plan.la, r.occurred_on))
            state.plan.la = d["to_la"]
        return
    if t.startswith("dispute."):
        _apply_dispute(state, r)
        return
    assessment = state.assessments.get(d.get("request_event_id", ""))
    if t == "ehcp.assessment_decided" and assessment is not None:
        assessment.decision, assessment.decided_on = d["decision"], r.occurred_on
        if d["decision"] == "refuse":
            assessment.outcome, assessment.closed_on = "refused", r.occurred_on
    elif t == "ehcp.draft_issued" and assessment is not None:
        assessment.draft_on = r.occurred_on
    elif t == "ehcp.refused_to_issue" and assessment is not None:
        assessment.outcome, assessment.closed_on = "not_issued", r.occurred_on
    elif t == "ehcp.final_issued" and assessment is not None:
        assessment.outcome, assessment.closed_on = "issued", r.occurred_on
        state.plan = Plan(r.submitter, r.occurred_on, r.event_id, d.get("named_setting"), r.occurred_on)
    elif t == "ehcp.annual_review_held" and state.plan is not None:
        state.plan.last_review_on = r.occurred_on
    elif t == "ehcp.amended" and state.plan is not None and "named_setting" in d:
        state.plan.named_setting = d["named_setting"]
    elif t == "ehcp.ceased" and state.plan is not None:
        state.plan.ceased_on = r.occurred_on
    if t in GROUNDS_BY_DECISION and not (t == "ehcp.assessment_decided" and d["decision"] == "agree"):
        state.decisions[r.event_id] = Decision(r.event_id, t, r.submitter, r.occurred_on)


def _apply_dispute(state: EhcpState, r: Record) -> None:
    d, t = r.data, r.type
    if t in ("dispute.mediation_requested", "dispute.appeal_registered"):
        decision = state.decisions.get(d["decision_event_id"])
        if decision is not None:
            target = state.mediations if t == "dispute.mediation_requested" else state.appeals
            target[r.event_id] = Dispute(r.event_id, decision, frozenset(d["grounds"]), r.occurred_on)
    elif t == "dispute.mediation_certificate_issued" and d["mediation_event_id"] in state.mediations:
        state.mediations[d["mediation_event_id"]].settled = True
    elif t == "dispute.appeal_decided" and d["appeal_event_id"] in state.appeals:
        state.appeals[d["appeal_event_id"]].settled = True


def problem(code: str, path: str, message: str, category: Category = Category.INVALID) -> Problem:
    """A problem with ``$.payload.data.<path>`` (the whole payload when ``path`` is empty)."""
    return Problem(code, f"$.payload.data.{path}" if path else "$.payload", message, category)


def flag(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


# -- the checks (entries of ledger.core.rules.PUPIL_CHECKS) -------------------------------------------------------------


def ehcp_state(case: PupilCase) -> EhcpState:
    """The pupil's EHCP state from its records in force, before the new event."""
    return fold_ehcp(effective(case.records))


def report(case: PupilCase, found: tuple[list[Problem], list[dict[str, str]]]) -> None:
    """Adds a check's problems and flags to the case."""
    case.problems.extend(found[0])
    case.flags.extend(found[1])


def assessment_request(case: PupilCase) -> None:
    """``ehcp.assessment_requested``: none of the LA's own is open; a request without an earlier link (a school of
    its area, an earlier record, the plan it maintains) is flagged."""
    report(case, _check_request(ehcp_state(case), case.new, lambda: la_link(case.state, case.new, case.orgs) == "linked"))


def assessment_step(case: PupilCase) -> None:
    """A decision on an assessment request, a draft, a refusal to issue or a final plan: the request's timeline."""
    report(case, _check_assessment_step(ehcp_state(case), case.new))


def plan_step(case: PupilCase) -> None:
    """A review, amendment, transfer or cessation of the plan: by the LA maintaining it, while it is in force."""
    report(case, _check_plan_step(ehcp_state(case), case.new))


def _check_request(state: EhcpState, new: Record, la_linked: Callable[[], bool]) -> tuple[list[Problem], list[dict[str, str]]]:
    if state.open_assessment(new.submitter) is not None:  # its own only: another LA's open request is not disclosed
        return [
            problem(
                "assessment_open",
                "",
                f"{new.submitter}'s assessment request for this pupil is still open: decide it, "
                "or issue or refuse to issue the plan, before recording another",
            )
        ], []
    plan = state.active_plan()
    if (plan is None or plan.la != new.submitter) and not la_linked():  # maintaining the plan links it
        # the LA where the child lives assesses, whatever school the child attends (often in another LA): a request
        # is accepted without a recorded link, and shown to the operator as a claim
        return [], [
            flag(
                "claim_new_area",
                f"{new.submitter} records an assessment request without an earlier link to this pupil; shown to the operator",
            )
        ]
    return [], []


def _check_assessment_step(state: EhcpState, new: Record) -> tuple[list[Problem], list[dict[str, str]]]:
    t, d, day = new.type, new.data, new.occurred_on
    a = state.assessments.get(d["request_event_id"])
    if a is None:
        return [
            problem("assessment_unknown", "request_event_id", "no ehcp.assessment_requested with that event_id is recorded for this pupil")
        ], []
    if a.la != new.submitter:
        return [problem("not_owner", "request_event_id", "only the LA the request was made to records its steps", Category.FORBIDDEN)], []
    if day < a.requested_on:
        return [problem("before_request", "", f"{day} is before the request on {a.requested_on}")], []
    if t == "ehcp.assessment_decided":
        if a.decision is not None:
            return [
                problem(
                    "already_decided",
                    "request_event_id",
                    f"the LA decided this request on {a.decided_on} ({a.decision}); correct that event instead",
                )
            ], []
        late = (day - a.requested_on).days > 7 * DECISION_WEEKS
        return [], [
            flag("late_assessment_decision", f"decided {(day - a.requested_on).days} days after the request (limit {DECISION_WEEKS} weeks)")
        ] if late else []
    if a.decision != "agree":
        return [
            problem(
                "no_agreed_assessment",
                "request_event_id",
                f"{t} follows an agreement to assess"
                + (", and the LA refused to assess" if a.decision == "refuse" else ", and none is recorded"),
            )
        ], []
    if a.outcome is not None:
        return [problem("assessment_closed", "request_event_id", f"this assessment ended on {a.closed_on} ({a.outcome})")], []
    if t == "ehcp.final_issued":
        if a.draft_on is None:
            return [problem("no_draft", "request_event_id", "a final plan follows a draft plan (ehcp.draft_issued)")], []
        return [], _final_flags(a, new)
    return [], []


def _final_flags(a: Assessment, new: Record) -> list[dict[str, str]]:
    flags = []
    days = (new.occurred_on - a.requested_on).days
    if days > 7 * FINAL_PLAN_WEEKS:
        exceptions = new.data.get("exceptions") or []
        if exceptions:
            flags.append(
                flag(
                    "late_final_plan_excepted",
                    f"final plan {days} days after the request (limit {FINAL_PLAN_WEEKS} weeks); "
                    f"exceptions recorded: {', '.join(exceptions)}",
                )
            )
        else:
            flags.append(
                flag("late_final_plan", f"final plan {days} days after the request (limit {FINAL_PLAN_WEEKS} weeks), no exception recorded")
            )
    if not new.data.get("named_setting"):
        flags.append(flag("no_named_setting", "the plan names no school, college or other setting (section I)"))
    return flags


def _check_plan_step(state: EhcpState, new: Record) -> tuple[list[Problem], list[dict[str, str]]]:
    t, d, day = new.type, new.data, new.occurred_on
    plan = state.plan
    if plan is None:
        return [problem("no_plan", "", f"{t} is about an EHC plan, and none is recorded for this pupil")], []
    if plan.la != new.submitter:
        return [
            problem(
                "not_owner", "", "only the LA maintaining the plan records its reviews, amendments, transfer or end", Category.FORBIDDEN
            )
        ], []
    if plan.ceased_on is not None:
        return [problem("plan_ceased", "", f"the plan ceased on {plan.ceased_on}")], []
    if day < plan.issued_on:
        return [problem("before_plan", "", f"{day} is before the plan was issued on {plan.issued_on}")], []
    flags = []
    if t == "ehcp.annual_review_held":
        due = add_months(plan.last_review_on, REVIEW_MONTHS)
        if day > due:
            flags.append(
                flag("late_annual_review", f"review held {day}, due by {due} ({REVIEW_MONTHS} months after {plan.last_review_on})")
            )
    elif t == "ehcp.transferred" and d["to_la"] == new.submitter:
        return [problem("transfer_to_self", "to_la", f"the plan is maintained by {new.submitter} already")], []
    elif t == "ehcp.amended" and "named_setting" in d and not d["named_setting"]:
        flags.append(flag("no_named_setting", "the plan names no school, college or other setting (section I)"))
    return [], flags
