"""The error tree of the API and the one envelope every failure is rendered into.

    ApiError(status, code, message, detail)
     ├── invalid_request(...)          400
     ├── not_found / topic_not_found   404
     └── ...                           see SPEC §0.6

Handlers raise; :func:`error_body` renders ``{"error": {code, message, detail?}}``.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = [
    "ApiError",
    "error_body",
    "invalid_request",
    "throttled",
    "topic_not_found",
]


STORAGE_RETRY_AFTER_S = 5  # seconds a client waits before retrying a full store


class ApiError(Exception):
    """A failure with its HTTP status and stable ``error.code``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        detail: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail or {}
        if retry_after is None and status in (429, 503):
            retry_after = 1
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {} if self.retry_after is None else {"retry-after": str(self.retry_after)}

    def body(self) -> bytes:
        return error_body(self.code, self.message, self.detail)


def error_body(code: str, message: str, detail: dict[str, Any] | None = None) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message}
    if detail:
        error["detail"] = detail
    return orjson.dumps({"error": error})


def invalid_request(message: str, **detail: Any) -> ApiError:
    return ApiError(400, "invalid_request", message, detail)


def topic_not_found(topic: str) -> ApiError:
    return ApiError(404, "topic_not_found", f"topic {topic!r} does not exist", {"topic": topic})


def throttled(limit: str, maximum: int, message: str) -> ApiError:
    return ApiError(429, "throttled", message, {"limit": limit, "max": maximum}, retry_after=1)


def insufficient_storage() -> ApiError:
    """The store is out of space (SPEC §0.6): retry once space was freed."""
    return ApiError(
        507,
        "insufficient_storage",
        "the store is out of space; delete records or topics to free space, then retry",
        retry_after=STORAGE_RETRY_AFTER_S,
    )


def storage_failed(reason: str) -> ApiError:
    """A commit failed (I/O error): nothing of the request was applied."""
    return ApiError(500, "internal", f"storage failure, nothing was changed: {reason}")
