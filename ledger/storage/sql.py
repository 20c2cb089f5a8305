"""The SQL dialect helpers shared by the store, the transparency log and the projections: one statement text
for SQLite and PostgreSQL (``?`` marks), lists of ids as one parameter, and the two drivers' cursors alike."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple

import psycopg
from psycopg.rows import tuple_row


def where_in(column: str, values: Sequence[Any], postgres: bool, mark: str = "?", sql_type: str = "text") -> tuple[str, list[Any]]:
    """SQL saying ``column`` (of ``sql_type``) is one of ``values`` (``mark``: the placeholder), and its parameters.

    PostgreSQL gets one parameter whatever the number of values: psycopg parses a query's placeholders in
    Python, and a 500-item ``IN`` list took 0.8 ms against 0.5 ms. That parameter is the values joined by
    commas, split by the server (``string_to_array``): psycopg writes an array parameter element by element in
    Python, 80 µs of CPU for a group commit's 30 ids against 10 µs for the joined text. Values that hold a comma
    or are empty (never ids, but an event id from a URL may be anything) go as an array. Run such a statement
    with ``execute_in`` (``Store.query_in`` does)."""
    if postgres:
        texts = [str(v) for v in values]
        if all(text and "," not in text for text in texts):
            cast = "" if sql_type == "text" else f"::{sql_type}[]"
            return f"{column} = ANY(string_to_array({mark}, ','){cast})", [",".join(texts)]
        return f"{column} = ANY({mark})", [list(values)]
    return f"{column} IN ({', '.join([mark] * len(values))})", list(values)


class Read(NamedTuple):
    """A read by a list of ids, as ``Store.query_in`` takes it: ``statement`` (``?`` marks, a ``{where}``) where
    ``column`` (of ``sql_type`` on PostgreSQL) is one of ``values``."""

    statement: str
    column: str
    values: Sequence[Any]
    sql_type: str = "text"


def execute_in(cursor: Any, statement: str, params: Sequence[Any], postgres: bool) -> None:
    """Run a ``where_in`` statement; on PostgreSQL never as a prepared statement. psycopg prepares a statement
    it has run five times on a connection, and PostgreSQL may then keep one generic plan for it, made for an
    array it cannot see and a table as small as it was then, until statistics change: with autovacuum off, the
    group commit's read of ``pupil_keys`` kept a plan whose cost grew with the table, 53 µs a group at first and
    854 µs once it held 2,200 keys. Unprepared, each array is planned as it is (an index scan for a group's few
    ids: 0.04 ms), for some µs of planning."""
    if postgres:
        cursor.execute(statement, params, prepare=False)
    else:
        cursor.execute(statement, params)


def rowcount(cursor: Any) -> int:
    """Rows the last statement changed (eventsourcing wraps sqlite3's cursor, which alone knows)."""
    return int(getattr(cursor, "sqlite_cursor", cursor).rowcount)


def fetch_tuples(cursor: Any) -> list[tuple[Any, ...]]:
    """The cursor's remaining rows as tuples, whichever database. The library's pooled psycopg connections make
    dicts: their rows are fetched as tuples directly (a dict a row, then a tuple of its values, was a tenth of
    reading a batch's facts back), and the cursor gets its own row factory back."""
    if isinstance(cursor, psycopg.Cursor) and cursor.row_factory is not tuple_row:
        factory = cursor.row_factory
        cursor.row_factory = tuple_row
        try:
            return cursor.fetchall()
        finally:
            cursor.row_factory = factory
    return [tuple(row.values()) if isinstance(row, dict) else tuple(row) for row in cursor.fetchall()]


def as_uuid(value: Any) -> uuid.UUID:
    """A stream id as a UUID, whichever form the database gave it (PostgreSQL: UUID; SQLite: hex text)."""
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
