"""What the change feed reports to operators (``/healthz`` and ``pupil-ledger project status``): the relay's position,
last publish and error, and each consumer group's offsets, lag and dead letters, read from the feed's tables."""

from __future__ import annotations

from typing import Any

from feed.state import FeedState
from ledger.feed import FeedConfig
from ledger.service import Ledger


def feed_report(ledger: Ledger, config: FeedConfig | None) -> dict[str, Any] | None:
    """None when the feed is not configured (no ``PUPIL_LEDGER_KAFKA``)."""
    if config is None:
        return None
    state = FeedState(ledger.store)
    status = state.relay_status(config.topic)
    return {
        "topic": config.topic,
        "relay": None
        if status is None
        else {
            "position": status.position,
            "behind": max(0, ledger.store.max_sequence() - status.position),
            "published_at": status.published_at,
            "error": status.error,
            "error_since": status.error_since,
        },
        "groups": state.consumer_report(config.topic),
    }
