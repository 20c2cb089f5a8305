"""Reproducible benchmarks with their baselines (issue 6, ``docs/performance.md``).

One scenario is one module exposing ``SCENARIO = Scenario(name, run)``; ``run(ctx)`` returns the
``Result`` rows it measured, its baselines beside it. ``pupil-ledger bench`` (or ``python -m
benchmarks``) runs the chosen scenarios against SQLite and PostgreSQL and prints a table and JSON.
"""

from .harness import Context, Result, Scenario, run_scenarios, scenarios

__all__ = ["Context", "Result", "Scenario", "run_scenarios", "scenarios"]
