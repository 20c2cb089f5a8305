"""The README's test command is what CI runs: `.ci/run` ends with the same line, character for character."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    block = readme.split("## Two commands", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert len(commands) == 2, "the README gives a newcomer exactly two commands"
    ci_last = [line for line in (ROOT / ".ci" / "run").read_text("utf-8").splitlines() if line.strip()][-1]
    assert commands[1] == ci_last


def test_the_test_command_checks_format_types_and_layers() -> None:
    ci_last = [line for line in (ROOT / ".ci" / "run").read_text("utf-8").splitlines() if line.strip()][-1]
    for step in ("ruff check .", "ruff format --check .", "mypy ledger api projections feed", "lint-imports", "pytest"):
        assert step in ci_last
