"""The states an API process keeps for repeated reads (projections/state_cache.py): the most recently used, at most so
many, holding at most so many items; room made before a new state is made."""

from __future__ import annotations

import gc
import sys
import threading
from datetime import date

import pytest

from projections.config import ViewSettings
from projections.context import Context, Contribution
from projections.facts import Moment
from projections.orgs import Directory
from projections.state_cache import Allowance, StateCache


def state(items: int, derived: int = 0) -> Context:
    """A folded state holding ``items`` items of one metric (and a derived list of ``derived``)."""
    ctx = Context(Moment(date(2026, 10, 5)), ViewSettings(), Directory({}), [])
    ctx._contributions["pupils_on_roll"] = [Contribution("urn:100001", f"p:{i}", 1) for i in range(items)]
    if derived:
        ctx.derived("registrations:year:den", lambda _: [Contribution("urn:100001", f"p:{i}", 0, 1) for i in range(derived)])
    ctx.derived("a count", lambda _: 7)  # (not a list: weighs nothing)
    return ctx


def test_a_states_weight_is_its_metrics_items() -> None:
    assert state(0).weight() == 0
    assert state(5).weight() == 5
    assert state(5, derived=3).weight() == 5  # (a derived list holds the metrics' items again, or a few of its own)


def test_the_least_recently_used_state_goes_first() -> None:
    cache = StateCache(entries=2, allowance=Allowance(1_000))
    a, b, c = state(1), state(1), state(1)
    cache.keep("a", a)
    cache.keep("b", b)
    assert cache.get("a") is a  # (now the most recently used)
    cache.keep("c", c)
    assert cache.kept() == ["a", "c"] and cache.get("b") is None
    assert cache.get("c") is c and cache.get("a") is a


def test_room_is_made_before_a_new_state_fewer_states_and_no_more_items_than_allowed() -> None:
    cache = StateCache(entries=4, allowance=Allowance(100))
    for key, items in (("small 1", 5), ("large 1", 60), ("small 2", 5), ("large 2", 50)):
        cache.keep(key, state(items))
    assert cache.kept() == ["small 1", "large 1", "small 2", "large 2"]  # (120 items: kept until room is made)
    cache.make_room()  # fewer than four, holding at most 100: the least recently used go
    assert cache.kept() == ["small 2", "large 2"]
    cache.make_room()
    assert cache.kept() == ["small 2", "large 2"]  # (55 items in two states: room enough)
    cache.keep("small 3", state(5))
    cache.keep("small 4", state(5))
    assert cache.kept() == ["small 2", "large 2", "small 3", "small 4"]
    cache.get("small 2")
    cache.make_room()  # fewer than four: the least recently used, large 2, goes
    assert cache.kept() == ["small 3", "small 4", "small 2"]


def test_a_reads_state_and_its_year_befores_are_both_kept_however_heavy_until_another_is_made() -> None:
    """At one moment a read makes the state of every unit and then its year before's; the reads after it at that moment
    reuse both, though together they hold more than the allowance (at 1 M pupils in the summer each holds 100,000 items
    or more): were the first dropped when the second is kept, a sweep of schools at a summer date would make both again
    at every read."""
    cache = StateCache(entries=4, allowance=Allowance(150))
    cache.make_room()
    cache.keep("D", state(100))
    cache.make_room()
    cache.keep("a year before D", state(100))
    for _ in range(3):
        assert cache.get("D") is not None and cache.get("a year before D") is not None
    cache.make_room()  # another moment: room for it
    assert cache.kept() == ["a year before D"]


def test_a_state_heavier_than_the_allowance_is_dropped_before_the_next_is_made() -> None:
    cache = StateCache(entries=4, allowance=Allowance(100))
    cache.keep("small", state(1))
    cache.keep("huge", state(101))
    assert cache.kept() == ["small", "huge"]  # (a new state's items come after it is made: kept as it is made)
    cache.make_room()
    assert cache.kept() == []


def test_an_empty_allowance_keeps_states_that_hold_nothing_yet() -> None:
    cache = StateCache(entries=2, allowance=Allowance(0))
    cache.keep("new", state(0))
    cache.make_room()
    assert cache.kept() == ["new"]


@pytest.mark.parametrize("entries", [0, -1])
def test_a_cache_refuses_an_impossible_size(entries: int) -> None:
    with pytest.raises(ValueError, match="a cache of states keeps at least one state"):
        StateCache(entries, Allowance(10))


