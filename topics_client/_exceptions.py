"""Exceptions raised by the client. Callers catch these, never httpx's.

::

    TopicsError
    ├── APIError                      any non-2xx answer: status, code, message, detail,
    │   │                             retry_after, response
    │   ├── InvalidRequestError       400 invalid_request (and other 400 codes)
    │   │   ├── BatchTooLargeError    400 batch_too_large
    │   │   └── RecordTooLargeError   400 record_too_large
    │   ├── AuthenticationError       401 unauthorized
    │   ├── PermissionDeniedError     403 forbidden
    │   ├── NotFoundError             404 not_found (unknown path, expired watch session)
    │   │   ├── TopicNotFoundError    404 topic_not_found
    │   │   └── RouterNotFoundError   404 router_not_found
    │   ├── ConflictError             409
    │   │   ├── RouterCycleError      409 router_cycle
    │   │   ├── IncompatibleTopicError  409 topic_exists_incompatible
    │   │   ├── TopicNotEmptyError    409 topic_not_empty
    │   │   └── NotAQueueError        409 not_a_queue
    │   ├── PayloadTooLargeError      413 payload_too_large
    │   ├── TopicFullError            422 topic_full
    │   ├── ThrottledError            429 throttled
    │   ├── InternalServerError       500 and other 5xx
    │   ├── ServiceUnavailableError   503
    │   │   ├── NotReadyError         503 not_ready
    │   │   └── ShuttingDownError     503 shutting_down
    │   └── NotATopicsServerError     an error answer without the topics error envelope
    │                                 (another web server, a wrong port): content_type, body
    ├── APIConnectionError            the request never got a complete answer
    │   └── APITimeoutError           ... because a timeout fired
    ├── APIResponseError              a 2xx body that does not decode as expected
    ├── StreamError                   a watch/work stream cannot continue (not SSE, ...)
    └── GapError                      replay with ``on_gap="raise"`` met a gap (``.gap``)

Error classes are picked from ``error.code`` first, then from the HTTP status, in one place
(:func:`make_api_error`), so an unknown code still lands in the right status family. An
error answer that is not the topics envelope (an HTML page, plain text, nothing) is
:class:`NotATopicsServerError`, except a gateway's 502/503/504 (a proxy in front of a server
that is starting or down), which keeps its status family so waiting and retrying still work.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

    from ._models import Gap

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseError",
    "APITimeoutError",
    "AuthenticationError",
    "BatchTooLargeError",
    "ConflictError",
    "GapError",
    "IncompatibleTopicError",
    "InternalServerError",
    "InvalidRequestError",
    "NotAQueueError",
    "NotATopicsServerError",
    "NotFoundError",
    "NotReadyError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RecordTooLargeError",
    "RouterCycleError",
    "RouterNotFoundError",
    "ServiceUnavailableError",
    "ShuttingDownError",
    "StreamError",
    "ThrottledError",
    "TopicFullError",
    "TopicNotEmptyError",
    "TopicNotFoundError",
    "TopicsError",
    "make_api_error",
]


class TopicsError(Exception):
    """Base of every error this package raises."""


class APIError(TopicsError):
    """The server answered with a non-2xx status.

    ``code`` is the machine-readable ``error.code`` (branch on it, never on ``message``);
    ``retry_after`` is the ``Retry-After`` header in seconds when present.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str,
        detail: Mapping[str, Any] | None = None,
        retry_after: float | None = None,
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.detail: Mapping[str, Any] = detail or {}
        self.retry_after = retry_after
        self.response = response


class InvalidRequestError(APIError):
    pass


class BatchTooLargeError(InvalidRequestError):
    pass


class RecordTooLargeError(InvalidRequestError):
    pass


class AuthenticationError(APIError):
    pass


class PermissionDeniedError(APIError):
    pass


class NotFoundError(APIError):
    pass


class TopicNotFoundError(NotFoundError):
    pass


class RouterNotFoundError(NotFoundError):
    pass


