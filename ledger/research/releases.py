"""Research pseudonyms, the projects across researcher organisations, and which recorded releases hold a pupil (so a
pupil's subject access can say which projects received their record). A release's files and the pseudonyms it holds
are kept by the store (``Store.releases``, ledger/storage/releases.py).

The research pseudonym of a pupil is HMAC-SHA-256 under a key derived (HKDF) from the ledger's pseudonym key
and the project id, over the pupil's stream id: stable across one project's releases (they link), unrelated
between projects (they cannot), and never computable without the ledger's secret.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ledger.research.projects import Project, fold_projects
from ledger.storage.secrets import LedgerSecrets
from ledger.storage.store import Store

PSEUDONYM_INFO = b"pupil-ledger/research-pseudonym/v1:"


PSEUDONYM_LENGTH = 32  # hex characters of a pseudonym


def project_key(pseudonym_key: bytes, project_id: str) -> bytes:
    """The project's own pseudonym key: HKDF-SHA-256 of the ledger's pseudonym key, bound to the project id."""
    return HKDF(hashes.SHA256(), 32, salt=None, info=PSEUDONYM_INFO + project_id.encode("ascii")).derive(pseudonym_key)


def pseudonym(key: bytes, pupil_stream: uuid.UUID) -> str:
    """The pupil's pseudonym in the project whose ``key`` this is (32 hex characters)."""
    return hmac.new(key, pupil_stream.bytes, hashlib.sha256).hexdigest()[:PSEUDONYM_LENGTH]


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


# -- subject access (the files and members are kept by the store: ``Store.releases``) -----------------------


def releases_holding(store: Store, pupil_stream: uuid.UUID, pseudonym_key: bytes) -> list[dict[str, Any]]:
    """The recorded releases that hold the pupil's (pseudonymised) rows: subject access. Reads only the research tables and
    the researcher organisations' streams, never a scan of the ledger's index."""
    projects = store.releases.projects()
    if not projects:
        return []
    holding = store.releases.holding(sorted(pseudonym(project_key(pseudonym_key, p), pupil_stream) for p in projects))
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
