"""Watch events to SSE bytes, with one rendering shared by watchers at the same cursor.

The engine's stream (:meth:`Watches.stream`) hands out typed events; this
module turns them into frames (SPEC §9.4) and writes them in few, large sends.
Watchers at the same cursor with the same options read the same thing, so
:class:`SharedReads` reads and renders a batch once and hands the bytes to
every one of them (fan-out costs one read).

The shared cache is bounded in bytes (:data:`CACHE_BYTES`, least recently used
out first; a batch larger than the bound is never cached) and holds nothing a
closed stream put there, nor anything of a topic version that moved on: a
stream that replayed gigabytes leaves no trace in it once it is gone.
"""

from __future__ import annotations

import ctypes
import functools
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request

from topics_server.api.eventstream import Write
from topics_server.api.pages import render_records
from topics_server.api.tails import Tails
from topics_server.engine.engine import Engine
from topics_server.engine.log import TopicLog
from topics_server.engine.watch import (
    Batch,
    CaughtUp,
    Heartbeat,
    LiveRecords,
    PassDone,
    Reader,
    Records,
    ShuttingDown,
    Tombstone,
    TopicDeleted,
    WatchOptions,
    WatchSession,
)
from topics_server.sse import RETRY, comment, encode_cursor, frame

__all__ = ["CACHE_BYTES", "FLUSH_BYTES", "Rendered", "SharedReads", "reads_of", "render"]

CACHE_BYTES = 32 << 20  # rendered batches kept for other watchers, at most
ENTRY_BYTES = 256  # what an entry costs beyond its body (key, batch, bookkeeping)
FLUSH_BYTES = 256 * 1024  # frames are written together up to about this size

_Key = tuple[str, int, tuple[Any, ...]]  # topic, cursor, WatchOptions.read_key


class Rendered:
    """A batch's records as the ``data`` of one ``record`` frame, shared by every watcher.

    ``live`` keeps, once a one-topic stream asked for it, the whole answer of a
    caught-up tail to this batch (:class:`LiveRecords`): the record frame and the
    caught-up frame with the cursor after the batch. Every stream of that topic at
    that cursor sends these same bytes, so a write fanned out to N watchers is
    rendered once.
    """

    __slots__ = ("body", "live")

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.live: bytes | None = None

    def __len__(self) -> int:
        return len(self.body)

    def share_live(self, topic: str, batch: Batch[Rendered]) -> bytes:
        """Make :attr:`live`: this batch as the answer of a one-topic tail of ``topic``."""
        event_id = encode_cursor({topic: batch.next_from_seq})
        caught_up = {"topic": topic, "head_seq": batch.head_seq}
        self.live = b"".join(
            (
                f"id: {event_id}\nevent: record\ndata: ".encode(),
                self.body,
                b"\n\n",
                frame("caught-up", caught_up, event_id),
            )
        )
        return self.live


@dataclass(slots=True)
class _Entry:
    batch: Batch[Rendered]
    cost: int
    owner: StreamReads


