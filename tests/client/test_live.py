"""The typed client's watch, routers and replay against the real reference server.

Every watch scenario runs on ``Client`` and on ``AsyncClient`` (parametrized ``mode``).
Faults are real: a TCP proxy that cuts or freezes connections, and restarts of a server
process on a fixed port over the same data directory (watch sessions are memory-only, so
a restart also collects the session). Waits are bounded polls or event-driven, never
sleeps.
"""

from __future__ import annotations

import base64
import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio
import orjson
import pytest

from tests.client.conftest import Facade
from tests.serverproc import ServerProcess, free_port
from topics_client import (
    APIConnectionError,
    AsyncClient,
    CaughtUpEvent,
    Client,
    Gap,
    Record,
    RecordsEvent,
    RouterCycleError,
    RouterNotFoundError,
    ServiceUnavailableError,
    TopicDeletedEvent,
    TopicNotFoundError,
    WatchEvent,
    load_checkpoint,
    save_checkpoint,
)

Mode = Literal["sync", "async"]
MODES = pytest.mark.parametrize("mode", ["sync", "async"])
DEADLINE = 45.0  # seconds any single scenario may take (pytest-timeout backs this up)


# --------------------------------------------------------------------------- helpers


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def decode_id(event_id: str | None) -> dict[str, int]:
    assert event_id
    value = orjson.loads(base64.urlsafe_b64decode(event_id + "=" * (-len(event_id) % 4)))
    assert isinstance(value, dict)
    return value


