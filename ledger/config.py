"""Settings from the environment (design.md 3.5), read in one place: ``Settings.from_env()``, once, when a
process starts (``api.bootstrap`` builds everything else from the value)."""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from pathlib import Path

FOLLOWER_IDLE_SECONDS = 0.2
FOLLOWER_PACE_SECONDS = 0.1


def follower_pause(done: int, batch_size: int, idle: float, pace: float) -> float:
    """How long a log follower (the sealer, a projection worker) waits before its next step, having just
    handled ``done`` events of at most ``batch_size``: ``idle`` when it found none; ``pace`` when it found less
    than a full batch, because the log is being written as it is followed and a step costs about the same
    dozen queries for 10 events as for 1,000 (so it takes what arrives meanwhile in one transaction instead of
    following every group commit with its own); no wait while a backlog remains."""
    if not done:
        return idle
    return pace if done < batch_size else 0.0


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str | None = None
    origin: str = "pupil-ledger.local/log"
    max_event_bytes: int = 64 * 1024
    max_batch_bytes: int = 16 * 1024 * 1024
    max_batch_items: int = 5000
    access_window_days: int = 30  # a school, LA, trust or setting still reads a pupil this long after the relationship ends
    inspection_window_days: int = 730  # inspectors look back this far in the inspected schools and areas
    rate_limit_per_second: float = 1000.0  # per bearer token (or client address without one)
    rate_limit_burst: int = 2000
    oidc_jwks: str = ""  # optional identity provider: a JWKS file or https URL (docs/access.md)
    oidc_issuer: str = ""
    oidc_audience: str = "pupil-ledger"
    max_merge_delay: float = 1.0  # seconds within which an accepted event is in a signed checkpoint
    seal_batch: int = 5000
    witnesses: str = ""  # comma-separated URL=VKEY pairs of tlog-witnesses asked to cosign checkpoints
    in_process_followers: bool = True  # the API process also seals and projects (off when they run as their own processes)
    trusted_proxies: str = ""  # addresses or networks whose X-Forwarded-For names the client (comma-separated); none by default
    web_refresh_seconds: float = 300.0  # how long the pages keep a checkpoint's public reports before moving to a newer one
    dashboard_refresh_seconds: float = 10.0  # how often the dashboards move to newer events, prepared in the background (0: every request)
    disclosure_threshold: int | None = None  # the public reports' suppression threshold; None: projections.disclosure's default

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            home=Path(env.get("PUPIL_LEDGER_HOME", "./var")).resolve(),
            database_url=env.get("PUPIL_LEDGER_DATABASE_URL") or None,
            origin=env.get("PUPIL_LEDGER_ORIGIN", cls.origin),
            max_event_bytes=int(env.get("PUPIL_LEDGER_MAX_EVENT_BYTES", cls.max_event_bytes)),
            max_batch_bytes=int(env.get("PUPIL_LEDGER_MAX_BATCH_BYTES", cls.max_batch_bytes)),
            max_batch_items=int(env.get("PUPIL_LEDGER_MAX_BATCH_ITEMS", cls.max_batch_items)),
            access_window_days=int(env.get("PUPIL_LEDGER_ACCESS_WINDOW_DAYS", cls.access_window_days)),
            inspection_window_days=int(env.get("PUPIL_LEDGER_INSPECTION_WINDOW_DAYS", cls.inspection_window_days)),
            rate_limit_per_second=float(env.get("PUPIL_LEDGER_RATE_LIMIT_PER_SECOND", cls.rate_limit_per_second)),
            rate_limit_burst=int(env.get("PUPIL_LEDGER_RATE_LIMIT_BURST", cls.rate_limit_burst)),
            oidc_jwks=env.get("PUPIL_LEDGER_OIDC_JWKS", ""),
            oidc_issuer=env.get("PUPIL_LEDGER_OIDC_ISSUER", ""),
            oidc_audience=env.get("PUPIL_LEDGER_OIDC_AUDIENCE", cls.oidc_audience),
            max_merge_delay=float(env.get("PUPIL_LEDGER_MAX_MERGE_DELAY", cls.max_merge_delay)),
            seal_batch=int(env.get("PUPIL_LEDGER_SEAL_BATCH", cls.seal_batch)),
            witnesses=env.get("PUPIL_LEDGER_WITNESSES", cls.witnesses),
            in_process_followers=env.get("PUPIL_LEDGER_IN_PROCESS_FOLLOWERS", "1").lower() not in ("0", "false", "no", "off"),
            trusted_proxies=env.get("PUPIL_LEDGER_TRUSTED_PROXIES", cls.trusted_proxies),
            web_refresh_seconds=float(env.get("PUPIL_LEDGER_WEB_REFRESH_SECONDS", cls.web_refresh_seconds)),
            dashboard_refresh_seconds=float(env.get("PUPIL_LEDGER_DASHBOARD_REFRESH_SECONDS", cls.dashboard_refresh_seconds)),
            disclosure_threshold=int(env["PUPIL_LEDGER_DISCLOSURE_THRESHOLD"]) if "PUPIL_LEDGER_DISCLOSURE_THRESHOLD" in env else None,
        )

    @property
    def follower_idle(self) -> float:
        """Seconds a caught-up log follower sleeps before looking again: at most half the maximum merge delay,
        so an event committed just after a look is still sealed in time."""
        return min(FOLLOWER_IDLE_SECONDS, self.max_merge_delay / 2)

    @property
    def follower_pace(self) -> float:
        """Seconds a log follower waits after a step that found less than a full batch (``follower_pause``),
        a quarter of the maximum merge delay at most, so the sealer keeps the receipts' promise."""
        return min(FOLLOWER_PACE_SECONDS, self.max_merge_delay / 4)

    @property
    def sqlite_path(self) -> Path:
        return self.home / "ledger.sqlite3"

    @property
    def secrets_dir(self) -> Path:
        return self.home / "secrets"


# Every long-lived process (serve, seal, project run, bench) allocates hundreds of thousands of short-lived
# objects per batch and makes almost no reference cycles; the default collector thresholds (700, 10, 10) then
# spend about a tenth of ingest traversing live objects, and a full pass under submitEvent load took ~100 ms,
# stalling every request in flight. Measured: submitBatch on SQLite 3,200 -> 3,500 events/s.
GC_THRESHOLDS = (50_000, 20, 50)


def tune_garbage_collector() -> None:
    """Call once, after the imports: what they allocated lives for the whole process and is never traversed again."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
