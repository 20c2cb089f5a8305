"""The states (``context.Context``) a process keeps for repeated reads at one moment (issue 20): the most recently used,
at most so many, and, when a new state is made, holding at most so many items between them.

A state of every unit holds each metric's items for every school: at 1 M pupils 124,039 items in May, about 35 MB of
the process's memory (before the pupils at several schools were counted per set of schools), and the API's peak RSS
reached 336 MB over twenty school reads at new moments while up to four such states were kept (its target is under
300 MB). A state of England's or the LAs' sums holds a few thousand. So the cache counts items (``Context.weight``) as
well as states. Before a new state is made it makes room (``make_room``), so that the new state is made beside those
kept rather than above a full cache; the states kept since then stay, however heavy, so that the reads at one moment
reuse its state and its year before's. A state dropped while a request still reads it lives on until that request ends.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

from .context import Context

# The items a process's states may hold between them when a new one is made, by default (the API's views, the web
# pages'): at 1 M pupils a state of every unit held 40,559 items in October and 101,967-107,930 from May to August (26-28
# MB), so one of those is kept then in the summer, two or three in the autumn, beside many states of England's or the
# LAs' sums (a few thousand each)
ITEMS = 150_000


class StateCache:
    """States by key (a moment, the views' positions, what the state was made for), least recently used dropped first."""

    def __init__(self, entries: int, items: int):
        """``entries``: the states kept at most; ``items``: the items (``Context.weight``) they hold at most between them
        when a new state is made."""
        if entries < 1 or items < 0:
            raise ValueError(f"a cache of states keeps at least one state and no negative number of items, not {entries}, {items}")
        self.entries, self.items = entries, items
        self._kept: OrderedDict[Hashable, Context] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Context | None:
        """The state kept under ``key`` (now the most recently used), or None."""
        with self._lock:
            found = self._kept.get(key)
            if found is not None:
                self._kept.move_to_end(key)
            return found

    def make_room(self) -> None:
        """Before a new state is made: drop the least recently used until fewer than ``entries`` are kept and they hold
        at most ``items``."""
        with self._lock:
            held = sum(state.weight() for state in self._kept.values())
            while self._kept and (len(self._kept) >= self.entries or held > self.items):
                _, dropped = self._kept.popitem(last=False)
                held -= dropped.weight()

    def keep(self, key: Hashable, state: Context) -> None:
        """Keep ``state`` under ``key`` as the most recently used, dropping the least recently used beyond ``entries``.
        Not beyond ``items``: the states kept since room was last made stay, however heavy, so that a read's state and
        its year before's (two of every unit, at 1 M pupils in the summer more than ``ITEMS`` together) are both reused
        by the reads at that moment; the next new state makes room first."""
        with self._lock:
            self._kept[key] = state
            self._kept.move_to_end(key)
            while len(self._kept) > self.entries:
                self._kept.popitem(last=False)

    def kept(self) -> list[Hashable]:
        """The keys kept, least recently used first."""
        with self._lock:
            return list(self._kept)
