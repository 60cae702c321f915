"""Watch streams under faults: cut frames, silence, collected sessions, error frames."""

from __future__ import annotations

import httpx
import pytest

from tests.client.fakes import (
    SHUTDOWN,
    Conn,
    FakeWatchServer,
    cid,
    frame,
    not_found,
    records_frame,
)
from topics_client import (
    APIConnectionError,
    AsyncClient,
    CaughtUpEvent,
    Client,
    Gap,
    RecordsEvent,
    StreamError,
    StreamErrorEvent,
    TopicDeletedEvent,
    WatchEvent,
)
from topics_client._base import BaseClient
from topics_client._config import WATCHDOG_SLACK

# A terminal error frame ends the fake streams (a shutdown frame would make the client
# reconnect: see test_shutdown_frame_reconnects_transparently).
END = frame("error", {"code": 410, "message": "bye"})


@pytest.fixture(autouse=True)
def instant_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BaseClient, "_retry_delay", lambda self, attempt, retry_after: 0.0)


def run(
    server: FakeWatchServer, topics: object, **kwargs: object
) -> tuple[list[WatchEvent], dict[str, int]]:
    with (
        Client("http://h", transport=httpx.MockTransport(server)) as client,
        client.watch.stream(topics, **kwargs) as stream,
    ):  # type: ignore[arg-type]
        events = list(stream)
        return events, stream.cursors


def seqs(events: list[WatchEvent], topic: str = "a") -> list[int]:
    return [
        r.seq for e in events if isinstance(e, RecordsEvent) and e.topic == topic for r in e.records
    ]


