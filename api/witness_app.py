"""HTTP face of a witness (c2sp.org/tlog-witness): ``POST /add-checkpoint`` and ``GET /`` (the witness vkey).

Bodies are text, as the spec has them; a refusal is a one-line plain-text reason with the status the
spec requires, and a 409 carries the latest cosigned size as ``text/x.tlog.size``.
"""

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, Response

from api.limits import read_limited
from ledger.transparency.witness import SIZE_CONTENT_TYPE, Conflict, Malformed, Rejected, Witness

MAX_BODY = 256 * 1024  # 63 proof lines and a checkpoint with many signatures fit many times over


def create_witness_app(witness: Witness) -> FastAPI:
    app = FastAPI(
        title=f"Witness {witness.name}",
        version="1.0.0",
        description="A c2sp.org/tlog-witness witness: cosigns checkpoints consistent with the last one it cosigned per log.",
    )

    @app.get("/", response_class=PlainTextResponse, operation_id="witnessKey", summary="The witness's verifier key (type 04)")
    async def get_vkey() -> Response:
        return PlainTextResponse(witness.vkey + "\n")

    @app.post(
        "/add-checkpoint",
        response_class=PlainTextResponse,
        operation_id="addCheckpoint",
        summary="Submit a checkpoint with a consistency proof from the old size; returns cosignature lines",
        responses={
            400: {"description": "malformed"},
            403: {"description": "no trusted log signature"},
            404: {"description": "unknown origin"},
            409: {"description": "old size is not the latest cosigned size", "content": {SIZE_CONTENT_TYPE: {}}},
            422: {"description": "the consistency proof does not verify"},
        },
    )
    async def add_checkpoint(request: Request) -> Response:
        try:
            body = await read_limited(request, MAX_BODY, Malformed)
            lines = await run_in_threadpool(witness.add_checkpoint, body)
        except Conflict as exc:
            # exactly this type, without a charset parameter, as strict clients compare it
            return Response(exc.body(), status_code=exc.status, headers={"Content-Type": SIZE_CONTENT_TYPE})
        except Rejected as exc:
            return PlainTextResponse(exc.message + "\n", status_code=exc.status)
        return PlainTextResponse(lines)

    return app
