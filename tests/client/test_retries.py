"""Retries, timeouts and error mapping; faults injected with httpx.MockTransport only."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import anyio
import httpx
import orjson
import pytest

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


def scripted(
    responses: list[httpx.Response | Exception], seen: list[httpx.Request]
) -> Callable[[httpx.Request], httpx.Response]:
    queue: Iterator[httpx.Response | Exception] = iter(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = next(queue)
        if isinstance(item, Exception):
            raise item
        return item

    return handler


def make_client(responses: list[httpx.Response | Exception], seen: list[httpx.Request]) -> Client:
    return Client("http://topics.test", transport=httpx.MockTransport(scripted(responses, seen)))


@pytest.mark.parametrize("status,code", [(429, "throttled"), (503, "not_ready")])
def test_write_retried_with_same_key_and_retry_after(
    delays: list[float], status: int, code: str
) -> None:
    seen: list[httpx.Request] = []
    responses: list[httpx.Response | Exception] = [
        error(status, code, "3"),
        error(status, code, "1"),
        httpx.Response(200, json=WRITE_OK),
    ]
    with make_client(responses, seen) as client:
        raw = client.with_raw_response.topics.append("t", {"x": 1})
    assert raw.retries_taken == 2 and raw.parse().seqs == (1,)
    assert delays == [3.0, 1.0]
    keys = {orjson.loads(r.content)["idempotency_key"] for r in seen}
    assert len(seen) == 3 and len(keys) == 1 and raw.parse().idempotency_key in keys


def test_retries_exhausted_raise_typed_error(delays: list[float]) -> None:
    seen: list[httpx.Request] = []
    responses: list[httpx.Response | Exception] = [error(429, "throttled", "1")] * 3
    with make_client(responses, seen) as client, pytest.raises(ThrottledError) as info:
        client.topics.get("t")
    assert len(seen) == 3 and info.value.retry_after == 1.0 and info.value.status == 429


def test_retry_after_is_capped_and_backoff_grows() -> None:
    assert backoff_delay(0, 3600.0) == MAX_RETRY_AFTER
    plain = [backoff_delay(n, None) for n in range(4)]
    assert all(0.75 * 0.25 * 2**n <= d <= 0.25 * 2**n for n, d in enumerate(plain))
    assert parse_retry_after("2") == 2.0 and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_connect_errors_are_retried_then_wrapped(delays: list[float]) -> None:
    seen: list[httpx.Request] = []
    boom = httpx.ConnectError("refused")
    with make_client([boom, boom, boom], seen) as client, pytest.raises(APIConnectionError) as info:
        client.health()
    assert len(seen) == 3 and len(delays) == 2
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert not isinstance(info.value, APITimeoutError)


def test_connect_error_then_success(delays: list[float]) -> None:
    seen: list[httpx.Request] = []
    ok = httpx.Response(200, json={"status": "ok", "version": "x", "uptime_ms": 1})
    with make_client([httpx.ConnectError("refused"), ok], seen) as client:
        assert client.health().status == "ok"


def test_ambiguous_failure_not_retried_for_claim(delays: list[float]) -> None:
    seen: list[httpx.Request] = []
    with make_client([httpx.ReadTimeout("slow")], seen) as client, pytest.raises(APITimeoutError):
        client.queues.claim("q", node="w1")
    assert len(seen) == 1


def test_ambiguous_failure_retried_for_keyed_write(delays: list[float]) -> None:
    seen: list[httpx.Request] = []
    responses: list[httpx.Response | Exception] = [
        httpx.ReadTimeout("slow"),
        httpx.Response(200, json={**WRITE_OK, "deduped": True}),
    ]
    with make_client(responses, seen) as client:
        assert client.topics.append("t", 1).deduped
    assert orjson.loads(seen[0].content) == orjson.loads(seen[1].content)


def test_with_options_disables_retries_and_shares_pool(delays: list[float]) -> None:
    seen: list[httpx.Request] = []
    with make_client([error(503, "not_ready", "1")], seen) as client:
        fast = client.with_options(max_retries=0, timeout=1.5)
        assert fast._http is client._http and fast.max_retries == 0
        with pytest.raises(NotReadyError):
            fast.topics.get("t")
        assert client.max_retries == 2
    assert len(seen) == 1 and seen[0].extensions["timeout"]["read"] == 1.5


def test_ready_is_never_retried(delays: list[float]) -> None:
    seen: list[httpx.Request] = []
    with make_client([error(503, "not_ready", "1")], seen) as client, pytest.raises(NotReadyError):
        client.ready()
    assert len(seen) == 1


def test_long_poll_extends_read_timeout() -> None:
    seen: list[httpx.Request] = []
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
    responses: list[httpx.Response | Exception] = [httpx.Response(200, json=body)] * 2
    with make_client(responses, seen) as client:
        client.topics.diff("t", wait_ms=20_000)
        client.topics.diff("t")
    timeouts = [r.extensions["timeout"] for r in seen]
    assert timeouts[0]["read"] == 30.0 + 20.0 + LONG_POLL_SLACK
    assert timeouts[1]["read"] == 30.0 and timeouts[0]["connect"] == 5.0


def test_error_mapping_and_bad_bodies() -> None:
    seen: list[httpx.Request] = []
    responses: list[httpx.Response | Exception] = [
        error(422, "topic_full"),
        error(500, "internal"),
        httpx.Response(502, text="<html>bad gateway</html>"),
        httpx.Response(200, text="not json"),
        httpx.Response(200, json={"unexpected": True}),
    ]
    with make_client(responses, seen) as client:
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


def test_api_key_and_path_encoding() -> None:
    seen: list[httpx.Request] = []
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
    handler = scripted([httpx.Response(200, json=router)], seen)
    with Client("http://h", api_key="s3cret", transport=httpx.MockTransport(handler)) as client:
        assert client.routers.get("a->b").forwarded_total == 3
    assert seen[0].headers["authorization"] == "Bearer s3cret"
    assert seen[0].url.raw_path == b"/v0/routers/a-%3Eb"


@pytest.mark.anyio
async def test_async_retries_reuse_idempotency_key(delays: list[float]) -> None:
    seen: list[httpx.Request] = []
    responses: list[httpx.Response | Exception] = [
        error(429, "throttled", "2"),
        httpx.ConnectError("refused"),
        httpx.Response(200, json=WRITE_OK),
    ]
    handler = scripted(responses, seen)
    async with AsyncClient("http://h", transport=httpx.MockTransport(handler)) as client:
        raw = await client.with_raw_response.topics.write("t", [{"data": 1}])
    assert raw.retries_taken == 2 and delays[0] == 2.0
    assert len({orjson.loads(r.content)["idempotency_key"] for r in seen}) == 1


@pytest.mark.anyio
async def test_async_transport_errors_never_leak(delays: list[float]) -> None:
    seen: list[httpx.Request] = []
    handler = scripted([httpx.ReadTimeout("slow")] * 3, seen)
    async with AsyncClient("http://h", transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(APITimeoutError) as info:
            await client.topics.get("t")
    assert isinstance(info.value.__cause__, httpx.ReadTimeout) and len(seen) == 3
    await anyio.lowlevel.checkpoint()
