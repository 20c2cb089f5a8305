"""Read views for LAs, trusts, inspectors and the Regions Group (design.md 5): aggregate figures only.

Over 400 lines as one concept: the five view routes share one access check, one cache of folded contexts and one
wait for the projections, and their response models are these routes' schema only (kept beside them, as in every
routes module)."""

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from api.auth import Caller
from api.errors import Errors
from api.limits import Refusal
from api.params import LATEST_DATE, MAX_INTEGER, check_moment
from api.waiting import WAITING_READS_PER_TOKEN, ViewWaits
from ledger.core import policy
from ledger.core.catalogue import EARLIEST_DATE
from ledger.core.errors import Category, LedgerError
from ledger.core.identifiers import org_scheme
from ledger.service import Ledger, Principal
from projections.config import ViewSettings
from projections.context import Context
from projections.facts import Moment
from projections.metrics import METRICS_BY_NAME
from projections.placements import placements_register
from projections.queries import case_list, metrics_report, scope_for
from projections.read_model_ahead import REPORT, YEAR_BEFORE
from projections.read_model_queries import own_scope, read_model_context, state_level
from projections.read_model_series import MAX_POINTS, a_year_before, compare, prepared, series, step_dates, values_of
from projections.runner import Projector, Reader
from projections.state_cache import ITEMS, Allowance, StateCache
from projections.unregistered import unregistered_providers

WAIT_SECONDS = 2.0
CACHED_CONTEXTS = 4  # folded states kept for repeated reads at the same moment and log position (and, with the process's other
# caches of states, at most ``state_cache.ITEMS`` items between them: ``state_cache.Allowance``)
OWN_MOMENTS = 64  # the moments a state of one scope's items was made at, remembered (``folded``)
# the states of one scope's items made at a moment before the next read there makes and keeps the state of every unit
# (``folded``): at 1 M pupils a school's own state is about 50 ms and the state of every unit about 300
OWN_STATES_FIRST = 2


class Level(StrEnum):
    school = "school"
    trust = "trust"
    la = "la"
    national = "national"


SCHEMES = {Level.school: ("urn", "ukprn", "uprov"), Level.trust: ("trust",), Level.la: ("la",)}


class Lengths(BaseModel):
    count: int
    mean: float | None
    median: float | None


class SettingTier(BaseModel):
    setting_type: str
    tier: int
    open_placements: int


class Published(BaseModel):
    period: str
    source: str
    by_setting_type: dict[str, int]
    total: int


class Register(BaseModel):
    open_placements: int
    by_setting_type: dict[str, int]
    by_tier: dict[str, int]
    by_setting_type_and_tier: list[SettingTier]
    overdue_time_limited_placements: int = Field(description="open tier-2 placements past their planned end")
    open_placement_days_so_far: Lengths
    ended_placement_days: Lengths = Field(description="placements ended in the 365 days to as_of")
    published: Published | None = Field(description="last published DfE figure for the LA or England, where one exists")


class ProviderOut(BaseModel):
    provider: str
    la: str | None
    pupils: int
    weekly_hours: float
    full_time_pupils: int
    full_time_pupils_with_sen_or_looked_after: int
    commissioners: list[str]
    needs_registration: bool


class Providers(BaseModel):
    full_time_hours: float
    registration_pupils: int
    providers: list[ProviderOut]
    flagged: int
    published: Published | None = Field(
        description="last published DfE count of school-arranged placements in unregistered settings (LA or England)"
    )


class Figure(BaseModel):
    group: str
    kind: str = Field(description="count, rate (per 100), mean, median or breakdown (value is a map)")
    value: Any
    numerator: int | None = Field(description="a count: items, sessions or days (docs/metrics.md)")
    denominator: int | None = Field(description="a count: items, sessions or days; for a median, how many values")
    national_value: Any
    rank: int | None = Field(description="1 = highest value among peers at this level; ties share a rank")
    peers: int
    published: dict[str, Any] | None = Field(
        default=None,
        description="EHCP figures: the SEN2 figure DfE published for the LA or "
        "England for the same calendar year, or the latest before it (period, source, column, value)",
    )
    region_value: Any = Field(None, description="the same metric over the scope's DfE region (none for England and trusts)")
    quartile: int | None = Field(None, description="1 = the quarter of peers with the highest values ... 4 = the lowest, by rank")
    last_year_value: Any = Field(None, description="the figure at the same date a year before, as known at the same time")
    change_since_last_year: Any = Field(None, description="value - last_year_value (numbers only)")


