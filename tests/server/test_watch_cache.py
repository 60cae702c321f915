"""The watch's shared read cache (issue 10.7): bounded in bytes, shared, released on close.

The cache lives inside the server process, so these tests run the real app in
uvicorn on a thread (real sockets, real SSE) and look at its size counters.
"""

from __future__ import annotations

import ast
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import httpx_sse
import pytest
import uvicorn

import topics_server.engine.watch as engine_watch
from tests.server.test_watch import Events, caught_up, watch, write
from topics_server.api.render import Rendered, SharedReads
from topics_server.app import create_app
from topics_server.engine.engine import Engine
from topics_server.settings import Settings
from topics_server.storage.sqlite import SqliteStore


@dataclass
class InProcess:
    url: str
    reads: SharedReads
    http: httpx.Client


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Callable[[int], InProcess]]:
    """Start the app in-process with a shared-read cache of ``max_bytes``."""
    stops: list[Callable[[], None]] = []

    def start(max_bytes: int) -> InProcess:
        settings = Settings(data_dir=tmp_path)
        engine = Engine(settings, SqliteStore(tmp_path))
        app = create_app(settings, engine)
        reads = app.state.watch_reads = SharedReads(engine, max_bytes)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="on"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        http = httpx.Client(base_url=url, timeout=30)

        def stop() -> None:
            http.close()
            server.should_exit = True
            thread.join(10)
            sock.close()

        stops.append(stop)
        wait_for(lambda: server.started, "the server to start")
        wait_for(lambda: http.get("/v0/ready").status_code == 200, "the server to be ready")
        return InProcess(url, reads, http)

    yield start
    for stop in stops:
        stop()


@contextmanager
def opened(url: str, wid: str) -> Iterator[Events]:
    with (
        httpx.Client(base_url=url, timeout=httpx.Timeout(10.0, read=10.0)) as client,
        httpx_sse.connect_sse(client, "GET", f"/v0/watch/{wid}") as source,
    ):
        assert source.response.status_code == 200
        yield Events(source)


def record_seqs(events: list[httpx_sse.ServerSentEvent]) -> list[int]:
    return [r["$seq"] for e in events if e.event == "record" for r in e.json()["records"]]


def test_a_closed_stream_leaves_nothing_in_the_cache(
    served: Callable[[int], InProcess], topic: str
) -> None:
    srv = served(32 << 20)
    blob = "x" * 10_000
    for _ in range(10):
        write(srv.http, topic, *[{"data": blob} for _ in range(20)])  # 2 MB in all
    wid = watch(srv.http, {topic: {}}, max_batch_bytes=100_000)["wid"]
    with opened(srv.url, wid) as events:
        got = events.until(caught_up(topic))
        assert record_seqs(got) == list(range(1, 201))
        # while the stream is open its batches stay shared (about 2 MB of bodies)
        assert srv.reads.bytes > 1_000_000
        assert len(srv.reads) >= 20
    wait_for(lambda: srv.reads.bytes == 0 and len(srv.reads) == 0, "the cache to empty")


def test_the_cache_never_exceeds_its_bound_and_skips_oversized_batches(
    served: Callable[[int], InProcess], topic: str
) -> None:
    bound = 300_000
    srv = served(bound)
    big = f"{topic}-big"
    blob = "x" * 10_000
    for _ in range(10):
        write(srv.http, topic, *[{"data": blob} for _ in range(20)])
    write(srv.http, big, *[{"data": blob} for _ in range(50)])  # one 500 KB batch
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, srv.reads.bytes)
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        wid = watch(srv.http, {topic: {}, big: {}}, max_batch_bytes=1_000_000, limit=1000)["wid"]
        small = watch(srv.http, {topic: {}}, max_batch_bytes=50_000)["wid"]
        with opened(srv.url, wid) as whole, opened(srv.url, small) as paged:
            got = whole.until(caught_up(big))
            assert len(record_seqs(got)) == 250
            assert paged.until(caught_up(topic))
            # the 500 KB batch is larger than the whole cache: sent, never kept
            assert all(key[0] != big or batch.records is None for key, batch in entries(srv))
            assert srv.reads.bytes <= bound
    finally:
        stop.set()
        sampler.join()
    assert 0 < peak <= bound


def entries(srv: InProcess) -> list[tuple[tuple[object, ...], engine_watch.Batch[Rendered]]]:
    return [(key, entry.batch) for key, entry in srv.reads._entries.items()]


def test_watchers_at_one_cursor_share_a_read_and_each_close_releases_its_own(
    served: Callable[[int], InProcess], topic: str
) -> None:
    srv = served(32 << 20)
    write(srv.http, topic, *[{"data": i} for i in range(100)])
    first = watch(srv.http, {topic: {}}, limit=10)["wid"]
    second = watch(srv.http, {topic: {}}, limit=10)["wid"]
    with opened(srv.url, first) as a:
        assert record_seqs(a.until(caught_up(topic))) == list(range(1, 101))
        cached = len(srv.reads)
        assert srv.reads.hits == 0
        with opened(srv.url, second) as b:
            assert record_seqs(b.until(caught_up(topic))) == list(range(1, 101))
            assert srv.reads.hits >= 10  # the second watcher read nothing itself
            assert len(srv.reads) == cached
        # the second stream closed: the first's entries (it read them) are still there
        wait_for(lambda: srv.reads._open == 1, "the second stream to close")
        assert len(srv.reads) == cached
        write(srv.http, topic, {"data": "live"})
        live = a.until(caught_up(topic))
        assert record_seqs(live) == [101]
        # the topic moved on: entries of its previous version are gone
        assert all(batch.from_seq >= 100 for _, batch in entries(srv))
    wait_for(lambda: srv.reads.bytes == 0, "the cache to empty")


def test_the_engine_watch_knows_no_wire() -> None:
    """Issue 16.2: the engine hands out events; SSE bytes are the API layer's."""
    source = Path(engine_watch.__file__).read_text()
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    assert not {m for m in imported if m.startswith(("topics_server.sse", "topics_server.api"))}
    assert "orjson" not in imported
