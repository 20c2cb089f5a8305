"""Transparency-log endpoints (design.md 3.3): the verifier key, checkpoint, C2SP tiles, proofs. Public: digests only."""

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, Field

from api.params import MAX_INTEGER
from ledger.core import merkle, tiles
from ledger.core.errors import Category, LedgerError
from ledger.service import Ledger
from ledger.tools.admin import log_vkey
from ledger.transparency.tlog import Log

IMMUTABLE = {"Cache-Control": "public, max-age=31536000, immutable"}
TEXT = "text/plain; charset=utf-8"


class InclusionProofOut(BaseModel):
    leaf_index: int
    tree_size: int
    event_id: str | None = None
    entry: str = Field(description="base64 of the log entry (JCS bytes of index, received_at, event_digest, envelope_digest)")
    leaf_hash: str = Field(description="base64 of SHA-256(0x00 || entry)")
    proof: list[str] = Field(description="base64 hashes, from the leaf's sibling up (RFC 9162 2.1.3)")
    checkpoint: str = Field(description="the signed checkpoint note of tree_size")


class ConsistencyProofOut(BaseModel):
    first: int
    second: int
    proof: list[str] = Field(description="base64 hashes (RFC 9162 2.1.4)")
    first_checkpoint: str | None = Field(None, description="the signed checkpoint of size first, if one was signed")
    second_checkpoint: str | None = Field(None, description="the signed checkpoint of size second, if one was signed")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _not_found(code: str, path: str, message: str) -> LedgerError:
    return LedgerError.one(code, path, message, Category.NOT_FOUND)


def _errors(**descriptions: str) -> dict[int | str, dict[str, Any]]:
    """Error responses in the project's one format (``Errors``), as JSON even on the text routes."""
    json_errors = {"application/json": {"schema": {"$ref": "#/components/schemas/Errors"}}}
    return {int(code[1:]): {"description": text, "content": json_errors} for code, text in descriptions.items()}


