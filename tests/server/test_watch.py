"""The multiplexed SSE watch (SPEC §9), parsed with a real SSE parser (httpx-sse)."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx_sse

from tests.serverproc import ServerProcess


def write(http: httpx.Client, topic: str, *records: dict[str, Any], **extra: Any) -> Any:
    r = http.post(f"/v0/topics/{topic}", json={"records": list(records), **extra})
    assert r.status_code in (200, 201), r.text
    return r.json()


def watch(http: httpx.Client, topics: dict[str, Any], **options: Any) -> dict[str, Any]:
    r = http.post("/v0/watch", json={"topics": topics, **options})
    assert r.status_code == 200, r.text
    return dict(r.json())


def decode_id(event_id: str) -> dict[str, int]:
    return dict(json.loads(base64.urlsafe_b64decode(event_id + "=" * (-len(event_id) % 4))))


class Events:
    """An open SSE stream with a bounded ``until``."""

    def __init__(self, source: httpx_sse.EventSource) -> None:
        self.source = source
        self.iterator = source.iter_sse()
        self.seen: list[httpx_sse.ServerSentEvent] = []

    def next(self) -> httpx_sse.ServerSentEvent:
        """The next event, past the stream's opening ``retry:`` field."""
        while True:
            event = next(self.iterator)
            if event.event == "message" and not event.data:
                continue
            self.seen.append(event)
            return event

    def until(
        self, done: Callable[[httpx_sse.ServerSentEvent], bool], limit: int = 10_000
    ) -> list[httpx_sse.ServerSentEvent]:
        got = []
        for _ in range(limit):
            event = self.next()
            got.append(event)
            if done(event):
                return got
        raise AssertionError("the expected event never came")


@contextmanager
def stream(
    base_url: str, wid: str, headers: dict[str, str] | None = None, read: float = 10.0
) -> Iterator[Events]:
    timeout = httpx.Timeout(10.0, read=read)
    with (
        httpx.Client(base_url=base_url, timeout=timeout) as client,
        httpx_sse.connect_sse(
            client, "GET", f"/v0/watch/{wid}", headers=dict(headers or {})
        ) as source,
    ):
        assert source.response.status_code == 200
        yield Events(source)


def caught_up(topic: str) -> Callable[[httpx_sse.ServerSentEvent], bool]:
    return lambda e: e.event == "caught-up" and e.json()["topic"] == topic


