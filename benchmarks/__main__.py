"""``python -m benchmarks``: the same command as ``pupil-ledger bench``."""

import typer

from api.cli_bench import bench

if __name__ == "__main__":
    typer.run(bench)
