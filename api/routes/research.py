"""Researchers' anonymised exports over HTTP (design.md 8, docs/research.md): a researcher organisation's token makes
releases of its approved projects and reads them back; the operator sees every project. No route here ever
answers with identified pupil data."""

from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi import Path as FastAPIPath
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.auth import Caller
from api.limits import read_limited
from api.research_release import find_project, release, released_file
from ledger.core import jcs
from ledger.core.errors import Category, LedgerError, Problem
from ledger.research.releases import all_projects
from ledger.service import Ledger
from projections.research import package

MAX_REQUEST_BYTES = 16 * 1024
ProjectId = Annotated[str, FastAPIPath(pattern="^[a-z0-9][a-z0-9-]{0,62}$", description="the project id")]
ReleaseId = Annotated[
    str,
    FastAPIPath(
        pattern="^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
        description="the release id (the event id of its research.export_released)",
    ),
]
MEDIA = {
    ".parquet": "application/vnd.apache.parquet",
    ".csv": "text/csv; charset=utf-8",
    ".json": "application/json",
    ".html": "text/html; charset=utf-8",
}


class ExportIn(BaseModel):
    """What to release: the project, optionally fewer variables than approved and an earlier signed checkpoint."""

    model_config = ConfigDict(extra="forbid")
    project: str = Field(pattern="^[a-z0-9][a-z0-9-]{0,62}$", examples=["demo"])
    variables: list[Annotated[str, Field(max_length=40)]] | None = Field(
        default=None, min_length=1, max_length=40, description="a subset of the approved variables (default: all)"
    )
    tree_size: int | None = Field(default=None, ge=1, le=2**62, description="cut at this signed checkpoint (default: the latest)")


# The error format (``api.errors.Errors``) as these routes' OpenAPI document has always named it.
class _Problem(BaseModel):
    code: str
    path: str
    message: str


class _Errors(BaseModel):
    errors: list[_Problem]


RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": _Errors, "description": description}
    for status, description in [
        (400, "malformed request"),
        (401, "no or bad bearer token"),
        (403, "the role may not export, or the project is revoked or expired, or a variable not approved"),
        (404, "no such project, release or file of yours"),
        (409, "no signed checkpoint yet"),
        (413, "body too large"),
        (422, "invalid request"),
        (429, "rate limited"),
    ]
}


def _file_list(release_id: str, names: list[str]) -> list[dict[str, str]]:
    return [{"name": name, "url": f"/research/exports/{release_id}/files/{name}"} for name in names]


def research_router(ledger: Ledger) -> APIRouter:
    router = APIRouter(tags=["research"])

    @router.post(
        "/research/exports",
        operation_id="createResearchExport",
        status_code=201,
        summary="Release an anonymised extract of an approved project (recorded in the ledger as research.export_released)",
        description="For the project's researcher organisation (researcher token) or the operator. The project must be approved, "
        "unrevoked and unexpired, and the variables approved; the extract is cut at a signed checkpoint, reaches the "
        "project's k-anonymity and l-diversity, and its manifest is signed by the ledger.",
        responses=RESPONSES,
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": ExportIn.model_json_schema()}}}},
    )
    async def create_export(request: Request, caller: Caller) -> dict[str, Any]:
        raw = await read_limited(
            request, MAX_REQUEST_BYTES, lambda reason: LedgerError.one("body_too_large", "$", reason, Category.TOO_LARGE)
        )
        try:
            body = ExportIn.model_validate(jcs.parse(raw) if raw else None)
        except jcs.NotJSON as exc:
            raise LedgerError.one("malformed_json", "$", f"the body is not JSON: {exc}", Category.MALFORMED) from None
        except ValidationError as exc:
            raise LedgerError(
                [
                    Problem("invalid_body", "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"]), e["msg"])
                    for e in exc.errors()
                ]
            ) from None
        out = await run_in_threadpool(release, ledger, body.project, body.variables, body.tree_size, caller)
        return {
            "release_id": out["release_id"],
            "sequence": out["sequence"],
            "manifest_digest": out["manifest_digest"],
            "manifest": out["manifest"],
            "files": _file_list(out["release_id"], out["files"]),
        }

    @router.get(
        "/research/exports/{release_id}",
        operation_id="getResearchExport",
        summary="A release: its manifest, the manifest's DSSE envelope signed by the ledger, and its files",
        responses=RESPONSES,
    )
    async def get_export(release_id: ReleaseId, caller: Caller) -> dict[str, Any]:
        signed = await run_in_threadpool(released_file, ledger, release_id, package.SIGNED_MANIFEST, caller)
        manifest = jcs.parse(await run_in_threadpool(released_file, ledger, release_id, package.MANIFEST, caller))
        names = sorted([f["name"] for f in manifest["files"]] + [package.MANIFEST, package.SIGNED_MANIFEST])
        return {
            "release_id": release_id,
            "project": manifest["project"]["project"],
            "manifest": manifest,
            "signed_manifest": jcs.parse(signed),
            "files": _file_list(release_id, names),
        }

    @router.get(
        "/research/exports/{release_id}/files/{name:path}",
        operation_id="getResearchExportFile",
        summary="One file of a release (Parquet, CSV, datapackage.json, the data dictionary, the manifest)",
        response_class=Response,
        responses={200: {"content": {m.split(";")[0]: {} for m in MEDIA.values()}}, **RESPONSES},
    )
    async def get_file(release_id: ReleaseId, name: Annotated[str, FastAPIPath(max_length=200)], caller: Caller) -> Response:
        content = await run_in_threadpool(released_file, ledger, release_id, name, caller)
        media = next((m for suffix, m in MEDIA.items() if name.endswith(suffix)), "application/octet-stream")
        return Response(content, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name.rsplit("/", 1)[-1]}"'})

    @router.get(
        "/research/projects",
        operation_id="listResearchProjects",
        summary="Research projects: the operator's every project, a researcher organisation's own",
        responses=RESPONSES,
    )
    async def list_projects(caller: Caller) -> dict[str, Any]:
        if caller.role not in ("admin", "researcher"):
            raise LedgerError.one("role_cannot_export", "$", f"a {caller.role} token has no research projects", Category.FORBIDDEN)
        projects = await run_in_threadpool(all_projects, ledger.store)
        today = ledger.clock().date()
        return {"projects": [p.as_dict(today) for _, p in sorted(projects.items()) if caller.role == "admin" or p.researcher == caller.org]}

    @router.get(
        "/research/projects/{project}",
        operation_id="getResearchProject",
        summary="One project: its approval, status and every release made of it (oversight of safe outputs)",
        responses=RESPONSES,
    )
    async def get_project(project: ProjectId, caller: Caller) -> dict[str, Any]:
        if caller.role not in ("admin", "researcher"):
            raise LedgerError.one("role_cannot_export", "$", f"a {caller.role} token has no research projects", Category.FORBIDDEN)
        found = await run_in_threadpool(find_project, ledger, project, caller)
        return found.as_dict(ledger.clock().date())

    return router
