"""The pupil rules' table (``ledger.core.rules.PUPIL_CHECKS``) is where a reader finds what is checked for each event
type: every pupil event type of the catalogue has its entry, and nothing else has one."""

from __future__ import annotations

from ledger.core import catalogue
from ledger.core.rules import PUPIL_CHECKS


def test_every_pupil_event_type_has_its_entry_and_only_those() -> None:
    pupil_types = {name for name, etype in catalogue.event_types().items() if etype.subject == "pupil"}
    assert set(PUPIL_CHECKS) == pupil_types


def test_each_check_is_a_named_function_that_says_what_it_checks() -> None:
    for event_type, checks in PUPIL_CHECKS.items():
        for check in checks:
            assert check.__name__ != "<lambda>" and check.__doc__, (event_type, check)
