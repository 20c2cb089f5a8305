"""The feed's durable state, every statement of it in one place.

Relay: ``feed_relay`` (per topic: the ledger sequence published through, when, and the last error),
``feed_marks`` (after each published batch: the sequence and every partition's next offset, so "all records up to
sequence S" is a set of offsets: the consumers' position and a rebuild's hand-over point), ``feed_erasures`` (an
erasure event's sequence and the erased pseudonym, until the relay has published it: docs/access.md).

Consumers: ``pv_kafka_offsets`` (per group and partition: the next offset to apply, written in the same transaction
as the view rows; the partition's end offset last seen, for lag), ``pv_kafka_applied`` (per subject: the highest ledger
sequence applied, so a record delivered twice is applied once), ``pv_kafka_dead_letters`` (poison records).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ledger.service import timestamp
from ledger.storage.store import Store, fetch_tuples, rowcount

RELAY_DDL = (
    "CREATE TABLE IF NOT EXISTS feed_relay (topic TEXT PRIMARY KEY, position BIGINT NOT NULL, published_at TEXT, "
    "error TEXT, error_since TEXT)",
    "CREATE TABLE IF NOT EXISTS feed_marks (topic TEXT NOT NULL, sequence BIGINT NOT NULL, offsets TEXT NOT NULL, PRIMARY KEY (topic, sequence))",
    "CREATE TABLE IF NOT EXISTS feed_erasures (sequence BIGINT PRIMARY KEY, pseudonym TEXT NOT NULL)",
)
CONSUMER_DDL = (
    "CREATE TABLE IF NOT EXISTS pv_kafka_offsets (grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL, next_offset BIGINT NOT NULL, "
    "end_offset BIGINT, updated_at TEXT, PRIMARY KEY (grp, topic, part))",
    "CREATE TABLE IF NOT EXISTS pv_kafka_applied (subject TEXT PRIMARY KEY, seq BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS pv_kafka_dead_letters (grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL, "
    "kafka_offset BIGINT NOT NULL, reason TEXT NOT NULL, at TEXT NOT NULL, PRIMARY KEY (grp, topic, part, kafka_offset))",
)
Offsets = dict[int, int]  # partition -> next offset


def now() -> str:
    return timestamp(datetime.now(UTC))


@dataclass(frozen=True)
class RelayStatus:
    topic: str
    position: int
    published_at: str | None
    error: str | None
    error_since: str | None


class FeedState:
    """Named reads and writes of the feed's tables (``cur``: the caller's transaction, where one is needed)."""

    def __init__(self, store: Store):
        self.store = store
        self._ensured: set[str] = set()

    def _ensure(self, which: str, ddl: Sequence[str]) -> None:
        if which in self._ensured:
            return
        with self.store.cursor(commit=True) as cur:
            if self.store.is_postgres:
                cur.execute("SELECT pg_advisory_xact_lock(7261002)")  # CREATE TABLE IF NOT EXISTS races between processes
            for statement in ddl:
                cur.execute(statement)
        self._ensured.add(which)

    def ensure_relay(self) -> None:
        self._ensure("relay", RELAY_DDL)

    def ensure_consumer(self) -> None:
        self._ensure("relay", RELAY_DDL)  # the consumers read the relay's marks
        self._ensure("consumer", CONSUMER_DDL)

    def _exists(self, table: str) -> bool:
        if self.store.is_postgres:
            return bool(self.store.query("SELECT to_regclass(?) IS NOT NULL", (table,))[0][0])
        return bool(self.store.query("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))[0][0])

    # -- relay ---------------------------------------------------------------------------------------------------

    def relay_status(self, topic: str) -> RelayStatus | None:
        if not self._exists("feed_relay"):
            return None
        rows = self.store.query("SELECT topic, position, published_at, error, error_since FROM feed_relay WHERE topic = ?", (topic,))
        return RelayStatus(rows[0][0], int(rows[0][1]), *rows[0][2:]) if rows else None

    def relay_position(self, topic: str) -> tuple[int, Offsets]:
        """The sequence published through and the partitions' offsets after it (the last mark)."""
        status = self.relay_status(topic)
        if status is None:
            return 0, {}
        return status.position, self.mark_at_or_before(topic, status.position)[1]

    def published(self, topic: str, through: int, offsets: Offsets, erasures: Iterable[int]) -> None:
        """After a batch's records are acknowledged: the durable position, its mark, and the erasures it published forgotten."""
        with self.store.cursor(commit=True) as cur:
            sql = self.store.sql
            cur.execute(
                sql(
                    "UPDATE feed_relay SET position = ?, published_at = ?, error = NULL, error_since = NULL WHERE topic = ? AND position < ?"
                ),
                (through, now(), topic, through),
            )
            if rowcount(cur) == 0:
                cur.execute(
                    sql(
                        "INSERT INTO feed_relay (topic, position, published_at) SELECT ?, ?, ? WHERE NOT EXISTS "
                        "(SELECT 1 FROM feed_relay WHERE topic = ?)"
                    ),
                    (topic, through, now(), topic),
                )
            cur.execute(
                sql(
                    "INSERT INTO feed_marks (topic, sequence, offsets) VALUES (?, ?, ?) ON CONFLICT (topic, sequence) DO UPDATE SET offsets = excluded.offsets"
                ),
                (topic, through, json.dumps({str(p): o for p, o in sorted(offsets.items())})),
            )
            for sequence in erasures:
                cur.execute(sql("DELETE FROM feed_erasures WHERE sequence = ?"), (sequence,))

    def relay_failed(self, topic: str, error: str) -> None:
        """The broker did not take a batch: shown in /healthz and ``project status`` until a batch goes through."""
        with self.store.cursor(commit=True) as cur:
            sql = self.store.sql
            cur.execute(
                sql("UPDATE feed_relay SET error = ?, error_since = COALESCE(error_since, ?) WHERE topic = ?"), (error[:500], now(), topic)
            )
            if rowcount(cur) == 0:
                cur.execute(
                    sql("INSERT INTO feed_relay (topic, position, error, error_since) VALUES (?, 0, ?, ?)"), (topic, error[:500], now())
                )

    def mark_at_or_before(self, topic: str, sequence: int) -> tuple[int, Offsets]:
        rows = self.store.query(
            "SELECT sequence, offsets FROM feed_marks WHERE topic = ? AND sequence <= ? ORDER BY sequence DESC LIMIT 1", (topic, sequence)
        )
        if not rows:
            return 0, {}
        return int(rows[0][0]), {int(p): int(o) for p, o in json.loads(rows[0][1]).items()}

    def digests(self, after: int, through: int) -> dict[int, tuple[str, str]]:
        rows = self.store.query(
            "SELECT sequence, event_digest, envelope_digest FROM ledger_index WHERE sequence > ? AND sequence <= ?", (after, through)
        )
        return {int(s): (e, v) for s, e, v in rows}

    def note_erasure(self, sequence: int, pseudonym: str) -> None:
        """Keep the erased pupil's pseudonym for the relay, which publishes the erasure keyed by it and then deletes the row.
        Only where a relay has run (``feed_relay`` exists): otherwise nothing would delete it."""
        if not self._exists("feed_relay"):
            return
        self.store.execute(
            self.store.sql("INSERT INTO feed_erasures (sequence, pseudonym) VALUES (?, ?) ON CONFLICT (sequence) DO NOTHING"),
            (sequence, pseudonym),
        )

    def erased_pseudonym(self, sequence: int) -> str | None:
        rows = self.store.query("SELECT pseudonym FROM feed_erasures WHERE sequence = ?", (sequence,))
        return str(rows[0][0]) if rows else None

    # -- consumers -----------------------------------------------------------------------------------------------

    def stored_offsets(self, cur: Any, group: str, topic: str, parts: Sequence[int] | None = None, lock: bool = False) -> Offsets:
        """The next offset of the group's partitions (default: all), read in the caller's transaction (``lock``: until it ends)."""
        sql = "SELECT part, next_offset FROM pv_kafka_offsets WHERE grp = ? AND topic = ?"
        params: list[Any] = [group, topic]
        if parts is not None:
            sql += f" AND part IN ({', '.join('?' * len(parts))})" if parts else " AND FALSE"
            params += list(parts)
        if lock and self.store.is_postgres:
            sql += " ORDER BY part FOR UPDATE"
        cur.execute(self.store.sql(sql), params)
        return {int(p): int(o) for p, o in fetch_tuples(cur)}

    def store_offsets(self, cur: Any, group: str, topic: str, offsets: Offsets, ends: Offsets) -> None:
        sql = self.store.sql(
            "INSERT INTO pv_kafka_offsets (grp, topic, part, next_offset, end_offset, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (grp, topic, part) DO UPDATE SET next_offset = excluded.next_offset, end_offset = excluded.end_offset, "
            "updated_at = excluded.updated_at"
        )
        cur.executemany(sql, [(group, topic, p, o, ends.get(p), now()) for p, o in sorted(offsets.items())])

    def applied(self, cur: Any, subjects: Sequence[str]) -> dict[str, int]:
        if not subjects:
            return {}
        where, params = self.store.where_in("subject", list(subjects))
        from ledger.storage.store import execute_in

        execute_in(cur, self.store.sql(f"SELECT subject, seq FROM pv_kafka_applied WHERE {where}"), params, self.store.is_postgres)
        return {str(s): int(q) for s, q in fetch_tuples(cur)}

    def set_applied(self, cur: Any, applied: dict[str, int]) -> None:
        """Raise each subject's applied sequence to the one given (never lower it: a redelivered record leaves it be).
        On PostgreSQL one statement for the batch (arrays unnested), not one upsert per subject: a worker's batch of
        1,000 records names some hundreds of subjects, and each upsert of an ``executemany`` is its own message."""
        if not applied:
            return
        items = sorted(applied.items())  # one order of row locks for every worker
        if self.store.is_postgres:
            cur.execute(
                "INSERT INTO pv_kafka_applied (subject, seq) SELECT s, q FROM unnest(%s::text[], %s::bigint[]) AS t(s, q) "
                "ON CONFLICT (subject) DO UPDATE SET seq = GREATEST(pv_kafka_applied.seq, excluded.seq)",
                ([s for s, _ in items], [q for _, q in items]),
            )
            return
        cur.executemany(
            "INSERT INTO pv_kafka_applied (subject, seq) VALUES (?, ?) ON CONFLICT (subject) DO UPDATE SET seq = MAX(pv_kafka_applied.seq, excluded.seq)",
            items,
        )

    def dead_letter(self, cur: Any, group: str, topic: str, part: int, offset: int, reason: str) -> None:
        cur.execute(
            self.store.sql(
                "INSERT INTO pv_kafka_dead_letters (grp, topic, part, kafka_offset, reason, at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (grp, topic, part, kafka_offset) DO NOTHING"
            ),
            (group, topic, part, offset, reason[:500], now()),
        )

    def marks_after(self, cur: Any, topic: str, sequence: int, limit: int = 500) -> list[tuple[int, Offsets]]:
        cur.execute(
            self.store.sql("SELECT sequence, offsets FROM feed_marks WHERE topic = ? AND sequence > ? ORDER BY sequence LIMIT ?"),
            (topic, sequence, limit),
        )
        return [(int(s), {int(p): int(o) for p, o in json.loads(text).items()}) for s, text in fetch_tuples(cur)]

    def reset_consumers(self, group: str | None = None) -> None:
        """Forget the groups' offsets and what they applied (after the views were rebuilt from the log: the workers then
        start at the relay's mark for the views' position)."""
        if not self._exists("pv_kafka_offsets"):
            return
        with self.store.cursor(commit=True) as cur:
            if group is None:
                cur.execute("DELETE FROM pv_kafka_offsets")
            else:
                cur.execute(self.store.sql("DELETE FROM pv_kafka_offsets WHERE grp = ?"), (group,))
            cur.execute("DELETE FROM pv_kafka_applied")

    def consumer_report(self, topic: str) -> dict[str, Any]:
        """Per group and partition: next offset, end offset last seen, lag; dead letters by group."""
        if not self._exists("pv_kafka_offsets"):
            return {}
        groups: dict[str, Any] = {}
        for grp, part, offset, end, updated in self.store.query(
            "SELECT grp, part, next_offset, end_offset, updated_at FROM pv_kafka_offsets WHERE topic = ? ORDER BY grp, part", (topic,)
        ):
            entry = groups.setdefault(grp, {"partitions": {}, "dead_letters": 0})
            entry["partitions"][str(part)] = {
                "offset": int(offset),
                "end": None if end is None else int(end),
                "lag": None if end is None else max(0, int(end) - int(offset)),
                "updated_at": updated,
            }
        for grp, count, last in self.store.query(
            "SELECT grp, COUNT(*), MAX(at) FROM pv_kafka_dead_letters WHERE topic = ? GROUP BY grp", (topic,)
        ):
            entry = groups.setdefault(grp, {"partitions": {}, "dead_letters": 0})
            entry["dead_letters"], entry["last_dead_letter_at"] = int(count), last
        return groups
