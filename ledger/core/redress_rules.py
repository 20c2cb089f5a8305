"""Redress as rules: mediation and appeals about an LA's EHCP decisions (issue 24; domain.md 5.2). Pure.

A mediation request or an appeal is about an appealable decision recorded for the pupil
(``ledger.core.ehcp_rules.GROUNDS_BY_DECISION``), on grounds that decision allows, by the LA that made it (or the
tribunal and mediation services); a certificate or an appeal's decision settles a dispute recorded and not settled
already; an appeal without a mediation certificate is flagged unless it is about the placement only. The checks
``decision_disputed`` and ``dispute_settled`` are the entries for the ``dispute.*`` event types in
``ledger.core.rules.PUPIL_CHECKS``.
"""

from __future__ import annotations

from ledger.core.ehcp_rules import GROUNDS_BY_DECISION, Decision, EhcpState, ehcp_state, flag, problem, report
from ledger.core.errors import Category, Problem
from ledger.core.identifiers import org_scheme
from ledger.core.pupil_case import PupilCase
from ledger.core.records import Record

MEDIATION_EXEMPT = frozenset({"section_i"})  # placement-only appeals need no mediation certificate


# -- the checks (entries of ledger.core.rules.PUPIL_CHECKS) -------------------------------------------------------------


def decision_disputed(case: PupilCase) -> None:
    """A mediation request or an appeal: about an appealable decision of the LA, on grounds that decision allows."""
    report(case, _check_decision_dispute(ehcp_state(case), case.new))


def dispute_settled(case: PupilCase) -> None:
    """A mediation certificate or an appeal's decision: of a dispute recorded and not settled already."""
    report(case, _check_settlement(ehcp_state(case), case.new))


def _check_decision_dispute(state: EhcpState, new: Record) -> tuple[list[Problem], list[dict[str, str]]]:
    t, d = new.type, new.data
    decision = state.decisions.get(d["decision_event_id"])
    if decision is None:
        return [
            problem(
                "decision_unknown",
                "decision_event_id",
                "no appealable LA decision with that event_id is recorded for this pupil "
                "(a refusal to assess or to issue, a final plan, an amendment, a review or a cessation)",
            )
        ], []
    problems = _dispute_writer(new, decision.la, "decision_event_id")
    if new.occurred_on < decision.on:
        problems.append(problem("before_decision", "", f"{new.occurred_on} is before the decision on {decision.on}"))
    wrong = sorted(set(d["grounds"]) - GROUNDS_BY_DECISION[decision.type])
    if wrong:
        problems.append(problem("grounds_not_decision", "grounds", f"{', '.join(wrong)} cannot be disputed on a {decision.type}"))
    if problems or t == "dispute.mediation_requested":
        return problems, []
    return _check_appeal(state, new, decision)


def _check_settlement(state: EhcpState, new: Record) -> tuple[list[Problem], list[dict[str, str]]]:
    t, d = new.type, new.data
    ref, disputes, what = (
        ("mediation_event_id", state.mediations, "mediation request")
        if t == "dispute.mediation_certificate_issued"
        else ("appeal_event_id", state.appeals, "appeal")
    )
    dispute = disputes.get(d[ref])
    if dispute is None:
        return [problem(f"{ref.split('_')[0]}_unknown", ref, f"no {what} with that event_id is recorded for this pupil")], []
    problems = _dispute_writer(new, dispute.decision.la, ref)
    if dispute.settled:
        problems.append(
            problem(
                "already_settled",
                ref,
                f"this {what} already has its " + ("certificate" if what != "appeal" else "decision") + "; correct that event instead",
            )
        )
    if new.occurred_on < dispute.on:
        problems.append(problem("before_request", "", f"{new.occurred_on} is before the {what} on {dispute.on}"))
    return problems, []


def _dispute_writer(new: Record, la: str, ref: str) -> list[Problem]:
    """An LA records disputes of its own decisions only (the tribunal and mediation services any)."""
    if org_scheme(new.submitter) == "la" and new.submitter != la:
        return [problem("not_owner", ref, "an LA records mediation and appeals about its own decisions only", Category.FORBIDDEN)]
    return []


def _check_appeal(state: EhcpState, new: Record, decision: Decision) -> tuple[list[Problem], list[dict[str, str]]]:
    mediation_id = new.data.get("mediation_event_id")
    if mediation_id is not None:
        mediation = state.mediations.get(mediation_id)
        if mediation is None or mediation.decision.event_id != decision.event_id:
            return [
                problem(
                    "mediation_unknown", "mediation_event_id", "no mediation request about this decision with that event_id is recorded"
                )
            ], []
    certified = any(m.settled and m.decision.event_id == decision.event_id for m in state.mediations.values())
    if not certified and not set(new.data["grounds"]) <= MEDIATION_EXEMPT:
        return [], [
            flag(
                "appeal_without_mediation_certificate",
                "no mediation certificate is recorded for this decision (needed unless the appeal is only about the placement, section I)",
            )
        ]
    return [], []
