"""The ledger's HTTP API (design.md 3.4): one FastAPI app built from the routers of ``api.routes``, its errors
answered by ``api.errors``, its callers authenticated by ``api.auth``, behind the guard of ``api.security``."""

from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import auth, errors, security, web
from api.background import Background, Follower
from api.routes.admin import admin_router
from api.routes.health import health_router
from api.routes.log import event_proof_route, log_router
from api.routes.plans import tailored_list_router
from api.routes.reads import reads_router
from api.routes.research import research_router
from api.routes.submission import DirectRoute, submission_router
from api.routes.views import views_router
from ledger import signatures
from ledger.group_commit import GroupCommitter
from ledger.service import Ledger
from projections.state_cache import ITEMS as STATE_ITEMS
from projections.state_cache import Allowance


def create_app(ledger: Ledger, followers: Sequence[Follower] = (), warm_pages: bool = False) -> FastAPI:
    """The API; ``followers`` run in background threads for the app's lifetime; ``warm_pages``: the web pages'
    figures for today are prepared in the background at start (a server's, not a test's)."""
    settings = ledger.settings
    background = Background(followers, idle_seconds=settings.follower_idle, pace_seconds=settings.follower_pace)
    committer = GroupCommitter(ledger)  # concurrent submitEvent calls share one transaction
    health_checks = ThreadPoolExecutor(2, thread_name_prefix="healthz")  # its own threads: never queued behind busy routes

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        background.start()
        if warm_pages:
            pages.warm()
        try:
            yield
        finally:
            committer.stop()
            pages.close()  # their background refreshes read the database: stop them before it goes
            background.stop()
            health_checks.shutdown(wait=False)
            signatures.shutdown()  # the signature workers stop with the app, not at interpreter exit

    app = FastAPI(
        lifespan=lifespan,
        title="Pupil Movement Ledger",
        version="1.0.0",
        description=(
            "National system of record for pupil movements in SEND and alternative provision. "
            "Post signed DSSE envelopes (design.md 3.1); every 201 means durably committed and carries a "
            'receipt signed by the ledger. Errors are `{"errors": [{code, path, message}]}`.'
        ),
    )
    errors.install(app)
    authenticator = auth.Authenticator(ledger)
    auth.use(app, authenticator)

    submission, accept_event = submission_router(ledger, committer)
    # Inside the guard (rate limits, headers), outside FastAPI's own layers: added first, so it wraps only those.
    app.add_middleware(DirectRoute, method="POST", path="/events", endpoint=accept_event)
    security.install(app, security.RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst))

    app.include_router(submission)
    app.include_router(reads_router(ledger))
    app.include_router(admin_router(ledger))
    app.include_router(health_router(ledger, health_checks))
    app.include_router(log_router(ledger))
    app.include_router(event_proof_route(ledger))
    # the states the API's views and the pages keep for repeated reads hold at most one allowance of items between them
    # (projections/state_cache.py): one process, one allowance
    states = Allowance(STATE_ITEMS)
    app.include_router(views_router(ledger, allowance=states))
    # the pages (docs/web.md): start page, public reports, dashboards, /assets
    pages = web.mount(app, ledger, authenticator.principal, states)
    app.state.pages = pages
    app.include_router(research_router(ledger))
    app.include_router(tailored_list_router(ledger))  # public: the tailored list of settings (issue 25)
    return app
