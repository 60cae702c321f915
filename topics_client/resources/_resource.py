"""Base classes for resources: they hold the client and a raw-response flag."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Self, TypeVar, cast

from .._base import Call, decode_json
from .._http import httpx
from .._response import RawResponse, parse_response

if TYPE_CHECKING:
    from .._client import AsyncClient, Client

__all__ = ["AsyncResource", "SyncResource", "json_parser", "text_parser"]

T = TypeVar("T")


def json_parser(fn: Callable[[Any], T]) -> Callable[[httpx.Response], T]:
    def parse(response: httpx.Response) -> T:
        return fn(decode_json(response))

    return parse


def text_parser(response: httpx.Response) -> str:
    return response.text


class SyncResource:
    def __init__(self, client: Client, *, raw: bool = False) -> None:
        self._client = client
        self._raw = raw

    def _as_raw(self) -> Self:
        return type(self)(self._client, raw=True)

    def _request(self, call: Call, parse: Callable[[httpx.Response], T]) -> T:
        response, retries = self._client._send(call)
        if self._raw:
            return cast(T, RawResponse(response, parse, retries))
        return parse_response(response, parse)


class AsyncResource:
    def __init__(self, client: AsyncClient, *, raw: bool = False) -> None:
        self._client = client
        self._raw = raw

    def _as_raw(self) -> Self:
        return type(self)(self._client, raw=True)

    async def _request(self, call: Call, parse: Callable[[httpx.Response], T]) -> T:
        response, retries = await self._client._send(call)
        if self._raw:
            return cast(T, RawResponse(response, parse, retries))
        return parse_response(response, parse)
