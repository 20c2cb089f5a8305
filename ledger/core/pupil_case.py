"""One new pupil event being judged (a *case*), and the small pieces every per-event check shares.

A case holds the event, the pupil's records it is judged against (a correction as if what it supersedes had never
been posted), the state folded from them, the organisations' facts and national tariffs the checks may ask for
(asked lazily, so most events never ask), and the problems and flags found so far. A check is a function of the
case that adds problems (which reject the event) or flags (recorded with it); ``ledger.core.rules.PUPIL_CHECKS`` says
which checks run for which event type, in order. Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

from ledger.core.errors import Category, Problem
from ledger.core.identifiers import org_scheme
from ledger.core.pupil_state import PupilState
from ledger.core.records import Record


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
Tariffs = Callable[[], Sequence[Record]]  # the national tariffs' records (of dfe:admin), read when a check needs them


def no_org_facts(org: str) -> OrgFacts:
    """The lookup when the caller gives none: nothing is known about any organisation (a claim that needs an
    organisation's LA or kind to be plausible is then refused)."""
    return UNKNOWN_ORG


def no_tariffs() -> Sequence[Record]:
    """The tariffs when the caller gives none: no tariff is in force (a band cannot be costed)."""
    return ()


class PupilCase:
    """The new event ``new`` against the pupil's ``records`` (as judged: a correction's superseded chain left out)
    and the ``state`` folded from them; ``problems`` and ``flags`` found so far."""

    def __init__(
        self, records: Sequence[Record], state: PupilState, new: Record, orgs: OrgLookup = no_org_facts, tariffs: Tariffs = no_tariffs
    ):
        self.records, self.state, self.new, self.orgs, self.tariffs = records, state, new, orgs, tariffs
        self.d, self.who, self.day = new.data, new.submitter, new.occurred_on
        self.scheme = org_scheme(new.submitter)
        self.problems: list[Problem] = []
        self.flags: list[dict[str, str]] = []

    def reject(self, code: str, path: str, message: str, category: Category = Category.INVALID) -> None:
        """A problem at ``$.payload.data.<path>`` (``$.payload`` when ``path`` is empty)."""
        self.problems.append(Problem(code, f"$.payload.data.{path}" if path else "$.payload", message, category))

    def flag(self, code: str, message: str) -> None:
        self.flags.append({"code": code, "message": message})

    def off_roll(self, path: str, when: str) -> None:
        """The submitter (a school) did not have the pupil on roll ``when``: not now, or never."""
        if self.state.ever_at(self.who):
            self.reject("not_on_roll", path, f"the pupil was not on {self.who}'s roll {when}")
        else:
            self.reject("unknown_pupil", path, f"{self.who} has never had this pupil on roll")


Check = Callable[[PupilCase], None]


def submitter_is(field_name: str) -> Check:
    """The check that ``data.<field_name>`` names the submitter (a school records its own roll, an LA its own notices)."""

    def submitter_named(case: PupilCase) -> None:
        if case.d.get(field_name) != case.who:
            case.reject("not_submitter", field_name, f"{field_name} must be the submitter ({case.who})", Category.FORBIDDEN)

    submitter_named.__name__ = f"submitter_is_{field_name}"
    submitter_named.__doc__ = f"data.{field_name} is the submitter."
    return submitter_named


def on_roll(case: PupilCase) -> None:
    """The submitting school has the pupil on roll on the event's date."""
    if case.state.registration_on(case.who, case.day) is None:
        case.off_roll("", f"on {case.day}")


def unless_rejected(check: Check) -> Check:
    """``check``, run only if the checks before it found no problem (it weighs what they established)."""

    def guarded(case: PupilCase) -> None:
        if not case.problems:
            check(case)

    guarded.__name__ = f"unless_rejected_{check.__name__}"
    guarded.__doc__ = f"If nothing rejected the event so far: {check.__doc__}"
    return guarded