class CaseOut(BaseModel):
    concern_event_id: str
    org: str
    opened_on: str
    category: str
    snapshot: dict[str, Any] = Field(description="the metric snapshot that prompted the concern (docs/metrics.md names)")
    status: str
    decisions: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    closed_on: str | None
    outcome: str | None


class Scope(BaseModel):
    level: Level
    org: str
    as_of: date
    known_at: datetime | None
    positions: dict[str, int] = Field(description="log sequence each view had reached when read")


class RegisterOut(Scope):
    placements: Register


class ProvidersOut(Scope):
    watch: Providers


class CasesOut(Scope):
    cases: list[CaseOut]


class AreaInspectionOut(BaseModel):
    la: str
    inspectorate: str
    outcome: str = Field(description="code list area_send_outcomes")
    published_on: date
    monitoring_inspection_due: date | None
    next_full_inspection_due: date | None
    follow_up_started: bool = Field(description="an inspection.started of the LA after the outcome")


class MetricsOut(Scope):
    region: str | None = Field(None, description="the DfE region compared with (region:E12...)")
    metrics: dict[str, Figure]
    placements: Register
    unregistered_providers: Providers
    cases: list[CaseOut]
    area_send_inspections: list[AreaInspectionOut] = Field(
        default=[],
        description="the latest area SEND inspection outcome of the LA "
        "(of every LA for England) and its follow-up due dates (docs/metrics.md)",
    )


class Step(StrEnum):
    month = "month"
    term = "term"


class SeriesPoint(BaseModel):
    as_of: date
    metrics: dict[str, Figure]


class SeriesOut(BaseModel):
    level: Level
    org: str
    from_: date = Field(alias="from")
    to: date
    step: Step
    known_at: datetime | None
    region: str | None = Field(description="the DfE region compared with (region:E12...)")
    positions: dict[str, int] = Field(description="log sequence each view had reached when read")
    points: list[SeriesPoint]


AsOf = Annotated[date | None, Query(description="effective date (default today): events that occurred after it are ignored")]
KnownAt = Annotated[datetime | None, Query(description="ledger time (RFC 3339 with zone): events received after it are ignored")]
MinSeq = Annotated[int | None, Query(ge=1, le=MAX_INTEGER, description="a receipt's sequence: wait (briefly) until the views include it")]
LevelQ = Annotated[Level, Query(description="school, trust, la or national")]
OrgQ = Annotated[str | None, Query(description="urn:/ukprn:/uprov: for a school or setting, trust:TR..., la:NNN; omit for national")]


