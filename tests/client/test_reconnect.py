"""The one reconnect loop under injected faults (respx): watch sessions that keep
vanishing, and ``/work`` answering 503, for ``Worker`` and ``AsyncWorker`` alike."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import respx

from tests.client.fakes import SSE_HEADERS, frame
from topics_client import (
    AsyncClient,
    AsyncWorker,
    Client,
    Job,
    NotFoundError,
    NotReadyError,
    Worker,
)
from topics_client._base import BaseClient, backoff_delay

pytestmark = pytest.mark.timeout(30)

URL = "http://topics.test"
SESSION = {
    "wid": "w1",
    "stream_url": "/v0/watch/w1",
    "session_ttl_ms": 300000,
    "topics": {"a": {"from_seq": 0, "head_seq": 0, "earliest_seq": 1}},
}
GONE = {"error": {"code": "not_found", "message": "no such watch", "detail": {}}}
NOT_READY = {"error": {"code": "not_ready", "message": "recovering", "detail": {}}}
RETRY_1 = {"Retry-After": "1"}
JOB = {"$seq": 1, "$ts": 1, "lease_id": "L1", "deadline": 9, "deliveries": 1, "data": {"n": 1}}


@pytest.fixture
def delays(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The delays the client asks for (Retry-After or backoff), made instant."""
    asked: list[float] = []

    def fake(self: BaseClient, attempt: int, retry_after: float | None) -> float:
        asked.append(backoff_delay(attempt, retry_after))
        return 0.0

    monkeypatch.setattr(BaseClient, "_retry_delay", fake)
    return asked


def bounded(response: Callable[[], httpx.Response], limit: int = 20) -> Any:
    """A side effect that fails the test instead of looping forever."""
    calls = iter(range(limit))

    def effect(request: httpx.Request) -> httpx.Response:
        if next(calls, None) is None:
            raise AssertionError("the client kept reconnecting past max_reconnects")
        return response()

    return effect


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=URL, assert_all_called=False) as router:
        yield router


def test_watch_session_that_keeps_vanishing_gives_up(
    mock: respx.MockRouter, delays: list[float]
) -> None:
    post = mock.post("/v0/watch").respond(json=SESSION)
    get = mock.get("/v0/watch/w1").mock(side_effect=bounded(lambda: httpx.Response(404, json=GONE)))
    with Client(URL) as client, pytest.raises(NotFoundError):
        list(client.watch.stream({"a": 0}, max_reconnects=2))
    assert get.call_count == 3 and post.call_count == 3 and len(delays) == 2


@pytest.mark.anyio
async def test_async_watch_session_that_keeps_vanishing_gives_up(
    mock: respx.MockRouter, delays: list[float]
) -> None:
    mock.post("/v0/watch").respond(json=SESSION)
    get = mock.get("/v0/watch/w1").mock(side_effect=bounded(lambda: httpx.Response(404, json=GONE)))
    async with AsyncClient(URL) as client:
        with pytest.raises(NotFoundError):
            async for _ in client.watch.stream({"a": 0}, max_reconnects=2):
                pass
    assert get.call_count == 3


def _work_responses(unavailable: int) -> Callable[[httpx.Request], httpx.Response]:
    answers = [httpx.Response(503, json=NOT_READY, headers=RETRY_1) for _ in range(unavailable)]
    answers.append(httpx.Response(200, headers=SSE_HEADERS, content=frame("job", JOB)))
    script = iter(answers)
    calls = iter(range(20))

    def effect(request: httpx.Request) -> httpx.Response:
        if next(calls, None) is None:
            raise AssertionError("the worker kept reconnecting past max_reconnects")
        # Once the scripted answers run out the server is away again until the worker,
        # stopped by its handler, gives up reconnecting.
        return next(script, None) or httpx.Response(503, json=NOT_READY, headers=RETRY_1)

    return effect


def _ack(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"topic": "q", "acked": 1, "skipped": []})


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_stream_workers_retry_503_with_retry_after(
    mock: respx.MockRouter, delays: list[float], flavour: str
) -> None:
    work = mock.get("/v0/topics/q/work").mock(side_effect=_work_responses(2))
    ack = mock.post("/v0/topics/q/ack").mock(side_effect=_ack)
    handled: list[Job] = []
    if flavour == "sync":
        with Client(URL) as client:
            worker = Worker(client, "q", handled.append, stream=True, lease_ms=1000)
            worker.handler = lambda job: (handled.append(job), worker.stop())
            stats = worker.run()
    else:

        async def main() -> Any:
            async with AsyncClient(URL) as client:
                worker = AsyncWorker(client, "q", handled.append, stream=True, lease_ms=1000)
                worker.handler = lambda job: (handled.append(job), worker.stop())
                return await worker.run()

        stats = asyncio.run(main())
    assert [j.seq for j in handled] == [1] and stats.acked == 1 and ack.call_count == 1
    assert work.call_count >= 3 and delays[:2] == [1.0, 1.0]


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_stream_workers_give_up_after_max_reconnects(
    mock: respx.MockRouter, delays: list[float], flavour: str
) -> None:
    work = mock.get("/v0/topics/q/work").mock(side_effect=_work_responses(10))
    if flavour == "sync":
        with Client(URL) as client, pytest.raises(NotReadyError):
            Worker(client, "q", print, stream=True, lease_ms=1000, max_reconnects=3).run()
    else:

        async def main() -> None:
            async with AsyncClient(URL) as client:
                worker = AsyncWorker(
                    client, "q", print, stream=True, lease_ms=1000, max_reconnects=3
                )
                await worker.run()

        with pytest.raises(NotReadyError):
            asyncio.run(main())
    assert work.call_count == 4 and delays == [1.0, 1.0, 1.0]
