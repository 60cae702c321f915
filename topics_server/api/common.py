"""Request plumbing shared by every handler: bodies, media types, keys and names."""

from __future__ import annotations

from typing import Any

from starlette.requests import ClientDisconnect, Request

from topics_server.engine.config import TopicConfig
from topics_server.engine.engine import Engine
from topics_server.errors import ApiError, invalid_request
from topics_server.middleware import ENGINE, PARTIAL_BODY, SETTINGS, ApiKey
from topics_server.settings import Settings
from topics_server.wire import loads, query_bool

__all__ = [
    "check_accept",
    "engine_of",
    "header",
    "key_of",
    "parse_nodes",
    "query_flag",
    "read_json",
    "require_dead_letter",
    "require_names",
    "settings_of",
]


def engine_of(request: Request) -> Engine:
    engine: Engine = request.scope[ENGINE]
    return engine


def settings_of(request: Request) -> Settings:
    settings: Settings = request.scope[SETTINGS]
    return settings


def header(request: Request, name: bytes) -> str | None:
    """The first value of the header ``name`` (lower case, as the server hands them over)."""
    for key, value in request.scope["headers"]:
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None


def query_flag(request: Request, name: str, default: bool) -> bool:
    """A boolean query parameter (see :func:`query_bool`); no query string, no parsing."""
    if not request.scope.get("query_string"):
        return default
    return query_bool(request.query_params, name, default)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"request body exceeds {limit} bytes", {"max": limit})


async def read_json(request: Request, empty_as_object: bool = False) -> Any:
    """Read and decode a JSON body, refusing oversize bodies before holding them.

    ``empty_as_object``: an empty body means ``{}`` and skips the media-type check
    (``PUT /v0/topics/{topic}`` and ``POST …/diff`` only, SPEC §0.4).
    """
    limit = request.scope[SETTINGS].max_body_bytes
    length = content_type = None
    for key, value in request.scope["headers"]:
        if key == b"content-length":
            if length is None:
                length = value
        elif key == b"content-type" and content_type is None:
            content_type = value
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise ApiError(400, "invalid_request", "bad Content-Length header") from None
        if declared > limit:
            raise _too_large(limit)
        if declared == 0 and empty_as_object:
            return {}
    json_type = content_type is not None and content_type.lower().startswith(b"application/json")
    if not json_type and not empty_as_object:
        raise _unsupported()
    body = await _read_body(request, limit)
    if not body and empty_as_object:
        return {}
    if not json_type:
        raise _unsupported()
    return loads(body)


async def _read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused once it passes ``limit`` bytes.

    A client that leaves first raises :class:`ClientDisconnect`; when it left after
    part of a body it announced, the scope says so for the log line.
    """
    receive = request.receive
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            continue
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        more = message.get("more_body", False)
        if not more and not chunks:
            return chunk
        chunks.append(chunk)
        if not more:
            return b"".join(chunks)
        request.scope[PARTIAL_BODY] = True


def _unsupported() -> ApiError:
    return ApiError(
        415, "unsupported_media_type", "send the body as JSON with Content-Type: application/json"
    )


def check_accept(request: Request) -> None:
    """SSE endpoints: 406 unless ``Accept`` allows ``text/event-stream``."""
    accept = header(request, b"accept")
    if accept is not None and "text/event-stream" not in accept and "*/*" not in accept:
        raise ApiError(406, "not_acceptable", "this endpoint only speaks text/event-stream")


def parse_nodes(raw: Any) -> frozenset[str] | None:
    """A ``node`` filter: one name or an array of names."""
    if raw is None:
        return None
    if type(raw) is str:
        return frozenset((raw,))
    if type(raw) is list and all(type(n) is str for n in raw):
        return frozenset(raw)
    raise invalid_request("node must be a string or an array of strings", field="node")


# -- keys (SPEC §12.2): the checks that need the body -------------------------------


def key_of(request: Request) -> ApiKey | None:
    """The authenticated key of a request, or None in dev mode."""
    key: ApiKey | None = request.scope.get("state", {}).get("api_key")
    return key


def require_names(request: Request, *names: str) -> None:
    """403 unless the request's key may use every one of ``names``."""
    key = key_of(request)
    if key is None:
        return
    for name in names:
        if not key.allows(name):
            raise ApiError(403, "forbidden", f"this key may not use {name!r}", {"topic": name})


def require_dead_letter(request: Request, config: TopicConfig) -> None:
    """A key may only dead-letter into a topic it could write (SPEC §12.2)."""
    key = key_of(request)
    target = config.dead_letter
    if key is None or target is None:
        return
    if not key.has("write") or not key.allows(target):
        raise ApiError(
            403,
            "forbidden",
            f"this key may not write {target!r}, so it cannot dead-letter into it",
            {"topic": target, "field": "dead_letter"},
        )
