"""Raw-response views: ``client.with_raw_response.<resource>.<method>(...)``.

Each view wraps a raw-mode copy of the resource, so arguments are checked exactly as on the
normal method; only the result is a :class:`RawResponse` instead of the parsed model.
Streams and auto-paginating iterators have no raw form (use ``list_page``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

from ._response import async_raw_method, raw_method
from ._twins import twin_of

if TYPE_CHECKING:
    from ._client import AsyncClient, Client
    from ._models.probes import Health, Metrics, Ready
    from ._response import RawResponse

__all__ = ["AsyncClientWithRawResponse", "ClientWithRawResponse"]


class TopicsWithRawResponse:
    def __init__(self, client: Client) -> None:
        raw = client.topics._as_raw()
        self.put = raw_method(raw.put)
        self.get = raw_method(raw.get)
        self.list_page = raw_method(raw.list_page)
        self.delete = raw_method(raw.delete)
        self.write = raw_method(raw.write)
        self.append = raw_method(raw.append)
        self.diff = raw_method(raw.diff)
        self.delete_records = raw_method(raw.delete_records)


class RoutersWithRawResponse:
    def __init__(self, client: Client) -> None:
        raw = client.routers._as_raw()
        self.put = raw_method(raw.put)
        self.get = raw_method(raw.get)
        self.list_page = raw_method(raw.list_page)
        self.delete = raw_method(raw.delete)


class QueuesWithRawResponse:
    def __init__(self, client: Client) -> None:
        raw = client.queues._as_raw()
        self.claim = raw_method(raw.claim)
        self.ack = raw_method(raw.ack)
        self.nack = raw_method(raw.nack)
        self.extend = raw_method(raw.extend)


class WatchWithRawResponse:
    def __init__(self, client: Client) -> None:
        self.create = raw_method(client.watch._as_raw().create)


class ClientWithRawResponse:
    """Each resource view is built (and its module imported) on first access."""

    def __init__(self, client: Client) -> None:
        self._client = client

    @cached_property
    def topics(self) -> TopicsWithRawResponse:
        return TopicsWithRawResponse(self._client)

    @cached_property
    def routers(self) -> RoutersWithRawResponse:
        return RoutersWithRawResponse(self._client)

    @cached_property
    def queues(self) -> QueuesWithRawResponse:
        return QueuesWithRawResponse(self._client)

    @cached_property
    def watch(self) -> WatchWithRawResponse:
        return WatchWithRawResponse(self._client)

    @cached_property
    def _probes(self) -> Any:
        return self._client._probes._as_raw()

    @cached_property
    def health(self) -> Callable[[], RawResponse[Health]]:
        return raw_method(self._probes.health)

    @cached_property
    def ready(self) -> Callable[[], RawResponse[Ready]]:
        return raw_method(self._probes.ready)

    @cached_property
    def metrics(self) -> Callable[[], RawResponse[str]]:
        return raw_method(self._probes.metrics)

    @cached_property
    def metrics_json(self) -> Callable[[], RawResponse[Metrics]]:
        return raw_method(self._probes.metrics_json)


@twin_of(TopicsWithRawResponse)
class AsyncTopicsWithRawResponse:
    def __init__(self, client: AsyncClient) -> None:
        raw = client.topics._as_raw()
        self.put = async_raw_method(raw.put)
        self.get = async_raw_method(raw.get)
        self.list_page = async_raw_method(raw.list_page)
        self.delete = async_raw_method(raw.delete)
        self.write = async_raw_method(raw.write)
        self.append = async_raw_method(raw.append)
        self.diff = async_raw_method(raw.diff)
        self.delete_records = async_raw_method(raw.delete_records)


@twin_of(RoutersWithRawResponse)
class AsyncRoutersWithRawResponse:
    def __init__(self, client: AsyncClient) -> None:
        raw = client.routers._as_raw()
        self.put = async_raw_method(raw.put)
        self.get = async_raw_method(raw.get)
        self.list_page = async_raw_method(raw.list_page)
        self.delete = async_raw_method(raw.delete)


@twin_of(QueuesWithRawResponse)
class AsyncQueuesWithRawResponse:
    def __init__(self, client: AsyncClient) -> None:
        raw = client.queues._as_raw()
        self.claim = async_raw_method(raw.claim)
        self.ack = async_raw_method(raw.ack)
        self.nack = async_raw_method(raw.nack)
        self.extend = async_raw_method(raw.extend)


@twin_of(WatchWithRawResponse)
class AsyncWatchWithRawResponse:
    def __init__(self, client: AsyncClient) -> None:
        self.create = async_raw_method(client.watch._as_raw().create)


@twin_of(ClientWithRawResponse)
class AsyncClientWithRawResponse:
    """Each resource view is built (and its module imported) on first access."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    @cached_property
    def topics(self) -> AsyncTopicsWithRawResponse:
        return AsyncTopicsWithRawResponse(self._client)

    @cached_property
    def routers(self) -> AsyncRoutersWithRawResponse:
        return AsyncRoutersWithRawResponse(self._client)

    @cached_property
    def queues(self) -> AsyncQueuesWithRawResponse:
        return AsyncQueuesWithRawResponse(self._client)

    @cached_property
    def watch(self) -> AsyncWatchWithRawResponse:
        return AsyncWatchWithRawResponse(self._client)

    @cached_property
    def _probes(self) -> Any:
        return self._client._probes._as_raw()

    @cached_property
    def health(self) -> Callable[[], Awaitable[RawResponse[Health]]]:
        return async_raw_method(self._probes.health)

    @cached_property
    def ready(self) -> Callable[[], Awaitable[RawResponse[Ready]]]:
        return async_raw_method(self._probes.ready)

    @cached_property
    def metrics(self) -> Callable[[], Awaitable[RawResponse[str]]]:
        return async_raw_method(self._probes.metrics)

    @cached_property
    def metrics_json(self) -> Callable[[], Awaitable[RawResponse[Metrics]]]:
        return async_raw_method(self._probes.metrics_json)
