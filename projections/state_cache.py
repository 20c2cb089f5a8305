"""The states (``context.Context``) a process keeps for repeated reads at one moment (issue 20): the most recently used,
at most so many, holding at most so many items between them.

A state of every unit holds each metric's items for every school: at 1 M pupils 124,039 items in May, about 35 MB of
the process's memory, and the API's peak RSS reached 336 MB over twenty school reads at new moments while up to four
such states were kept (its target is under 300 MB). A state of England's or the LAs' sums holds a few thousand. So the
cache counts items (``Context.weight``) as well as states: it keeps several small states and one or two large ones. It
makes room before a new state is made (``make_room``), so that the new state is made beside those kept rather than
above a full cache; a state dropped while a request still reads it lives on until that request ends.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

from .context import Context


class StateCache:
    """States by key (a moment, the views' positions, what the state was made for), least recently used dropped first."""

    def __init__(self, entries: int, items: int):
        """``entries``: the states kept at most; ``items``: the items (``Context.weight``) they hold at most between them."""
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
            self._trim(self.entries - 1, spared=0)

    def keep(self, key: Hashable, state: Context) -> None:
        """Keep ``state`` under ``key`` as the most recently used, dropping the least recently used others beyond
        ``entries`` or ``items`` (never the state just kept: its items mostly come after it is made)."""
        with self._lock:
            self._kept[key] = state
            self._kept.move_to_end(key)
            self._trim(self.entries, spared=1)

    def kept(self) -> list[Hashable]:
        """The keys kept, least recently used first."""
        with self._lock:
            return list(self._kept)

    def _trim(self, entries: int, spared: int) -> None:
        """Drop the least recently used until at most ``entries`` are kept holding at most ``items``, sparing the
        ``spared`` most recently used."""
        held = sum(state.weight() for state in self._kept.values())
        while len(self._kept) > spared and (len(self._kept) > entries or held > self.items):
            _, dropped = self._kept.popitem(last=False)
            held -= dropped.weight()
