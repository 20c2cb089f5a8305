"""Liveness for the operator and the load balancer: ``/healthz`` answers within ``HEALTH_SECONDS`` whatever the
database does, with the latest sequence and, with PUPIL_LEDGER_KAFKA, the change feed's position."""

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.errors import Errors
from api.limits import Refusal
from feed.report import feed_report
from ledger.feed import FeedConfig
from ledger.service import Ledger
from ledger.storage import database

HEALTH_SECONDS = 1.5  # /healthz answers within this, whatever the database does


class Health(BaseModel):
    status: str
    database: str
    latest_sequence: int = Field(description="highest ledger sequence committed")
    feed: dict[str, Any] | None = Field(
        default=None,
        description="with PUPIL_LEDGER_KAFKA: the relay's position, last publish and error; "
        "each consumer group's offset, end and lag per partition, and dead letters (docs/deployment.md)",
    )


def health_router(ledger: Ledger, checks: ThreadPoolExecutor) -> APIRouter:
    """``checks`` are the threads the health checks run in: their own, never queued behind busy routes."""
    router = APIRouter(tags=["operations"])
    liveness = database.liveness_of(ledger.store.app.recorder)
    feed_config = FeedConfig.from_env()  # read once, as the app is built

    @router.get(
        "/healthz",
        operation_id="healthz",
        response_model=Health,
        responses={503: {"model": Errors}},
        description=f"Answers within {HEALTH_SECONDS:g} s: 503 `database_unavailable` (with Retry-After) when the database does not.",
    )
    async def healthz() -> Any:
        unavailable = Refusal(503, "database_unavailable", "$", "the database is not answering", database.RETRY_AFTER_SECONDS)
        if liveness.away:
            raise unavailable
        try:
            count = await asyncio.wait_for(asyncio.wrap_future(checks.submit(ledger.store.max_sequence)), HEALTH_SECONDS)
            feed = await asyncio.wait_for(asyncio.wrap_future(checks.submit(feed_report, ledger, feed_config)), HEALTH_SECONDS)
        except Exception:  # noqa: BLE001 - any database failure, or no answer in time, is "unhealthy"; details stay here
            raise unavailable from None
        return Health(status="ok", database="postgresql" if ledger.store.is_postgres else "sqlite", latest_sequence=count, feed=feed)

    return router
