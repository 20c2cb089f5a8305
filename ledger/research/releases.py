"""What the ledger keeps of each research release: its files (served by ``getResearchExport``) and which
per-project pseudonyms it holds (so a pupil's subject access can say which projects received their record).

The research pseudonym of a pupil is HMAC-SHA-256 under a key derived (HKDF) from the ledger's pseudonym key
and the project id, over the pupil's stream id: stable across one project's releases (they link), unrelated
between projects (they cannot), and never computable without the ledger's secret.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ledger.research.projects import Project, fold_projects
from ledger.storage.secrets import LedgerSecrets
from ledger.storage.store import Store, fetch_tuples

PSEUDONYM_INFO = b"pupil-ledger/research-pseudonym/v1:"


def project_key(pseudonym_key: bytes, project_id: str) -> bytes:
    """The project's own pseudonym key: HKDF-SHA-256 of the ledger's pseudonym key, bound to the project id."""
    return HKDF(hashes.SHA256(), 32, salt=None, info=PSEUDONYM_INFO + project_id.encode("ascii")).derive(pseudonym_key)


def pseudonym(key: bytes, pupil_stream: uuid.UUID) -> str:
    """The pupil's pseudonym in the project whose ``key`` this is (32 hex characters)."""
    return hmac.new(key, pupil_stream.bytes, hashlib.sha256).hexdigest()[:32]


# -- projects across researcher organisations ------------------------------------------------------


def all_projects(store: Store) -> dict[str, Project]:
    """Every project in the ledger, by id, folded from the researcher organisations' streams. Project ids are unique
    (``operator.approve_project`` checks before approving); should two organisations hold one, neither is returned."""
    streams = store.streams_with_event_type("research.project_approved")
    found: dict[str, Project] = {}
    clashes: set[str] = set()
    for subject in store.subjects(streams).values():
        researcher = subject.records[0].subject
        for project_id, project in fold_projects(researcher, subject.records).items():
            if project_id in found:
                clashes.add(project_id)
            found[project_id] = project
    return {k: v for k, v in found.items() if k not in clashes}


# -- files and members ----------------------------------------------------------------------------


def ensure_tables(store: Store) -> None:
    blob = "BYTEA" if store.is_postgres else "BLOB"
    with store.cursor(commit=True) as cur:
        if store.is_postgres:
            cur.execute("SELECT pg_advisory_xact_lock(7261023)")  # concurrent first exports create the tables once
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS research_release_files (release_id TEXT NOT NULL, name TEXT NOT NULL, content {blob} NOT NULL, "
            "PRIMARY KEY (release_id, name))"
        )
        cur.execute("CREATE TABLE IF NOT EXISTS research_release_members (release_id TEXT NOT NULL, pseudonym TEXT NOT NULL)")
        cur.execute("CREATE INDEX IF NOT EXISTS research_release_members_pseudonym ON research_release_members (pseudonym)")
        cur.execute(
            "CREATE TABLE IF NOT EXISTS research_releases (release_id TEXT PRIMARY KEY, project TEXT NOT NULL, researcher TEXT NOT NULL)"
        )


def store_release(store: Store, release_id: str, project: Project, files: Mapping[str, bytes], pseudonyms: Iterable[str]) -> None:
    """Keep a release's files and its members (in one transaction), before the release is recorded in the ledger: files
    of a release the ledger then refused are deleted again (``discard_release``), and only recorded releases are served."""
    ensure_tables(store)
    with store.cursor(commit=True) as cur:
        cur.execute(
            store.sql("INSERT INTO research_releases (release_id, project, researcher) VALUES (?, ?, ?)"),
            (release_id, project.project_id, project.researcher),
        )
        cur.executemany(
            store.sql("INSERT INTO research_release_files (release_id, name, content) VALUES (?, ?, ?)"),
            [(release_id, name, content) for name, content in sorted(files.items())],
        )
        if store.is_postgres:
            with cur.copy("COPY research_release_members (release_id, pseudonym) FROM STDIN") as copy:
                for member in pseudonyms:
                    copy.write_row((release_id, member))
        else:
            cur.executemany(
                "INSERT INTO research_release_members (release_id, pseudonym) VALUES (?, ?)", ((release_id, m) for m in pseudonyms)
            )


def discard_release(store: Store, release_id: str) -> None:
    with store.cursor(commit=True) as cur:
        for table in ("research_releases", "research_release_files", "research_release_members"):
            cur.execute(store.sql(f"DELETE FROM {table} WHERE release_id = ?"), (release_id,))


def _has_tables(store: Store) -> bool:
    """Whether anything was ever released (the tables are made by the first release)."""
    sql = (
        "SELECT to_regclass('research_releases') IS NOT NULL"
        if store.is_postgres
        else "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'research_releases'"
    )
    return bool(store.query(sql)[0][0])


def release_file(store: Store, release_id: str, name: str) -> bytes | None:
    if not _has_tables(store):
        return None
    rows = store.query("SELECT content FROM research_release_files WHERE release_id = ? AND name = ?", (release_id, name))
    return bytes(rows[0][0]) if rows else None


def releases_holding(store: Store, pupil_stream: uuid.UUID, pseudonym_key: bytes) -> list[dict[str, Any]]:
    """The recorded releases that hold the pupil's (pseudonymised) rows: subject access. Reads only the research tables and
    the researcher organisations' streams, never a scan of the ledger's index."""
    if not _has_tables(store):
        return []
    projects = {str(p): str(r) for p, r in store.query("SELECT DISTINCT project, researcher FROM research_releases")}
    if not projects:
        return []
    wanted = sorted(pseudonym(project_key(pseudonym_key, p), pupil_stream) for p in projects)
    marks = ", ".join("?" * len(wanted))
    with store.cursor() as cur:
        cur.execute(store.sql(f"SELECT DISTINCT release_id FROM research_release_members WHERE pseudonym IN ({marks})"), wanted)
        holding = {str(row[0]) for row in fetch_tuples(cur)}
    if not holding:
        return []
    researchers = sorted(set(projects.values()))
    released: dict[str, tuple[Project, Any]] = {}
    for researcher, subject in zip(researchers, [store.subject(LedgerSecrets.org_id(r)) for r in researchers], strict=True):
        for project in fold_projects(researcher, subject.records if subject else []).values():
            released.update({r.event_id: (project, r) for r in project.releases})  # recorded releases only
    out = []
    for release_id in sorted(holding & set(released), key=lambda rid: released[rid][1].received_at):
        project, release = released[release_id]
        out.append(
            {
                "project": project.project_id,
                "researcher": project.researcher,
                "purpose": project.purpose,
                "release_id": release_id,
                "released_at": release.as_dict()["released_at"],
                "manifest_digest": release.manifest_digest,
            }
        )
    return out
