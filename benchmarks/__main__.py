"""``python -m benchmarks``: the same command as ``pupil-ledger bench``, with the same garbage-collector settings."""

import typer

from api.cli_bench import bench
from ledger.config import tune_garbage_collector

if __name__ == "__main__":
    tune_garbage_collector()  # as ``pupil-ledger`` (api/cli.py main) does before any command
    typer.run(bench)
