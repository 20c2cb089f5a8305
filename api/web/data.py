"""Every figure the web pages and the published reports show, read here and only here.

It calls what the JSON API's routes call (``projections.queries.metrics_report`` for accountabilityMetrics,
``placements_register``, ``unregistered_providers``, ``case_list``, ``projections.metrics.figures`` and the
folded ``Context``), so a page and the API agree for the same moment; pointing the pages at another read model
(issue 20's national-scale one) means changing this module alone. Trends are the metrics asked at monthly
points for now.

The signed-in dashboards show the figures **as known at a pinned ledger time** (``Pin``): every event the views
had reached when it was taken, and nothing received later, so the API's ``known_at`` gives the same figures. When the
views have moved on and ``Settings.dashboard_refresh_seconds`` have passed, a background thread takes a newer pin,
prepares again at it what the dashboards were asked for recently, and only then moves the pages to it: under a
steady flow of events no request waits for the database's aggregates, and each page says which time it shows.

Public reports are computed at a **checkpoint** of the transparency log: as known at the ledger time of the
newest event in the tree of that size (``Checkpoint.known_at``). That cut holds exactly the tree's events when
no later event was received earlier (``clean``), which is what ``projections.replay`` rebuilds from the log itself to verify
a published report.
"""

from __future__ import annotations

import base64
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

from ledger.core import notes, policy
from ledger.core.catalogue import parse_timestamp
from ledger.service import Ledger, Principal
from ledger.transparency.tlog import Log
from projections.config import ViewSettings
from projections.context import ENGLAND, Context, context
from projections.facts import Moment
from projections.metrics import METRICS, Figure, empty_figure, figures, national_figure, report, require_level
from projections.placements import placements_register
from projections.queries import case_list, metrics_report, scope_for
from projections.read_model_ahead import REPORT
from projections.read_model_queries import read_model_context
from projections.read_model_series import in_order, prepared
from projections.runner import VIEWS, Projector, Reader
from projections.state_cache import ITEMS, Allowance, StateCache
from projections.unregistered import unregistered_providers

from .background import OneAtATime

EPOCH = "1970-01-01T00:00:00.000000Z"
CACHED_CONTEXTS = 6  # (and, with the process's other caches of states, at most ``state_cache.ITEMS`` items between them)
PINNED_CONTEXTS = 4  # states kept for each pinned ledger time: the one shown, and the next one while it is prepared (and
# within the process's allowance of items, as the others)
WARMED = 16  # how many of the dashboards' recent requests are prepared again at each newer pin
WARMED_FOR_SECONDS = 600.0  # ... if asked within the last ten minutes (an idle site prepares nothing)
KEPT_SERIES = 32
WARM_WAIT_SECONDS = 600.0  # at a server's start, how long the warm-up waits for the followers to catch up
GRACE_SECONDS = 30.0  # a replaced pin's states and series are kept this long, for the requests that took it just before
ONE_MICROSECOND = timedelta(microseconds=1)
NAME_SECONDS = 60.0
LEVEL_KINDS = {"la": ("la",), "trust": ("trust",), "school": ("school", "ap_setting")}
SCHEMES = {"school": ("urn", "ukprn", "uprov"), "trust": ("trust",), "la": ("la",)}


class NotAllowed(Exception):
    """The principal may not read the figures of this scope (docs/access.md: aggregates)."""


class BadScope(ValueError):
    """The organisation id does not name an organisation of the level."""


@dataclass(frozen=True)
class Checkpoint:
    """A signed checkpoint of the log and the ledger time its tree reaches."""

    origin: str
    tree_size: int
    root_hash: str  # base64, as the note carries it
    last_sequence: int
    known_at: str  # RFC 3339: received_at of the newest event in the tree
    signed_at: str
    note: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def moment_known_at(self) -> datetime:
        found = parse_timestamp(self.known_at)
        assert found is not None
        return found


