"""Caught-up one-topic streams served together (``api/tails.py``), against the real server.

Every stream here is parked at the head of its only topic, where the server writes a
publish to all of them from one place; these pin down that nothing about a stream's
answers changes for it: frames, ids, session cursors, gaps, filters, slow clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx_sse
import pytest
import uvicorn

from tests.server._helpers import put_topic
from tests.server.test_watch import Events, caught_up, decode_id, stream, watch, write
from topics_server.api.render import SharedReads, reads_of
from topics_server.app import create_app
from topics_server.connections import protocol_class
from topics_server.engine.engine import Engine
from topics_server.settings import Settings
from topics_server.storage.sqlite import SqliteStore


def record_seqs(events: list[httpx_sse.ServerSentEvent]) -> list[int]:
    return [r["$seq"] for e in events if e.event == "record" for r in e.json()["records"]]


def is_record(event: httpx_sse.ServerSentEvent) -> bool:
    return event.event == "record"


def test_tails_get_each_write_as_record_then_caught_up_with_its_cursor(
    base_url: str, http: httpx.Client, topic: str
) -> None:
    """Twenty tails, thirty writes one at a time: each stream sees, per write, one record
    frame and one caught-up frame, both with the session cursor after that write."""
    write(http, topic, {"data": "seed"})
    wids = [watch(http, {topic: {"tail": True}})["wid"] for _ in range(20)]

    async def tail(client: httpx.AsyncClient, wid: str, ready: asyncio.Event) -> list[Any]:
        frames: list[Any] = []
        async with httpx_sse.aconnect_sse(client, "GET", f"/v0/watch/{wid}") as source:
            async for event in source.aiter_sse():
                if event.event == "caught-up" and not frames:
                    ready.set()
                    frames.append(("first-caught-up", decode_id(event.id)))
                    continue
                if event.event in ("record", "caught-up"):
                    frames.append((event.event, decode_id(event.id), event.json()))
                if event.event == "caught-up" and event.json()["head_seq"] == 31:
                    return frames
        return frames

    async def main() -> list[list[Any]]:
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:
            readies = [asyncio.Event() for _ in wids]
            tails = [
                asyncio.create_task(tail(client, wid, ready))
                for wid, ready in zip(wids, readies, strict=True)
            ]
            await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 10)
            for i in range(30):
                r = await client.post(f"/v0/topics/{topic}", json={"records": [{"data": i}]})
                assert r.status_code == 200, r.text
                await asyncio.sleep(0.01)
            return await asyncio.wait_for(asyncio.gather(*tails), 30)

    for frames in asyncio.run(main()):
        assert frames[0] == ("first-caught-up", {topic: 1})
        rest = frames[1:]
        assert len(rest) == 60
        for i in range(30):
            seq = i + 2
            (kind, cursor, body), (kind2, cursor2, body2) = rest[2 * i], rest[2 * i + 1]
            assert (kind, kind2) == ("record", "caught-up")
            assert cursor == cursor2 == {topic: seq}
            assert [r["$seq"] for r in body["records"]] == [seq]
            assert body["records"][0]["data"] == i
            assert (body["from_seq"], body["to_seq"], body["head_seq"]) == (seq - 1, seq, seq)
            assert body2 == {"topic": topic, "head_seq": seq}


def test_a_tail_resumes_after_what_it_was_sent(
    base_url: str, http: httpx.Client, topic: str
) -> None:
    write(http, topic, {"data": 0})
    wid = watch(http, {topic: {"tail": True}})["wid"]
    with stream(base_url, wid) as events:
        events.until(caught_up(topic))
        for i in range(5):
            write(http, topic, {"data": i})
            assert record_seqs(events.until(is_record)) == [i + 2]
    # the session cursor moved with every delivery: reopened, nothing is repeated
    with stream(base_url, wid) as events:
        assert record_seqs(events.until(caught_up(topic))) == []
        write(http, topic, {"data": "next"})
        assert record_seqs(events.until(is_record)) == [7]


def test_two_streams_of_one_session_share_its_cursor(
    base_url: str, http: httpx.Client, topic: str
) -> None:
    """Both parked at the head: each write reaches one of them, never both."""
    write(http, topic, {"data": 0})
    wid = watch(http, {topic: {"tail": True}})["wid"]
    got: list[int] = []

    async def reader(client: httpx.AsyncClient, ready: asyncio.Event) -> None:
        async with httpx_sse.aconnect_sse(client, "GET", f"/v0/watch/{wid}") as source:
            async for event in source.aiter_sse():
                if event.event == "caught-up":
                    ready.set()
                if event.event == "record":
                    got.extend(r["$seq"] for r in event.json()["records"])

    async def main() -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            readies = [asyncio.Event(), asyncio.Event()]
            readers = [asyncio.create_task(reader(client, ready)) for ready in readies]
            await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 10)
            for i in range(20):
                r = await client.post(f"/v0/topics/{topic}", json={"records": [{"data": i}]})
                assert r.status_code == 200
                await asyncio.sleep(0.005)
            deadline = time.monotonic() + 10
            while len(got) < 20 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)  # room for a duplicate to show up, were there one
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)

    asyncio.run(main())
    assert sorted(got) == list(range(2, 22))


def test_a_write_past_retention_reaches_a_tail_as_a_gap(
    base_url: str, http: httpx.Client, topic: str
) -> None:
    put_topic(http, topic, {"cap_records": 10}, status=201)
    write(http, topic, {"data": 0})
    wid = watch(http, {topic: {"tail": True}})["wid"]
    with stream(base_url, wid) as events:
        events.until(caught_up(topic))
        write(http, topic, *[{"data": i} for i in range(25)])  # seqs 2..26, 17..26 kept
        got = events.until(caught_up(topic))
        kinds = [e.event for e in got]
        assert kinds[0] == "tombstone"
        gap = got[0].json()
        assert (gap["gap_from"], gap["gap_to"]) == (2, 16)
        assert record_seqs(got) == list(range(17, 27))
        write(http, topic, {"data": "after"})
        assert record_seqs(events.until(is_record)) == [27]


def test_a_tail_skips_what_its_node_filter_hides(
    base_url: str, http: httpx.Client, topic: str
) -> None:
    write(http, topic, {"data": 0})
    wid = watch(http, {topic: {"tail": True}}, node="me")["wid"]
    with stream(base_url, wid) as events:
        events.until(caught_up(topic))
        write(http, topic, {"data": "mine", "node": "me"})
        write(http, topic, {"data": "mine too", "node": "me"})
        write(http, topic, {"data": "theirs", "node": "you"})
        got = events.until(is_record)
        assert [e.event for e in got] == ["record"]
        assert record_seqs(got) == [4]
        assert decode_id(got[0].id) == {topic: 4}


def test_a_backed_up_tail_catches_up_alone_and_loses_nothing(
    base_url: str, http: httpx.Client, topic: str
) -> None:
    """A tail whose client stops reading falls out of the shared delivery (its connection
    has bytes queued); the others keep getting every write at once, and the slow one,
    once it reads again, gets everything, in order, once."""
    big = {"blob": "x" * 4000}
    write(http, topic, {"data": 0})
    slow_wid = watch(http, {topic: {"tail": True}})["wid"]
    fast_wid = watch(http, {topic: {"tail": True}})["wid"]
    with stream(base_url, slow_wid) as slow, stream(base_url, fast_wid) as fast:
        slow.until(caught_up(topic))
        fast.until(caught_up(topic))
        for i in range(60):  # ~10 MB, far past what the slow socket buffers
            write(http, topic, *[{"data": big, "i": i} for _ in range(40)])
            assert record_seqs(fast.until(caught_up(topic)))[-1] == 2 + 40 * i + 39
        last = 1 + 60 * 40
        seqs = record_seqs(slow.until(lambda e: e.event == "caught-up" and _head(e) == last))
        assert seqs == list(range(2, last + 1))


def _head(event: httpx_sse.ServerSentEvent) -> int:
    return int(event.json()["head_seq"])


# -- inside the server: the shared delivery is what serves the tails -----------------------


@pytest.fixture
def in_process(tmp_path: Path) -> Iterator[tuple[str, SharedReads]]:
    """The app in uvicorn on a thread, with the server's own connection protocol (which
    tells the app each connection's backlog), so its counters can be looked at."""
    settings = Settings(data_dir=tmp_path)
    engine = Engine(settings, SqliteStore(tmp_path))
    app = create_app(settings, engine)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, log_level="error", lifespan="on", http=protocol_class(10_000, 30_000, 0)
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            deadline = time.monotonic() + 10
            while not (server.started and http.get("/v0/ready").status_code == 200):
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.01)
        yield url, app.state.watch_reads if hasattr(app.state, "watch_reads") else _reads(app)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _reads(app: Any) -> SharedReads:
    class _Request:  # reads_of takes a request only for its app
        def __init__(self) -> None:
            self.app = app

    return reads_of(_Request())  # type: ignore[arg-type]


def test_parked_tails_wait_once_and_are_written_from_one_place(
    in_process: tuple[str, SharedReads],
) -> None:
    url, reads = in_process
    tails = reads.tails
    with httpx.Client(base_url=url, timeout=30) as http:
        write(http, "t", {"data": 0})
        wids = [watch(http, {"t": {"tail": True}})["wid"] for _ in range(10)]
        with contextlib.ExitStack() as stack:
            streams: list[Events] = [stack.enter_context(stream(url, wid)) for wid in wids]
            for events in streams:
                events.until(caught_up("t"))
            _wait(lambda: len(tails) == 1, "the ten tails to park in one group")
            for i in range(5):
                write(http, "t", {"data": i})
                for events in streams:
                    assert record_seqs(events.until(is_record)) == [i + 2]
            _wait(lambda: tails.delivered == 50, "each write to be delivered once per tail")
            assert len(tails) == 1
        _wait(lambda: len(tails) == 0, "the group to go with its streams")


def _wait(condition: Any, what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
