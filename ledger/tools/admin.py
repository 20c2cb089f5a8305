"""Operator actions: initialise a home, open the ledger, and register organisations and their keys (``org.*`` events,
signed as dfe:admin by ``ledger.own_events``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.config import Settings
from ledger.core import envelope
from ledger.core.errors import Category, LedgerError
from ledger.core.notes import vkey
from ledger.own_events import admin_event, utc_seconds
from ledger.service import ADMIN_ORG, Ledger, Receipt, timestamp
from ledger.storage.secrets import LedgerSecrets
from ledger.storage.store import Store, persistence_env
from ledger.transparency import tlog


class NotInitialised(RuntimeError):
    pass


def _store(settings: Settings, secrets: LedgerSecrets, create_tables: bool) -> Store:
    env = persistence_env(settings.database_url, str(settings.sqlite_path), secrets.cipher_key, create_tables, secrets.master_key)
    return Store.open(env)


def open_ledger(settings: Settings) -> Ledger:
    if not LedgerSecrets.exist(settings.secrets_dir):
        raise NotInitialised(f"no ledger at {settings.home}: run `pupil-ledger init` first")
    secrets = LedgerSecrets.load(settings.secrets_dir)
    store = _store(settings, secrets, create_tables=False)
    if not store.is_initialised():
        store.close()
        raise NotInitialised(f"the ledger database for {settings.home} has no schema: run `pupil-ledger init`")
    return Ledger(store, secrets, settings)


@dataclass(frozen=True)
class InitResult:
    ledger: Ledger
    admin_token: str
    vkey: str


def log_vkey(ledger: Ledger) -> str:
    return vkey(ledger.settings.origin, ledger.secrets.signing_public_raw)


def initialise(settings: Settings, clock: Callable[[], datetime] | None = None) -> InitResult:
    """Create the secrets, the schema, the dfe:admin organisation with the ledger's key, and an admin token."""
    if LedgerSecrets.exist(settings.secrets_dir):
        raise LedgerError.one("already_initialised", "$", f"{settings.home} is already initialised", Category.CONFLICT)
    settings.home.mkdir(parents=True, exist_ok=True)
    secrets = LedgerSecrets.create(settings.secrets_dir)
    store = _store(settings, secrets, create_tables=True)
    if store.is_initialised():
        store.close()
        raise LedgerError.one("already_initialised", "$", "the database already holds a ledger", Category.CONFLICT)
    tlog.create_tables(store)
    ledger = Ledger(store, secrets, settings, clock) if clock else Ledger(store, secrets, settings)
    now = ledger.clock()
    genesis = [
        admin_event(ledger, "org.registered", ADMIN_ORG, {"kind": "admin", "name": "Pupil Movement Ledger operator"}, now),
        admin_event(ledger, "org.key_added", ADMIN_ORG, key_data(secrets.signing_key.public_key()), now),
    ]
    trusted = {secrets.signing_key_id: (ADMIN_ORG, secrets.signing_public_raw)}
    ledger.submit_batch(genesis, trusted_keys=trusted)
    store.mark_initialised(timestamp(now))
    token = ledger.issue_token(ADMIN_ORG, "admin")
    return InitResult(ledger, token, log_vkey(ledger))


def sealer(ledger: Ledger) -> tlog.Sealer:
    """The ledger's sealer: checkpoints signed with the ledger key under the configured origin."""
    return tlog.Sealer(ledger.store, ledger.settings.origin, ledger.secrets.signing_key, ledger.settings.seal_batch, ledger.clock)


def key_data(public_key: Ed25519PublicKey) -> dict[str, Any]:
    raw = envelope.raw_public_key(public_key)
    return {"key_id": envelope.key_id(raw), "public_key": envelope.b64encode(raw), "algorithm": "ed25519"}


def add_org(ledger: Ledger, org: str, kind: str, name: str, la: str | None = None, **extra: Any) -> Receipt:
    data: dict[str, Any] = {"kind": kind, "name": name, **{k: v for k, v in extra.items() if v is not None}}
    if la:
        data["la"] = la
    return ledger.submit(admin_event(ledger, "org.registered", org, data))


def add_key(ledger: Ledger, org: str, public_key: Ed25519PublicKey) -> Receipt:
    return ledger.submit(admin_event(ledger, "org.key_added", org, key_data(public_key)))


def revoke_key(ledger: Ledger, org: str, key_id: str, reason: str = "retired", at: datetime | None = None) -> Receipt:
    data: dict[str, Any] = {"key_id": key_id, "reason": reason}
    if at is not None:
        data["revoked_at"] = utc_seconds(at)
    return ledger.submit(admin_event(ledger, "org.key_revoked", org, data))
