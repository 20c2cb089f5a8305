"""An example change-feed consumer for a local authority's system (docs/deployment.md, "Consuming the feed").

It keeps, per pupil pseudonym, the school each pupil is on roll at (from pupil.registered / pupil.deregistered) in
a SQLite file, and honours the feed's three rules:

1. records are at-least-once: skip a record whose ``sequence`` is not above the last one applied for its subject;
2. the offsets that count are stored in the same transaction as the data (here: SQLite), not committed to Kafka;
3. ``access.record_erased``: delete everything held about that subject.

Run: ``python docs/examples/feed_consumer.py kafka:9092 la-801-roll roll.sqlite3`` (Ctrl-C stops).
"""

from __future__ import annotations

import json
import sqlite3
import sys

from kafka import ConsumerRebalanceListener, KafkaConsumer

TOPIC = "pupil-ledger.events.v1"
SCHEMA = b"event-record.v1"


def open_db(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False)  # kafka-python calls the rebalance listener on its own thread, during poll()
    db.executescript("""
        CREATE TABLE IF NOT EXISTS roll (subject TEXT PRIMARY KEY, school TEXT);
        CREATE TABLE IF NOT EXISTS applied (subject TEXT PRIMARY KEY, sequence INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS offsets (part INTEGER PRIMARY KEY, next_offset INTEGER NOT NULL);
    """)
    return db


def apply(db: sqlite3.Connection, part: int, offset: int, value: bytes, headers: list[tuple[str, bytes]]) -> None:
    """One record, in one transaction with its offset."""
    with db:
        if dict(headers).get("schema") == SCHEMA:  # other schemas: not ours (a v2 comes on another topic)
            record = json.loads(value)
            subject, sequence = record["subject"], record["sequence"]
            row = db.execute("SELECT sequence FROM applied WHERE subject = ?", (subject,)).fetchone()
            if row is None or sequence > row[0]:
                if record["type"] == "access.record_erased":
                    db.execute("DELETE FROM roll WHERE subject = ?", (subject,))
                elif record["type"] == "pupil.registered" and record["data"].get("enrolment_status") in ("C", "M"):
                    db.execute(
                        "INSERT INTO roll (subject, school) VALUES (?, ?) ON CONFLICT (subject) DO UPDATE SET school = excluded.school",
                        (subject, record["data"]["school"]),
                    )
                elif record["type"] == "pupil.deregistered":
                    db.execute("DELETE FROM roll WHERE subject = ? AND school = ?", (subject, record["data"]["school"]))
                db.execute(
                    "INSERT INTO applied (subject, sequence) VALUES (?, ?) ON CONFLICT (subject) DO UPDATE SET sequence = excluded.sequence",
                    (subject, sequence),
                )
        db.execute(
            "INSERT INTO offsets (part, next_offset) VALUES (?, ?) ON CONFLICT (part) DO UPDATE SET next_offset = excluded.next_offset",
            (part, offset + 1),
        )


class StartWhereTheDatabaseSays(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: KafkaConsumer, db: sqlite3.Connection):
        self.consumer, self.db = consumer, db

    def on_partitions_revoked(self, revoked: object) -> None:
        pass

    def on_partitions_assigned(self, assigned: list) -> None:  # type: ignore[type-arg]
        stored = dict(self.db.execute("SELECT part, next_offset FROM offsets").fetchall())
        for tp in assigned:
            if tp.partition in stored:
                self.consumer.seek(tp, stored[tp.partition])
            else:
                self.consumer.seek_to_beginning(tp)


def consume(bootstrap: str, group: str, path: str, topic: str = TOPIC, idle_polls: int | None = None) -> sqlite3.Connection:
    """Consume until stopped (or, for tests, until ``idle_polls`` polls in a row found nothing)."""
    db = open_db(path)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest")
    consumer.subscribe([topic], listener=StartWhereTheDatabaseSays(consumer, db))
    idle = 0
    try:
        while idle_polls is None or idle < idle_polls:
            batch = consumer.poll(timeout_ms=500)
            idle = 0 if batch else idle + 1
            for tp, records in batch.items():
                for r in records:
                    apply(db, tp.partition, r.offset, r.value, r.headers)
    finally:
        consumer.close()
    return db


if __name__ == "__main__":
    consume(sys.argv[1], sys.argv[2], sys.argv[3])
