"""Everything the sync and async clients share, without I/O.

A call is described once as a :class:`Call` (method, path, query, JSON body, retry safety,
long-poll budget); :class:`BaseClient` turns it into an ``httpx.Request`` with the right
headers and per-request timeout, and the pure functions below decide whether and how long
to wait before a retry and which exception an answer maps to. ``Client`` and
``AsyncClient`` (``_client.py``) only send.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Self
from urllib.parse import quote

import orjson

from ._config import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_POOL_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_WRITE_TIMEOUT,
    INITIAL_RETRY_DELAY,
    LONG_POLL_SLACK,
    MAX_RETRY_AFTER,
    MAX_RETRY_DELAY,
    MAX_WAIT_MS,
    NOT_GIVEN,
    RETRY_JITTER,
    NotGiven,
)
from ._exceptions import (
    APIConnectionError,
    APIError,
    APIResponseError,
    APITimeoutError,
    NotATopicsServerError,
    make_api_error,
)
from ._http import httpx

__all__ = ["BaseClient", "Call", "TimeoutTypes"]

TimeoutTypes = float | httpx.Timeout | None
Params = Mapping[str, str | int | bool]

DEFAULT_TIMEOUT: Final = httpx.Timeout(
    connect=DEFAULT_CONNECT_TIMEOUT,
    read=DEFAULT_READ_TIMEOUT,
    write=DEFAULT_WRITE_TIMEOUT,
    pool=DEFAULT_POOL_TIMEOUT,
)
_NO_BODY: Final = object()
# Always safe to retry: the server refused before doing anything.
_RETRY_ALWAYS: Final = frozenset({429, 503})
# Gateways may have forwarded the request: only for calls that are safe to repeat.
_RETRY_IF_SAFE: Final = frozenset({502, 504})


@dataclass(frozen=True, slots=True)
class Call:
    """One API call, fully described before any I/O.

    ``repeatable`` is false for calls whose repetition could do something twice after an
    ambiguous failure (a claim, a tag-match delete, a watch POST); such calls are retried
    only when the request surely never reached the server (connect errors, 429, 503).
    ``wait_ms`` is a server-side long-poll the read timeout must outlast; ``max_retries``
    lowers the client's retry budget for this call (probes answer "now").
    """

    method: str
    path: str
    params: Params | None = None
    body: Any = _NO_BODY
    repeatable: bool = True
    wait_ms: int = 0
    accept: str | None = None
    max_retries: int | None = None


def path(*segments: str) -> str:
    """``/v0/<seg>/<seg>``, each segment percent-encoded (``>`` → ``%3E``, ``/`` → ``%2F``)."""
    for seg in segments[1::2]:
        if not seg:
            raise ValueError("topic/router names must be non-empty")
    return "/v0/" + "/".join(quote(s, safe="") for s in segments)


def bool_param(value: bool) -> str:
    return "true" if value else "false"


def encode_json(body: Any) -> bytes:
    return orjson.dumps(body)


def decode_json(response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        request = response.request
        what = f"expected a JSON body from {request.method} {request.url.path}"
        if not _is_json(response):
            what = f"{not_a_topics_server(response)}: {what}"
        raise APIResponseError(what, response=response) from exc


def _is_json(response: httpx.Response) -> bool:
    kind = _content_type(response)
    return kind == "application/json" or kind.endswith("+json")


def _content_type(response: httpx.Response) -> str:
    kind: str = response.headers.get("content-type", "")
    return kind.split(";")[0].strip().lower()


def not_a_topics_server(response: httpx.Response) -> str:
    """``HOST:PORT does not look like a topics server (HTTP 501, text/html)``."""
    url = response.request.url
    where = url.netloc.decode("ascii", "replace") or str(url)
    kind = _content_type(response) or ("no body" if not response.content else "no content type")
    return f"{where} does not look like a topics server (HTTP {response.status_code}, {kind})"


# a gateway's own error page in front of a topics server that is starting, down or slow
_GATEWAY: Final = frozenset({502, 503, 504})
# characters of a gateway's error page quoted in the one-line message (whitespace folded)
_EXCERPT: Final = 80


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date), ``None`` if unusable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    return max(0.0, email.utils.mktime_tz(parsed) - time.time())


def error_from_response(response: httpx.Response) -> APIError:
    """The one place an error answer becomes an exception (SPEC §0.6 envelope).

    An answer without the envelope did not come from a topics server: it becomes
    :class:`NotATopicsServerError` with a one-line message (the raw body stays on the
    exception), except a gateway's 502/503/504, which keeps its status family.
    """
    status = response.status_code
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    try:
        body = orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        return make_api_error(
            status,
            str(err.get("code") or f"http_{status}"),
            str(err.get("message") or response.reason_phrase or "error"),
            detail=err.get("detail") if isinstance(err.get("detail"), dict) else None,
            retry_after=retry_after,
            response=response,
        )
    if status in _GATEWAY:
        where = response.request.url.netloc.decode("ascii", "replace")
        kind = _content_type(response) or "no body"
        excerpt = " ".join(response.text.split())
        if len(excerpt) > _EXCERPT:
            excerpt = excerpt[: _EXCERPT - 1] + "…"
        return make_api_error(
            status,
            f"http_{status}",
            f"HTTP {status} from {where} without a topics error ({kind}; a proxy in front "
            f"of the server?)" + (f": {excerpt}" if excerpt else ""),
            retry_after=retry_after,
            response=response,
        )
    return NotATopicsServerError(
        not_a_topics_server(response),
        status=status,
        content_type=_content_type(response),
        body=response.text,
        retry_after=retry_after,
        response=response,
    )


def connection_error(
    exc: httpx.TransportError, request: httpx.Request | None
) -> APIConnectionError:
    """Translate an httpx transport error; callers ``raise … from exc``."""
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(f"request timed out: {exc}", request=request)
    return APIConnectionError(f"connection error: {exc}", request=request)


def should_retry_status(status: int, call: Call) -> bool:
    return status in _RETRY_ALWAYS or (call.repeatable and status in _RETRY_IF_SAFE)


def should_retry_error(exc: httpx.TransportError, call: Call) -> bool:
    """Connect-phase failures never reached the server; anything later may have."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return True
    return call.repeatable


