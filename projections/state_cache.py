"""The states (``context.Context``) a process keeps for repeated reads at one moment (issue 20): the most recently used,
at most so many per cache, and, when a new state is made, holding at most so many items between the caches of one
process.

A state of every unit holds each metric's items for every school: at 1 M pupils 124,039 items in May, about 35 MB of
the process's memory (before the pupils at several schools were counted per set of schools), and the API's peak RSS
reached 336 MB over twenty school reads at new moments while up to four such states were kept (its target is under
300 MB). A state of England's or the LAs' sums holds a few thousand. So a cache counts items (``Context.weight``) as
well as states. Before a new state is made it makes room (``make_room``), so that the new state is made beside those
kept rather than above a full cache; the states kept since then stay, however heavy, so that the reads at one moment
reuse its state and its year before's. A state dropped while a request still reads it lives on until that request ends.

One process keeps states in several caches: the API's views', the web pages' and the dashboards' states at each pinned
ledger time. Each had an allowance of its own, so together they could hold several times one allowance (the pages'
six states beside the API's four, and four per pinned ledger time). The caches of one process now share one
``Allowance``: making room in any of them drops the least recently used states of all of them until they hold at most
its items between them.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable

from .context import Context

# The items a process's states may hold between them when a new one is made, by default (the API's views, the web
# pages'): at 1 M pupils a state of every unit held 40,559 items in October and 101,967-107,930 from May to August (26-28
# MB), so one of those is kept then in the summer, two or three in the autumn, beside many states of England's or the
# LAs' sums (a few thousand each)
ITEMS = 150_000


class Allowance:
    """The items the states of several caches (one process's) may hold between them when a new state is made, and the
    order in which their states were last used (one lock for them all: room is made across them)."""

    def __init__(self, items: int):
        if items < 0:
            raise ValueError(f"an allowance of items is not negative, not {items}")
        self.items = items
        self.lock = threading.Lock()
        self._caches: weakref.WeakSet[StateCache] = weakref.WeakSet()  # (a cache dropped by its owner leaves by itself)
        self._clock = itertools.count()

    def join(self, cache: StateCache) -> None:
        with self.lock:
            self._caches.add(cache)

    def tick(self) -> int:
        """The next use's number (under ``lock``): the least recently used state has the smallest."""
        return next(self._clock)

    def held(self) -> tuple[int, int]:
        """How many states its caches keep, and the items they hold."""
        with self.lock:
            states = [state for cache in list(self._caches) for state, _ in cache._kept.values()]
        return len(states), sum(state.weight() for state in states)

    def make_room(self) -> None:
        """Drop the least recently used states of every cache until they hold at most ``items`` (under ``lock``)."""
        kept = [(used, cache, key, state.weight()) for cache in list(self._caches) for key, (state, used) in cache._kept.items()]
        held = sum(weight for *_, weight in kept)
        for _, cache, key, weight in sorted(kept, key=lambda k: k[0]):
            if held <= self.items:
                break
            del cache._kept[key]
            held -= weight


class StateCache:
    """States by key (a moment, the views' positions, what the state was made for), least recently used dropped first."""

    def __init__(self, entries: int, allowance: Allowance):
        """``entries``: the states kept at most; ``allowance``: the items (``Context.weight``) they hold at most, with the
        states of the other caches sharing it, when a new state is made."""
        if entries < 1:
            raise ValueError(f"a cache of states keeps at least one state, not {entries}")
        self.entries = entries
        self.allowance = allowance
        self._kept: OrderedDict[Hashable, tuple[Context, int]] = OrderedDict()  # key -> (state, its last use's number)
        self._lock = self.allowance.lock
        self.allowance.join(self)

    def get(self, key: Hashable) -> Context | None:
        """The state kept under ``key`` (now the most recently used), or None."""
        with self._lock:
            found = self._kept.get(key)
            if found is None:
                return None
            self._kept[key] = (found[0], self.allowance.tick())
            self._kept.move_to_end(key)
            return found[0]

    def made(self, key: Hashable, make: Callable[[], Context]) -> Context:
        """The state kept under ``key``, or else ``make``'s, made once room is made (``make_room``) and then kept."""
        found = self.get(key)
        if found is None:
            self.make_room()
            found = make()
            self.keep(key, found)
        return found

    def make_room(self) -> None:
        """Before a new state is made: drop this cache's least recently used until fewer than ``entries`` are kept, then
        the least recently used of every cache sharing the allowance until they hold at most its items."""
        with self._lock:
            while len(self._kept) >= self.entries:
                self._kept.popitem(last=False)
            self.allowance.make_room()

    def keep(self, key: Hashable, state: Context) -> None:
        """Keep ``state`` under ``key`` as the most recently used, dropping the least recently used beyond ``entries``.
        Not beyond the allowance: the states kept since room was last made stay, however heavy, so that a read's state
        and its year before's (two of every unit, at 1 M pupils in the summer more than ``ITEMS`` together) are both
        reused by the reads at that moment; the next new state makes room first."""
        with self._lock:
            self._kept[key] = (state, self.allowance.tick())
            self._kept.move_to_end(key)
            while len(self._kept) > self.entries:
                self._kept.popitem(last=False)

    def kept(self) -> list[Hashable]:
        """The keys kept, least recently used first."""
        with self._lock:
            return list(self._kept)

    def items(self) -> int:
        """The items its states hold."""
        with self._lock:
            return sum(state.weight() for state, _ in self._kept.values())
