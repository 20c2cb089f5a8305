"""The repository is self-contained: nothing it runs, tests or documents reaches outside it.

A user gets a clone of this repository and nothing beside it. Two checks: every file of the
repository is scanned for paths that lead outside it (a sibling folder, an absolute path of the
development machine, ``Path(__file__).parents[n]`` above the root), and README command 2's test
collection runs in a copy of the repository placed alone in a fresh temporary folder.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIPPED_DIRS = {".git", ".venv", "var", "build", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis"}

# Spelled in pieces so this file does not flag itself.
SIBLING = "shared"
FORBIDDEN = (
    re.compile(r"\.\./" + SIBLING + r"\b"),  # the development machine's sibling folder of shared material
    re.compile(r"(?<![\w.])/" + "work" + r"/"),  # an absolute path of the development machine
    re.compile("PUPIL_LEDGER_" + "SHARED"),  # the old environment variable pointing at the sibling folder
    re.compile(r"(?<![\w/.-])" + SIBLING + r"/(data|vectors|design\.md|domain\.md)"),  # the sibling folder without its ../
)
PARENTS = re.compile(r"__file__\)(?:\.resolve\(\))?\.parents\[(\d+)\]")
PARENT_CHAIN = re.compile(r"__file__\)(?:\.resolve\(\))?((?:\.parent)+)\b")
RELATIVE = re.compile(r"(?:\.\./)+[\w.-]*")
MARKDOWN_LINK = re.compile(r"\]\(([^)\s#]+)")


def repository_files(root: Path) -> list[Path]:
    """The files a clone holds: tracked and new (not ignored) ones from git, or every file when not in git."""
    if (root / ".git").exists() and shutil.which("git"):
        listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root, capture_output=True, check=True).stdout
        return sorted(root / name for name in listed.decode().split("\0") if name and (root / name).is_file())
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not SKIPPED_DIRS & set(p.relative_to(root).parts[:-1]) and not p.name.endswith(".egg-info")
    )


def escapes(root: Path, base: Path, relative: str) -> bool:
    return not (base / relative).resolve().is_relative_to(root.resolve())


def outside_references(root: Path, path: Path, text: str) -> list[str]:
    """Every place in ``text`` (the content of ``path``) that names a path outside ``root``."""
    found: list[str] = []
    depth = len(path.relative_to(root).parts)  # parents[depth - 1] of the file is the root
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{path.relative_to(root)}:{number}"
        found += [f"{where}: {m.group(0)!r}" for pattern in FORBIDDEN for m in pattern.finditer(line)]
        if path.suffix == ".py":
            found += [f"{where}: {m.group(0)!r} is above the repository" for m in PARENTS.finditer(line) if int(m.group(1)) >= depth]
            found += [
                f"{where}: {m.group(0)!r} is above the repository"
                for m in PARENT_CHAIN.finditer(line)
                if m.group(1).count(".parent") - 1 >= depth
            ]
        found += [f"{where}: {m.group(0)!r} leads outside" for m in RELATIVE.finditer(line) if escapes(root, path.parent, m.group(0))]
        if path.suffix == ".md":
            found += [
                f"{where}: link {target!r} leads outside"
                for target in MARKDOWN_LINK.findall(line)
                if "://" not in target and not target.startswith("mailto:") and escapes(root, path.parent, target)
            ]
    return found


def test_the_scanner_finds_each_kind_of_escape(tmp_path: Path) -> None:
    """The scan below can fail: each pattern it looks for is found where it is, and only there."""
    root = tmp_path / "repo"
    (root / "tests").mkdir(parents=True)
    code = root / "tests" / "example.py"
    bad = [
        "VECTORS = Path(__file__).resolve()" + ".parents[2] / 'x'",
        "UP = Path(__file__)" + ".parent.parent.parent",
        "DATA = '../" + SIBLING + "/data'",
        "HOME = '/" + "work/main'",
        "X = os.environ['PUPIL_LEDGER_" + "SHARED']",
        "Y = open('.." + "/../elsewhere.txt')",
    ]
    good = [
        "ROOT = Path(__file__).resolve().parents[1]",
        "HERE = Path(__file__).parent.parent",
        "FIXTURES = Path(__file__).parent / 'fixtures'",
        "SIBLINGS = '../tests/fixtures'",  # inside: tests/../tests/fixtures
    ]
    found = outside_references(root, code, "\n".join(bad + good))
    assert sorted({int(f.split(":")[1]) for f in found}) == list(range(1, len(bad) + 1)), found
    doc = root / "docs" / "x.md"
    doc.parent.mkdir()
    assert outside_references(root, doc, "see [the README](../README.md) and `data/dfe/`") == []
    assert len(outside_references(root, doc, "see [the design](.." + "/../" + SIBLING + "/design.md)")) >= 2


def test_no_file_of_the_repository_reaches_outside_it() -> None:
    problems: list[str] = []
    scanned = 0
    for path in repository_files(ROOT):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary data (the gzipped census file)
        scanned += 1
        problems += outside_references(ROOT, path, text)
    assert scanned > 100
    assert problems == [], "paths outside the repository:\n" + "\n".join(problems)


def lone_copy(tmp_path: Path) -> Path:
    """The repository's files (as a clone would hold them, uncommitted changes included) alone in a fresh folder."""
    copy = tmp_path / "lone" / "pupil-ledger"
    for path in repository_files(ROOT):
        target = copy / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return copy


def run_in(copy: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """This interpreter (the test environment's packages) with the copy's code first on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUPIL_LEDGER_") or k == "PUPIL_LEDGER_TEST_PG"}
    env["PYTHONPATH"] = str(copy)
    return subprocess.run([sys.executable, *args], cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)


def test_readme_command_2_collects_from_a_copy_with_nothing_beside_it(tmp_path: Path) -> None:
    copy = lone_copy(tmp_path)
    assert sorted(p.name for p in copy.parent.parent.iterdir()) == ["lone"] and [p.name for p in copy.parent.iterdir()] == ["pupil-ledger"]
    where = run_in(
        copy, "-c", "import ledger, projections, api, tests; print(ledger.__file__, projections.__file__, api.__file__, tests.__file__)"
    )
    assert where.returncode == 0, where.stderr
    assert all(Path(p).is_relative_to(copy) for p in where.stdout.split()), f"the copy's code is not the code imported: {where.stdout}"
    collected = run_in(copy, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider")
    assert collected.returncode == 0, collected.stdout[-4000:] + collected.stderr[-4000:]
    count = re.search(r"(\d+) tests? collected", collected.stdout)
    assert count and int(count.group(1)) > 300, collected.stdout[-2000:]


@pytest.mark.parametrize(
    "check",
    [
        "from tests.conftest import VECTORS; assert (VECTORS / 'README.md').is_file(), VECTORS; print(VECTORS)",
        "from ledger.dfe import data_dir; assert (data_dir() / 'spc_ap_setting.csv').is_file(); print(data_dir())",
    ],
)
def test_a_copy_reads_its_own_vectors_and_data(tmp_path: Path, check: str) -> None:
    copy = lone_copy(tmp_path)
    got = run_in(copy, "-c", check)
    assert got.returncode == 0, got.stderr
    assert Path(got.stdout.strip()).is_relative_to(copy)
