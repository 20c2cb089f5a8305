"""An independent measure of k-anonymity and l-diversity: pycanon, in its own virtual environment.

pycanon pins exact versions of numpy, pandas, scipy and typer, so it cannot live beside the ledger's own
dependencies: the first test session creates a virtual environment for it under pytest's cache folder
(``.pytest_cache/d/pycanon-<version>``) and later sessions reuse it. One process of that environment answers
every measurement of the session, a JSON line in and a JSON line out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PYCANON = "pycanon==1.3.6"

SCRIPT = r"""
import json, sys
import pandas as pd
from pycanon import anonymity
for line in sys.stdin:
    req = json.loads(line)
    df = pd.DataFrame(req["columns"], dtype=str)
    qi, sa = req["qi"], req["sa"]
    if len(df) == 0:
        out = {"k": None, "k_rows": None, "l": None}
    else:
        pupils = df[["pseudonym", *qi]].drop_duplicates().reset_index(drop=True)
        out = {"k": int(anonymity.k_anonymity(pupils, qi)), "k_rows": int(anonymity.k_anonymity(df, qi)),
               "l": int(anonymity.l_diversity(df, qi, sa)) if sa else None}
    print(json.dumps(out), flush=True)
"""


def environment(cache_dir: Path) -> Path:
    """The python of a virtual environment with pycanon (made once, then reused)."""
    python = cache_dir / "bin" / "python"
    marker = cache_dir / "installed.txt"
    if not marker.exists() or marker.read_text() != PYCANON:
        venv.EnvBuilder(with_pip=True, clear=True).create(cache_dir)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", PYCANON],
            check=True,
            timeout=900,
            env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
        )
        marker.write_text(PYCANON)
    return python


class Oracle:
    """pycanon answering k (distinct pupils), k in rows and l for a table of string columns."""

    def __init__(self, python: Path):
        self.process = subprocess.Popen(
            [str(python), "-c", SCRIPT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        )

    def measure(self, columns: dict[str, Sequence[Any]], qi: Sequence[str], sa: Sequence[str]) -> dict[str, int | None]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"columns": {k: list(v) for k, v in columns.items()}, "qi": list(qi), "sa": list(sa)}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the pycanon process ended")
        answer: dict[str, int | None] = json.loads(line)
        return answer

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait(timeout=30)


def csv_columns(data: bytes) -> dict[str, list[str]]:
    """The columns of a release's rows.csv."""
    import csv
    import io

    reader = csv.reader(io.StringIO(data.decode("utf-8")))
    header = next(reader)
    columns: dict[str, list[str]] = {name: [] for name in header}
    for row in reader:
        for name, value in zip(header, row, strict=True):
            columns[name].append(value)
    return columns


if __name__ == "__main__":  # python -m tests.research_oracle DIR: make the environment ahead of a test run
    print(environment(Path(sys.argv[1])))
