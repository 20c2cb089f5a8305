"""The statements a read model state asks ahead (``projections.read_model_ahead``): a state of a kind sends those the
previous state of its kind asked to other threads, takes their rows (or their error) when it asks them, and runs the
others itself, also those asked ahead that had not started."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from projections import read_model_ahead
from projections.read_model_ahead import Ahead


class Database:
    """Statements answered by name, each run recorded with the thread that ran it; ``hold`` keeps a statement running
    until released."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, str]] = []
        self.held: dict[str, threading.Event] = {}
        self.started: dict[str, threading.Event] = {}
        self.lock = threading.Lock()

    def hold(self, sql: str) -> None:
        self.held[sql], self.started[sql] = threading.Event(), threading.Event()

    def run(self, sql: str) -> list[tuple[Any, ...]]:
        with self.lock:
            self.runs.append((sql, threading.current_thread().name))
        if sql in self.held:
            self.started[sql].set()
            assert self.held[sql].wait(10)
        if sql.startswith("bad"):
            raise RuntimeError(f"no such table in {sql}")
        return [(sql.upper(),)]

    def threads(self, sql: str) -> list[str]:
        return [thread for ran, thread in self.runs if ran == sql]


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    read_model_ahead.forget()
    yield
    read_model_ahead.forget()


def test_a_state_asks_ahead_what_the_previous_state_of_its_kind_asked_and_takes_those_rows() -> None:
    db = Database()
    first = Ahead(("school", True), db.run)
    assert [first.rows(sql) for sql in ("a", "b", "a")] == [[("A",)], [("B",)], [("A",)]]
    assert all(thread == threading.current_thread().name for _, thread in db.runs)  # nothing to ask ahead yet
    db.runs.clear()
    db.hold("b")  # "b" is still running when the next state asks it: it waits for those rows, it does not run it again
    second = Ahead(("school", True), db.run)
    assert db.started["b"].wait(10)
    threading.Timer(0.05, db.held["b"].set).start()
    assert second.rows("b") == [("B",)] and second.rows("a") == [("A",)] and second.rows("a") == [("A",)]
    assert second.rows("c") == [("C",)]  # not asked by the previous state: run here
    assert len(db.threads("a")) == 2 and db.threads("a")[0].startswith("read-model-ahead")  # ahead once, then asked again
    assert db.threads("a")[1] == threading.current_thread().name
    assert db.threads("b") == [db.threads("b")[0]] and db.threads("b")[0].startswith("read-model-ahead")
    assert db.threads("c") == [threading.current_thread().name]
    assert (second.taken, second.taken_back) == (2, 0)
    # another kind has its own statements: a state made for LA figures asks none of the school's ahead
    db.runs.clear()
    other = Ahead(("la", True), db.run)
    assert other.rows("a") == [("A",)] and db.threads("a") == [threading.current_thread().name]


def test_a_statement_asked_ahead_that_has_not_started_is_run_by_the_state_itself() -> None:
    """Two reads at once: the pool's workers run another state's statements, this state's wait in the queue; it takes
    them back and runs them itself rather than wait behind the other's, and the pool never runs them."""
    db = Database()
    Ahead(("other", True), db.run).asked.extend(["x", "y"])
    db.hold("x")
    db.hold("y")
    other = Ahead(("other", True), db.run)
    assert db.started["x"].wait(10) and db.started["y"].wait(10)  # every worker busy
    Ahead(("school", True), db.run).asked.extend(["a", "b"])
    second = Ahead(("school", True), db.run)
    assert second.rows("a") == [("A",)] and second.rows("b") == [("B",)]
    assert (second.taken, second.taken_back) == (0, 2)
    db.held["x"].set()
    db.held["y"].set()
    assert other.rows("x") == [("X",)] and other.rows("y") == [("Y",)] and other.taken == 2
    assert db.threads("a") == [threading.current_thread().name] and db.threads("b") == [threading.current_thread().name]


def test_an_error_of_a_statement_asked_ahead_is_raised_where_the_state_asks_it() -> None:
    db = Database()
    Ahead(("school", True), db.run).asked.append("bad statement")
    db.hold("bad statement")
    second = Ahead(("school", True), db.run)
    assert db.started["bad statement"].wait(10)
    threading.Timer(0.05, db.held["bad statement"].set).start()
    with pytest.raises(RuntimeError, match="no such table in bad statement"):
        second.rows("bad statement")
    assert second.taken == 1 and db.threads("bad statement")[0].startswith("read-model-ahead")


def test_a_state_that_asks_nothing_ahead_runs_every_statement_itself() -> None:
    db = Database()
    Ahead(("school", True), db.run).asked.append("a")
    third = Ahead(("school", True), db.run, enabled=False)  # (SQLite's states)
    assert third.rows("a") == [("A",)] and db.threads("a") == [threading.current_thread().name]
