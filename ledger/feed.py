"""The change feed's record format and configuration (docs/deployment.md; design.md 8, "Change feed").

Each accepted pupil or organisation event, and each erasure, becomes one Kafka record on the topic
``pupil-ledger.events.v1``: key the subject's pseudonym (organisation events: the organisation id), value
UTF-8 JSON valid against ``schemas/feed/event-record.v1.schema.json``, header ``schema`` = ``event-record.v1``.
A record never carries a UPN: the subject is the pupil's pseudonym (docs/access.md, "The change feed").
Pure functions only; the relay (``feed.relay``) and the consumers (``feed.consumer``) do the I/O.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from ledger.core.codes import SCHEMAS_DIR
from ledger.core.rules import Record

TOPIC = "pupil-ledger.events.v1"
SCHEMA = "event-record.v1"
SCHEMA_HEADER = ("schema", SCHEMA.encode("ascii"))
SCHEMA_FILE: Path = SCHEMAS_DIR / "feed" / f"{SCHEMA}.schema.json"
ERASURE = "access.record_erased"  # published keyed by the erased pupil's pseudonym: consumers forget the pupil
DEFAULT_PARTITIONS = 6
DEFAULT_GROUP = "pupil-ledger-projections"


@dataclass(frozen=True)
class FeedConfig:
    """Where the feed is: ``PUPIL_LEDGER_KAFKA`` (bootstrap servers, comma-separated), ``PUPIL_LEDGER_KAFKA_TOPIC``,
    ``PUPIL_LEDGER_KAFKA_PARTITIONS`` (when the relay creates the topic), ``PUPIL_LEDGER_KAFKA_GROUP`` (the projection
    workers' consumer group). Poison records go to ``<topic>.dead-letter``."""

    bootstrap: str
    topic: str = TOPIC
    partitions: int = DEFAULT_PARTITIONS
    group: str = DEFAULT_GROUP

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.topic}.dead-letter"

    @property
    def servers(self) -> list[str]:
        return [s.strip() for s in self.bootstrap.split(",") if s.strip()]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> FeedConfig | None:
        """The configuration, or None when ``PUPIL_LEDGER_KAFKA`` is unset (no feed)."""
        env = os.environ if environ is None else environ
        bootstrap = env.get("PUPIL_LEDGER_KAFKA", "").strip()
        if not bootstrap:
            return None
        partitions = int(env.get("PUPIL_LEDGER_KAFKA_PARTITIONS", str(DEFAULT_PARTITIONS)))
        if partitions < 1:
            raise ValueError("PUPIL_LEDGER_KAFKA_PARTITIONS must be at least 1")
        return cls(
            bootstrap,
            env.get("PUPIL_LEDGER_KAFKA_TOPIC", TOPIC) or TOPIC,
            partitions,
            env.get("PUPIL_LEDGER_KAFKA_GROUP", DEFAULT_GROUP) or DEFAULT_GROUP,
        )


def feed_record(
    sequence: int,
    subject: str,
    record: Record,
    flags: Sequence[str],
    event_digest: str,
    envelope_digest: str,
    received: str,
) -> dict[str, Any]:
    """The feed's record of one accepted event. ``subject`` is the pupil's pseudonym or the organisation id:
    ``record.subject`` (a pupil's UPN) is never copied, nor any ``upn`` field of the data. ``received``: the receipt
    time in the ledger's one text form (``ledger.core.times.timestamp``), as the log's reader has formatted it once
    already (``LogEvent.received``)."""
    return {
        "sequence": sequence,
        "event_id": record.event_id,
        "type": record.type,
        "subject": subject,
        "submitter": record.submitter,
        "occurred_on": record.occurred_on.isoformat(),
        "received_at": received,
        "corrects": record.corrects,
        "flags": list(flags),
        "event_digest": event_digest,
        "envelope_digest": envelope_digest,
        "data": {k: v for k, v in record.data.items() if "upn" not in k.lower()},
    }


def erasure_record(sequence: int, pseudonym: str, record: Record, event_digest: str, envelope_digest: str, received: str) -> dict[str, Any]:
    """The feed's record of an erasure: keyed by the erased pupil's pseudonym (consumers delete what they hold about it),
    with the ground only (the count and case reference stay in the ledger's audit stream)."""
    out = feed_record(sequence, pseudonym, record, (), event_digest, envelope_digest, received)
    out["data"] = {"ground": record.data.get("ground")}
    return out


def encode(record: Mapping[str, Any]) -> bytes:
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def key_of(record: Mapping[str, Any]) -> bytes:
    return str(record["subject"]).encode("utf-8")


@cache
def record_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_FILE.read_text("utf-8"))
    return schema
