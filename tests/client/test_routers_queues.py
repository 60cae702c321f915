"""Queue calls against the real server (lease fencing, a log topic refusing queue ops), and
the ``/work`` stream under injected faults (respx): a dropped connection, a draining
server's shutdown frame, a terminal error frame. Routers are covered live in
``test_live.py``."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import respx

from tests.client.conftest import Facade
from tests.client.fakes import SSE_HEADERS, ChunkStream, frame
from topics_client import AsyncClient, Client, Job, NotAQueueError, StreamErrorEvent
from topics_client._base import BaseClient

URL = "http://topics.test"
JOB = {
    "$seq": 31,
    "lease_id": "lease_1f",
    "deadline": 99,
    "$ts": 5,
    "$tag": "c",
    "deliveries": 1,
    "data": {"clip": 9},
}


@pytest.fixture(autouse=True)
def instant_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BaseClient, "_retry_delay", lambda self, attempt, retry_after: 0.0)


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=URL) as router:
        yield router


def sse(*frames: bytes, end: Exception | None = None) -> httpx.Response:
    return httpx.Response(200, headers=SSE_HEADERS, stream=ChunkStream(frames, end))


def test_queue_ops_with_lease_fencing(api: Facade, topic: str) -> None:
    api.topics.put(topic, type="queue", lease_ms=30_000)
    api.topics.write(topic, [{"data": {"clip": n}, "tag": f"c{n}"} for n in range(3)])
    claim = api.queues.claim(topic, node="w1", max=2, lease_ms=30_000)
    first, second = claim.jobs
    assert (first.topic, first.seq, first.tag, first.data) == (topic, 1, "c0", {"clip": 0})
    assert first.lease_id and first.deliveries == 1 and claim.ready == 1

    extended = api.queues.extend(topic, [first], node="w1", lease_ms=60_000)
    assert extended.extended == 1 and extended.deadlines[1] > first.deadline
    assert api.queues.ack(topic, [first], node="w1").acked == 1
    # The Job carries its lease id: a settle after the lease moved on is skipped (fenced).
    assert api.queues.nack(topic, [second], node="w1", delay_ms=0).nacked == 1
    again = api.queues.claim(topic, node="w2", max=1).jobs[0]
    assert again.seq == second.seq and again.lease_id != second.lease_id
    stale = api.queues.ack(topic, [second], node="w1")
    assert stale.acked == 0 and stale.skipped == (second.seq,)
    assert api.queues.ack(topic, [again.seq], node="w2").acked == 1  # by seq, unfenced


def test_queue_op_on_log_topic(api: Facade, topic: str) -> None:
    api.topics.append(topic, 1)
    with pytest.raises(NotAQueueError):
        api.queues.claim(topic, node="w")


def test_work_stream_reconnects_and_ends_on_error_frame(mock: respx.MockRouter) -> None:
    job = frame("job", {**JOB, "topic": "q"}, "31")
    gone = frame("error", {"code": 409, "error": "topic is no longer a queue", "topic": "q"})
    work = mock.get("/v0/topics/q/work").mock(
        side_effect=[
            sse(b"retry: 2000\n\n", job, end=httpx.RemoteProtocolError("drop")),
            sse(job, gone),
        ]
    )
    with Client(URL) as client, client.queues.work("q", node="w1", max=2) as stream:
        events = list(stream)
    assert [type(e) for e in events] == [Job, Job, StreamErrorEvent]
    assert isinstance(events[-1], StreamErrorEvent) and events[-1].code == 409
    request = work.calls[0].request
    assert request.url.params["node"] == "w1" and request.url.params["max"] == "2"
    assert request.extensions["timeout"]["read"] > 30 and work.call_count == 2


@pytest.mark.anyio
async def test_async_work_stream_comes_back_after_a_shutdown_frame(
    mock: respx.MockRouter,
) -> None:
    work = mock.get("/v0/topics/q/work").mock(
        side_effect=[
            sse(
                frame("job", {**JOB, "topic": "q"}, "31"),
                frame("error", {"code": "server_shutting_down", "message": "x"}),
            ),
            sse(frame("error", {"code": 409, "error": "no longer a queue"})),
        ]
    )
    async with AsyncClient(URL) as client:
        events = [e async for e in client.queues.work("q", node="w")]
    # A draining server's shutdown frame is not an event: the stream comes back.
    assert isinstance(events[0], Job) and isinstance(events[1], StreamErrorEvent)
    assert events[1].code == 409 and len(events) == 2 and work.call_count == 2