def test_threads_reading_and_keeping_at_once_leave_the_bounds_kept() -> None:
    cache = StateCache(entries=3, allowance=Allowance(50))
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(200):
                key = (n, i % 7)
                if cache.get(key) is None:
                    cache.make_room()
                    cache.keep(key, state(i % 20))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(cache.kept()) <= 3


def test_a_states_weight_is_taken_while_another_request_fills_it() -> None:
    """A kept state is still being filled by the request that reads it (its metrics' items, its derived lists) while
    another request makes room: the weight must be taken without iterating a dictionary that grows meanwhile."""
    ctx = state(0)
    filling = threading.Event()
    errors: list[BaseException] = []

    def fill() -> None:
        filling.set()
        for i in range(20_000):
            ctx._contributions[f"metric {i}"] = [Contribution("urn:100001", "k", 1)]

    filler = threading.Thread(target=fill)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # (threads take turns as often as they can)
    try:
        filler.start()
        filling.wait()
        while filler.is_alive():
            try:
                assert ctx.weight() >= 0
            except RuntimeError as e:  # "dictionary changed size during iteration"
                errors.append(e)
                break
        filler.join()
    finally:
        sys.setswitchinterval(switch)
    assert not errors, errors
    assert ctx.weight() == 20_000


def test_caches_sharing_an_allowance_make_room_across_them_least_recently_used_first() -> None:
    """One process keeps states in several caches (the API's views', the pages', each pinned ledger time's): they share
    one allowance of items, so room made in one drops the least recently used states of all of them."""
    process = Allowance(100)
    api, pages = StateCache(entries=4, allowance=process), StateCache(entries=4, allowance=process)
    api.keep("api old", state(40))
    pages.keep("pages", state(40))
    api.keep("api new", state(10))
    assert process.held() == (3, 90)
    pages.make_room()  # 90 items: room enough
    assert api.kept() == ["api old", "api new"] and pages.kept() == ["pages"]
    api.keep("api newest", state(30))  # 120 items
    pages.make_room()  # the least recently used of either cache goes first: the API's oldest
    assert api.kept() == ["api new", "api newest"] and pages.kept() == ["pages"]
    assert api.get("api new") is not None  # (used again: now after the pages' state)
    api.make_room()
    assert process.held() == (3, 80)
    pages.keep("pages 2", state(30))
    api.make_room()  # 110 items: the pages' state is now the least recently used of all
    assert pages.kept() == ["pages 2"] and api.kept() == ["api newest", "api new"]


def test_each_cache_sharing_an_allowance_keeps_its_own_number_of_states() -> None:
    process = Allowance(1_000)
    one, two = StateCache(entries=1, allowance=process), StateCache(entries=3, allowance=process)
    for key in ("a", "b", "c"):
        one.keep(key, state(1))
        two.keep(key, state(1))
    assert one.kept() == ["c"] and two.kept() == ["a", "b", "c"]
    two.make_room()  # (fewer than its three before a new one is made; the other cache's is not its to drop)
    assert two.kept() == ["b", "c"] and one.kept() == ["c"]


def test_a_cache_dropped_by_its_owner_leaves_the_allowance() -> None:
    """A pinned ledger time's states are dropped with its cache when the pages move on: the allowance must not keep
    counting (nor keeping alive) the states of a cache nobody holds."""
    process = Allowance(100)
    kept = StateCache(entries=2, allowance=process)
    kept.keep("a", state(60))
    dropped = StateCache(entries=2, allowance=process)
    dropped.keep("b", state(60))
    assert process.held() == (2, 120)
    del dropped
    gc.collect()
    assert process.held() == (1, 60)
    kept.make_room()
    assert kept.kept() == ["a"]


def test_an_allowance_refuses_a_negative_number_of_items() -> None:
    with pytest.raises(ValueError, match="an allowance of items is not negative"):
        Allowance(-1)


def test_made_makes_a_state_once_room_made_before_it() -> None:
    cache = StateCache(entries=2, allowance=Allowance(50))
    cache.keep("heavy", state(60))
    kept_while_made: list[list[object]] = []

    def make() -> Context:
        kept_while_made.append(cache.kept())
        return state(1)

    first = cache.made("new", make)
    assert cache.made("new", make) is first  # (kept: not made again)
    assert kept_while_made == [[]]  # made once, after the heavy state made room
    assert cache.kept() == ["new"]
