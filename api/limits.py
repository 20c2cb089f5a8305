"""What a request is held to before its route answers it: bodies read with a size limit and checked for their media
type, for every app (the ledger's API and a witness), and ``Refusal``, the exception for a request refused so (or
for a rate, a wait or the database's state); ``api.errors`` answers it."""

from collections.abc import Callable

from fastapi import Request


class Refusal(Exception):  # noqa: N818 - an answer, not a fault
    """A request refused with one problem in the API's error format: ``status`` (415, 429, 503...), ``code``,
    ``path`` and ``message``, and ``Retry-After`` when waiting helps."""

    def __init__(self, status: int, code: str, path: str, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.status, self.code, self.path, self.message, self.retry_after = status, code, path, message, retry_after


def is_json(content_type: str | None) -> bool:
    """``application/json`` or a ``+json`` type (RFC 6839), in UTF-8 (RFC 8259: the only encoding of JSON)."""
    media, _, parameters = (content_type or "").partition(";")
    media = media.strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        return False
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return False
    return True


async def read_json(request: Request, limit: int, too_large: Callable[[str], Exception]) -> bytes:
    """The body of a JSON request (``read_limited``); any other media type is refused with 415 before it is read."""
    if not is_json(request.headers.get("content-type")):
        raise Refusal(415, "unsupported_media_type", "header:Content-Type", "send the body as JSON: Content-Type: application/json (UTF-8)")
    return await read_limited(request, limit, too_large)


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
