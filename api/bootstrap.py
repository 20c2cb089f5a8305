"""The composition root: the one place that builds the ledger, its log followers and the HTTP app from
``Settings``. Every entry point calls it: ``pupil-ledger serve`` and ``demo``, each ``serve --workers N``
worker process. Settings are read from the environment once, when a process starts
(``Settings.from_env``; the command line's other commands open the ledger of that value through
``api.cli_common.open_ledger``). The views' settings are the read side's own (``projections/config.py``,
read as the app is built), and so is the change feed's (``ledger.feed.FeedConfig.from_env``, read by
``/healthz``'s router as the app is built).

``serve --workers N`` runs its workers as spawned processes (``api.workers``). The parent reads the
settings once (the environment and the command line's ``--followers``) and hands the ``Settings`` value
itself to each worker as a process argument (multiprocessing pickles it): the parent writes nothing into
its own ``os.environ`` and a worker does not read it, so parent and workers run with the same settings.
"""

from __future__ import annotations

from fastapi import FastAPI

from api.app import create_app
from api.background import Follower
from ledger.config import Settings, tune_garbage_collector
from ledger.service import Ledger
from ledger.tools.admin import open_ledger, sealer
from ledger.transparency.witnessing import Witnessing, parse_witnesses
from projections.runner import Projector


def default_followers(ledger: Ledger, seal_and_project: bool | None = None) -> list[Follower]:
    """The log followers the API process runs: the sealer and the projections unless ``seal_and_project`` is
    false (default: ``Settings.in_process_followers``, ``PUPIL_LEDGER_IN_PROCESS_FOLLOWERS``; `pupil-ledger seal`
    and `project run` do it), and the witnessing whenever witnesses are configured (no other process asks
    them to cosign)."""
    in_process = ledger.settings.in_process_followers if seal_and_project is None else seal_and_project
    followers: list[Follower] = [sealer(ledger), Projector(ledger.store)] if in_process else []
    if ledger.settings.witnesses:
        followers.append(Witnessing(ledger.store, parse_witnesses(ledger.settings.witnesses)))
    return followers


def build_app(ledger: Ledger) -> FastAPI:
    """The HTTP API over ``ledger``, running the followers its settings ask for."""
    return create_app(ledger, default_followers(ledger), warm_pages=True)


def app_from_settings(settings: Settings) -> FastAPI:
    """An API worker process's app (``serve --workers N``): its own ledger and database pool."""
    tune_garbage_collector()
    return build_app(open_ledger(settings))
