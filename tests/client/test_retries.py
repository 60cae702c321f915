"""Retries, timeouts and error mapping; faults injected with respx routes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import orjson
import pytest
import respx

from topics_client import (
    APIConnectionError,
    APIResponseError,
    APITimeoutError,
    AsyncClient,
    Client,
    InternalServerError,
    NotReadyError,
    ThrottledError,
    TopicFullError,
)
from topics_client._base import BaseClient, backoff_delay, parse_retry_after
from topics_client._config import LONG_POLL_SLACK, MAX_RETRY_AFTER

WRITE_OK = {
    "topic": "t",
    "first_seq": 1,
    "last_seq": 1,
    "seqs": [1],
    "head_seq": 1,
    "count": 1,
    "created": False,
    "deduped": False,
}


def error(status: int, code: str, retry_after: str | None = None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after else {}
    body = {"error": {"code": code, "message": code.replace("_", " ")}}
    return httpx.Response(status, json=body, headers=headers)


@pytest.fixture
def delays(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the delays the client asks for and make them instant."""
    asked: list[float] = []

    def fake(self: BaseClient, attempt: int, retry_after: float | None) -> float:
        asked.append(backoff_delay(attempt, retry_after))
        return 0.0

    monkeypatch.setattr(BaseClient, "_retry_delay", fake)
    return asked


URL = "http://topics.test"


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=URL) as router:
        yield router


def bodies(route: respx.Route) -> list[Any]:
    return [orjson.loads(call.request.content) for call in route.calls]


@pytest.mark.parametrize("status,code", [(429, "throttled"), (503, "not_ready")])
def test_write_retried_with_same_key_and_retry_after(
    mock: respx.MockRouter, delays: list[float], status: int, code: str
) -> None:
    write = mock.post("/v0/topics/t").mock(
        side_effect=[
            error(status, code, "3"),
            error(status, code, "1"),
            httpx.Response(200, json=WRITE_OK),
        ]
    )
    with Client(URL) as client:
        raw = client.with_raw_response.topics.append("t", {"x": 1})
    assert raw.retries_taken == 2 and raw.parse().seqs == (1,)
    assert delays == [3.0, 1.0]
    keys = {body["idempotency_key"] for body in bodies(write)}
    assert write.call_count == 3 and keys == {raw.parse().idempotency_key}


def test_retries_exhausted_raise_typed_error(mock: respx.MockRouter, delays: list[float]) -> None:
    get = mock.get("/v0/topics/t").mock(return_value=error(429, "throttled", "1"))
    with Client(URL) as client, pytest.raises(ThrottledError) as info:
        client.topics.get("t")
    assert get.call_count == 3 and info.value.retry_after == 1.0 and info.value.status == 429


def test_retry_after_is_capped_and_backoff_grows() -> None:
    assert backoff_delay(0, 3600.0) == MAX_RETRY_AFTER
    plain = [backoff_delay(n, None) for n in range(4)]
    assert all(0.75 * 0.25 * 2**n <= d <= 0.25 * 2**n for n, d in enumerate(plain))
    assert parse_retry_after("2") == 2.0 and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_connect_errors_are_retried_then_wrapped(
    mock: respx.MockRouter, delays: list[float]
) -> None:
    health = mock.get("/v0/health").mock(side_effect=httpx.ConnectError("refused"))
    with Client(URL) as client, pytest.raises(APIConnectionError) as info:
        client.health()
    assert health.call_count == 3 and len(delays) == 2
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert not isinstance(info.value, APITimeoutError)


def test_connect_error_then_success(mock: respx.MockRouter, delays: list[float]) -> None:
    ok = httpx.Response(200, json={"status": "ok", "version": "x", "uptime_ms": 1})
    mock.get("/v0/health").mock(side_effect=[httpx.ConnectError("refused"), ok])
    with Client(URL) as client:
        assert client.health().status == "ok"


def test_ambiguous_failure_not_retried_for_claim(
    mock: respx.MockRouter, delays: list[float]
) -> None:
    claim = mock.post("/v0/topics/q/claim").mock(side_effect=httpx.ReadTimeout("slow"))
    with Client(URL) as client, pytest.raises(APITimeoutError):
        client.queues.claim("q", node="w1")
    assert claim.call_count == 1


def test_ambiguous_failure_retried_for_keyed_write(
    mock: respx.MockRouter, delays: list[float]
) -> None:
    write = mock.post("/v0/topics/t").mock(
        side_effect=[
            httpx.ReadTimeout("slow"),
            httpx.Response(200, json={**WRITE_OK, "deduped": True}),
        ]
    )
    with Client(URL) as client:
        assert client.topics.append("t", 1).deduped
    first, second = bodies(write)
    assert first == second