class ConflictError(APIError):
    pass


class RouterCycleError(ConflictError):
    pass


class IncompatibleTopicError(ConflictError):
    pass


class TopicNotEmptyError(ConflictError):
    pass


class NotAQueueError(ConflictError):
    pass


class PayloadTooLargeError(APIError):
    pass


class TopicFullError(APIError):
    pass


class ThrottledError(APIError):
    pass


class InternalServerError(APIError):
    pass


class ServiceUnavailableError(APIError):
    pass


class NotReadyError(ServiceUnavailableError):
    pass


class ShuttingDownError(ServiceUnavailableError):
    pass


class NotATopicsServerError(APIError):
    """Something other than a topics server answered: the error body is not the topics
    envelope (``python -m http.server``, a web app, a wrong port). ``str(exc)`` is one line,
    e.g. ``127.0.0.1:8000 does not look like a topics server (HTTP 501, text/html)``;
    ``content_type`` and ``body`` (the raw text, for debugging) say what came back.
    ``code`` is ``http_<status>``."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        content_type: str,
        body: str,
        retry_after: float | None = None,
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(
            message,
            status=status,
            code=f"http_{status}",
            retry_after=retry_after,
            response=response,
        )
        self.args = (message,)
        self.content_type = content_type
        self.body = body


class APIConnectionError(TopicsError):
    """No complete answer arrived (connection refused/reset, protocol error...)."""

    def __init__(self, message: str = "connection error", *, request: Any = None) -> None:
        super().__init__(message)
        self.request = request


class APITimeoutError(APIConnectionError):
    def __init__(self, message: str = "request timed out", *, request: Any = None) -> None:
        super().__init__(message, request=request)


class APIResponseError(TopicsError):
    """A success body that is not the JSON shape the SPEC promises."""

    def __init__(self, message: str, *, response: httpx.Response | None = None) -> None:
        super().__init__(message)
        self.response = response


class StreamError(TopicsError):
    """A stream cannot continue (wrong content type, unusable session...)."""


class GapError(TopicsError):
    """Raised by a replay with ``on_gap="raise"``; ``gap`` says what was lost."""

    def __init__(self, gap: Gap) -> None:
        super().__init__(
            f"gap in {gap.topic!r}: seqs {gap.gap_from}..{gap.gap_to} lost ({gap.reason})"
        )
        self.gap = gap


_BY_CODE: dict[str, type[APIError]] = {
    "invalid_request": InvalidRequestError,
    "batch_too_large": BatchTooLargeError,
    "record_too_large": RecordTooLargeError,
    "unauthorized": AuthenticationError,
    "forbidden": PermissionDeniedError,
    "not_found": NotFoundError,
    "topic_not_found": TopicNotFoundError,
    "router_not_found": RouterNotFoundError,
    "router_cycle": RouterCycleError,
    "topic_exists_incompatible": IncompatibleTopicError,
    "topic_not_empty": TopicNotEmptyError,
    "not_a_queue": NotAQueueError,
    "payload_too_large": PayloadTooLargeError,
    "topic_full": TopicFullError,
    "throttled": ThrottledError,
    "internal": InternalServerError,
    "not_ready": NotReadyError,
    "shutting_down": ShuttingDownError,
}

_BY_STATUS: dict[int, type[APIError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: TopicFullError,
    429: ThrottledError,
    503: ServiceUnavailableError,
}


def make_api_error(
    status: int,
    code: str,
    message: str,
    *,
    detail: Mapping[str, Any] | None = None,
    retry_after: float | None = None,
    response: httpx.Response | None = None,
) -> APIError:
    """Pick the most specific class: by code when it agrees with the status family."""
    cls = _BY_CODE.get(code)
    family = _BY_STATUS.get(status)
    if cls is None or (family is not None and not issubclass(cls, family)):
        cls = family or (InternalServerError if status >= 500 else APIError)
    return cls(
        message, status=status, code=code, detail=detail, retry_after=retry_after, response=response
    )
