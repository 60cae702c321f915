"""``Client`` and ``AsyncClient``: the only code that sends. Everything else is shared.

::

    with Client() as client:                       # TOPICS_URL / TOPICS / 127.0.0.1:4000
        client.topics.append("orders", {"id": 1})
        for item in client.topics.replay("orders"):
            ...
        fast = client.with_options(max_retries=0, timeout=2.0)   # same connection pool
        raw = client.with_raw_response.topics.get("orders")      # RawResponse[TopicState]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from functools import cached_property
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

from ._base import (
    BaseClient,
    Call,
    TimeoutTypes,
    connection_error,
    error_from_response,
    parse_retry_after,
    should_retry_error,
    should_retry_status,
    to_timeout,
)
from ._config import DEFAULT_MAX_RETRIES, NOT_GIVEN, NotGiven, resolve_api_key, resolve_base_url
from ._http import httpx
from ._response import parse_response
from ._twins import twin_of

if TYPE_CHECKING:
    from ._models.probes import Health, Metrics, Ready
    from ._raw import AsyncClientWithRawResponse, ClientWithRawResponse
    from .resources.probes import AsyncProbes, Probes
    from .resources.queues import AsyncQueues, Queues
    from .resources.routers import AsyncRouters, Routers
    from .resources.topics import AsyncTopics, Topics
    from .resources.watch import AsyncWatch, Watch

__all__ = ["AsyncClient", "Client"]

T = TypeVar("T")


def _http_kwargs(
    base_url: str,
    timeout: httpx.Timeout,
    transport: object,
    limits: httpx.Limits | None,
    http_client: object,
) -> dict[str, Any]:
    """Settings for the pool we build when the caller brings none."""
    if http_client is not None and (transport is not None or limits is not None):
        raise ValueError("configure transport/limits on your own http_client, not both")
    kwargs: dict[str, Any] = {"timeout": timeout, "follow_redirects": False}
    if transport is not None:
        kwargs["transport"] = transport
    if limits is not None:
        kwargs["limits"] = limits
    # Loading the CA bundle costs ~100 ms; a plain-HTTP pool never does TLS (every URL is
    # under base_url and redirects are never followed), so skip it there.
    if base_url.startswith("http://"):
        kwargs["verify"] = False
    return kwargs


class Client(BaseClient):
    """Synchronous client on a pooled ``httpx.Client``.

    ``timeout`` is a float (all phases) or an ``httpx.Timeout`` with separate connect /
    read / write / pool values; ``None`` disables it. ``transport`` and ``limits`` shape the
    pool the client builds; ``http_client`` is a pool of your own instead, used as it is
    (every request carries an absolute URL and its own timeout) and never closed by us.
    """

    _http: httpx.Client

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int = DEFAULT_MAX_RETRIES,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        limits: httpx.Limits | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        url = resolve_base_url(base_url)
        self._init_config(url, resolve_api_key(api_key), max_retries, to_timeout(timeout), headers)
        kwargs = _http_kwargs(url, self.timeout, transport, limits, http_client)
        self._owns_http = http_client is None
        self._http = httpx.Client(**kwargs) if http_client is None else http_client

    # -- resources (imported on first use)

    @cached_property
    def topics(self) -> Topics:
        from .resources.topics import Topics

        return Topics(self)

    @cached_property
    def routers(self) -> Routers:
        from .resources.routers import Routers

        return Routers(self)

    @cached_property
    def queues(self) -> Queues:
        from .resources.queues import Queues

        return Queues(self)

    @cached_property
    def watch(self) -> Watch:
        from .resources.watch import Watch

        return Watch(self)

    @cached_property
    def _probes(self) -> Probes:
        from .resources.probes import Probes

        return Probes(self)

    @cached_property
    def with_raw_response(self) -> ClientWithRawResponse:
        """The same API returning :class:`RawResponse` (status, headers, ``.parse()``)."""
        from ._raw import ClientWithRawResponse

        return ClientWithRawResponse(self)

    def health(self) -> Health:
        return self._probes.health()

    def ready(self) -> Ready:
        """Raises :class:`NotReadyError` while the server recovers (never retried)."""
        return self._probes.ready()

    def metrics(self) -> str:
        """Prometheus text."""
        return self._probes.metrics()

    def metrics_json(self) -> Metrics:
        return self._probes.metrics_json()

    # -- I/O

    def _send(self, call: Call) -> tuple[httpx.Response, int]:
        """Send with retries; returns the 2xx response and the retries it took."""
        retries = self._max_retries_for(call)
        attempt = 0
        while True:
            request = self._build(call)
            try:
                response = self._http.send(request)
            except httpx.TransportError as exc:
                if attempt < retries and should_retry_error(exc, call):
                    time.sleep(self._retry_delay(attempt, None))
                    attempt += 1
                    continue
                raise connection_error(exc, request) from exc
            if response.is_success:
                return response, attempt
            if attempt < retries and should_retry_status(response.status_code, call):
                retry_after = parse_retry_after(response.headers.get("retry-after"))
                response.close()
                time.sleep(self._retry_delay(attempt, retry_after))
                attempt += 1
                continue
            raise error_from_response(response)

    def _call(self, call: Call, parse: Callable[[httpx.Response], T]) -> T:
        response, _ = self._send(call)
        return parse_response(response, parse)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<topics_client.Client {self.base_url}>"


@twin_of(Client)
class AsyncClient(BaseClient):
    """Asynchronous twin of :class:`Client` on ``httpx.AsyncClient`` (asyncio or trio)."""

    _http: httpx.AsyncClient

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int = DEFAULT_MAX_RETRIES,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        limits: httpx.Limits | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        url = resolve_base_url(base_url)
        self._init_config(url, resolve_api_key(api_key), max_retries, to_timeout(timeout), headers)
        kwargs = _http_kwargs(url, self.timeout, transport, limits, http_client)
        self._owns_http = http_client is None
        self._http = httpx.AsyncClient(**kwargs) if http_client is None else http_client

    @cached_property
    def topics(self) -> AsyncTopics:
        from .resources.topics import AsyncTopics

        return AsyncTopics(self)

    @cached_property
    def routers(self) -> AsyncRouters:
        from .resources.routers import AsyncRouters

        return AsyncRouters(self)

    @cached_property
    def queues(self) -> AsyncQueues:
        from .resources.queues import AsyncQueues

        return AsyncQueues(self)

    @cached_property
    def watch(self) -> AsyncWatch:
        from .resources.watch import AsyncWatch

        return AsyncWatch(self)

    @cached_property
    def _probes(self) -> AsyncProbes:
        from .resources.probes import AsyncProbes

        return AsyncProbes(self)

    @cached_property
    def with_raw_response(self) -> AsyncClientWithRawResponse:
        from ._raw import AsyncClientWithRawResponse

        return AsyncClientWithRawResponse(self)

    async def health(self) -> Health:
        return await self._probes.health()

    async def ready(self) -> Ready:
        return await self._probes.ready()

    async def metrics(self) -> str:
        return await self._probes.metrics()

    async def metrics_json(self) -> Metrics:
        return await self._probes.metrics_json()

    async def _send(self, call: Call) -> tuple[httpx.Response, int]:
        import anyio

        retries = self._max_retries_for(call)
        attempt = 0
        while True:
            request = self._build(call)
            try:
                response = await self._http.send(request)
            except httpx.TransportError as exc:
                if attempt < retries and should_retry_error(exc, call):
                    await anyio.sleep(self._retry_delay(attempt, None))
                    attempt += 1
                    continue
                raise connection_error(exc, request) from exc
            if response.is_success:
                return response, attempt
            if attempt < retries and should_retry_status(response.status_code, call):
                retry_after = parse_retry_after(response.headers.get("retry-after"))
                await response.aclose()
                await anyio.sleep(self._retry_delay(attempt, retry_after))
                attempt += 1
                continue
            raise error_from_response(response)

    async def _call(self, call: Call, parse: Callable[[httpx.Response], T]) -> T:
        response, _ = await self._send(call)
        return parse_response(response, parse)

    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<topics_client.AsyncClient {self.base_url}>"