@dataclass(frozen=True)
class Pin:
    """The ledger time the dashboards show: ``known_at`` holds every event up to ``sequence`` (the views' position
    when it was taken) and nothing received later; if a later event was received earlier (commits out of order),
    ``known_at`` is moved to just before that event, so the cut still holds nothing the views had not reached."""

    known_at: datetime
    sequence: int
    taken: float  # time.monotonic() when the views' position was last looked at


class WebData:
    """The read side as the pages need it, for one ledger."""

    def __init__(self, ledger: Ledger, settings: ViewSettings | None = None, allowance: Allowance | None = None):
        """``allowance``: the items its states may hold, at every ledger time, shared with the process's other caches of
        states (``create_app``: the API's views'); by default an allowance of its own."""
        self.ledger = ledger
        self.settings = settings or ViewSettings.from_env()
        self.reader = Reader(ledger.store)
        self.projector = Projector(ledger.store)
        self.log = Log(ledger.store)
        self.allowance = allowance or Allowance(ITEMS)
        self._contexts = StateCache(CACHED_CONTEXTS, self.allowance)
        self._lock = threading.Lock()
        self._newest: tuple[int, str] = (0, EPOCH)  # (sequence, max received_at up to it), grown incrementally
        self._names: dict[str, tuple[float, str]] = {}
        self.dashboard_refresh = ledger.settings.dashboard_refresh_seconds
        self._pin: Pin | None = None
        self._retire_at = 0.0  # when the states of pins other than the shown one are dropped
        self._preparing: datetime | None = None  # the pin a refresh is preparing (its states are never dropped meanwhile)
        self._generations: dict[datetime, StateCache] = {}  # pinned ledger time -> its states by as_of
        self._asked: OrderedDict[tuple[Any, ...], tuple[float, date, Callable[[datetime], object]]] = OrderedDict()
        self._series: OrderedDict[tuple[Any, ...], list[tuple[date, dict[str, dict[str, Any]]]]] = OrderedDict()
        self.dashboard_refresher = OneAtATime("dashboards-refresh")
        self.report_refresher = OneAtATime("public-reports-refresh")
        self._closing = threading.Event()
        self.warmers: list[Callable[[], object]] = []  # what ``warm`` prepares besides today's state (the public pages add theirs)

    def warm(self, catch_up_seconds: float = WARM_WAIT_SECONDS) -> bool:
        """Prepare in the background what the first visitors after a start would otherwise wait for: today's public
        reports and today's state at the dashboards' first pin (a server's start; False if a refresh is running).
        It first waits (up to ``catch_up_seconds``) for the views to reach what was stored when it began, so that
        it does not pin the pages to the moment before the followers caught up."""
        target = self.ledger.store.max_sequence()

        def job() -> None:
            deadline = time.monotonic() + catch_up_seconds
            while min(self.positions().get(v.name, 0) for v in VIEWS) < target and time.monotonic() < deadline:
                if self._closing.wait(0.2):
                    return
            for warmer in self.warmers:
                warmer()
            prepared(self.context(self.pinned(self.today())))

        return self.report_refresher.start(job)

    def close(self) -> None:
        """Stop preparing newer figures in the background (before the ledger's database goes)."""
        self._closing.set()
        self.dashboard_refresher.close()
        self.report_refresher.close()

    # -- moments and the log -----------------------------------------------------------------------------

    def today(self) -> date:
        return self.ledger.clock().date()

    def positions(self) -> dict[str, int]:
        return self.projector.positions()

    def checkpoint(self) -> Checkpoint | None:
        """The latest checkpoint the views have reached whose cut is clean (None before the first one)."""
        positions = self.positions()
        reached = min(positions.get(v.name, 0) for v in VIEWS)
        last_leaf = self.log.last_leaf_through(reached)
        limit = last_leaf + 1 if last_leaf is not None else 0
        for size in self.log.checkpoint_sizes_up_to(limit, 20):
            found = self.checkpoint_at(size)
            if found is not None and self.is_clean(found):
                return found
        return None

    def checkpoint_at(self, tree_size: int) -> Checkpoint | None:
        signed = self.log.signed_checkpoint(tree_size)
        if signed is None:
            return None
        root, note, signed_at = signed
        last = 0
        if tree_size:
            leaf = self.log.leaf(tree_size - 1)
            assert leaf is not None
            last = leaf.sequence
        return Checkpoint(
            self.ledger.settings.origin, tree_size, base64.b64encode(root).decode(), last, self._known_at(last), signed_at, note
        )

    def _known_at(self, sequence: int) -> str:
        """The latest received_at among the events up to ``sequence`` (kept and extended, not rescanned)."""
        if sequence == 0:
            return EPOCH
        with self._lock:
            upto, newest = self._newest
        if sequence < upto:
            upto, newest = 0, EPOCH
        found = self.ledger.store.newest_received_at(upto, sequence)
        newest = max(newest, found) if found else newest
        with self._lock:
            if sequence >= self._newest[0]:
                self._newest = (sequence, newest)
        return newest

    def is_clean(self, cp: Checkpoint) -> bool:
        """No event outside the tree was received at or before its newest event (so 'known at' is the tree)."""
        return self.ledger.store.count_received_after_sequence(cp.last_sequence, cp.known_at) == 0

    def verify_checkpoint(self, cp: Checkpoint) -> list[str]:
        """What is wrong with a stated checkpoint against this ledger's log (empty: it is this log's)."""
        problems = []
        try:
            checked, _ = notes.open_checkpoint(cp.note, notes.vkey(self.ledger.settings.origin, self.ledger.secrets.signing_public_raw))
        except ValueError as exc:  # notes.NoteError included
            return [f"the checkpoint note does not verify with this ledger's key: {exc}"]

        if checked.size != cp.tree_size or base64.b64encode(checked.root).decode() != cp.root_hash or checked.origin != cp.origin:
            problems.append("the stated tree size, root or origin differ from the signed note")
        if self.log.tree_size() < cp.tree_size:
            problems.append(f"this log has only {self.log.tree_size()} entries, fewer than {cp.tree_size}")
        elif cp.tree_size and self.log.tree.root(cp.tree_size) != checked.root:
            problems.append("this log's tree of that size has another root")
        return problems

    # -- the dashboards' pinned ledger time -----------------------------------------------------------------

    def pin(self) -> Pin:
        """The ledger time the dashboards show now. The first is taken at once; later ones in the background
        (``refresh_pin``) once ``dashboard_refresh`` seconds have passed; with 0, every request takes a new one."""
        with self._lock:
            shown = self._pin
            if len(self._generations) > 1 and time.monotonic() >= self._retire_at:
                self._keep_only(shown)
        if shown is None or self.dashboard_refresh <= 0:
            taken = self._take_pin(shown)
            with self._lock:
                self._adopt(taken)
                assert self._pin is not None
                return self._pin
        if time.monotonic() - shown.taken >= self.dashboard_refresh:
            self.dashboard_refresher.start(lambda: self.refresh_pin(shown))
        return shown

    def pinned(self, as_of: date) -> Moment:
        """``as_of`` as known at the dashboards' pinned ledger time."""
        return Moment(as_of, self.pin().known_at)

    def _take_pin(self, shown: Pin | None) -> Pin:
        positions = self.positions()
        reached = min(positions.get(v.name, 0) for v in VIEWS)
        now = time.monotonic()
        if shown is not None and reached == shown.sequence:
            return replace(shown, taken=now)
        newest = parse_timestamp(self._known_at(reached))
        later = self.ledger.store.earliest_received_after(reached)
        earliest_later = parse_timestamp(later) if later else None
        assert newest is not None
        if earliest_later is not None and earliest_later <= newest:
            newest = earliest_later - ONE_MICROSECOND
        return Pin(newest, reached, now)

    def _adopt(self, pin: Pin) -> None:
        """Show ``pin`` (under the lock). The pin it replaces keeps its states and series for ``GRACE_SECONDS`` (a
        request that took it just before still finds them); every older time's are dropped."""
        if self._pin is not None and pin.known_at < self._pin.known_at:
            self._pin = replace(self._pin, taken=max(self._pin.taken, pin.taken))  # looked at: not again before the interval
            return  # never back in time (a slower request's pin, or a cut moved before an event received out of order)
        replaced, self._pin = self._pin, pin
        self._generation(pin.known_at)
        if replaced is not None and replaced.known_at != pin.known_at:
            self._keep_only(pin, replaced)
            self._retire_at = time.monotonic() + GRACE_SECONDS

    def _generation(self, known_at: datetime) -> StateCache:
        """The states kept at the pinned ledger time ``known_at`` (under the lock)."""
        found = self._generations.get(known_at)
        if found is None:
            found = self._generations[known_at] = StateCache(PINNED_CONTEXTS, self.allowance)
        return found

    def _keep_only(self, *pins: Pin | None) -> None:
        """Drop the states and series of every ledger time but those of ``pins`` (under the lock)."""
        kept = {p.known_at for p in pins if p is not None} | ({self._preparing} if self._preparing else set())
        self._generations = {k: v for k, v in self._generations.items() if k in kept}
        for key in [k for k in self._series if k[-1] not in kept]:
            del self._series[key]

    def refresh_pin(self, shown: Pin) -> None:
        """Take a newer pin; if the views have moved, prepare at it what the dashboards were asked for recently
        (most recent first), then show it. On failure the shown pin stays and is tried again after the interval."""
        try:
            taken = self._take_pin(shown)
            if taken.known_at != shown.known_at:
                now = time.monotonic()
                with self._lock:
                    generation = self._generation(taken.known_at)
                    self._preparing = taken.known_at
                    recent = [(day, warm) for asked, day, warm in reversed(self._asked.values()) if now - asked <= WARMED_FOR_SECONDS]
                days: set[date] = set()
                for day, warm in recent:
                    # at most as many dates as a pin keeps states for, and none more once its states hold the process's
                    # allowance of items: more would evict each other, the most recently asked first (at 1 M pupils in
                    # the summer a state of every unit holds two thirds of the allowance)
                    if day not in days:
                        if len(days) >= PINNED_CONTEXTS or generation.items() >= self.allowance.items:
                            continue
                        days.add(day)
                    warm(taken.known_at)
        except Exception:
            with self._lock:
                self._preparing = None
                if self._pin is shown:
                    self._pin = replace(shown, taken=time.monotonic())
                self._keep_only(self._pin)
            raise
        with self._lock:
            self._preparing = None
            self._adopt(taken)

    def _remember(self, moment: Moment, key: tuple[Any, ...], warm: Callable[[datetime], object]) -> None:
        """Note a dashboard's request at the pinned time, to prepare it again at the next one."""
        with self._lock:
            if self._pin is None or moment.known_at != self._pin.known_at:
                return
            self._asked[key] = (time.monotonic(), moment.as_of, warm)
            self._asked.move_to_end(key)
            while len(self._asked) > WARMED:
                self._asked.popitem(last=False)

    # -- the folded state (as the API's views fold it) -----------------------------------------------------

    def context(self, moment: Moment, db: Any = None) -> Context:
        """The folded state at ``moment``; reused while the views have not moved (or, at a fixed ledger time,
        always: nothing received later changes it). A new one asks ahead, on PostgreSQL, the statements the previous
        one of its kind asked (``read_model_ahead``, as the API's ``accountabilityMetrics`` states: most pages report
        its figures), so the database answers while this thread makes items of the rows it has."""
        if db is not None:
            return context(db, moment, self.settings)
        with self._lock:
            generation = self._generations.get(moment.known_at) if moment.known_at else None

        def make() -> Context:
            return read_model_context(self.reader, moment, self.settings, ahead=REPORT)

        if generation is not None:  # a pinned time: kept with its generation, dropped with it
            return generation.made(moment.as_of, make)
        key: tuple[Any, ...] = (moment.as_of, moment.known_at, None if moment.known_at else tuple(sorted(self.positions().items())))
        return self._contexts.made(key, make)

    def metrics(self, level: str, scope: str, moment: Moment) -> dict[str, Any]:
        """The body of accountabilityMetrics: every metric with national value and rank, register, provider watch, cases
        (kept with the folded state it was computed from, so a page read again costs nothing)."""
        self._remember(moment, ("metrics", level, scope, moment.as_of), lambda k: self.metrics(level, scope, Moment(moment.as_of, k)))
        ctx = self.context(moment)
        return ctx.derived(f"web.metrics.{level}.{scope}", lambda c: metrics_report(c, self.reader, level, scope))

    def placements(self, level: str, scope: str, moment: Moment) -> dict[str, Any]:
        self._remember(moment, ("placements", level, scope, moment.as_of), lambda k: self.placements(level, scope, Moment(moment.as_of, k)))
        return self.context(moment).derived(f"web.placements.{level}.{scope}", lambda c: placements_register(c, level, scope))

    def providers(self, level: str, scope: str, moment: Moment) -> dict[str, Any]:
        self._remember(moment, ("providers", level, scope, moment.as_of), lambda k: self.providers(level, scope, Moment(moment.as_of, k)))
        return self.context(moment).derived(f"web.providers.{level}.{scope}", lambda c: unregistered_providers(c, level, scope))

    def pinned_level_figures(self, moment: Moment, level: str) -> tuple[Context, dict[str, tuple[dict[str, Figure], Figure]]]:
        """The state at ``moment`` and ``level_figures`` of it (remembered, to prepare again at a newer pin)."""
        self._remember(moment, ("level_figures", level, moment.as_of), lambda k: self.pinned_level_figures(Moment(moment.as_of, k), level))
        ctx = self.context(moment)
        return ctx, self.level_figures(ctx, level)

    def cases(self, level: str, scope: str, moment: Moment) -> list[dict[str, Any]]:
        return case_list(self.reader, moment, level, scope)

    def level_figures(self, ctx: Context, level: str) -> dict[str, tuple[dict[str, Figure], Figure]]:
        """For every metric: each peer's figure at ``level`` (every registered organisation of the level, 0 where
        it has no items, as accountabilityMetrics ranks them) and England's (kept with the folded state)."""
        return ctx.derived(f"web.level_figures.{level}", lambda c: self._level_figures(c, level))

    def _level_figures(self, ctx: Context, level: str) -> dict[str, tuple[dict[str, Figure], Figure]]:
        require_level(ctx, level)
        peers = ctx.directory.of_kind(*LEVEL_KINDS.get(level, ()))
        out = {}
        for metric in METRICS:
            contributions = ctx.contributions(metric)
            empty = empty_figure(metric)  # every peer is listed, 0 where it has no items (``report`` counts them)
            national = national_figure(ctx, metric)
            found = figures(metric, contributions, level, ctx.directory) if level != "national" else {}
            for peer in peers:
                found.setdefault(peer, empty)
            out[metric.name] = (found, national)
        return out

    def series(
        self, level: str, scope: str, names: Sequence[str], end: date, months: int = 12, known_at: datetime | None = None
    ) -> list[tuple[date, dict[str, dict[str, Any]]]]:
        """Each metric of ``names`` for the scope at the last day of each month up to ``end`` (and at ``end``),
        with the national value: accountabilityMetrics asked at those dates. At a fixed ``known_at`` the answer
        is kept (a dashboard's trend read again costs nothing); only the state at ``end`` is kept with the others,
        the months before are made, read and dropped (a dozen states would not fit beside them)."""
        key = (level, scope, tuple(names), end, months, known_at)
        if known_at is not None:
            self._remember(Moment(end, known_at), ("series", *key[:-1]), lambda k: self.series(level, scope, names, end, months, k))
            with self._lock:
                found = self._series.get(key)
            if found is not None:
                return found
        points = month_ends(end, months)
        out = []

        def state(day: date) -> Context:  # only the named metrics are asked of the database (a group is a few of them)
            moment = Moment(day, known_at)
            return prepared(self.context(moment) if day == end else read_model_context(self.reader, moment, self.settings), names)

        states = in_order(state, points)  # two dates at once
        for day, ctx in zip(points, states, strict=True):
            out.append((day, report(ctx, level, scope, only=names)))
        if known_at is not None:
            with self._lock:
                self._series[key] = out
                while len(self._series) > KEPT_SERIES:
                    self._series.popitem(last=False)
        return out

    # -- scopes, organisations, access ----------------------------------------------------------------------

    def authorise(self, principal: Principal, level: str, org: str | None) -> str:
        """The scope ``principal`` asks for, if the access policy lets it read its aggregates (as the API's views do)."""
        if level != "national":
            if not org:
                raise BadScope(f"give the {level}'s organisation id")
            if org.split(":", 1)[0] not in SCHEMES[level]:
                raise BadScope(f"a {level} is identified by {' or '.join(SCHEMES[level])} ids, not {org!r}")
        scope = scope_for(level, org)
        facts = None
        if level != "national":
            state = self.ledger.org_state(scope)
            facts = policy.OrgFacts(state.la, state.trust)
        if not policy.aggregate_scope_allowed(principal, level, scope, facts):
            raise NotAllowed(f"{principal.org} ({principal.role}) may not read the figures of {scope}")
        return scope

    def may_read(self, principal: Principal, level: str, scope: str, ctx: Context) -> bool:
        """The policy's answer for a scope, from the directory at the moment (no store read per organisation)."""
        facts = policy.OrgFacts(ctx.directory.la_of(scope), ctx.directory.trust_of(scope)) if level != "national" else None
        return policy.aggregate_scope_allowed(principal, level, scope, facts)

    @staticmethod
    def children_level(level: str) -> str:
        """The level below ``level``: England's LAs; an LA's or a trust's schools and settings."""
        return "la" if level == "national" else "school"

    def children(self, level: str, scope: str, ctx: Context) -> list[str]:
        """The units of the level below (``children_level``) in the scope: England's LAs, an LA's schools and
        settings, a trust's academies."""
        d = ctx.directory
        if level == "national":
            return d.of_kind("la")
        if level == "la":
            return [o for o in d.of_kind("school", "ap_setting") if d.la_of(o) == scope]
        if level == "trust":
            return [o for o in d.of_kind("school", "ap_setting") if d.trust_of(o) == scope]
        return []

    def name_of(self, org: str) -> str:
        """The organisation's registered name (kept for a minute: names rarely change)."""
        if org == ENGLAND:
            return "England"
        now = time.monotonic()
        found = self._names.get(org)
        if found is None or now - found[0] > NAME_SECONDS:
            state = self.ledger.org_state(org)
            found = (now, state.name or org)
            self._names[org] = found
        return found[1]

    def may_read_pupils(self, principal: Principal) -> bool:
        return principal.role not in ("regions", "researcher")


def month_ends(end: date, months: int) -> list[date]:
    """The last day of each of the ``months`` - 1 months before ``end``'s month, then ``end``."""
    points = []
    first = end.replace(day=1)
    for _ in range(months - 1):
        last = first - timedelta(days=1)
        points.append(last)
        first = last.replace(day=1)
    return [*reversed(points), end]
