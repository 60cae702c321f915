"""The one reconnecting SSE loop, used by watch streams, ``/work`` streams and both workers.

A :class:`StreamSpec` says what to open next and how to read frames; :class:`Reconnects`
decides, without I/O, what each way a connection can end means: go on after a backoff
(``Retry-After`` when the server sent one) or give up. A connection may end because

- it dropped or went silent (a transport error; the read timeout is the heartbeat
  watchdog, ``2 × heartbeat_ms + slack``, since a healthy stream is never quieter),
- the server closed it (a shutdown frame, a restart),
- the ``GET`` was refused: ``429``/``503`` mean "come back later", ``404`` means the stream
  is gone (a watch re-creates its session, ``/work`` raises), anything else is raised,
- the spec is finished (terminal error frame, every topic gone, the worker stopping).

Any event handed to the caller resets the count; after ``max_reconnects`` consecutive
failures the last one is raised as the client's own exception (transport errors as
:class:`APIConnectionError`). :func:`iter_stream` and :func:`aiter_stream` are the same
loop line for line; only the waits and the reads differ.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from httpx_sse import EventSource, SSEError

from .._base import connection_error, error_from_response
from .._exceptions import APIConnectionError, APIError, NotFoundError, StreamError
from .._http import httpx

if TYPE_CHECKING:
    from .._base import BaseClient
    from .._client import AsyncClient, Client

__all__ = ["Reconnects", "StreamSpec", "StreamTarget", "aiter_stream", "iter_stream"]

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
        """True once the stream must end (terminal error frame, every topic gone, stop)."""
        ...

    def lost(self, error: NotFoundError) -> None:
        """The stream path answered 404: forget the session or re-raise."""
        ...

    def take_pending(self) -> Sequence[E]:
        """Events produced outside the stream (by ``prepare``), to yield first."""
        ...

    def connected(self, response: httpx.Response | None) -> None:
        """The open stream response (``None`` once it is closed), for a stop that must
        wake a blocked reader."""
        ...


class Reconnects:
    """Consecutive-failure budget of one stream: each method returns the seconds to wait
    before the next attempt, or raises once ``max_reconnects`` failures in a row are spent.
    """

    def __init__(self, client: BaseClient, max_reconnects: int) -> None:
        self._client = client
        self.max_reconnects = max_reconnects
        self.failures = 0

    def reset(self) -> None:
        self.failures = 0

    def _next(self, error: Exception, retry_after: float | None = None) -> float:
        if self.failures >= self.max_reconnects:
            raise error
        self.failures += 1
        return self._client._retry_delay(self.failures - 1, retry_after)

    def prepare_failed(self, exc: APIConnectionError | APIError) -> float:
        """A failed set-up call (a watch's session POST) while the server is away (down,
        restarting, recovering, throttling) is a failed reconnect; anything else raises."""
        if isinstance(exc, APIError) and exc.status not in (429, 503):
            raise exc
        return self._next(exc, exc.retry_after if isinstance(exc, APIError) else None)

    def refused(self, error: APIError, spec: StreamSpec[object]) -> float:
        """The stream ``GET`` answered an error status."""
        if isinstance(error, NotFoundError):
            spec.lost(error)  # a watch forgets its session; /work re-raises
        elif error.status not in (429, 503):
            raise error
        return self._next(error, error.retry_after)

    def ended(self, request: httpx.Request) -> float:
        """The server closed a healthy stream (shutdown frame, restart)."""
        return self._next(APIConnectionError("the server closed the stream", request=request))

    def broke(self, exc: httpx.TransportError | SSEError, request: httpx.Request) -> float:
        """The connection dropped, went silent or sent something that is not SSE."""
        if isinstance(exc, httpx.TransportError):
            error: APIConnectionError = connection_error(exc, request)
        else:
            error = APIConnectionError(f"stream broke: {exc}", request=request)
        try:
            return self._next(error)
        except APIConnectionError as raised:
            raise raised from exc


def _check(response: httpx.Response) -> None:
    content_type = response.headers.get("content-type", "")
    if "text/event-stream" not in content_type:
        raise StreamError(f"expected text/event-stream, got {content_type!r}")


def _request(client: BaseClient, spec: StreamSpec[object]) -> httpx.Request:
    target = spec.target()
    return client._build_stream(
        target.path, target.params, target.read_timeout, target.last_event_id
    )


def iter_stream(
    client: Client,
    spec: StreamSpec[E],
    prepare: Callable[[], None] | None = None,
    sleep: Callable[[float], object] = time.sleep,
) -> Iterator[E]:
    """``prepare`` runs before each connection attempt (a watch creates its session
    there); ``sleep`` waits between attempts (a worker's wakes up on stop)."""
    budget = Reconnects(client, spec.max_reconnects)
    while not spec.finished():
        if prepare is not None:
            try:
                prepare()
            except (APIConnectionError, APIError) as exc:
                sleep(budget.prepare_failed(exc))
                continue
            yield from spec.take_pending()
            if spec.finished():
                return
        request = _request(client, spec)
        try:
            response = client._http.send(request, stream=True)
            spec.connected(response)
            try:
                if response.is_success:
                    _check(response)
                    for sse in EventSource(response).iter_sse():
                        item = spec.feed(sse.event, sse.data, sse.id)
                        if item is not None:
                            budget.reset()
                            yield item
                        if spec.finished():
                            return
                    delay = None if spec.finished() else budget.ended(request)
                else:
                    response.read()
                    delay = budget.refused(error_from_response(response), spec)
            finally:
                spec.connected(None)
                response.close()
        except (httpx.TransportError, SSEError) as exc:
            delay = None if spec.finished() else budget.broke(exc, request)
        if delay is not None:
            sleep(delay)


async def aiter_stream(
    client: AsyncClient,
    spec: StreamSpec[E],
    prepare: Callable[[], Awaitable[None]] | None = None,
    sleep: Callable[[float], Awaitable[object]] | None = None,
) -> AsyncIterator[E]:
    """Async twin of :func:`iter_stream` (``sleep`` defaults to ``anyio.sleep``)."""
    if sleep is None:
        import anyio

        sleep = anyio.sleep
    budget = Reconnects(client, spec.max_reconnects)
    while not spec.finished():
        if prepare is not None:
            try:
                await prepare()
            except (APIConnectionError, APIError) as exc:
                await sleep(budget.prepare_failed(exc))
                continue
            for pending in spec.take_pending():
                yield pending
            if spec.finished():
                return
        request = _request(client, spec)
        try:
            response = await client._http.send(request, stream=True)
            spec.connected(response)
            try:
                if response.is_success:
                    _check(response)
                    async for sse in EventSource(response).aiter_sse():
                        item = spec.feed(sse.event, sse.data, sse.id)
                        if item is not None:
                            budget.reset()
                            yield item
                        if spec.finished():
                            return
                    delay = None if spec.finished() else budget.ended(request)
                else:
                    await response.aread()
                    delay = budget.refused(error_from_response(response), spec)
            finally:
                spec.connected(None)
                await response.aclose()
        except (httpx.TransportError, SSEError) as exc:
            delay = None if spec.finished() else budget.broke(exc, request)
        if delay is not None:
            await sleep(delay)
