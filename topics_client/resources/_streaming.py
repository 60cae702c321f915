"""Reconnecting SSE loops shared by watch and ``/work`` streams (sync and async).

A :class:`StreamSpec` says what to open next and how to read frames; the loops do I/O only:
open the stream with a heartbeat watchdog as read timeout (a quiet but healthy stream sends
a heartbeat at least every ``heartbeat_ms``, so ``2 × heartbeat_ms + slack`` of silence
means the connection is dead), feed complete frames to the spec, and on a dropped or
silent connection reconnect with backoff. Transport errors never escape: after
``max_reconnects`` consecutive failures the client's :class:`APIConnectionError` is raised.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from httpx_sse import EventSource, SSEError

from .._base import connection_error, error_from_response
from .._exceptions import APIConnectionError, APIError, NotFoundError, StreamError, TopicsError
from .._http import httpx

if TYPE_CHECKING:
    from .._client import AsyncClient, Client

__all__ = ["StreamSpec", "StreamTarget", "aiter_stream", "iter_stream"]

E = TypeVar("E", covariant=True)


@dataclass(frozen=True, slots=True)
class StreamTarget:
    path: str
    read_timeout: float
    params: Mapping[str, str | int] | None = None
    last_event_id: str | None = None


class StreamSpec(Protocol, Generic[E]):
    max_reconnects: int

    def target(self) -> StreamTarget: ...

    def feed(self, event: str, data: str, event_id: str) -> E | None: ...

    def finished(self) -> bool:
        """True once the stream must end (terminal error frame, every topic gone)."""
        ...

    def lost(self, error: NotFoundError) -> None:
        """The stream path answered 404: forget the session or re-raise."""
        ...

    def take_pending(self) -> Sequence[E]:
        """Events produced outside the stream (by ``prepare``), to yield first."""
        ...


def _request(client: Client | AsyncClient, target: StreamTarget) -> httpx.Request:
    return client._build_stream(
        target.path, target.params, target.read_timeout, target.last_event_id
    )


def _check(response: httpx.Response) -> None:
    content_type = response.headers.get("content-type", "")
    if "text/event-stream" not in content_type:
        raise StreamError(f"expected text/event-stream, got {content_type!r}")


def _prepare_failed(exc: TopicsError, failures: int, max_reconnects: int) -> float | None:
    """A failed ``prepare`` (session re-POST) while the server is away (down, restarting,
    recovering, throttling) counts as one failed reconnect; anything else is raised."""
    if failures >= max_reconnects:
        raise exc
    if isinstance(exc, APIConnectionError):
        return None
    if isinstance(exc, APIError) and exc.status in (429, 503):
        return exc.retry_after
    raise exc


def iter_stream(
    client: Client, spec: StreamSpec[E], prepare: Callable[[], None] | None = None
) -> Iterator[E]:
    """``prepare`` runs before each connection attempt (a watch creates its session there)."""
    failures = 0
    while not spec.finished():
        retry_after: float | None = None
        if prepare is not None:
            try:
                prepare()
            except (APIConnectionError, APIError) as exc:
                retry_after = _prepare_failed(exc, failures, spec.max_reconnects)
                failures += 1
                time.sleep(client._retry_delay(failures - 1, retry_after))
                continue
            yield from spec.take_pending()
            if spec.finished():
                return
        request = _request(client, spec.target())
        try:
            response = client._http.send(request, stream=True)
            try:
                if response.is_success:
                    _check(response)
                    for sse in EventSource(response).iter_sse():
                        item = spec.feed(sse.event, sse.data, sse.id)
                        if item is not None:
                            failures = 0
                            yield item
                        if spec.finished():
                            return
                else:
                    response.read()
                    error = error_from_response(response)
                    if isinstance(error, NotFoundError):
                        spec.lost(error)
                    elif error.status not in (429, 503) or failures >= spec.max_reconnects:
                        raise error
                    retry_after = error.retry_after
            finally:
                response.close()
        except (httpx.TransportError, SSEError) as exc:
            if failures >= spec.max_reconnects:
                if isinstance(exc, httpx.TransportError):
                    raise connection_error(exc, request) from exc
                raise APIConnectionError(f"stream broke: {exc}", request=request) from exc
        failures += 1
        time.sleep(client._retry_delay(failures - 1, retry_after))


async def aiter_stream(
    client: AsyncClient,
    spec: StreamSpec[E],
    prepare: Callable[[], Awaitable[None]] | None = None,
) -> AsyncIterator[E]:
    import anyio

    failures = 0
    while not spec.finished():
        retry_after: float | None = None
        if prepare is not None:
            try:
                await prepare()
            except (APIConnectionError, APIError) as exc:
                retry_after = _prepare_failed(exc, failures, spec.max_reconnects)
                failures += 1
                await anyio.sleep(client._retry_delay(failures - 1, retry_after))
                continue
            for pending in spec.take_pending():
                yield pending
            if spec.finished():
                return
        request = _request(client, spec.target())
        try:
            response = await client._http.send(request, stream=True)
            try:
                if response.is_success:
                    _check(response)
                    async for sse in EventSource(response).aiter_sse():
                        item = spec.feed(sse.event, sse.data, sse.id)
                        if item is not None:
                            failures = 0
                            yield item
                        if spec.finished():
                            return
                else:
                    await response.aread()
                    error = error_from_response(response)
                    if isinstance(error, NotFoundError):
                        spec.lost(error)
                    elif error.status not in (429, 503) or failures >= spec.max_reconnects:
                        raise error
                    retry_after = error.retry_after
            finally:
                await response.aclose()
        except (httpx.TransportError, SSEError) as exc:
            if failures >= spec.max_reconnects:
                if isinstance(exc, httpx.TransportError):
                    raise connection_error(exc, request) from exc
                raise APIConnectionError(f"stream broke: {exc}", request=request) from exc
        failures += 1
        await anyio.sleep(client._retry_delay(failures - 1, retry_after))