def backoff_delay(attempt: int, retry_after: float | None) -> float:
    """Seconds before retry number ``attempt + 1``: ``Retry-After`` (capped) if the server
    sent one, else exponential backoff with jitter."""
    if retry_after is not None:
        return min(retry_after, MAX_RETRY_AFTER)
    delay = min(MAX_RETRY_DELAY, INITIAL_RETRY_DELAY * 2.0**attempt)
    return delay * (1.0 - RETRY_JITTER * random.random())


def to_timeout(value: TimeoutTypes | NotGiven) -> httpx.Timeout:
    if isinstance(value, NotGiven):
        return DEFAULT_TIMEOUT
    if isinstance(value, httpx.Timeout):
        return value
    return httpx.Timeout(value)


def extend_read(timeout: httpx.Timeout, seconds: float) -> httpx.Timeout:
    """The same timeout with ``seconds`` more to read (``None`` stays unlimited)."""
    if timeout.read is None:
        return timeout
    return httpx.Timeout(
        connect=timeout.connect, read=timeout.read + seconds, write=timeout.write, pool=timeout.pool
    )


def with_read(timeout: httpx.Timeout, read: float | None) -> httpx.Timeout:
    return httpx.Timeout(connect=timeout.connect, read=read, write=timeout.write, pool=timeout.pool)


class BaseClient:
    """Configuration and request building shared by ``Client`` and ``AsyncClient``.

    Every request carries an absolute URL (``base_url`` + path), so a caller's own httpx
    client (``http_client=``) is used as it is: its base URL, if any, is never consulted
    and our timeout is set per request.
    """

    base_url: str
    api_key: str | None
    max_retries: int
    timeout: httpx.Timeout
    _headers: dict[str, str]
    _http: httpx.Client | httpx.AsyncClient
    _owns_http: bool

    def _init_config(
        self,
        base_url: str,
        api_key: str | None,
        max_retries: int,
        timeout: httpx.Timeout,
        headers: Mapping[str, str] | None,
    ) -> None:
        self.base_url = base_url
        self.api_key = api_key
        self.max_retries = max_retries
        self.timeout = timeout
        self._headers = {"Accept": "application/json", "User-Agent": "topics-py"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        if headers:
            self._headers.update(headers)

    def with_options(
        self,
        *,
        max_retries: int | NotGiven = NOT_GIVEN,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        api_key: str | NotGiven | None = NOT_GIVEN,
        headers: Mapping[str, str] | None = None,
    ) -> Self:
        """A copy with other settings sharing this client's connection pool.

        Closing the copy does not close the pool; close the original.
        """
        clone = self.__class__.__new__(self.__class__)
        extra = {k: v for k, v in self._headers.items() if k != "Authorization"}
        clone._init_config(
            self.base_url,
            self.api_key if isinstance(api_key, NotGiven) else api_key,
            self.max_retries if isinstance(max_retries, NotGiven) else max_retries,
            self.timeout if isinstance(timeout, NotGiven) else to_timeout(timeout),
            {**extra, **(headers or {})},
        )
        clone._http = self._http
        clone._owns_http = False
        return clone

    def _url(self, path: str) -> str:
        return self.base_url + path

    def _request_timeout(self, call: Call) -> httpx.Timeout:
        if call.wait_ms <= 0:
            return self.timeout
        wait = min(call.wait_ms, MAX_WAIT_MS) / 1000.0
        return extend_read(self.timeout, wait + LONG_POLL_SLACK)

    def _build(self, call: Call) -> httpx.Request:
        headers = dict(self._headers)
        content: bytes | None = None
        if call.body is not _NO_BODY:
            content = encode_json(call.body)
            headers["Content-Type"] = "application/json"
        if call.accept:
            headers["Accept"] = call.accept
        return self._http.build_request(
            call.method,
            self._url(call.path),
            params=call.params,
            content=content,
            headers=headers,
            timeout=self._request_timeout(call),
        )

    def _build_stream(
        self,
        path: str,
        params: Mapping[str, str | int] | None,
        read_timeout: float,
        last_event_id: str | None = None,
    ) -> httpx.Request:
        """An SSE ``GET`` whose read timeout is the stream's heartbeat watchdog."""
        headers = dict(self._headers)
        headers["Accept"] = "text/event-stream"
        headers["Cache-Control"] = "no-store"
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        return self._http.build_request(
            "GET",
            self._url(path),
            params=params,
            headers=headers,
            timeout=with_read(self.timeout, read_timeout),
        )

    def _retry_delay(self, attempt: int, retry_after: float | None) -> float:
        """Hook for tests: patch to zero to make retries instant."""
        return backoff_delay(attempt, retry_after)

    def _max_retries_for(self, call: Call) -> int:
        return (
            self.max_retries
            if call.max_retries is None
            else min(call.max_retries, self.max_retries)
        )
