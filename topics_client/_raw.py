"""Raw-response views: ``client.with_raw_response.<resource>.<method>(...)``.

Each view wraps a raw-mode copy of the resource, so arguments are checked exactly as on the
normal method; only the result is a :class:`RawResponse` instead of the parsed model.
Streams and auto-paginating iterators have no raw form (use ``list_page``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._response import async_raw_method, raw_method

if TYPE_CHECKING:
    from ._client import AsyncClient, Client

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
    def __init__(self, client: Client) -> None:
        self.topics = TopicsWithRawResponse(client)
        self.routers = RoutersWithRawResponse(client)
        self.queues = QueuesWithRawResponse(client)
        self.watch = WatchWithRawResponse(client)
        probes = client._probes._as_raw()
        self.health = raw_method(probes.health)
        self.ready = raw_method(probes.ready)
        self.metrics = raw_method(probes.metrics)
        self.metrics_json = raw_method(probes.metrics_json)


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


class AsyncRoutersWithRawResponse:
    def __init__(self, client: AsyncClient) -> None:
        raw = client.routers._as_raw()
        self.put = async_raw_method(raw.put)
        self.get = async_raw_method(raw.get)
        self.list_page = async_raw_method(raw.list_page)
        self.delete = async_raw_method(raw.delete)


class AsyncQueuesWithRawResponse:
    def __init__(self, client: AsyncClient) -> None:
        raw = client.queues._as_raw()
        self.claim = async_raw_method(raw.claim)
        self.ack = async_raw_method(raw.ack)
        self.nack = async_raw_method(raw.nack)
        self.extend = async_raw_method(raw.extend)


class AsyncWatchWithRawResponse:
    def __init__(self, client: AsyncClient) -> None:
        self.create = async_raw_method(client.watch._as_raw().create)


class AsyncClientWithRawResponse:
    def __init__(self, client: AsyncClient) -> None:
        self.topics = AsyncTopicsWithRawResponse(client)
        self.routers = AsyncRoutersWithRawResponse(client)
        self.queues = AsyncQueuesWithRawResponse(client)
        self.watch = AsyncWatchWithRawResponse(client)
        probes = client._probes._as_raw()
        self.health = async_raw_method(probes.health)
        self.ready = async_raw_method(probes.ready)
        self.metrics = async_raw_method(probes.metrics)
        self.metrics_json = async_raw_method(probes.metrics_json)
