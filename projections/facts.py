"""Fact tables: every view is a pure mapping from one log event to rows of its tables.

A row is a fact asserted by one event. Common columns make every table bitemporal: ``occurred_on``
(effective date), ``received_at`` (ledger time the fact became known) and ``superseded_at`` (ledger
time a later correction or retraction superseded it). A fact is in force "as of D, as known at T"
when ``occurred_on <= D``, ``received_at <= T`` and it was not superseded at T. Aggregates are
computed from facts in force, so any past (D, T) can be asked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cached_property
from typing import Any, ClassVar

from ledger.core.rules import Record
from ledger.core.times import timestamp

COMMON = (
    ("event_id", "TEXT PRIMARY KEY"),
    ("seq", "BIGINT NOT NULL"),
    ("type", "TEXT NOT NULL"),
    ("subject", "TEXT NOT NULL"),
    ("occurred_on", "TEXT NOT NULL"),
    ("received_at", "TEXT NOT NULL"),
    ("superseded_at", "TEXT"),
)
END_OF_TIME = "9999-12-31T23:59:59.999999Z"


@dataclass(frozen=True)
class LogEvent:
    """One event of the log as the views see it: ``subject`` is the pupil's pseudonym (the store's
    originator id, never the UPN) or the organisation id."""

    seq: int
    subject: str
    record: Record
    flags: tuple[str, ...]
    # ``timestamp(record.received_at)``, the text the tables store: formatted once, though several views and the read
    # model's upkeep ask for it (when each formatted it, 6% of a read model rebuild); made with the event (a
    # ``cached_property`` takes a lock on each first read: 15 µs an event on the projectors' decode)
    received: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "received", timestamp(self.record.received_at))


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]
    indexes: tuple[str, ...] = ()
    partial_indexes: tuple[tuple[str, str, str], ...] = ()  # (name, columns, predicate): an index of the rows a query singles out
    # columns no two rows share: the planner then knows a list of their values finds as many rows, statistics or none
    unique_indexes: tuple[str, ...] = ()

    keyed_by_subject: ClassVar[bool] = True  # rows of one pupil each (an erasure deletes them by ``subject``)

    @property
    def all_columns(self) -> tuple[tuple[str, str], ...]:
        return COMMON + self.columns

    def ddl(self) -> list[str]:
        cols = ", ".join(f"{n} {t}" for n, t in self.all_columns)
        return [f"CREATE TABLE IF NOT EXISTS {self.name} ({cols})", *self.index_ddl("occurred_on")]

    def index_ddl(self, first: str) -> list[str]:
        """The statements making the indexes: on ``first`` (every table of the kind has it) and on each of ``indexes``,
        the partial ones, the unique ones."""
        name = f"{self.name}_"
        return [
            *(f"CREATE INDEX IF NOT EXISTS {name}{c.replace(', ', '_')} ON {self.name} ({c})" for c in (first, *self.indexes)),
            *(f"CREATE INDEX IF NOT EXISTS {name}{n} ON {self.name} ({c}) WHERE {w}" for n, c, w in self.partial_indexes),
            *(f"CREATE UNIQUE INDEX IF NOT EXISTS {name}{c.replace(', ', '_')} ON {self.name} ({c})" for c in self.unique_indexes),
        ]

    @property
    def inserted_columns(self) -> list[str]:
        """The columns a new fact fills, in ``row``'s order (``superseded_at`` only ever comes later)."""
        return [n for n, _ in self.all_columns if n != "superseded_at"]

    def insert_sql(self) -> str:
        names = self.inserted_columns
        return f"INSERT INTO {self.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"

    def copy_sql(self) -> str:
        """PostgreSQL's ``COPY`` of ``row``s (text format: each value as the column's type reads it)."""
        return f"COPY {self.name} ({', '.join(self.inserted_columns)}) FROM STDIN"

    @cached_property
    def column_names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.columns)

    def row(self, ev: LogEvent, values: dict[str, Any]) -> tuple[Any, ...]:
        r = ev.record
        get = values.get
        return (r.event_id, ev.seq, r.type, ev.subject, r.occurred_on.isoformat(), ev.received, *[get(n) for n in self.column_names])


@dataclass(frozen=True)
class View:
    """A named, versioned set of fact tables and the pure function that maps an event to rows (or, with
    ``maintain``, a view that keeps its own tables from each batch: ``projections/read_model.py``)."""

    name: str
    version: int
    tables: tuple[Table, ...]
    rows: Callable[[LogEvent], Iterable[tuple[Table, dict[str, Any]]]]
    maintain: Callable[[Any, Any, Sequence[LogEvent]], None] | None = None  # (cursor, store, the batch's new events)
    # run after a batch's rows are written, in its transaction (cursor, store, the batch's new events): a view's sums
    after: Callable[[Any, Any, Sequence[LogEvent]], None] | None = None
    # run before an erased pupil's rows are deleted (cursor, store, the pupil's subject): its rows off the view's sums
    forget: Callable[[Any, Any, str], None] | None = None
    # the views whose tables this one's upkeep reads (``maintain``, ``after``): it is never projected past their position,
    # and in one projector it is written after them (``runner.in_dependency_order``)
    reads: tuple[str, ...] = ()

    @property
    def fact_tables(self) -> tuple[Table, ...]:
        """The tables of one pupil's rows each (the others keep sums): those an erasure deletes the pupil's rows from,
        and, in a view of facts, those a correction supersedes rows of."""
        return tuple(t for t in self.tables if t.keyed_by_subject)


@dataclass(frozen=True)
class Moment:
    """As of effective date ``as_of``, as known at ledger time ``known_at`` (None: now)."""

    as_of: date
    known_at: datetime | None = None

    @property
    def known(self) -> str:
        return timestamp(self.known_at) if self.known_at else END_OF_TIME


def in_force(
    table: str, moment: Moment, where: str = "", params: Sequence[Any] = (), columns: str = "*", effective_cut: bool = True
) -> tuple[str, list[Any]]:
    """SQL (with ``?`` marks) selecting the facts of ``table`` in force at ``moment``."""
    sql = f"SELECT {columns} FROM {table} WHERE received_at <= ? AND (superseded_at IS NULL OR superseded_at > ?)"
    args: list[Any] = [moment.known, moment.known]
    if effective_cut:
        sql += " AND occurred_on <= ?"
        args.append(moment.as_of.isoformat())
    if where:
        sql += f" AND ({where})"
        args.extend(params)
    return sql, args
