"""The research releases' own tables, by name (``Store.releases``): each release's files (served by
``getResearchExport``), the per-project pseudonyms it holds, and its project and researcher.

The tables are made by the first release (``save``); until then every read answers as if they were empty.
What a pseudonym is, and which releases are recorded in the ledger, is ``ledger.research.releases``'s.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ledger.storage.sql import fetch_tuples

if TYPE_CHECKING:
    from ledger.storage.store import Store

CREATE_LOCK = 7261023  # PostgreSQL advisory lock: concurrent first releases create the tables once
COPY_SLICE = 1 << 22  # bytes of a file handed to the connection at a time


def _copy_files(cur: Any, release_id: str, files: Mapping[str, bytes]) -> None:
    """The files' rows by binary COPY, each file's content streamed a slice at a time. A parameter of an INSERT is
    copied twice on its way (by the driver, then by libpq): a release's 150 MB CSV cost 300 MB more memory that way."""
    with cur.copy("COPY research_release_files (release_id, name, content) FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0))  # signature, flags, header extension length
        for name, content in sorted(files.items()):
            copy.write(struct.pack("!h", 3))
            for text in (release_id, name):
                encoded = text.encode("utf-8")
                copy.write(struct.pack("!i", len(encoded)) + encoded)
            copy.write(struct.pack("!i", len(content)))
            view = memoryview(content)
            for start in range(0, len(view), COPY_SLICE):
                copy.write(view[start : start + COPY_SLICE])
        copy.write(struct.pack("!h", -1))  # the trailer


class ReleaseTables:
    """``research_releases`` (release -> project, researcher), ``research_release_files`` (release, name -> content)
    and ``research_release_members`` (release, pseudonym)."""

    def __init__(self, store: Store):
        self.store = store
        self._made = False  # seen to exist: tables are never dropped, so asked no more (absence is asked each time)

    def _ensure(self) -> None:
        if self._made:
            return
        store = self.store
        blob = "BYTEA" if store.is_postgres else "BLOB"
        with store.cursor(commit=True) as cur:
            if store.is_postgres:
                cur.execute(f"SELECT pg_advisory_xact_lock({CREATE_LOCK})")
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS research_release_files (release_id TEXT NOT NULL, name TEXT NOT NULL, content {blob} NOT NULL, "
                "PRIMARY KEY (release_id, name))"
            )
            cur.execute("CREATE TABLE IF NOT EXISTS research_release_members (release_id TEXT NOT NULL, pseudonym TEXT NOT NULL)")
            cur.execute("CREATE INDEX IF NOT EXISTS research_release_members_pseudonym ON research_release_members (pseudonym)")
            cur.execute(
                "CREATE TABLE IF NOT EXISTS research_releases (release_id TEXT PRIMARY KEY, project TEXT NOT NULL, researcher TEXT NOT NULL)"
            )
        self._made = True

    def _exist(self) -> bool:
        """Whether anything was ever released (the tables are made by the first release, perhaps by another process)."""
        if self._made:
            return True
        sql = (
            "SELECT to_regclass('research_releases') IS NOT NULL"
            if self.store.is_postgres
            else "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'research_releases'"
        )
        self._made = bool(self.store.query(sql)[0][0])
        return self._made

    def save(self, release_id: str, project: str, researcher: str, files: Mapping[str, bytes], pseudonyms: Iterable[str]) -> None:
        """Keep a release's files and members, and its project and researcher (in one transaction), before the release is
        recorded in the ledger: those of a release the ledger then refused are deleted again (``discard``), and only
        recorded releases are served."""
        self._ensure()
        store = self.store
        with store.cursor(commit=True) as cur:
            cur.execute(
                store.sql("INSERT INTO research_releases (release_id, project, researcher) VALUES (?, ?, ?)"),
                (release_id, project, researcher),
            )
            if store.is_postgres:
                _copy_files(cur, release_id, files)
                with cur.copy("COPY research_release_members (release_id, pseudonym) FROM STDIN") as copy:
                    for member in pseudonyms:
                        copy.write_row((release_id, member))
            else:
                cur.executemany(
                    "INSERT INTO research_release_files (release_id, name, content) VALUES (?, ?, ?)",
                    [(release_id, name, content) for name, content in sorted(files.items())],
                )
                cur.executemany(
                    "INSERT INTO research_release_members (release_id, pseudonym) VALUES (?, ?)", ((release_id, m) for m in pseudonyms)
                )

    def discard(self, release_id: str) -> None:
        """Delete everything kept of a release (its rows in the three tables), in one transaction."""
        with self.store.cursor(commit=True) as cur:
            for table in ("research_releases", "research_release_files", "research_release_members"):
                cur.execute(self.store.sql(f"DELETE FROM {table} WHERE release_id = ?"), (release_id,))

    def file(self, release_id: str, name: str) -> bytes | None:
        """The content of a release's file, or None."""
        if not self._exist():
            return None
        rows = self.store.query("SELECT content FROM research_release_files WHERE release_id = ? AND name = ?", (release_id, name))
        return bytes(rows[0][0]) if rows else None

    def projects(self) -> dict[str, str]:
        """The researcher of every project with a release kept, by project id."""
        if not self._exist():
            return {}
        return {str(p): str(r) for p, r in self.store.query("SELECT DISTINCT project, researcher FROM research_releases")}

    def holding(self, pseudonyms: Sequence[str]) -> set[str]:
        """The ids of the releases kept that hold any of ``pseudonyms`` (read by the members' pseudonym index)."""
        if not pseudonyms or not self._exist():
            return set()
        marks = ", ".join("?" * len(pseudonyms))
        with self.store.cursor() as cur:
            cur.execute(
                self.store.sql(f"SELECT DISTINCT release_id FROM research_release_members WHERE pseudonym IN ({marks})"), list(pseudonyms)
            )
            return {str(row[0]) for row in fetch_tuples(cur)}