def test_with_options_disables_retries_and_shares_pool(
    mock: respx.MockRouter, delays: list[float]
) -> None:
    get = mock.get("/v0/topics/t").mock(return_value=error(503, "not_ready", "1"))
    with Client(URL) as client:
        fast = client.with_options(max_retries=0, timeout=1.5)
        assert fast._http is client._http and fast.max_retries == 0
        with pytest.raises(NotReadyError):
            fast.topics.get("t")
        assert client.max_retries == 2
    assert get.call_count == 1 and get.calls.last.request.extensions["timeout"]["read"] == 1.5


def test_ready_is_never_retried(mock: respx.MockRouter, delays: list[float]) -> None:
    ready = mock.get("/v0/ready").mock(return_value=error(503, "not_ready", "1"))
    with Client(URL) as client, pytest.raises(NotReadyError):
        client.ready()
    assert ready.call_count == 1


def test_long_poll_extends_read_timeout(mock: respx.MockRouter) -> None:
    body = {
        "topic": "t",
        "records": [],
        "next_from_seq": 0,
        "head_seq": 0,
        "earliest_seq": 1,
        "caught_up": True,
        "tombstone": None,
        "lag": 0,
    }
    diff = mock.post("/v0/topics/t/diff").respond(json=body)
    with Client(URL) as client:
        client.topics.diff("t", wait_ms=20_000)
        client.topics.diff("t")
    timeouts = [call.request.extensions["timeout"] for call in diff.calls]
    assert timeouts[0]["read"] == 30.0 + 20.0 + LONG_POLL_SLACK
    assert timeouts[1]["read"] == 30.0 and timeouts[0]["connect"] == 5.0


def test_error_mapping_and_bad_bodies(mock: respx.MockRouter) -> None:
    mock.post("/v0/topics/t").mock(return_value=error(422, "topic_full"))
    mock.get("/v0/topics/t").mock(
        side_effect=[
            error(500, "internal"),
            httpx.Response(502, text="<html>bad gateway</html>"),
            httpx.Response(200, text="not json"),
            httpx.Response(200, json={"unexpected": True}),
        ]
    )
    with Client(URL) as client:
        client.max_retries = 0
        with pytest.raises(TopicFullError):
            client.topics.append("t", 1)
        with pytest.raises(InternalServerError):
            client.topics.get("t")
        with pytest.raises(InternalServerError) as info:
            client.topics.get("t")
        assert info.value.code == "http_502" and "bad gateway" in info.value.message
        with pytest.raises(APIResponseError):
            client.topics.get("t")
        with pytest.raises(APIResponseError):
            client.topics.get("t")


def test_api_key_and_path_encoding(mock: respx.MockRouter) -> None:
    router = {
        "router": "a->b",
        "source": "a",
        "dest": "b",
        "preserve_node": True,
        "preserve_tag": True,
        "filter": None,
        "allow_cycle": False,
        "guarantee": "at_least_once",
        "forwarded_total": 3,
    }
    get = mock.get(url__regex=r"/v0/routers/").respond(json=router)
    with Client(URL, api_key="s3cret") as client:
        assert client.routers.get("a->b").forwarded_total == 3
    request = get.calls.last.request
    assert request.headers["authorization"] == "Bearer s3cret"
    assert request.url.raw_path == b"/v0/routers/a-%3Eb"


@pytest.mark.anyio
async def test_async_retries_reuse_idempotency_key(
    mock: respx.MockRouter, delays: list[float]
) -> None:
    write = mock.post("/v0/topics/t").mock(
        side_effect=[
            error(429, "throttled", "2"),
            httpx.ConnectError("refused"),
            httpx.Response(200, json=WRITE_OK),
        ]
    )
    async with AsyncClient(URL) as client:
        raw = await client.with_raw_response.topics.write("t", [{"data": 1}])
    assert raw.retries_taken == 2 and delays[0] == 2.0
    assert len({body["idempotency_key"] for body in bodies(write)}) == 1


@pytest.mark.anyio
async def test_async_transport_errors_never_leak(
    mock: respx.MockRouter, delays: list[float]
) -> None:
    get = mock.get("/v0/topics/t").mock(side_effect=httpx.ReadTimeout("slow"))
    async with AsyncClient(URL) as client:
        with pytest.raises(APITimeoutError) as info:
            await client.topics.get("t")
    assert isinstance(info.value.__cause__, httpx.ReadTimeout) and get.call_count == 3
    await anyio.lowlevel.checkpoint()
