"""A caller's own httpx client: used as-is, ``base_url`` applied per request, never closed
by us (bug 1 of issue 11). Against the real server."""

from __future__ import annotations

import anyio
import httpx
import pytest

from topics_client import AsyncClient, Client, RecordsEvent


def test_callers_http_client_is_used_and_left_open(base_url: str, topic: str) -> None:
    seen: list[httpx.Request] = []
    http = httpx.Client(event_hooks={"request": [seen.append]})
    with Client(base_url, http_client=http) as client:
        client.topics.append(topic, {"n": 1})
        assert [r.data for r in client.topics.replay(topic)] == [{"n": 1}]  # type: ignore[union-attr]
        with client.watch.stream({topic: 0}) as stream:
            assert isinstance(next(stream), RecordsEvent)
    assert seen and all(str(r.url).startswith(base_url + "/v0/") for r in seen)
    assert seen[0].extensions["timeout"]["read"] == client.timeout.read
    assert not http.is_closed  # ours to use, the caller's to close
    http.get(base_url + "/v0/health").raise_for_status()
    http.close()


def test_callers_http_client_survives_with_options_and_close(base_url: str) -> None:
    http = httpx.Client()
    client = Client(base_url, http_client=http, timeout=4.0)
    fast = client.with_options(max_retries=0)
    assert fast.health().status == "ok"
    fast.close()
    client.close()
    assert not http.is_closed
    http.close()


def test_own_pool_is_closed(base_url: str) -> None:
    client = Client(base_url)
    client.health()
    client.close()
    assert client._http.is_closed


def test_limits_with_a_callers_client_is_refused() -> None:
    with pytest.raises(ValueError, match="http_client"):
        Client("http://h", http_client=httpx.Client(), limits=httpx.Limits(max_connections=1))


@pytest.mark.anyio
async def test_async_callers_http_client(base_url: str, topic: str) -> None:
    seen: list[httpx.Request] = []

    async def hook(request: httpx.Request) -> None:
        seen.append(request)

    http = httpx.AsyncClient(event_hooks={"request": [hook]})
    async with AsyncClient(base_url, http_client=http) as client:
        await client.topics.append(topic, {"n": 2})
        assert (await client.topics.get(topic)).head_seq == 1
    assert seen and all(str(r.url).startswith(base_url + "/v0/") for r in seen)
    assert not http.is_closed
    (await http.get(base_url + "/v0/health")).raise_for_status()
    await http.aclose()
    await anyio.lowlevel.checkpoint()
