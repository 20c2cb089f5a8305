"""The ``eventsourcing`` Application the store wraps, and its configuration from a database URL."""

from __future__ import annotations

import base64
import os
import uuid
from typing import ClassVar
from urllib.parse import unquote, urlparse

from eventsourcing.application import Application
from eventsourcing.persistence import Mapper

from ledger.storage import database
from ledger.storage.cipher import SubjectMapper
from ledger.storage.keys import PupilKeys


class LedgerApp(Application[uuid.UUID]):
    name = "Ledger"
    env: ClassVar[dict[str, str]] = {
        "AGGREGATE_CACHE_MAXSIZE": "20000",
        "CIPHER_TOPIC": "eventsourcing.cryptography:AESCipher",
        "COMPRESSOR_TOPIC": "ledger.storage.cipher:InflatingCompressor",
    }

    def construct_mapper(self) -> Mapper[uuid.UUID]:
        mapper = self.factory.mapper(transcoder=self.construct_transcoder(), mapper_class=SubjectMapper)
        assert isinstance(mapper, SubjectMapper)
        mapper.keys = PupilKeys(base64.b64decode(self.env.get("PUPIL_MASTER_KEY", "")))
        return mapper

    @property
    def pupil_keys(self) -> PupilKeys:
        return self.subject_mapper.keys

    @property
    def subject_mapper(self) -> SubjectMapper:
        assert isinstance(self.mapper, SubjectMapper)
        return self.mapper


def persistence_env(
    database_url: str | None, sqlite_path: str, cipher_key: str, create_tables: bool, master_key: bytes = b""
) -> dict[str, str]:
    env = {
        "CIPHER_KEY": cipher_key,
        "CREATE_TABLE": "y" if create_tables else "n",
        "PUPIL_MASTER_KEY": base64.b64encode(master_key).decode("ascii"),
    }
    if database_url:
        url = urlparse(database_url)
        if url.scheme not in ("postgresql", "postgres"):
            raise ValueError(f"PUPIL_LEDGER_DATABASE_URL must be postgresql://..., not {url.scheme}://")
        env.update(
            {
                "PERSISTENCE_MODULE": "eventsourcing.postgres",
                "APPLICATION_RECORDER_TOPIC": "ledger.storage.recorders:PostgresLedgerRecorder",
                "POSTGRES_DBNAME": unquote(url.path.lstrip("/")) or "postgres",
                "POSTGRES_HOST": url.hostname or "127.0.0.1",
                "POSTGRES_PORT": str(url.port or 5432),
                "POSTGRES_USER": unquote(url.username or os.environ.get("USER", "postgres")),
                "POSTGRES_PASSWORD": unquote(url.password or ""),
                "POSTGRES_LOCK_TIMEOUT": "5",
                "POSTGRES_CONNECT_TIMEOUT": str(database.CHECKOUT_SECONDS),  # the pool's checkout wait (ledger/storage/database.py)
                "POSTGRES_POOL_SIZE": "4",
                "POSTGRES_MAX_OVERFLOW": "8",
            }
        )
    else:
        env.update(
            {
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "APPLICATION_RECORDER_TOPIC": "ledger.storage.recorders:SQLiteLedgerRecorder",
                "SQLITE_DBNAME": sqlite_path,
                "SQLITE_LOCK_TIMEOUT": "30",
            }
        )
    return env
