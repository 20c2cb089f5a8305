"""Request bodies read with a size limit, for every app (the ledger's API and a witness)."""

from collections.abc import Callable

from fastapi import Request


async def read_limited(request: Request, limit: int, too_large: Callable[[str], Exception]) -> bytes:
    """The body, refused with ``too_large(reason)`` past ``limit`` bytes: at once when Content-Length says
    so, otherwise as soon as the streamed chunks pass it (nothing beyond the limit is held in memory)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large(f"the body is {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(f"the body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