def log_router(ledger: Ledger) -> APIRouter:
    log = Log(ledger.store)
    router = APIRouter(prefix="/log", tags=["log"])

    def checkpoint_of(size: int | None) -> tuple[int, str]:
        found = log.checkpoint(size)
        if found is None:
            raise _not_found(
                "no_checkpoint",
                "$.tree_size",
                f"no checkpoint of size {size} was signed" if size is not None else "the log has no checkpoint yet",
            )
        return found

    @router.get(
        "/vkey",
        operation_id="getVerifierKey",
        response_class=PlainTextResponse,
        summary="The ledger's C2SP note verifier key (receipts and checkpoints)",
    )
    async def get_vkey() -> str:
        return log_vkey(ledger) + "\n"

    @router.get(
        "/checkpoint",
        operation_id="getCheckpoint",
        response_class=PlainTextResponse,
        summary="The latest signed checkpoint (C2SP tlog-checkpoint as a signed note)",
        responses={
            200: {"content": {TEXT: {"example": "pupil-ledger.local/log\n12\nBase64Root=\n\n\u2014 pupil-ledger.local/log AbCd...\n"}}},
            **_errors(s404="the log has no checkpoint yet"),
        },
    )
    async def get_checkpoint() -> Response:
        _, note = await run_in_threadpool(checkpoint_of, None)
        return Response(note, media_type=TEXT, headers={"Cache-Control": "no-cache"})

    @router.get(
        "/tile/{tile_path:path}",
        operation_id="getTile",
        response_class=Response,
        summary="C2SP tlog-tiles: hash tiles tile/<L>/<N>[.p/<W>] and entry bundles tile/entries/<N>[.p/<W>]",
        responses={200: {"content": {"application/octet-stream": {}}}, **_errors(s404="no such tile in the latest checkpoint's tree")},
    )
    async def get_tile(tile_path: Annotated[str, Path(examples=["0/000.p/5", "entries/000"])]) -> Response:
        try:
            ref = tiles.parse_tile_path("tile/" + tile_path)
        except tiles.TilePathError as exc:
            raise _not_found("no_such_tile", "$.path", str(exc)) from None

        def read() -> bytes | None:
            return log.tile(ref, log.tree_size())

        data = await run_in_threadpool(read)
        if data is None:
            raise _not_found("no_such_tile", "$.path", f"tile/{tile_path} is not in the latest checkpoint's tree")
        return Response(data, media_type="application/octet-stream", headers=IMMUTABLE)

    @router.get(
        "/proof/inclusion",
        operation_id="inclusionProof",
        response_model=InclusionProofOut,
        summary="Inclusion proof of one entry (by leaf index or event id) in a checkpointed tree",
        responses=_errors(
            s400="give exactly one of index and event_id",
            s404="no checkpoint of that size, or the entry is not in it",
            s422="a parameter is not a valid number",
        ),
    )
    async def inclusion_proof(
        index: Annotated[int | None, Query(ge=0, le=MAX_INTEGER, description="leaf index")] = None,
        event_id: Annotated[str | None, Query(description="event id, instead of index")] = None,
        tree_size: Annotated[int | None, Query(ge=1, le=MAX_INTEGER, description="a signed checkpoint's size; default the latest")] = None,
    ) -> Any:
        if (index is None) == (event_id is None):
            raise LedgerError.one("index_or_event_id", "$.index", "give exactly one of index and event_id", Category.MALFORMED)

        def build() -> InclusionProofOut:
            size, note = checkpoint_of(tree_size)
            leaf = log.leaf_for_event(event_id) if event_id is not None else log.leaf(index or 0)
            if leaf is None or leaf.leaf_index >= size:
                where = "$.event_id" if event_id is not None else "$.index"
                raise _not_found("not_in_tree", where, f"the entry is not in the tree of size {size} (not yet sealed?)")
            proof = log.tree.inclusion_proof(leaf.leaf_index, size)
            return InclusionProofOut(
                leaf_index=leaf.leaf_index,
                tree_size=size,
                event_id=event_id,
                entry=_b64(leaf.entry),
                leaf_hash=_b64(merkle.leaf_hash(leaf.entry)),
                proof=[_b64(p) for p in proof],
                checkpoint=note,
            )

        return await run_in_threadpool(build)

    @router.get(
        "/proof/consistency",
        operation_id="consistencyProof",
        response_model=ConsistencyProofOut,
        summary="Consistency proof between two tree sizes (RFC 9162 2.1.4)",
        responses=_errors(s404="the log has no checkpoint yet", s422="sizes outside 1 <= first <= second <= the latest checkpoint"),
    )
    async def consistency_proof(
        first: Annotated[int, Query(ge=1, le=MAX_INTEGER, description="the older tree size")],
        second: Annotated[int | None, Query(ge=1, le=MAX_INTEGER, description="the newer tree size; default the latest checkpoint")] = None,
    ) -> Any:
        def build() -> ConsistencyProofOut:
            latest, _ = checkpoint_of(None)
            size2 = latest if second is None else second
            if not first <= size2 <= latest:
                raise LedgerError.one(
                    "bad_tree_sizes", "$.second", f"need 1 <= first <= second <= {latest} (the latest checkpoint)", Category.INVALID
                )
            proof = log.tree.consistency_proof(first, size2)
            one, two = log.checkpoint(first), log.checkpoint(size2)
            return ConsistencyProofOut(
                first=first,
                second=size2,
                proof=[_b64(p) for p in proof],
                first_checkpoint=one[1] if one else None,
                second_checkpoint=two[1] if two else None,
            )

        return await run_in_threadpool(build)

    return router


def event_proof_route(ledger: Ledger) -> APIRouter:
    """``GET /events/{event_id}/tlog-proof``: the per-event C2SP tlog-proof once sealed."""
    log = Log(ledger.store)
    router = APIRouter(tags=["log"])

    @router.get(
        "/events/{event_id}/tlog-proof",
        operation_id="getEventProof",
        response_class=PlainTextResponse,
        summary="c2sp.org/tlog-proof@v1 for one event (extra = the log entry); 404 until sealed",
        responses={200: {"content": {TEXT: {}}}, **_errors(s404="no such event, or not yet sealed (code not_yet_sealed)")},
    )
    async def event_proof(event_id: str) -> Response:
        proof = await run_in_threadpool(log.tlog_proof, event_id)
        if proof is None:
            exists = await run_in_threadpool(ledger.store.index_rows, [event_id])
            if exists:
                raise LedgerError.one(
                    "not_yet_sealed",
                    "$.event_id",
                    f"the event is accepted but not yet in a signed checkpoint; retry within {ledger.settings.max_merge_delay:g} s",
                    Category.NOT_FOUND,
                )
            raise _not_found("unknown_event", "$.event_id", f"no event {event_id}")
        return Response(proof, media_type=TEXT)

    return router
