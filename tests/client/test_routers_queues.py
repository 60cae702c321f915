"""Router and queue calls: wire shapes checked on a mock transport (the server's router
and queue endpoints come later), plus the /work stream under a dropped connection."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from tests.client.fakes import SSE_HEADERS, ChunkStream, frame
from topics_client import AsyncClient, Client, Job, NotAQueueError, StreamErrorEvent
from topics_client._base import BaseClient

ROUTER = {
    "router": "a->b",
    "created": True,
    "source": "a",
    "dest": "b",
    "preserve_node": True,
    "preserve_tag": False,
    "filter": ["tag", "Glob", "p*"],
    "allow_cycle": False,
    "guarantee": "exactly_once",
    "performance": {"server_total_ms": 0.1},
}
JOB = {
    "$seq": 31,
    "lease_id": "lease_1f",
    "deadline": 99,
    "$ts": 5,
    "$tag": "c",
    "deliveries": 1,
    "data": {"clip": 9},
}


class Recorder:
    def __init__(self, answers: dict[tuple[str, str], Any]) -> None:
        self.answers = answers
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        raw_path = request.url.raw_path.decode().split("?")[0]
        answer = self.answers[(request.method, raw_path)]
        if isinstance(answer, list):
            answer = answer.pop(0)
        return answer if isinstance(answer, httpx.Response) else httpx.Response(200, json=answer)

    def body(self, i: int) -> Any:
        return orjson.loads(self.requests[i].content)


@pytest.fixture(autouse=True)
def instant_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BaseClient, "_retry_delay", lambda self, attempt, retry_after: 0.0)


def test_routers() -> None:
    rec = Recorder(
        {
            ("PUT", "/v0/routers/a-%3Eb"): ROUTER,
            ("GET", "/v0/routers"): [
                {
                    "routers": [
                        {
                            "router": "a->b",
                            "source": "a",
                            "dest": "b",
                            "guarantee": "exactly_once",
                            "forwarded_total": 2,
                        }
                    ],
                    "next_cursor": "c1",
                },
                {"routers": []},
            ],
            ("DELETE", "/v0/routers/a-%3Eb"): {"router": "a->b", "deleted": True},
        }
    )
    with Client("http://h", transport=httpx.MockTransport(rec)) as client:
        router = client.routers.put(
            "a->b",
            source="a",
            dest="b",
            preserve_tag=False,
            filter=("tag", "Glob", "p*"),
            guarantee="exactly_once",
        )
        assert router.created and router.filter == ["tag", "Glob", "p*"]
        listed = list(client.routers.list(source="a"))
        assert [r.forwarded_total for r in listed] == [2]
        assert client.routers.delete("a->b").deleted
    assert rec.body(0) == {
        "source": "a",
        "dest": "b",
        "preserve_tag": False,
        "guarantee": "exactly_once",
        "filter": ["tag", "Glob", "p*"],
    }
    assert rec.requests[2].url.params["cursor"] == "c1"


def test_queue_ops_with_lease_fencing() -> None:
    rec = Recorder(
        {
            ("POST", "/v0/topics/q/claim"): {
                "topic": "q",
                "count": 1,
                "ready": 0,
                "claimed": [JOB],
            },
            ("POST", "/v0/topics/q/ack"): {
                "topic": "q",
                "acked": [31],
                "skipped": [],
                "ready": 0,
                "in_flight": 0,
            },
            ("POST", "/v0/topics/q/nack"): {
                "topic": "q",
                "nacked": [],
                "skipped": [31],
                "ready": 1,
                "in_flight": 0,
            },
            ("POST", "/v0/topics/q/extend"): {
                "topic": "q",
                "extended": [31],
                "skipped": [],
                "deadlines": {"31": 123},
            },
        }
    )
    with Client("http://h", transport=httpx.MockTransport(rec)) as client:
        claim = client.queues.claim("q", node="w1", max=5, lease_ms=1000)
        job = claim.jobs[0]
        assert (job.topic, job.seq, job.lease_id, job.tag) == ("q", 31, "lease_1f", "c")
        assert client.queues.ack("q", claim.jobs, node="w1").acked == 1
        assert client.queues.nack("q", [31], node="w1", delay_ms=10).skipped == (31,)
        assert client.queues.extend("q", [job], node="w1", lease_ms=500).deadlines == {31: 123}
    assert rec.body(0) == {"node": "w1", "max": 5, "lease_ms": 1000}
    assert rec.body(1) == {"node": "w1", "seqs": [31], "lease_ids": ["lease_1f"]}
    assert rec.body(2) == {"node": "w1", "seqs": [31], "delay_ms": 10}
    assert rec.body(3)["lease_ms"] == 500


def test_queue_op_on_log_topic() -> None:
    body = {"error": {"code": "not_a_queue", "message": "log", "detail": {"topic": "q"}}}
    rec = Recorder({("POST", "/v0/topics/q/claim"): httpx.Response(409, json=body)})
    with (
        Client("http://h", transport=httpx.MockTransport(rec)) as client,
        pytest.raises(NotAQueueError),
    ):
        client.queues.claim("q", node="w")


def _work_handler(conns: list[Any], seen: list[httpx.Request]) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        chunks, end = conns.pop(0)
        return httpx.Response(200, headers=SSE_HEADERS, stream=ChunkStream(chunks, end))

    return handler


def test_work_stream_reconnects_and_ends_on_error_frame() -> None:
    job = frame("job", {**JOB, "topic": "q"}, "31")
    gone = frame("error", {"code": 409, "error": "topic is no longer a queue", "topic": "q"})
    seen: list[httpx.Request] = []
    conns: list[Any] = [
        ([b"retry: 2000\n\n", job], httpx.RemoteProtocolError("drop")),
        ([job, gone], None),
    ]
    with (
        Client("http://h", transport=httpx.MockTransport(_work_handler(conns, seen))) as client,
        client.queues.work("q", node="w1", max=2) as stream,
    ):
        events = list(stream)
    assert [type(e) for e in events] == [Job, Job, StreamErrorEvent]
    assert isinstance(events[-1], StreamErrorEvent) and events[-1].code == 409
    assert seen[0].url.params["node"] == "w1" and seen[0].url.params["max"] == "2"
    assert seen[0].extensions["timeout"]["read"] > 30


@pytest.mark.anyio
async def test_async_routers_queues_parity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BaseClient, "_retry_delay", lambda self, attempt, retry_after: 0.0)
    rec = Recorder(
        {
            ("GET", "/v0/routers/a-%3Eb"): {**ROUTER, "forwarded_total": 7},
            ("POST", "/v0/topics/q/claim"): {
                "topic": "q",
                "count": 1,
                "ready": 0,
                "claimed": [JOB],
            },
        }
    )
    async with AsyncClient("http://h", transport=httpx.MockTransport(rec)) as client:
        assert (await client.routers.get("a->b")).forwarded_total == 7
        raw = await client.with_raw_response.queues.claim("q", node="w")
        assert raw.parse().jobs[0].seq == 31
        seen: list[httpx.Request] = []
        conns: list[Any] = [
            (
                [
                    frame("job", {**JOB, "topic": "q"}, "31"),
                    frame("error", {"code": "server_shutting_down", "message": "x"}),
                ],
                None,
            ),
            ([frame("error", {"code": 409, "error": "no longer a queue"})], None),
        ]
    async with AsyncClient(
        "http://h", transport=httpx.MockTransport(_work_handler(conns, seen))
    ) as c2:
        events = [e async for e in c2.queues.work("q", node="w")]
    # A draining server's shutdown frame is not an event: the stream comes back.
    assert isinstance(events[0], Job) and isinstance(events[1], StreamErrorEvent)
    assert events[1].code == 409 and len(events) == 2 and len(seen) == 2
