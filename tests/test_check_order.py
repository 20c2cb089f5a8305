"""One statement of the submission checks' order (issue 19): the pipeline's docstring is the source; the README lists
the same steps, word for word, and docs/contracts.md names them in the same order."""

from __future__ import annotations

import re
from pathlib import Path

from ledger.submission import pipeline

ROOT = Path(__file__).resolve().parent.parent
STEP = re.compile(r"^(\d+)\. ([^:]+): (.+)$")


def steps(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if STEP.match(line.strip())]


def test_the_docstring_states_the_checks_as_a_numbered_list() -> None:
    listed = steps(pipeline.__doc__ or "")
    assert [int(STEP.match(s).group(1)) for s in listed] == list(range(1, len(listed) + 1))  # type: ignore[union-attr]
    assert len(listed) >= 6


def test_the_readme_lists_the_docstrings_checks_word_for_word() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    block = readme.split("<!-- check-order: begin -->")[1].split("<!-- check-order: end -->")[0]
    assert steps(block) == steps(pipeline.__doc__ or "")


def test_the_contracts_name_the_checks_in_the_docstrings_order() -> None:
    contracts = " ".join((ROOT / "docs" / "contracts.md").read_text("utf-8").split())
    way = contracts.split("One event's way:")[1].split("(the checks' order")[0]
    names = [STEP.match(s).group(2) for s in steps(pipeline.__doc__ or "")]  # type: ignore[union-attr]
    positions = [way.find(f" {name} ") if f" {name} " in way else way.find(f" {name}") for name in names]
    assert -1 not in positions, f"docs/contracts.md does not name every check: {dict(zip(names, positions, strict=True))}"
    assert positions == sorted(positions)