class SharedReads:
    """Batches read and rendered once for every watcher at the same cursor.

    Entries of a topic are valid for one (instance, version) of its log: the
    first read of a newer one drops them all. :meth:`StreamReads.close` drops
    what a stream cached (another watcher still at that cursor just reads again).
    """

    def __init__(self, engine: Engine, max_bytes: int = CACHE_BYTES) -> None:
        self.engine = engine
        self.max_bytes = max_bytes
        self.bytes = 0  # the cost of what is cached now
        self.hits = 0  # reads answered from the cache
        self._entries: OrderedDict[_Key, _Entry] = OrderedDict()  # oldest use first
        self._versions: dict[str, tuple[int, int]] = {}  # topic -> the log its entries read
        self._by_topic: dict[str, set[_Key]] = {}
        self._by_owner: dict[StreamReads, set[_Key]] = {}
        self._open = 0
        self.tails = Tails(engine, FLUSH_BYTES)  # caught-up one-topic streams, served together

    def __len__(self) -> int:
        return len(self._entries)

    def open(self) -> StreamReads:
        """The :data:`~topics_server.engine.watch.Reader` of one stream."""
        self._open += 1
        return StreamReads(self)

    async def read(
        self, log: TopicLog, cursor: int, options: WatchOptions, *, owner: StreamReads
    ) -> Batch[Rendered]:
        name = log.name
        key: _Key = (name, cursor, options.read_key)
        version = (log.instance_id, log.version)
        if self._versions.get(name) == version:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return entry.batch
        result = await self.engine.read(
            log, cursor, options.limit, options.max_batch_bytes, options.nodes, runs=True
        )
        body = None
        if result.records:
            body = Rendered(
                orjson.dumps(
                    {
                        "topic": name,
                        "from_seq": cursor,
                        "to_seq": result.next_from_seq,
                        "head_seq": result.head_seq,
                        "records": render_records(result.records, options.shape),
                    }
                )
            )
        batch = Batch(cursor, result.next_from_seq, result.head_seq, result.tombstone, body)
        cost = ENTRY_BYTES
        if body is not None:  # and, for a batch small enough to be shared whole, its live frames
            cost += len(body) + (len(body) + 4 * len(name) if len(body) < FLUSH_BYTES else 0)
        # a read that waited on the store while the log moved on is nobody else's
        if version == (log.instance_id, log.version) and cost <= self.max_bytes:
            self._put(key, version, _Entry(batch, cost, owner))
        return batch

    def _put(self, key: _Key, version: tuple[int, int], entry: _Entry) -> None:
        topic = key[0]
        if self._versions.get(topic) != version:
            self._drop_topic(topic)
        elif key in self._entries:
            self._drop(key)
        while self.bytes + entry.cost > self.max_bytes:
            self._drop(next(iter(self._entries)))
        self._versions[topic] = version
        self._entries[key] = entry
        self.bytes += entry.cost
        self._by_topic.setdefault(topic, set()).add(key)
        self._by_owner.setdefault(entry.owner, set()).add(key)

    def _drop(self, key: _Key) -> None:
        entry = self._entries.pop(key)
        self.bytes -= entry.cost
        topic_keys = self._by_topic[key[0]]
        topic_keys.discard(key)
        if not topic_keys:
            del self._by_topic[key[0]]
            self._versions.pop(key[0], None)
        owner_keys = self._by_owner[entry.owner]
        owner_keys.discard(key)
        if not owner_keys:
            del self._by_owner[entry.owner]

    def _drop_topic(self, topic: str) -> None:
        for key in list(self._by_topic.get(topic, ())):
            self._drop(key)

    def close(self, reads: StreamReads) -> None:
        """A stream ended: drop what it cached (everything, once no stream is open)."""
        self._open -= 1
        if self._open <= 0:
            self._open = 0
            self._entries.clear()
            self._versions.clear()
            self._by_topic.clear()
            self._by_owner.clear()
            self.bytes = 0
        else:
            for key in list(self._by_owner.get(reads, ())):
                self._drop(key)
        if reads.rendered >= TRIM_AFTER:
            trim_heap()


class StreamReads:
    """One stream's handle on :class:`SharedReads`; :attr:`read` is its :data:`Reader`."""

    __slots__ = ("read", "rendered", "shared")

    def __init__(self, shared: SharedReads) -> None:
        self.shared = shared
        self.read: Reader[Rendered] = functools.partial(shared.read, owner=self)
        self.rendered = 0  # record bytes this stream sent

    def close(self) -> None:
        self.shared.close(self)


def reads_of(request: Request) -> SharedReads:
    """The app's shared watch reads (made on first use)."""
    state = request.app.state
    reads: SharedReads | None = getattr(state, "watch_reads", None)
    if reads is None:
        engine: Engine = state.engine
        reads = state.watch_reads = SharedReads(engine)
    return reads


# -- frames -------------------------------------------------------------------


