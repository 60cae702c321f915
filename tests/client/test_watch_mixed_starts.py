"""A watch map mixing tail topics (``None``) and seq starts gives each topic its own start
(issue 14, item 1): a non-``None`` start for one topic must not send the first session
down the resume path, which used to start the tail topics at seq 0."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from topics_client import AsyncClient, CaughtUpEvent, Client, RecordsEvent


def _seed(base_url: str, orders: str, audit: str) -> None:
    for name, n in ((orders, 7), (audit, 50)):
        body = {"records": [{"data": i} for i in range(1, n + 1)]}
        httpx.post(f"{base_url}/v0/topics/{name}", json=body).raise_for_status()


def _append(base_url: str, name: str, data: Any) -> None:
    body = {"records": [{"data": data}]}
    httpx.post(f"{base_url}/v0/topics/{name}", json=body).raise_for_status()


def test_sync_mixed_map_tails_the_bare_topic(base_url: str, topic: str) -> None:
    orders, audit = topic + "-orders", topic + "-audit"
    _seed(base_url, orders, audit)
    got: dict[str, list[int]] = {orders: [], audit: []}
    caught_up: set[str] = set()
    with Client(base_url) as client, client.watch.stream({orders: None, audit: 41}) as stream:
        for event in stream:
            if isinstance(event, RecordsEvent):
                got[event.topic] += [r.seq for r in event.records]
                if got[orders]:
                    break
            elif isinstance(event, CaughtUpEvent) and event.topic not in caught_up:
                caught_up.add(event.topic)
                if caught_up == {orders, audit}:
                    _append(base_url, orders, "new")  # the only orders record to arrive
    assert got == {orders: [8], audit: list(range(42, 51))}


@pytest.mark.anyio
async def test_async_mixed_map_tails_the_bare_topic(base_url: str, topic: str) -> None:
    orders, audit = topic + "-orders", topic + "-audit"
    _seed(base_url, orders, audit)
    got: dict[str, list[int]] = {orders: [], audit: []}
    caught_up: set[str] = set()
    async with (
        AsyncClient(base_url) as client,
        client.watch.stream({orders: None, audit: 41}) as stream,
    ):
        async for event in stream:
            if isinstance(event, RecordsEvent):
                got[event.topic] += [r.seq for r in event.records]
                if got[orders]:
                    break
            elif isinstance(event, CaughtUpEvent) and event.topic not in caught_up:
                caught_up.add(event.topic)
                if caught_up == {orders, audit}:
                    _append(base_url, orders, "new")
    assert got == {orders: [8], audit: list(range(42, 51))}
