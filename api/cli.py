"""The ``pupil-ledger`` command line (design.md 3.5): assembles the commands of the ``api/cli_*`` modules into
one program, in the order ``--help`` lists them. Every command has --help with an example."""

from __future__ import annotations

import sys

import typer

from api.cli_bench import bench
from api.cli_client import history, sign, submit
from api.cli_common import err
from api.cli_demo import demo, simulate
from api.cli_feed import relay
from api.cli_log import log_app, seal, verify_app
from api.cli_operator import claims, erase
from api.cli_orgs import keys_app, orgs_app
from api.cli_project import project_app
from api.cli_report import report_app
from api.cli_research import export_app, research_app
from api.cli_serve import init, serve
from api.cli_tokens import tokens_app
from api.cli_witness import witness_app
from ledger import dfe
from ledger.config import tune_garbage_collector

app = typer.Typer(
    help="Pupil Movement Ledger: signed, append-only record of pupil movements.", no_args_is_help=True, rich_markup_mode="markdown"
)
for command in (seal, bench, relay, init, serve, sign, submit, history, claims, erase, simulate, demo):
    app.command()(command)
for name, group in (
    ("orgs", orgs_app),
    ("keys", keys_app),
    ("tokens", tokens_app),
    ("witness", witness_app),
    ("project", project_app),
    ("log", log_app),
    ("verify", verify_app),
    ("report", report_app),
    ("export", export_app),
    ("research", research_app),
):
    app.add_typer(group, name=name)


def main() -> None:
    tune_garbage_collector()
    try:
        app()
    except BrokenPipeError:
        sys.exit(0)
    except dfe.MissingPublishedData as exc:  # the repository's data/dfe/ (or PUPIL_LEDGER_DFE_DATA) is incomplete
        err.print(f"error: {exc}", markup=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