async def render(
    session: WatchSession,
    engine: Engine,
    shared: SharedReads,
    write: Write,
    backlog: Callable[[], int] | None = None,
) -> None:
    """Write one watch connection (SPEC §9.3/§9.4): the stream's events as frames.

    ``backlog`` tells how many bytes the connection has queued; given it, a stream
    of one topic, once caught up, is served with the other tails (:mod:`.tails`).
    """
    reads = shared.open()
    member = None
    if backlog is not None and len(session.cursors) == 1:
        member = shared.tails.member(session, reads, write, backlog)
    events = engine.watches.stream(session, reads.read, None if member is None else member.park)
    ids: tuple[Mapping[str, int] | None, str] = (None, "")

    def cursor_id(cursors: Mapping[str, int]) -> str:
        """The composite cursor, encoded once per cursor map."""
        nonlocal ids
        if ids[0] is not cursors:
            ids = (cursors, encode_cursor(cursors))
        return ids[1]

    out: list[bytes] = [RETRY]
    size = len(RETRY)
    try:
        async for event in events:
            if isinstance(event, LiveRecords):  # first: what every write to a tail sends
                topic, batch = event.topic, event.batch
                rendered = batch.records
                assert rendered is not None
                reads.rendered += len(rendered)
                if len(rendered) < FLUSH_BYTES:
                    out.append(rendered.live or rendered.share_live(topic, batch))
                else:  # sent as is, never copied into shared frames
                    event_id = encode_cursor({topic: batch.next_from_seq})
                    caught_up = {"topic": topic, "head_seq": batch.head_seq}
                    out.append(f"id: {event_id}\nevent: record\ndata: ".encode())
                    await write(b"".join(out))
                    await write(rendered.body)
                    out = [b"\n\n", frame("caught-up", caught_up, event_id)]
                await write(b"".join(out) if len(out) > 1 else out[0])
                out, size = [], 0
                continue
            if isinstance(event, Records):
                head = f"id: {cursor_id(event.cursors)}\nevent: record\ndata: ".encode()
                rendered = event.batch.records
                assert rendered is not None
                body = rendered.body
                reads.rendered += len(body)
                if len(body) >= FLUSH_BYTES:  # sent as is: no copy of a big batch
                    out.append(head)
                    await write(b"".join(out))
                    await write(body)
                    await write(b"\n\n")
                    out, size = [], 0
                    continue
                out += (head, body, b"\n\n")
                size += len(head) + len(body) + 2
            elif isinstance(event, CaughtUp):
                data = {"topic": event.topic, "head_seq": event.head_seq}
                chunk = frame("caught-up", data, cursor_id(event.cursors))
                out.append(chunk)
                size += len(chunk)
            elif isinstance(event, PassDone):
                size = FLUSH_BYTES  # the stream may wait now: send what is pending
            elif isinstance(event, Tombstone):
                chunk = frame("tombstone", event.gap, cursor_id(event.cursors))
                out.append(chunk)
                size += len(chunk)
            elif isinstance(event, Heartbeat):
                out.append(comment(f"hb {event.at_ms}"))
                size = FLUSH_BYTES
            elif isinstance(event, TopicDeleted):
                data = {"topic": event.topic, "head_seq": 0, "reason": "deleted"}
                chunk = frame("topic-deleted", data, cursor_id(event.cursors))
                out.append(chunk)
                size += len(chunk)
            elif isinstance(event, ShuttingDown):
                error = {"code": "server_shutting_down", "error": "server shutting down"}
                out.append(frame("error", error))
                size = FLUSH_BYTES
            if size >= FLUSH_BYTES and out:
                await write(b"".join(out))
                out, size = [], 0
        if out:
            await write(b"".join(out))
    finally:
        if member is not None:
            member.close()
        await events.aclose()
        reads.close()


# -- giving freed memory back ---------------------------------------------------

TRIM_AFTER = 16 << 20  # a stream that sent this much leaves freed heap worth returning
_trim: list[Any] = []  # glibc's malloc_trim, once looked up (None where there is none)


def trim_heap() -> None:
    """Hand freed heap pages back to the OS (glibc's ``malloc_trim``; elsewhere a no-op).

    CPython frees big buffers with ``free()``, but glibc keeps freed heap (and
    its per-thread arenas) mapped; after a stream moved hundreds of MB through
    8 MiB batches that is most of the process's RSS until trimmed.
    """
    if not _trim:
        try:
            _trim.append(ctypes.CDLL(None).malloc_trim)
        except (AttributeError, OSError):
            _trim.append(None)
    if _trim[0] is not None:
        _trim[0](0)
