"""Request plumbing shared by every handler: body limits, media type, path names."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from topics_server.engine.engine import Engine
from topics_server.errors import ApiError
from topics_server.settings import Settings
from topics_server.wire import loads

__all__ = ["engine_of", "read_json", "settings_of"]


def engine_of(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"request body exceeds {limit} bytes", {"max": limit})


async def read_json(request: Request, empty_as_object: bool = False) -> Any:
    """Read and decode a JSON body, refusing oversize bodies before holding them.

    ``empty_as_object``: an empty body means ``{}`` and skips the media-type check
    (``PUT /v0/topics/{topic}`` and ``POST …/diff`` only, SPEC §0.4).
    """
    limit = settings_of(request).max_body_bytes
    headers = request.headers
    length = headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise ApiError(400, "invalid_request", "bad Content-Length header") from None
        if declared > limit:
            raise _too_large(limit)
        if declared == 0 and empty_as_object:
            return {}
    json_type = headers.get("content-type", "").lower().startswith("application/json")
    if not json_type and not empty_as_object:
        raise _unsupported()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body and empty_as_object:
        return {}
    if not json_type:
        raise _unsupported()
    return loads(body)


def _unsupported() -> ApiError:
    return ApiError(
        415, "unsupported_media_type", "send the body as JSON with Content-Type: application/json"
    )