def test_create_validates(http: httpx.Client, topic: str) -> None:
    write(http, topic, {"data": 1})
    for body in (
        {},
        {"topics": {}},
        {"topics": []},
        {"topics": {topic: {"from_seq": -1}}},
        {"topics": {topic: {"tail": "yes"}}},
        {"topics": {topic: {}}, "consistency": "linear"},
        {"topics": {topic: {}}, "node": 5},
        {"topics": {f"t{i}": {} for i in range(257)}},
    ):
        r = http.post("/v0/watch", json=body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["code"] == "invalid_request"
    r = http.post("/v0/watch", json={"topics": {topic: {}, f"{topic}-nope": {}}})
    assert r.status_code == 404
    assert r.json()["error"]["detail"]["topic"] == f"{topic}-nope"
    r = http.post("/v0/watch?lenient=true", json={"topics": {topic: {}, f"{topic}-nope": {}}})
    assert r.status_code == 200
    assert list(r.json()["topics"]) == [topic]
    assert http.post("/v0/watch", content=b"{}").status_code == 415


def test_create_response(http: httpx.Client, topic: str) -> None:
    write(http, topic, *[{"data": i} for i in range(5)])
    body = watch(http, {topic: {"from_seq": 2}, f"{topic}": {"tail": True}})
    assert body["wid"].startswith("wid_") and len(body["wid"]) >= 4 + 22
    assert body["stream_url"] == f"/v0/watch/{body['wid']}"
    assert body["session_ttl_ms"] == 300_000
    assert body["topics"][topic] == {"from_seq": 5, "head_seq": 5, "earliest_seq": 1}
    assert "server_total_ms" in body["performance"]


def test_stream_headers_accept_and_unknown(http: httpx.Client, base_url: str, topic: str) -> None:
    write(http, topic, {"data": 1})
    wid = watch(http, {topic: {}})["wid"]
    r = http.get(f"/v0/watch/{wid}", headers={"accept": "application/json"})
    assert r.status_code == 406
    assert r.json()["error"]["code"] == "not_acceptable"
    r = http.get("/v0/watch/wid_doesnotexist")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
    with (
        httpx.Client(base_url=base_url, timeout=10) as client,
        client.stream("GET", f"/v0/watch/{wid}", headers={"accept": "*/*"}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-accel-buffering"] == "no"
        first = next(response.iter_lines())
        assert first == "retry: 2000"


def test_backlog_then_live_frames(http: httpx.Client, base_url: str, topic: str) -> None:
    other = f"{topic}-b"
    write(http, topic, *[{"data": i, "tag": f"t{i}"} for i in range(7)])
    write(http, other, {"data": "x"})
    wid = watch(http, {topic: {}, other: {"tail": True}}, limit=3, include_tags=True)["wid"]
    with stream(base_url, wid) as events:
        got = events.until(caught_up(topic))
        records = [e for e in got if e.event == "record"]
        assert [len(e.json()["records"]) for e in records] == [3, 3, 1]
        assert [r["$seq"] for e in records for r in e.json()["records"]] == list(range(1, 8))
        assert records[0].json()["records"][0]["$tag"] == "t0"
        first = records[0].json()
        assert (first["from_seq"], first["to_seq"], first["head_seq"]) == (0, 3, 7)
        for e in got:
            assert e.id, "data frames carry the composite cursor"
        assert decode_id(records[-1].id) == {topic: 7, other: 1}
        events.until(caught_up(other))
        # live: a write wakes the stream; then caught-up again
        write(http, other, {"data": "live"})
        live = events.until(caught_up(other))
        assert [e.event for e in live] == ["record", "caught-up"]
        assert live[0].json()["records"][0]["data"] == "live"
        assert decode_id(live[0].id) == {topic: 7, other: 2}


def test_include_and_node_filter(http: httpx.Client, base_url: str, topic: str) -> None:
    write(http, topic, {"data": 1, "node": "me", "meta": {"m": 1}}, {"data": 2, "node": "you"})
    wid = watch(http, {topic: {}}, node="me", include_data=False, include_meta=False)["wid"]
    with stream(base_url, wid) as events:
        got = events.until(caught_up(topic))
        records = [r for e in got if e.event == "record" for r in e.json()["records"]]
        assert records == [{"$seq": 2, "$ts": records[0]["$ts"], "$node": "you"}]


def test_record_frames_are_the_compact_json_of_their_records(
    http: httpx.Client, base_url: str, topic: str
) -> None:
    """Frames splice stored JSON: still exactly the compact JSON, odd strings escaped."""
    odd = ['q"uote', "back\\slash", "ctl\x01\x1f\n", "é中😀", "\u2028\x7f/"]
    records = [{"data": [i, s], "tag": s, "node": s, "meta": {"m": s}} for i, s in enumerate(odd)]
    write(http, topic, *records, {"data": None})
    wid = watch(http, {topic: {}}, include_tags=True, include_data=False)["wid"]
    with stream(base_url, wid) as events:
        got = events.until(caught_up(topic))
    frames = [e for e in got if e.event == "record"]
    assert len(frames) == 1
    ts = frames[0].json()["records"][0]["$ts"]
    expected = [
        {"$seq": i, "$ts": ts, "$node": s, "$tag": s, "meta": {"m": s}}
        for i, s in enumerate(odd, 1)
    ] + [{"$seq": len(odd) + 1, "$ts": ts}]
    body = json.dumps(expected, separators=(",", ":"), ensure_ascii=False)
    assert f',"records":{body}}}' in frames[0].data


def test_max_batch_bytes_bounds_frames(http: httpx.Client, base_url: str, topic: str) -> None:
    write(http, topic, *[{"data": "x" * 100} for _ in range(10)])  # 102 bytes each
    wid = watch(http, {topic: {}}, max_batch_bytes=250)["wid"]
    with stream(base_url, wid) as events:
        got = events.until(caught_up(topic))
        sizes = [len(e.json()["records"]) for e in got if e.event == "record"]
        assert sizes == [2, 2, 2, 2, 2]


def test_tombstones_on_connect_and_live(http: httpx.Client, base_url: str, topic: str) -> None:
    http.put(f"/v0/topics/{topic}", json={"cap_records": 3})
    write(http, topic, *[{"data": i} for i in range(5)])
    wid = watch(http, {topic: {"from_seq": 0}}, limit=2)["wid"]
    with stream(base_url, wid) as events:
        first = events.next()
        assert first.event == "tombstone"
        tomb = first.json()
        assert tomb["reason"] == "from_seq_too_old"
        assert (tomb["gap_from"], tomb["gap_to"], tomb["earliest_seq"]) == (1, 2, 3)
        assert decode_id(first.id) == {topic: 2}
        events.until(caught_up(topic))
    # a second connection on the same session resumes silently: nothing new, no gap
    write(http, topic, *[{"data": i} for i in range(5, 12)])  # overruns the stored cursor
    with stream(base_url, wid) as events:
        first = events.next()
        assert first.event == "tombstone"
        # the first read of each connection is relabelled (SPEC §9.3)
        assert first.json()["reason"] == "from_seq_too_old"
        assert first.json()["gap_from"] == 6
        events.until(caught_up(topic))
        # while live, an overrun between reads keeps its real reason
        write(http, topic, *[{"data": i} for i in range(100, 110)])
        got = events.until(lambda e: e.event == "tombstone")
        assert got[-1].json()["reason"] == "cap"


def test_topic_deleted_ends_only_that_topic(http: httpx.Client, base_url: str, topic: str) -> None:
    other = f"{topic}-b"
    write(http, topic, {"data": 1})
    write(http, other, {"data": 1})
    wid = watch(http, {topic: {}, other: {}})["wid"]
    with stream(base_url, wid) as events:
        events.until(caught_up(other))
        http.delete(f"/v0/topics/{topic}")
        deleted = events.until(lambda e: e.event == "topic-deleted")[-1]
        assert deleted.json() == {"topic": topic, "head_seq": 0, "reason": "deleted"}
        write(http, other, {"data": 2})
        got = events.until(lambda e: e.event == "record")
        assert got[-1].json()["topic"] == other


def test_stream_ends_when_every_topic_is_gone(
    http: httpx.Client, base_url: str, topic: str
) -> None:
    write(http, topic, {"data": 1})
    wid = watch(http, {topic: {}})["wid"]
    with stream(base_url, wid) as events:
        events.until(caught_up(topic))
        http.delete(f"/v0/topics/{topic}")
        rest = list(events.iterator)  # the server closes the stream
        assert [e.event for e in rest] == ["topic-deleted"]


def test_heartbeat_comment(http: httpx.Client, base_url: str, topic: str) -> None:
    write(http, topic, {"data": 1})
    wid = watch(http, {topic: {"tail": True}}, heartbeat_ms=1)["wid"]  # clamped to 1000
    with (
        httpx.Client(base_url=base_url, timeout=10) as client,
        client.stream("GET", f"/v0/watch/{wid}") as response,
    ):
        started = time.monotonic()
        for line in response.iter_lines():
            if line.startswith(": hb"):
                elapsed = time.monotonic() - started
                assert int(line.split()[2]) > 1_700_000_000_000
                assert 0.9 <= elapsed < 5
                break


def test_resume_after_drop(http: httpx.Client, base_url: str, topic: str) -> None:
    """Every write lands while a stream is open: a stream the client just closed may not be
    detached on the server yet, and a write in that window is delivered to it (and moves the
    session cursor), which is exactly the loss ``Last-Event-ID`` exists to undo."""

    def seqs(events: list[httpx_sse.ServerSentEvent]) -> list[int]:
        return [r["$seq"] for e in events if e.event == "record" for r in e.json()["records"]]

    def is_record(e: httpx_sse.ServerSentEvent) -> bool:
        return e.event == "record"

    write(http, topic, *[{"data": i} for i in range(10)])
    wid = watch(http, {topic: {}}, limit=4)["wid"]
    with stream(base_url, wid) as events:
        got = events.until(caught_up(topic))
    last_id = next(e.id for e in got if e.event == "record")  # after seq 4
    assert decode_id(last_id) == {topic: 4}
    # no Last-Event-ID: the session's stored cursor rules; nothing is repeated
    with stream(base_url, wid) as events:
        assert seqs(events.until(caught_up(topic))) == []
        write(http, topic, {"data": 10})
        assert seqs(events.until(is_record)) == [11]
    # Last-Event-ID rewinds
    with stream(base_url, wid, headers={"last-event-id": last_id}) as events:
        assert seqs(events.until(caught_up(topic))) == list(range(5, 12))
        write(http, topic, {"data": 11})
        assert seqs(events.until(is_record)) == [12]
    # ... but never fast-forwards: the stored cursor (12) beats the id's 100
    ahead = base64.urlsafe_b64encode(json.dumps({topic: 100}).encode()).decode().rstrip("=")
    with stream(base_url, wid, headers={"last-event-id": ahead}) as events:
        assert seqs(events.until(caught_up(topic))) == []
        write(http, topic, {"data": 12})
        assert seqs(events.until(is_record)) == [13]


def test_fifty_watchers_each_get_everything_once_in_order(
    base_url: str, http: httpx.Client, topic: str
) -> None:
    n_watchers, n_batches = 50, 20
    write(http, topic, {"data": -1})
    sessions = [watch(http, {topic: {"from_seq": 0}})["wid"] for _ in range(n_watchers)]
    expected = 1 + n_batches * 5

    async def consume(client: httpx.AsyncClient, wid: str) -> list[int]:
        seqs: list[int] = []
        async with httpx_sse.aconnect_sse(client, "GET", f"/v0/watch/{wid}") as source:
            async for event in source.aiter_sse():
                if event.event == "record":
                    seqs.extend(r["$seq"] for r in event.json()["records"])
                if len(seqs) >= expected:
                    return seqs
        return seqs

    async def produce(client: httpx.AsyncClient) -> None:
        for b in range(n_batches):
            r = await client.post(
                f"/v0/topics/{topic}", json={"records": [{"data": b * 5 + j} for j in range(5)]}
            )
            assert r.status_code == 200
            await asyncio.sleep(0.005)

    async def main() -> list[list[int]]:
        limits = httpx.Limits(max_connections=200)
        timeout = httpx.Timeout(30.0)
        async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout) as c:
            consumers = [asyncio.create_task(consume(c, wid)) for wid in sessions]
            await produce(c)
            return await asyncio.wait_for(asyncio.gather(*consumers), 30)

    results = asyncio.run(main())
    for seqs in results:
        assert seqs == list(range(1, expected + 1))


def test_a_stalled_watcher_stalls_no_one(http: httpx.Client, base_url: str, topic: str) -> None:
    """A watcher that never reads: writes still ack fast and other watchers keep up."""
    big = {"blob": "x" * 4000}
    write(http, topic, {"data": 0})
    stalled_wid = watch(http, {topic: {"from_seq": 0}})["wid"]
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    stalled = socket.create_connection((host, int(port)))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(f"GET /v0/watch/{stalled_wid} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
    try:
        wid = watch(http, {topic: {"tail": True}})["wid"]
        with stream(base_url, wid) as events:
            events.until(caught_up(topic))
            slowest = 0.0
            for _ in range(100):  # ~16 MB through the stalled connection's session
                t0 = time.monotonic()
                write(http, topic, *[{"data": big} for _ in range(40)])
                slowest = max(slowest, time.monotonic() - t0)
            assert slowest < 2.0
            got = events.until(lambda e: e.event == "record" and e.json()["to_seq"] >= 4001)
            assert got[-1].json()["to_seq"] == 4001
    finally:
        stalled.close()


def test_shutdown_sends_a_terminal_error_frame(tmp_path: Path) -> None:
    with ServerProcess(data_dir=tmp_path / "data") as server:
        with httpx.Client(base_url=server.url) as http:
            write(http, "t", {"data": 1})
            wid = watch(http, {"t": {}})["wid"]
        with stream(server.url, wid) as events:
            events.until(caught_up("t"))
            assert server.proc is not None
            server.proc.send_signal(signal.SIGTERM)
            rest = list(events.iterator)
            assert rest[-1].event == "error"
            assert rest[-1].json()["code"] == "server_shutting_down"


def test_recreated_topic_tombstone(http: httpx.Client, base_url: str, topic: str) -> None:
    write(http, topic, *[{"data": i} for i in range(5)])
    wid = watch(http, {topic: {"from_seq": 5}})["wid"]
    http.delete(f"/v0/topics/{topic}")
    write(http, topic, {"data": "new"})
    with stream(base_url, wid) as events:
        first = events.next()
        assert first.event == "tombstone"
        assert first.json()["gap_from"] == 1
        # resuming from this frame's id must not skip the new instance's records
        assert decode_id(first.id) == {topic: 0}
        got = events.until(caught_up(topic))
        records = [r for e in got if e.event == "record" for r in e.json()["records"]]
        assert [r["data"] for r in records] == ["new"]
    with stream(base_url, wid, headers={"last-event-id": first.id}) as events:
        got = events.until(caught_up(topic))
        records = [r for e in got if e.event == "record" for r in e.json()["records"]]
        assert [r["data"] for r in records] == ["new"]