def views_router(ledger: Ledger, settings: ViewSettings | None = None, allowance: Allowance | None = None) -> APIRouter:
    """The views' routes. ``allowance``: the items the states it keeps may hold, shared with the process's other caches
    of states (``create_app``: the web pages'); by default an allowance of its own."""
    RESPONSES: dict[int | str, dict[str, Any]] = {  # noqa: N806 - a constant of this router
        401: {"model": Errors},
        403: {"model": Errors},
        422: {"model": Errors},
        429: {"model": Errors, "description": f"more than {WAITING_READS_PER_TOKEN} reads of this token are waiting for min_sequence"},
        503: {"model": Errors, "description": "the views have not reached min_sequence yet; retry after Retry-After seconds"},
    }
    view_settings = settings or ViewSettings.from_env()
    projector = Projector(ledger.store)
    reader = Reader(ledger.store)
    waits = ViewWaits(lambda: min(projector.positions().get(v.name, 0) for v in projector.views))
    router = APIRouter(prefix="/views", tags=["views"])

    def authorise(caller: Principal, level: Level, org: str | None) -> str:
        if level is not Level.national:
            if not org:
                raise LedgerError.one("org_required", "query:org", f"give the {level.value}'s organisation id")
            if org_scheme(org) not in SCHEMES[level]:
                raise LedgerError.one(
                    "org_level", "query:org", f"a {level.value} is identified by {' or '.join(SCHEMES[level])} ids, not {org!r}"
                )
        scope = scope_for(level.value, org)
        facts = None
        if level is not Level.national:
            state = ledger.org_state(scope)
            facts = policy.OrgFacts(state.la, state.trust)
        if not policy.aggregate_scope_allowed(caller, level.value, scope, facts):
            raise LedgerError.one(
                "forbidden_scope",
                "query:org",
                f"{caller.org} ({caller.role}) may not read the figures of {scope} (docs/access.md: aggregates)",
                Category.FORBIDDEN,
            )
        return scope

    async def moment(caller: Principal, as_of: date | None, known_at: datetime | None, min_sequence: int | None) -> Moment | None:
        """The moment asked for, or None when the views did not reach ``min_sequence`` in time."""
        check_moment(as_of, known_at)
        if min_sequence is not None and not await waits.reached(min_sequence, WAIT_SECONDS, f"{caller.org}/{caller.token_id}"):
            return None
        return Moment(as_of or ledger.clock().date(), known_at)

    states = StateCache(CACHED_CONTEXTS, allowance or Allowance(ITEMS))
    own_asked: dict[tuple[Any, ...], int] = {}  # how many states of one scope's items were made at a moment (``folded``)
    lock = threading.Lock()

    def folded(
        m: Moment, level: str | None = None, ahead: str | None = None, only: tuple[str, str] | None = None
    ) -> tuple[Context, dict[str, int]]:
        """The folded state at ``m``, reused while the views have not moved (positions only grow, so a
        context cached under some positions holds at least the events they name). ``level``: a state made for that
        level's figures (``state_level``: England's sums, or the LAs'; cheaper at national scale), else of every unit.
        ``ahead``: what a new state is read for, whose statements it asks ahead (``read_model_ahead``). ``only``: a state of
        that school's, trust's or LA's items alone, read for its own figures only (``read_model_queries.own_scope``): made
        for one read and not kept, as it serves one scope (kept, a sweep of schools at one date filled the cache with them
        and cleared the states of every unit that the next school's read would have reused). The state of every unit (or
        of the LAs) is taken instead where it is kept already, and made and kept once ``OWN_STATES_FIRST`` states of one
        scope's items were made at the same moment: a sweep of schools at one date reuses it from its fourth read on
        (about 300 ms once at 1 M pupils against about 50 ms a school), while a read or two at a moment, as a school's and
        its trust's, make their own."""
        positions = projector.positions()
        key = (m.as_of, m.known_at, tuple(sorted(positions.items())), level)
        with lock:
            found = states.get(key)
            own = only is not None and found is None and own_asked.get(key, 0) < OWN_STATES_FIRST
            if own:
                if key not in own_asked and len(own_asked) >= OWN_MOMENTS:
                    own_asked.clear()
                own_asked[key] = own_asked.get(key, 0) + 1
        if own:
            return read_model_context(reader, m, view_settings, level, ahead, only), positions
        if found is None:
            found = states.made(key, lambda: read_model_context(reader, m, view_settings, level, ahead))
        return found, positions

    def scope_out(level: Level, scope: str, m: Moment, positions: dict[str, int]) -> dict[str, Any]:
        return {"level": level, "org": scope, "as_of": m.as_of, "known_at": m.known_at, "positions": positions}

    async def answer(
        caller: Principal,
        level: Level,
        org: str | None,
        as_of: date | None,
        known_at: datetime | None,
        min_sequence: int | None,
        body: Callable[[str, Moment], dict[str, Any]],
    ) -> Any:
        """Authorise the scope, wait for ``min_sequence``, then build the view's body: all off the event loop
        (authorising reads the scope organisation's state from the store)."""
        scope = await run_in_threadpool(authorise, caller, level, org)
        m = await moment(caller, as_of, known_at, min_sequence)
        if m is None:
            raise Refusal(
                503, "view_behind", "query:min_sequence", f"the views have not yet reached sequence {min_sequence or 0}; retry shortly", 1
            )
        return await run_in_threadpool(body, scope, m)

    def with_state(level: Level, key: str, build: Callable[[Context, str], Any]) -> Callable[[str, Moment], dict[str, Any]]:
        def body(scope: str, m: Moment) -> dict[str, Any]:
            ctx, positions = folded(m)
            return {**scope_out(level, scope, m, positions), key: build(ctx, scope)}

        return body

    @router.get(
        "/placements",
        operation_id="placementsRegister",
        response_model=RegisterOut,
        responses=RESPONSES,
        summary="Open AP placements by setting type and tier, overdue time-limited placements, placement lengths",
    )
    async def placements(
        caller: Caller,
        level: LevelQ = Level.national,
        org: OrgQ = None,
        as_of: AsOf = None,
        known_at: KnownAt = None,
        min_sequence: MinSeq = None,
    ) -> Any:
        body = with_state(level, "placements", lambda ctx, scope: placements_register(ctx, level.value, scope))
        return await answer(caller, level, org, as_of, known_at, min_sequence, body)

    @router.get(
        "/unregistered-providers",
        operation_id="unregisteredProviders",
        response_model=ProvidersOut,
        responses=RESPONSES,
        summary="Pupils and weekly hours per unregistered provider; providers that appear to need registration",
    )
    async def providers(
        caller: Caller,
        level: LevelQ = Level.national,
        org: OrgQ = None,
        as_of: AsOf = None,
        known_at: KnownAt = None,
        min_sequence: MinSeq = None,
    ) -> Any:
        body = with_state(level, "watch", lambda ctx, scope: unregistered_providers(ctx, level.value, scope))
        return await answer(caller, level, org, as_of, known_at, min_sequence, body)

    @router.get(
        "/cases",
        operation_id="accountabilityCases",
        response_model=CasesOut,
        responses=RESPONSES,
        summary="Regions Group cases (concern, decisions, actions, closure) with the metric snapshot behind each",
    )
    async def list_cases(
        caller: Caller,
        level: LevelQ = Level.national,
        org: OrgQ = None,
        as_of: AsOf = None,
        known_at: KnownAt = None,
        min_sequence: MinSeq = None,
    ) -> Any:
        def body(scope: str, m: Moment) -> dict[str, Any]:
            return {**scope_out(level, scope, m, projector.positions()), "cases": case_list(reader, m, level.value, scope)}

        return await answer(caller, level, org, as_of, known_at, min_sequence, body)

    @router.get(
        "/metrics",
        operation_id="accountabilityMetrics",
        response_model=MetricsOut,
        responses=RESPONSES,
        summary="Every metric (docs/metrics.md) for a school, trust, LA or England, with national value and rank among peers",
    )
    async def metrics(
        caller: Caller,
        level: LevelQ = Level.national,
        org: OrgQ = None,
        as_of: AsOf = None,
        known_at: KnownAt = None,
        min_sequence: MinSeq = None,
    ) -> Any:
        def body(scope: str, m: Moment) -> dict[str, Any]:
            # the state a year before (for change_since_last_year) is prepared in a thread while this one is reported:
            # both are SQL-bound, so the database answers them side by side. Only the scope's own values are read of it:
            # a school's, a trust's or an LA's, from its items alone (no rank)
            made_for = state_level(level.value)
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="year-before") as pool:
                year_before = Moment(a_year_before(m.as_of), m.known_at)
                only = own_scope(level.value, scope)
                before = pool.submit(lambda: prepared(folded(year_before, made_for, YEAR_BEFORE, only)[0]))
                ctx, positions = folded(m, made_for, REPORT)
                found = metrics_report(ctx, reader, level.value, scope)
                last_year = values_of(before.result(), level.value, scope, found["metrics"])
                region = compare(ctx, last_year, level.value, scope, found["metrics"])
            return {**scope_out(level, scope, m, positions), "region": region, **found}

        return await answer(caller, level, org, as_of, known_at, min_sequence, body)

    @router.get(
        "/metrics/series",
        operation_id="accountabilityMetricSeries",
        response_model=SeriesOut,
        responses=RESPONSES,
        summary="Every metric (or those named) as a monthly or termly series for a school, trust, LA or England, "
        "with national and regional comparators, rank, quartile band and change since the same date last year",
    )
    async def metric_series(
        caller: Caller,
        from_: Annotated[date, Query(alias="from", description="first date of the series")],
        level: LevelQ = Level.national,
        org: OrgQ = None,
        to: Annotated[date | None, Query(description="last date of the series (default today)")] = None,
        step: Annotated[Step, Query(description="month: each month's last day; term: each term's last day")] = Step.month,
        metric: Annotated[list[str] | None, Query(description="metric names (docs/metrics.md); default every metric")] = None,
        known_at: KnownAt = None,
        min_sequence: MinSeq = None,
    ) -> Any:
        if not EARLIEST_DATE <= from_ <= LATEST_DATE:
            raise LedgerError.one("from_range", "query:from", f"from must be between {EARLIEST_DATE} and {LATEST_DATE}")
        unknown = [n for n in metric or [] if n not in METRICS_BY_NAME]
        if unknown:
            raise LedgerError.one("unknown_metric", "query:metric", f"no metric named {', '.join(map(repr, unknown))} (docs/metrics.md)")

        def body(scope: str, m: Moment) -> dict[str, Any]:
            if from_ > m.as_of:
                raise LedgerError.one("series_range", "query:from", f"from ({from_}) is after to ({m.as_of})")
            if len(step_dates(from_, m.as_of, step.value, view_settings)) > MAX_POINTS:
                raise LedgerError.one(
                    "series_length", "query:from", f"a series has at most {MAX_POINTS} points: shorten it or step by term"
                )
            positions = projector.positions()
            found = series(reader, view_settings, level.value, scope, from_, m.as_of, step.value, metric, m.known_at)
            return {
                "level": level,
                "org": scope,
                "from": from_,
                "to": m.as_of,
                "step": step,
                "known_at": m.known_at,
                "positions": positions,
                **found,
            }

        return await answer(caller, level, org, to, known_at, min_sequence, body)

    return router
