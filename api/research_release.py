"""A research release, the use case (docs/research.md): check the caller and the project, cut the log at a signed
checkpoint, build the files (``projections.research.export``), keep them, and record the release in the ledger;
and read a kept release's files back. It sits above the views and the ledger, as it uses both."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ledger.core import policy
from ledger.core.errors import Category, LedgerError
from ledger.research import operator
from ledger.research.projects import Project, export_problems
from ledger.research.releases import all_projects
from ledger.service import Ledger, Principal
from projections.research.export import Spec, build, strings
from projections.research.reader import checkpoint_cut


def find_project(ledger: Ledger, project_id: str, principal: Principal | None) -> Project:
    """The project, if the caller may export it: the operator (a local call, or an admin token) or its researcher organisation."""
    project = all_projects(ledger.store).get(project_id)
    allowed = (
        principal is None
        or principal.role == "admin"
        or (principal.role == "researcher" and project is not None and principal.org == project.researcher)
    )
    if project is None or not allowed:
        raise LedgerError.one("project_unknown", "$.project", f"no project {project_id} of yours", Category.NOT_FOUND)
    return project


def release(
    ledger: Ledger,
    project_id: str,
    variables: Sequence[str] | None = None,
    tree_size: int | None = None,
    principal: Principal | None = None,
) -> dict[str, Any]:
    """Check, build, keep and record one release; returns its id, manifest and file names. Nothing is kept if refused."""
    if principal is not None and principal.role not in ("admin", "researcher"):
        raise policy.forbidden("role_cannot_export", "$", f"a {principal.role} token cannot make research exports")
    project = find_project(ledger, project_id, principal)
    spec = Spec(project.unit, tuple(variables) if variables else project.variables)
    problems = export_problems(project, spec.unit, spec.variables, ledger.clock().date(), path="$")
    if problems:
        raise LedgerError(problems)
    spec = Spec(spec.unit, tuple(v for v in project.variables if v in spec.variables))  # the approval's order, so equal specs are equal
    cut = checkpoint_cut(ledger.store, tree_size)
    built = build(ledger.store, ledger.secrets, ledger.settings, project, spec, cut)
    release_id = operator.new_release_id()
    ledger.store.releases.save(
        release_id, project.project_id, project.researcher, built.files, strings(built.pseudonyms)
    )  # served once recorded
    data = {
        "project": project.project_id,
        "manifest_digest": built.manifest_digest,
        "checkpoint": {"tree_size": cut.tree_size, "root": cut.root},
        "spec": spec.as_dict(),
        "rows": built.manifest["rows"],
        "pupils": built.manifest["pupils"],
        "suppressed_rows": built.manifest["suppressed_rows"],
        "k": built.manifest["anonymity"]["k"],
        "l": built.manifest["anonymity"]["l"],
    }
    try:
        receipt = operator.record_release(ledger, release_id, project.researcher, data)
    except BaseException:
        ledger.store.releases.discard(release_id)  # refused (revoked meanwhile, say) or failed: nothing released
        raise
    return {
        "release_id": release_id,
        "sequence": receipt.sequence,
        "manifest_digest": built.manifest_digest,
        "manifest": built.manifest,
        "files": sorted(built.files),
        "seconds": built.seconds,
        "built": built,
    }


def released_file(ledger: Ledger, release_id: str, name: str, principal: Principal | None) -> bytes:
    """A file of a recorded release, for the operator or the project's researcher organisation."""
    for project in all_projects(ledger.store).values():
        if any(r.event_id == release_id for r in project.releases):
            find_project(ledger, project.project_id, principal)
            content = ledger.store.releases.file(release_id, name)
            if content is not None:
                return content
            break
    raise LedgerError.one("not_found", "$.release_id", f"no release {release_id} with a file {name} that you may read", Category.NOT_FOUND)
