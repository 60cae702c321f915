"""JSON on the wire: orjson codec, responses, and request-field parsing.

Parsing helpers follow the contract's strictness: a wrong JSON type is a
``400 invalid_request`` naming the field; unknown fields are ignored.
"""

from __future__ import annotations

import time
from typing import Any, Final

import orjson
from starlette.responses import Response

from topics_server.errors import ApiError, invalid_request

__all__ = [
    "MAX_DEPTH",
    "U32_MAX",
    "U64_MAX",
    "JsonResponse",
    "as_bool",
    "as_object",
    "as_str",
    "as_u64",
    "dumps",
    "error_response",
    "json_response",
    "loads",
    "now_ms",
    "query_bool",
]

U64_MAX: Final = 2**64 - 1
U32_MAX: Final = 2**32 - 1
MAX_DEPTH: Final = 128  # objects and arrays, counted from the body's top (SPEC §0.4)
# orjson encodes at most this many levels; anything accepted must encode again
_ENCODABLE_DEPTH: Final = 254
dumps = orjson.dumps
_JSON_TYPE: Final = (b"content-type", b"application/json")


def loads(body: bytes) -> Any:
    """Decode a request body; bad JSON or nesting deeper than ``MAX_DEPTH`` is a 400."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise invalid_request(f"body is not valid JSON: {exc}") from None
    # every level costs an opening and a closing byte: a short body cannot be too deep
    if len(body) > 2 * MAX_DEPTH and too_deep(value):
        raise invalid_request(f"body nests objects and arrays deeper than {MAX_DEPTH} levels")
    return value


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` nests deeper than ``limit`` levels, decided at C speed.

    orjson refuses to encode past ``_ENCODABLE_DEPTH`` levels, so wrapping the value
    in ``_ENCODABLE_DEPTH - limit`` arrays makes an encode fail exactly when the
    value itself is deeper than ``limit``: one pass, no Python-level walk.
    """
    for _ in range(_ENCODABLE_DEPTH - limit):
        value = [value]
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError:
        return True
    return False


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def json_response(
    body: dict[str, Any], started: float, status: int = 200, **performance: Any
) -> Response:
    """Attach the ``performance`` block (SPEC §0.7) and render."""
    performance["server_total_ms"] = round((time.perf_counter() - started) * 1000, 3)
    body["performance"] = performance
    return JsonResponse(orjson.dumps(body), status)


class JsonResponse(Response):
    """A JSON body already encoded: Starlette's :class:`Response` without the header
    building it does for any media type and any extra headers (same bytes out)."""

    media_type = "application/json"

    def __init__(self, body: bytes, status_code: int = 200) -> None:
        self.status_code = status_code
        self.background = None
        self.body = body
        self.raw_headers = [(b"content-length", b"%d" % len(body)), _JSON_TYPE]


def as_object(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid_request(f"{name} must be a JSON object", field=name)
    return value


def as_u64(value: Any, name: str, maximum: int = U64_MAX) -> int:
    if type(value) is not int or value < 0 or value > U64_MAX:
        raise invalid_request(f"{name} must be a non-negative integer", field=name)
    return min(value, maximum)


def as_bool(value: Any, name: str) -> bool:
    if type(value) is not bool:
        raise invalid_request(f"{name} must be true or false", field=name)
    return value


def as_str(value: Any, name: str, max_bytes: int | None = None) -> str:
    if type(value) is not str:
        raise invalid_request(f"{name} must be a string", field=name)
    if max_bytes is not None and len(value) * 4 > max_bytes:
        size = len(value.encode())
        if size > max_bytes:
            raise invalid_request(
                f"{name} is {size} bytes; the limit is {max_bytes}", field=name, max=max_bytes
            )
    return value


def query_bool(params: Any, name: str, default: bool) -> bool:
    """Boolean query parameters: true/1/false/0; anything else means the default."""
    text = params.get(name)
    if text is None:
        return default
    text = text.lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    return default


def error_response(error: ApiError) -> Response:
    """The canonical error envelope of ``error`` as a response."""
    return Response(
        error.body(),
        status_code=error.status,
        media_type="application/json",
        headers=error.headers(),
    )
