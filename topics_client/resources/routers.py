"""``client.routers``: upsert, get, list and delete routers (SPEC §8)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, Literal

from .._base import Call, path
from .._models.routers import Router, RouterDeleteResult, RouterPage, RouterSummary
from .._twins import twin_of
from ._resource import AsyncResource, SyncResource, json_parser

__all__ = ["AsyncRouters", "Routers"]

Guarantee = Literal["at_least_once", "exactly_once"]
Filter = str | tuple[str, str, str] | Sequence[str]


def put_call(
    router: str,
    source: str,
    dest: str,
    *,
    preserve_node: bool | None,
    preserve_tag: bool | None,
    create_dest: bool | None,
    filter: Filter | None,
    allow_cycle: bool | None,
    guarantee: Guarantee | None,
) -> Call:
    body: dict[str, Any] = {"source": source, "dest": dest}
    options = {
        "preserve_node": preserve_node,
        "preserve_tag": preserve_tag,
        "create_dest": create_dest,
        "allow_cycle": allow_cycle,
        "guarantee": guarantee,
    }
    body.update((k, v) for k, v in options.items() if v is not None)
    if filter is not None:
        body["filter"] = filter if isinstance(filter, str) else list(filter)
    return Call("PUT", path("routers", router), body=body)


def list_call(
    prefix: str | None,
    source: str | None,
    dest: str | None,
    page_size: int | None,
    cursor: str | None,
) -> Call:
    raw = {"prefix": prefix, "source": source, "dest": dest, "page_size": page_size}
    params: dict[str, str | int | bool] = {k: v for k, v in raw.items() if v is not None}
    if cursor:
        params["cursor"] = cursor
    return Call("GET", "/v0/routers", params=params or None)


_router_parser = json_parser(Router.from_wire)
_page_parser = json_parser(RouterPage.from_wire)
_delete_parser = json_parser(RouterDeleteResult.from_wire)


class Routers(SyncResource):
    def put(
        self,
        router: str,
        *,
        source: str,
        dest: str,
        preserve_node: bool | None = None,
        preserve_tag: bool | None = None,
        create_dest: bool | None = None,
        filter: Filter | None = None,
        allow_cycle: bool | None = None,
        guarantee: Guarantee | None = None,
    ) -> Router:
        call = put_call(
            router,
            source,
            dest,
            preserve_node=preserve_node,
            preserve_tag=preserve_tag,
            create_dest=create_dest,
            filter=filter,
            allow_cycle=allow_cycle,
            guarantee=guarantee,
        )
        return self._request(call, _router_parser)

    def get(self, router: str) -> Router:
        return self._request(Call("GET", path("routers", router)), _router_parser)

    def list_page(
        self,
        *,
        prefix: str | None = None,
        source: str | None = None,
        dest: str | None = None,
        page_size: int | None = None,
        cursor: str | None = None,
    ) -> RouterPage:
        return self._request(list_call(prefix, source, dest, page_size, cursor), _page_parser)

    def list(
        self,
        *,
        prefix: str | None = None,
        source: str | None = None,
        dest: str | None = None,
        page_size: int | None = None,
    ) -> Iterator[RouterSummary]:
        cursor: str | None = None
        while True:
            page = self.list_page(
                prefix=prefix, source=source, dest=dest, page_size=page_size, cursor=cursor
            )
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def delete(self, router: str) -> RouterDeleteResult:
        return self._request(Call("DELETE", path("routers", router)), _delete_parser)


@twin_of(Routers)
class AsyncRouters(AsyncResource):
    async def put(
        self,
        router: str,
        *,
        source: str,
        dest: str,
        preserve_node: bool | None = None,
        preserve_tag: bool | None = None,
        create_dest: bool | None = None,
        filter: Filter | None = None,
        allow_cycle: bool | None = None,
        guarantee: Guarantee | None = None,
    ) -> Router:
        call = put_call(
            router,
            source,
            dest,
            preserve_node=preserve_node,
            preserve_tag=preserve_tag,
            create_dest=create_dest,
            filter=filter,
            allow_cycle=allow_cycle,
            guarantee=guarantee,
        )
        return await self._request(call, _router_parser)

    async def get(self, router: str) -> Router:
        return await self._request(Call("GET", path("routers", router)), _router_parser)

    async def list_page(
        self,
        *,
        prefix: str | None = None,
        source: str | None = None,
        dest: str | None = None,
        page_size: int | None = None,
        cursor: str | None = None,
    ) -> RouterPage:
        return await self._request(list_call(prefix, source, dest, page_size, cursor), _page_parser)

    async def list(
        self,
        *,
        prefix: str | None = None,
        source: str | None = None,
        dest: str | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[RouterSummary]:
        cursor: str | None = None
        while True:
            page = await self.list_page(
                prefix=prefix, source=source, dest=dest, page_size=page_size, cursor=cursor
            )
            for item in page.items:
                yield item
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def delete(self, router: str) -> RouterDeleteResult:
        return await self._request(Call("DELETE", path("routers", router)), _delete_parser)