def until_true(check: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Bounded poll: ``check`` must become true before the deadline."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.01)


@dataclass
class Watched:
    """What one consumed watch saw; ``view`` is the live stream (cursors, session)."""

    events: list[WatchEvent] = field(default_factory=list)
    wids: list[str] = field(default_factory=list)
    cursors: dict[str, int] = field(default_factory=dict)
    last_event_id: str | None = None
    ended: bool = False  # the iterator finished by itself
    view: Any = None

    def records(self, topic: str | None = None) -> list[Record]:
        return [
            r
            for e in self.events
            if isinstance(e, RecordsEvent) and (topic is None or e.topic == topic)
            for r in e.records
        ]

    def seqs(self, topic: str | None = None) -> list[int]:
        return [r.seq for r in self.records(topic)]

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def caught_up(self, topic: str, head: int) -> bool:
        return any(
            isinstance(e, CaughtUpEvent) and e.topic == topic and e.head_seq >= head
            for e in self.events
        )

    def caught_up_at(self, topic: str, head: int) -> bool:
        return any(
            isinstance(e, CaughtUpEvent) and e.topic == topic and e.head_seq == head
            for e in self.events
        )

    def _note(self, stream: Any) -> None:
        self.view = stream
        session = stream.session
        if session is not None and (not self.wids or self.wids[-1] != session.wid):
            self.wids.append(session.wid)


def watch(
    mode: Mode,
    url: str,
    topics: Any,
    *,
    until: Callable[[Watched], bool],
    on_event: Callable[[WatchEvent, Watched], None] | None = None,
    deadline: float = DEADLINE,
    **options: Any,
) -> Watched:
    """Consume ``client.watch.stream(topics, **options)`` on a sync or an async client
    until ``until(seen)`` holds (or the stream ends); ``on_event`` runs after each event
    and may act on the world (write, cut, restart) while the consumer waits."""
    seen = Watched()
    options.setdefault("heartbeat_ms", 1000)
    stop_at = time.monotonic() + deadline

    def step(event: WatchEvent, stream: Any) -> bool:
        seen.events.append(event)
        seen._note(stream)
        if on_event is not None:
            on_event(event, seen)
        seen._note(stream)
        if time.monotonic() > stop_at:
            raise AssertionError(f"watch deadline passed; saw {seen.events!r}")
        return until(seen)

    def finish(stream: Any, ended: bool) -> Watched:
        seen._note(stream)
        seen.cursors = stream.cursors
        seen.last_event_id = stream.last_event_id
        seen.ended = ended
        return seen

    if mode == "sync":
        with Client(url, timeout=10.0) as client, client.watch.stream(topics, **options) as s:
            for event in s:
                if step(event, s):
                    return finish(s, False)
            return finish(s, True)

    async def main() -> Watched:
        async with (
            AsyncClient(url, timeout=10.0) as client,
            client.watch.stream(topics, **options) as s,
        ):
            with anyio.fail_after(deadline):
                async for event in s:
                    if step(event, s):
                        return finish(s, False)
            return finish(s, True)

    return anyio.run(main)


def write_values(client: Client, topic: str, values: range, **kwargs: Any) -> None:
    client.topics.write(topic, [{"data": v} for v in values], **kwargs)


class Proxy:
    """A TCP proxy in front of the server that can cut or freeze its connections."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.accepted = 0
        self._flowing = threading.Event()  # cleared while frozen: sockets stay open, silent
        self._flowing.set()
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            up = socket.create_connection(self.target)
            with self._lock:
                self.accepted += 1
                self._pairs.append((down, up))
            for src, dst in ((down, up), (up, down)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self._flowing.wait()  # hold the bytes: the peer sees a silent connection
                if self._closed:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def freeze(self) -> None:
        """Stop every byte on every connection, keeping the sockets open."""
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def cut(self) -> None:
        """Drop every open connection at once (a network failure)."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def close(self) -> None:
        self._closed = True
        self._flowing.set()  # release held pumps: they see the close and stop
        self.listener.close()
        self.cut()


@pytest.fixture
def proxy(server: ServerProcess) -> Iterator[Proxy]:
    p = Proxy(server.port)
    yield p
    p.close()


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[ServerProcess]:
    """A private server on a fixed port, so its URL survives restarts over one data dir."""
    proc: ServerProcess | None = None
    for _ in range(3):  # the free port may be taken between probe and bind: try another
        candidate = ServerProcess(data_dir=tmp_path / "data", port=free_port())
        try:
            proc = candidate.start()
            break
        except RuntimeError:
            continue
    assert proc is not None, "could not start a server on a fixed port"
    yield proc
    proc.stop()


# --------------------------------------------------------------------------- routers


def test_routers_put_get_list_delete(api: Facade) -> None:
    src, dst = uid("orders"), uid("audit")
    name = f"{src}->{dst}"
    created = api.routers.put(name, source=src, dest=dst, filter=("tag", "Glob", "pub:*"))
    assert created.created is True and (created.source, created.dest) == (src, dst)
    assert created.filter == ["tag", "Glob", "pub:*"] and created.guarantee == "at_least_once"
    again = api.routers.put(name, source=src, dest=dst, preserve_tag=False)
    assert again.created is False and again.filter is None and again.preserve_tag is False

    api.topics.write(src, [{"data": 1, "tag": "pub:a"}, {"data": 2, "tag": "priv"}])
    got = api.routers.get(name)
    assert got.created is None and got.router == name
    diff = api.topics.diff(dst, include_tags=True)
    assert [(r.data, r.tag) for r in diff.records] == [(1, None), (2, None)]  # tags stripped
    assert api.routers.get(name).forwarded_total == 2

    second = f"{src}->{dst}-2"
    api.routers.put(second, source=src, dest=f"{dst}-2")
    listed = api.routers.list(prefix=src, page_size=1)  # pages through next_cursor
    assert [r.router for r in listed] == sorted([name, second])
    assert [r.router for r in api.routers.list(dest=dst)] == [name]

    with pytest.raises(RouterCycleError) as cycle:
        api.routers.put(f"{dst}->{src}", source=dst, dest=src)
    assert cycle.value.detail["cycle"] == [dst, src, dst]

    assert api.routers.delete(name).deleted is True
    assert api.routers.delete(name).deleted is False
    with pytest.raises(RouterNotFoundError):
        api.routers.get(name)
    assert api.topics.delete(src).routers_removed == (second,)


def test_router_exactly_once_meta(api: Facade) -> None:
    src, dst = uid("src"), uid("dst")
    api.routers.put(f"{src}->{dst}", source=src, dest=dst, guarantee="exactly_once")
    api.topics.write(src, [{"data": "x", "meta": {"k": 1}}])
    (copy,) = api.topics.diff(dst).records
    assert copy.meta is not None and copy.meta["k"] == 1
    assert copy.meta["_topics_router"]["source_seq"] == 1


# --------------------------------------------------------------------------- watch basics


@MODES
def test_watch_records_caught_up_and_composite_cursor(
    mode: Mode, client: Client, base_url: str, tmp_path: Path
) -> None:
    a, b = uid("a"), uid("b")
    write_values(client, a, range(5))
    client.topics.write(b, [{"data": "x", "tag": "t1", "node": "n1"}])

    seen = watch(
        mode,
        base_url,
        {a: 0, b: 0},
        include_tags=True,
        until=lambda w: w.caught_up(a, 5) and w.caught_up(b, 1),
    )
    assert seen.seqs(a) == [1, 2, 3, 4, 5] and [r.data for r in seen.records(a)] == list(range(5))
    (rec,) = seen.records(b)
    assert (rec.seq, rec.tag, rec.node) == (1, "t1", "n1")
    assert seen.cursors == {a: 5, b: 1}
    # The composite id is the whole session map, the checkpoint a consumer stores.
    assert decode_id(seen.last_event_id) == {a: 5, b: 1}
    last_records = seen.of(RecordsEvent)[-1]
    assert decode_id(last_records.cursor)[last_records.topic] == last_records.to_seq
    assert len(seen.wids) == 1

    # Checkpoint, then a new stream from the checkpoint sees only what came after.
    path = tmp_path / "ckpt.json"
    save_checkpoint(path, seen.cursors)
    write_values(client, a, range(5, 8))
    resumed = watch(mode, base_url, load_checkpoint(path), until=lambda w: w.caught_up(a, 8))
    assert resumed.seqs(a) == [6, 7, 8] and resumed.seqs(b) == []
    assert resumed.cursors == {a: 8, b: 1}


@MODES
def test_watch_tail_and_live_delivery(mode: Mode, client: Client, base_url: str) -> None:
    topic = uid("tail")
    write_values(client, topic, range(3))

    def on_event(event: WatchEvent, seen: Watched) -> None:
        if isinstance(event, CaughtUpEvent) and event.head_seq == 3:
            write_values(client, topic, range(3, 6))  # published after subscribe

    seen = watch(
        mode, base_url, [topic], tail=True, on_event=on_event, until=lambda w: w.caught_up(topic, 6)
    )
    assert seen.seqs() == [4, 5, 6] and seen.cursors == {topic: 6}


@MODES
def test_watch_tombstones_from_cap(mode: Mode, client: Client, base_url: str) -> None:
    topic = uid("capped")
    client.topics.put(topic, cap_records=5)
    write_values(client, topic, range(12))  # 1..7 evicted

    def on_event(event: WatchEvent, seen: Watched) -> None:
        if isinstance(event, CaughtUpEvent) and event.head_seq == 12:
            write_values(client, topic, range(12, 32))  # 13..32; 13..27 evicted at once

    seen = watch(
        mode, base_url, {topic: 0}, on_event=on_event, until=lambda w: w.caught_up(topic, 32)
    )
    gaps = seen.of(Gap)
    # first read of the connection: relabelled from_seq_too_old; later: the real cause
    assert [(g.reason, g.gap_from, g.gap_to, g.earliest_seq) for g in gaps] == [
        ("from_seq_too_old", 1, 7, 8),
        ("cap", 13, 27, 28),
    ]
    kinds = [type(e).__name__ for e in seen.events if not isinstance(e, CaughtUpEvent)]
    assert kinds == ["Gap", "RecordsEvent", "Gap", "RecordsEvent"]  # each gap before records
    assert seen.seqs() == [8, 9, 10, 11, 12, 28, 29, 30, 31, 32]
    assert seen.cursors == {topic: 32}


@MODES
def test_watch_topic_deleted(mode: Mode, client: Client, base_url: str) -> None:
    keep, drop = uid("keep"), uid("drop")
    write_values(client, keep, range(2))
    write_values(client, drop, range(2))
    state = {"deleted": False}

    def on_event(event: WatchEvent, seen: Watched) -> None:
        if seen.caught_up(keep, 2) and seen.caught_up(drop, 2) and not state["deleted"]:
            state["deleted"] = True
            client.topics.delete(drop)
        if isinstance(event, TopicDeletedEvent):
            write_values(client, keep, range(2, 4))  # the stream goes on for the others

    seen = watch(
        mode, base_url, [keep, drop], on_event=on_event, until=lambda w: w.caught_up(keep, 4)
    )
    assert [(e.topic, e.reason) for e in seen.of(TopicDeletedEvent)] == [(drop, "deleted")]
    assert seen.seqs(keep) == [1, 2, 3, 4] and seen.seqs(drop) == [1, 2]

    # every topic gone: the stream ends by itself
    only = uid("only")
    write_values(client, only, range(1))

    def delete_when_caught_up(event: WatchEvent, seen: Watched) -> None:
        if isinstance(event, CaughtUpEvent):
            client.topics.delete(only)

    ended = watch(mode, base_url, [only], on_event=delete_when_caught_up, until=lambda w: False)
    assert ended.ended and isinstance(ended.events[-1], TopicDeletedEvent)


def test_watch_on_a_missing_topic_raises(api: Facade) -> None:
    """Start positions are not a session: a first POST naming a missing topic raises,
    whether the position is given, ``None`` (tail) or beside a topic that exists."""
    present, missing = uid("present"), uid("missing")
    api.topics.append(present, 1)
    for starts in ({missing: 0}, {missing: None}, {present: 0, missing: 3}):
        with pytest.raises(TopicNotFoundError) as info:
            api.watch.stream(starts)
        assert info.value.detail.get("topic") == missing
    # lenient=True is the opt-in: the missing topic is reported and dropped
    events = api.watch.stream({missing: 0}, lenient=True)
    assert [(e.topic, e.reason) for e in events] == [(missing, "not_found")]


@MODES
def test_watch_node_filter_and_no_data(mode: Mode, client: Client, base_url: str) -> None:
    topic = uid("nodes")
    client.topics.write(topic, [{"data": 1}], node="me")
    client.topics.write(topic, [{"data": 2}], node="peer")
    client.topics.write(topic, [{"data": 3}])
    seen = watch(
        mode,
        base_url,
        [topic],
        node="me",
        include_data=False,
        until=lambda w: w.caught_up(topic, 3),
    )
    assert [(r.seq, r.node, r.data) for r in seen.records()] == [(2, "peer", None), (3, None, None)]
    assert seen.cursors == {topic: 3}  # the filtered record still advanced the cursor


# --------------------------------------------------------------------------- reconnects


@MODES
def test_dropped_connection_resumes_same_session(mode: Mode, client: Client, proxy: Proxy) -> None:
    topic = uid("cut")
    write_values(client, topic, range(5))
    cuts = {"n": 0}

    def on_event(event: WatchEvent, seen: Watched) -> None:
        if isinstance(event, CaughtUpEvent) and cuts["n"] < 2:
            cuts["n"] += 1
            proxy.cut()
            head = event.head_seq
            write_values(client, topic, range(head, head + 5))  # while disconnected

    seen = watch(
        mode, proxy.url, [topic], on_event=on_event, until=lambda w: w.caught_up(topic, 15)
    )
    assert seen.seqs() == list(range(1, 16))  # nothing lost, nothing twice
    assert len(seen.wids) == 1  # the session survived: a Last-Event-ID reconnect
    assert proxy.accepted >= 3 and seen.cursors == {topic: 15}


@MODES
def test_silent_connection_is_replaced_by_the_watchdog(
    mode: Mode, client: Client, proxy: Proxy
) -> None:
    """Heartbeats keep a quiet stream on its connection; a frozen one is abandoned after
    about 2 × heartbeat_ms + slack and the watch resumes on a new connection."""
    topic = uid("frozen")
    write_values(client, topic, range(2))
    state: dict[str, Any] = {}

    def on_event(event: WatchEvent, seen: Watched) -> None:
        if isinstance(event, CaughtUpEvent) and event.head_seq == 2:
            state["connections"] = proxy.accepted
            proxy.freeze()
            write_values(client, topic, range(2, 4))
            state["frozen_at"] = time.monotonic()

            def thaw() -> None:  # new connections must flow again: thaw once one arrives
                until_true(lambda: proxy.accepted > state["connections"], 30, "reconnect")
                proxy.thaw()

            threading.Thread(target=thaw, daemon=True).start()

    seen = watch(mode, proxy.url, [topic], on_event=on_event, until=lambda w: w.caught_up(topic, 4))
    waited = time.monotonic() - state["frozen_at"]
    assert seen.seqs() == [1, 2, 3, 4] and len(seen.wids) == 1
    assert 2.0 < waited < 20.0  # the watchdog (7 s at heartbeat_ms=1000), not a read error


@MODES
def test_server_restart_under_live_watch_loses_nothing(
    mode: Mode, restartable: ServerProcess
) -> None:
    """A durable topic, a producer writing before, during and after a restart of the
    server under the watch: the watch re-creates its session (the old one died with the
    process) from its cursors and delivers every record exactly once, in order."""
    topic = uid("durable")
    total_batches, per_batch, before = 30, 10, 10
    url = restartable.url
    with Client(url) as setup:
        setup.topics.put(topic, durable=True)
    down = threading.Event()  # set once the server process was stopped
    up = threading.Event()  # set once it was started again
    produced = threading.Event()
    errors: list[BaseException] = []
    retries = {"n": 0}

    def produce() -> None:
        try:
            with Client(url, max_retries=0, timeout=5.0) as producer:
                for batch in range(total_batches):
                    if batch == before:
                        assert down.wait(30), "the server was never stopped"
                    key = f"batch-{batch}"
                    values = range(batch * per_batch, (batch + 1) * per_batch)
                    try:  # the same idempotency key across the restart: no duplicates
                        write_values(producer, topic, values, idempotency_key=key)
                    except (APIConnectionError, ServiceUnavailableError):
                        retries["n"] += 1
                        assert up.wait(30), "the server never came back"
                        # back up, maybe still recovering: the client's own retries wait
                        patient = producer.with_options(max_retries=8)
                        write_values(patient, topic, values, idempotency_key=key)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            produced.set()

    state = {"restarted": False, "producing": False}
    producer = threading.Thread(target=produce, daemon=True)

    def on_event(event: WatchEvent, seen: Watched) -> None:
        if not state["producing"]:  # the watch is open: start writing
            state["producing"] = True
            producer.start()
        if not state["restarted"] and len(seen.records()) >= before * per_batch:
            state["restarted"] = True
            restartable.stop()  # same port and data dir on start; the session is gone
            down.set()
            restartable.start()
            up.set()

    expected = total_batches * per_batch
    seen = watch(
        mode,
        url,
        {topic: 0},
        on_event=on_event,
        until=lambda w: len(w.records()) >= expected and produced.is_set(),
        deadline=60,
    )
    producer.join(10)
    assert not errors, errors
    assert state["restarted"] and retries["n"] > 0  # writes really met the outage
    assert [r.data for r in seen.records()] == list(range(expected))
    assert seen.seqs() == list(range(1, expected + 1))
    assert len(seen.wids) == 2  # the first session died with the process: re-POSTed once
    assert seen.cursors == {topic: expected}


@MODES
def test_collected_session_with_deleted_and_recreated_topics(
    mode: Mode, restartable: ServerProcess
) -> None:
    """While the session is gone (restart), one topic is deleted and another recreated
    smaller: the new session reports the first as deleted and replays the second from
    its new start instead of skipping it."""
    live, gone, redo = uid("live"), uid("gone"), uid("redo")
    url = restartable.url
    client = Client(url)
    for topic in (live, gone, redo):
        write_values(client, topic, range(6))
    state = {"restarted": False}

    def on_event(event: WatchEvent, seen: Watched) -> None:
        if state["restarted"] or not all(seen.caught_up(t, 6) for t in (live, gone, redo)):
            return
        state["restarted"] = True
        restartable.restart()
        client.topics.delete(gone)
        client.topics.delete(redo)
        write_values(client, redo, range(100, 102))  # a new instance: seqs 1..2
        write_values(client, live, range(6, 8))

    try:
        seen = watch(
            mode,
            url,
            [live, gone, redo],
            on_event=on_event,
            until=lambda w: w.caught_up(live, 8) and len(w.wids) == 2 and w.caught_up_at(redo, 2),
        )
    finally:
        client.close()
    assert seen.seqs(live) == list(range(1, 9))
    assert [(e.topic, e.reason) for e in seen.of(TopicDeletedEvent)] == [(gone, "not_found")]
    assert [r.data for r in seen.records(redo)] == [0, 1, 2, 3, 4, 5, 100, 101]
    (gap,) = [g for g in seen.of(Gap) if g.topic == redo]
    # the server labels the new session's first read from_seq_too_old; the client sees
    # the head below its cursor and names the cause
    assert (gap.reason, gap.head_seq, gap.cursor) == ("recreated", 2, 6)
    assert seen.cursors[redo] == 2 and seen.cursors[live] == 8


# --------------------------------------------------------------------------- replay


def test_replay_yields_gap_in_order(api: Facade) -> None:
    topic = uid("gappy")
    api.topics.put(topic, cap_records=4)
    api.topics.write(topic, [{"data": i} for i in range(10)])  # 1..6 evicted
    items = api.topics.replay(topic, limit=3)
    assert isinstance(items[0], Gap) and all(isinstance(i, Record) for i in items[1:])
    gap = items[0]
    assert (gap.reason, gap.gap_from, gap.gap_to, gap.resume_from) == ("cap", 1, 6, 6)
    assert [r.seq for r in items[1:]] == [7, 8, 9, 10]
    # a cursor inside the retained window: no gap at all
    assert [r.seq for r in api.topics.replay(topic, from_seq=8)] == [9, 10]


def test_replay_since_seeks_by_time(api: Facade, client: Client) -> None:
    topic = uid("since")
    api.topics.write(topic, [{"data": f"old{i}"} for i in range(50)])
    old_ts = client.topics.diff(topic, from_seq=49).records[0].ts
    # wait (bounded) until the wall clock the server stamps with has moved on
    until_true(lambda: time.time() * 1000 > old_ts + 2, 5, "clock to advance")
    api.topics.write(topic, [{"data": f"new{i}"} for i in range(7)])
    new_ts = client.topics.diff(topic, from_seq=50).records[0].ts
    assert new_ts > old_ts

    fresh = api.topics.replay(topic, since=new_ts)
    assert [r.data for r in fresh] == [f"new{i}" for i in range(7)]
    everything = client.topics.diff(topic, limit=1000).records
    from_old = api.topics.replay(topic, since=old_ts)
    assert [r.seq for r in from_old] == [r.seq for r in everything if r.ts >= old_ts]
    assert api.topics.replay(topic, since=new_ts + 60_000) == []
    assert len(api.topics.replay(topic, since=0)) == 57