def test_cut_mid_frame_resumes_with_last_event_id() -> None:
    first = records_frame("a", [1, 2], from_seq=0, event_id=cid({"a": 2}))
    second = records_frame("a", [3, 4], from_seq=2, event_id=cid({"a": 4}))
    rewound = records_frame("a", [2, 3, 4, 5], from_seq=1, event_id=cid({"a": 5}))
    server = FakeWatchServer(
        [
            Conn([first, second[: len(second) // 2]], httpx.RemoteProtocolError("cut")),
            Conn([rewound, frame("caught-up", {"topic": "a", "head_seq": 5}), END]),
        ]
    )
    with (
        Client("http://h", transport=httpx.MockTransport(server)) as client,
        client.watch.stream({"a": 0}) as stream,
    ):
        events, cursors = list(stream), stream.cursors
        # record 2 came again on the second connection: dropped and counted
        assert (stream.duplicates_dropped, stream.connections, stream.sessions) == (1, 2, 1)
    assert seqs(events) == [1, 2, 3, 4, 5]
    assert server.gets[1].headers["last-event-id"] == cid({"a": 2})
    assert "last-event-id" not in server.gets[0].headers
    assert isinstance(events[-2], CaughtUpEvent)
    assert isinstance(events[-1], StreamErrorEvent) and events[-1].terminal
    assert events[-1].message == "bye" and cursors == {"a": 5}
    assert len(server.posts) == 1


def test_silent_stream_trips_heartbeat_watchdog() -> None:
    hb = b": hb 1760000000000\n\n"
    server = FakeWatchServer(
        [
            Conn(
                [hb, records_frame("a", [1], from_seq=0, event_id=cid({"a": 1})), hb],
                httpx.ReadTimeout("silence"),
            ),
            Conn([hb, records_frame("a", [2], from_seq=1, event_id=cid({"a": 2})), END]),
        ]
    )
    events, _ = run(server, ["a"], heartbeat_ms=1000)
    assert seqs(events) == [1, 2]
    for request in server.gets:
        # The watchdog is the read timeout: 2 × heartbeat + slack, not the 30 s default.
        assert request.extensions["timeout"]["read"] == 2.0 + WATCHDOG_SLACK
        assert request.headers["accept"] == "text/event-stream"
    assert server.gets[1].headers["last-event-id"] == cid({"a": 1})


def test_collected_session_is_recreated_from_composite_cursor() -> None:
    server = FakeWatchServer(
        [
            Conn(
                [records_frame("a", [1, 3], from_seq=0, to_seq=3, event_id=cid({"a": 3, "b": 9}))],
                httpx.ReadError("reset"),
            ),
            Conn(response=not_found()),
            Conn([records_frame("a", [4], from_seq=3, event_id=cid({"a": 4, "b": 9})), END]),
        ]
    )
    with (
        Client("http://h", transport=httpx.MockTransport(server)) as client,
        client.watch.stream({"a": 0, "b": 2}) as stream,
    ):
        events, cursors = list(stream), stream.cursors
        assert (stream.duplicates_dropped, stream.connections, stream.sessions) == (0, 3, 2)
    assert seqs(events) == [1, 3, 4]
    assert server.posts[0]["topics"] == {"a": {"from_seq": 0}, "b": {"from_seq": 2}}
    assert server.posts[1]["topics"] == {"a": {"from_seq": 3}, "b": {"from_seq": 9}}
    assert [r.url.path for r in server.gets] == [
        "/v0/watch/wid_1",
        "/v0/watch/wid_1",
        "/v0/watch/wid_2",
    ]
    assert cursors == {"a": 4, "b": 2}


def test_opaque_ids_fall_back_to_tracked_to_seq() -> None:
    server = FakeWatchServer(
        [
            Conn(
                [records_frame("a", [1, 3], from_seq=0, to_seq=5, event_id="ckpt:opaque")],
                httpx.RemoteProtocolError("cut"),
            ),
            Conn(response=not_found()),
            Conn([END]),
        ]
    )
    events, cursors = run(server, {"a": 0})
    assert server.gets[1].headers["last-event-id"] == "ckpt:opaque"
    assert server.posts[1]["topics"] == {"a": {"from_seq": 5}}
    assert cursors == {"a": 5} and seqs(events) == [1, 3]


def test_error_frames_429_is_advisory_others_terminal() -> None:
    server = FakeWatchServer(
        [
            Conn(
                [
                    frame("error", {"code": 429, "error": "slow down", "retry_after_ms": 50}),
                    records_frame("a", [1], from_seq=0, event_id=cid({"a": 1})),
                    frame("error", {"code": "410", "error": "gone"}),
                    records_frame("a", [2], from_seq=1, event_id=cid({"a": 2})),
                ]
            )
        ]
    )
    events, _ = run(server, ["a"])
    advisory, records, terminal = events
    assert isinstance(advisory, StreamErrorEvent) and not advisory.terminal
    assert advisory.retry_after_ms == 50 and advisory.message == "slow down"
    assert isinstance(records, RecordsEvent)
    assert isinstance(terminal, StreamErrorEvent) and terminal.terminal and terminal.code == 410
    assert len(server.gets) == 1


def test_tombstone_and_topic_deleted_frames() -> None:
    tomb = {
        "topic": "a",
        "reason": "from_seq_too_old",
        "gap_from": 1,
        "gap_to": 4,
        "earliest_seq": 5,
        "head_seq": 6,
    }
    server = FakeWatchServer(
        [
            Conn(
                [
                    frame("tombstone", tomb, cid({"a": 4, "b": 0})),
                    records_frame("a", [5, 6], from_seq=4, event_id=cid({"a": 6, "b": 0})),
                    frame(
                        "topic-deleted",
                        {"topic": "b", "head_seq": 0, "reason": "deleted"},
                        cid({"a": 6, "b": 0}),
                    ),
                    frame(
                        "topic-deleted",
                        {"topic": "a", "head_seq": 0, "reason": "deleted"},
                        cid({"a": 6, "b": 0}),
                    ),
                ]
            )
        ]
    )
    events, cursors = run(server, ["a", "b"])
    gap = events[0]
    assert isinstance(gap, Gap) and (gap.gap_from, gap.gap_to, gap.cursor) == (1, 4, 0)
    assert seqs(events) == [5, 6]
    assert [e.topic for e in events if isinstance(e, TopicDeletedEvent)] == ["b", "a"]
    assert cursors == {"a": 6, "b": 0}  # every topic gone: the stream ended by itself


def test_topic_deleted_while_session_was_collected() -> None:
    server = FakeWatchServer(
        [
            Conn(
                [records_frame("a", [1], from_seq=0, event_id=cid({"a": 1, "b": 0}))],
                httpx.RemoteProtocolError("cut"),
            ),
            Conn(response=not_found()),
            Conn([END]),
        ],
        post_errors=[],
    )
    original = server.__call__
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            calls["n"] += 1
            if calls["n"] == 2:
                server.posts.append({})
                return not_found("topic_not_found", topic="b")
        return original(request)

    with Client("http://h", transport=httpx.MockTransport(handler)) as client:
        events = list(client.watch.stream(["a", "b"]))
    deleted = [e for e in events if isinstance(e, TopicDeletedEvent)]
    assert [(e.topic, e.reason) for e in deleted] == [("b", "not_found")]
    assert server.posts[-1]["topics"] == {"a": {"from_seq": 1}}


def test_reconnects_exhausted_raise_client_error() -> None:
    server = FakeWatchServer([httpx.ConnectError("refused")] * 3)
    with pytest.raises(APIConnectionError) as info:
        run(server, ["a"], max_reconnects=2)
    assert isinstance(info.value.__cause__, httpx.ConnectError)


def test_wrong_content_type_is_a_stream_error() -> None:
    server = FakeWatchServer([Conn(response=httpx.Response(200, json={"oops": 1}))])
    with pytest.raises(StreamError):
        run(server, ["a"])


def test_unauthorized_stream_raises_immediately() -> None:
    body = {"error": {"code": "unauthorized", "message": "no key"}}
    server = FakeWatchServer([Conn(response=httpx.Response(401, json=body))])
    with pytest.raises(Exception) as info:
        run(server, ["a"])
    assert type(info.value).__name__ == "AuthenticationError"


def test_tail_and_options_in_post_body() -> None:
    server = FakeWatchServer([Conn([END])])
    run(server, ["a", "b"], tail=True, include_data=False, node=["n1", "n2"], heartbeat_ms=5000)
    assert server.posts[0] == {
        "topics": {"a": {"tail": True}, "b": {"tail": True}},
        "include_data": False,
        "node": ["n1", "n2"],
        "heartbeat_ms": 5000,
    }


def test_create_session_only() -> None:
    server = FakeWatchServer([])
    with Client("http://h", transport=httpx.MockTransport(server)) as client:
        session = client.watch.create({"a": 3})
        raw = client.with_raw_response.watch.create(["a"], lenient=True)
    assert session.wid == "wid_1" and session.topics["a"].from_seq == 3
    assert raw.status_code == 200 and raw.http_response.request.url.params["lenient"] == "true"


@pytest.mark.anyio
async def test_async_stream_cut_collected_and_resumed() -> None:
    server = FakeWatchServer(
        [
            Conn(
                [records_frame("a", [1, 2], from_seq=0, event_id=cid({"a": 2}))],
                httpx.ReadTimeout("silent"),
            ),
            Conn(response=not_found()),
            Conn([records_frame("a", [2, 3], from_seq=1, event_id=cid({"a": 3})), END]),
        ]
    )
    async with (
        AsyncClient("http://h", transport=httpx.MockTransport(server)) as client,
        client.watch.stream({"a": 0}) as stream,
    ):
        events = [e async for e in stream]
        cursors = stream.cursors
    assert seqs(events) == [1, 2, 3]
    assert server.posts[1]["topics"] == {"a": {"from_seq": 2}}
    assert cursors == {"a": 3}


@pytest.mark.anyio
async def test_async_reconnects_exhausted() -> None:
    server = FakeWatchServer([httpx.RemoteProtocolError("x")] * 2)
    async with AsyncClient("http://h", transport=httpx.MockTransport(server)) as client:
        with pytest.raises(APIConnectionError):
            async for _ in client.watch.stream(["a"], max_reconnects=1):
                pass


def test_shutdown_frame_reconnects_transparently() -> None:
    """A draining server's ``server_shutting_down`` frame ends the connection, not the
    watch: the client reconnects (the restarted server no longer knows the session, so it
    re-POSTs from its cursors) and the caller sees neither the frame nor a duplicate."""
    server = FakeWatchServer(
        [
            Conn([records_frame("a", [1, 2], from_seq=0, event_id=cid({"a": 2})), SHUTDOWN]),
            httpx.ConnectError("refused"),
            Conn(response=not_found()),
            Conn([records_frame("a", [3], from_seq=2, event_id=cid({"a": 3})), END]),
        ]
    )
    events, cursors = run(server, {"a": 0})
    assert seqs(events) == [1, 2, 3] and cursors == {"a": 3}
    errors = [e for e in events if isinstance(e, StreamErrorEvent)]
    assert [e.code for e in errors] == [410]
    assert [p["topics"] for p in server.posts] == [{"a": {"from_seq": 0}}, {"a": {"from_seq": 2}}]


def test_session_repost_waits_for_a_server_that_is_down() -> None:
    """Re-creating a collected session while the server is unreachable counts as a failed
    reconnect (with backoff), it does not escape the stream."""
    server = FakeWatchServer(
        [
            Conn([records_frame("a", [1], from_seq=0, event_id=cid({"a": 1}))], None),
            Conn(response=not_found()),
            Conn([records_frame("a", [2], from_seq=1, event_id=cid({"a": 2})), END]),
        ]
    )
    refusals = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and server.posts and refusals["n"] < 3:
            refusals["n"] += 1
            raise httpx.ConnectError("refused", request=request)
        return server(request)

    with (
        Client("http://h", transport=httpx.MockTransport(handler), max_retries=0) as client,
        client.watch.stream({"a": 0}) as stream,
    ):
        events = list(stream)
    assert seqs(events) == [1, 2] and refusals["n"] == 3
    assert server.posts[-1]["topics"] == {"a": {"from_seq": 1}}
