"""The multiplexed SSE watch (SPEC §9): sessions and the stream they feed.

A session holds its options and one cursor per topic; it lives in memory and
is collected after ``session_ttl_ms`` without an open stream. A stream pulls:
it reads each topic from the session cursor exactly as ``/diff`` does and
writes frames only as fast as the client takes them. Nothing is queued per
watcher, so a slow consumer costs no server memory and never holds up writers
or other watchers; its next read simply returns a bigger batch (coalescing).
Readers park on the topics' change futures, so delivery is woken by appends,
never by polling.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from topics_server.engine.log import ReadResult, TopicLog, wait_any
from topics_server.sse import RETRY, comment, encode_cursor, frame, raw_frame
from topics_server.wire import now_ms

if TYPE_CHECKING:
    from topics_server.engine.engine import Engine

__all__ = ["SESSION_TTL_MS", "WatchOptions", "WatchSession", "Watches"]

SESSION_TTL_MS = 300_000
FLUSH_BYTES = 256 * 1024  # frames of one pass are written together up to this size
READ_CACHE = 1024  # shared reads kept at most (cleared when full)


@dataclass(slots=True)
class WatchOptions:
    nodes: frozenset[str] | None = None
    limit: int = 256
    max_batch_bytes: int = 262_144
    heartbeat_ms: int = 15_000
    include_meta: bool = True
    include_tags: bool = False
    include_data: bool = True
    consistency: str = "eventual"

    @property
    def read_key(self) -> tuple[Any, ...]:
        """Everything that shapes a read and its rendering."""
        return (
            self.nodes,
            self.limit,
            self.max_batch_bytes,
            self.include_meta,
            self.include_tags,
            self.include_data,
        )


@dataclass(slots=True)
class WatchSession:
    wid: str
    options: WatchOptions
    cursors: dict[str, int]  # in stable (sorted) topic order
    key_index: int | None = None  # the creating API key; the stream needs the same one
    last_access: float = field(default_factory=time.monotonic)
    open_streams: int = 0
    _id_key: tuple[int, ...] = ()
    _id: str = ""

    def cursor_id(self) -> str:
        """The composite cursor of the whole map (SPEC §9.5), re-encoded only on change."""
        key = tuple(self.cursors.values())
        if key != self._id_key:
            self._id_key, self._id = key, encode_cursor(self.cursors)
        return self._id


def new_wid() -> str:
    return "wid_" + secrets.token_urlsafe(16)


class Watches:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions: dict[str, WatchSession] = {}
        # Watchers at the same cursor with the same options read the same thing:
        # one of them reads and renders, the rest reuse it (fan-out costs one read).
        self._reads: dict[tuple[Any, ...], tuple[TopicLog, ReadResult, bytes | None]] = {}

    def __len__(self) -> int:
        return len(self.sessions)

    def gc(self) -> None:
        """Drop sessions idle past their TTL with no stream open."""
        cutoff = time.monotonic() - SESSION_TTL_MS / 1000
        stale = [
            wid
            for wid, s in self.sessions.items()
            if s.open_streams == 0 and s.last_access < cutoff
        ]
        for wid in stale:
            del self.sessions[wid]

    def create(
        self, options: WatchOptions, starts: dict[str, int], key_index: int | None = None
    ) -> WatchSession:
        session = WatchSession(new_wid(), options, dict(sorted(starts.items())), key_index)
        self.sessions[session.wid] = session
        return session

    async def stream(self, session: WatchSession) -> AsyncIterator[bytes]:
        """The frames of one connection (SPEC §9.3); ends when every topic is terminal."""
        engine = self.engine
        options = session.options
        heartbeat = options.heartbeat_ms / 1000
        first = dict.fromkeys(session.cursors, True)
        caught = dict.fromkeys(session.cursors, False)
        terminal: set[str] = set()
        seen: dict[str, tuple[TopicLog, int]] = {}  # what each topic looked like when caught up
        session.open_streams += 1
        engine.sse_connections += 1
        session.last_access = time.monotonic()
        try:
            yield RETRY
            last_frame = time.monotonic()
            while True:
                if engine.shutting_down:
                    yield frame(
                        "error", {"code": "server_shutting_down", "error": "server shutting down"}
                    )
                    return
                # one pass: every topic read up to its head; frames go out in few writes
                out: list[bytes] = []
                size = 0
                for topic in session.cursors:
                    if topic in terminal:
                        continue
                    if engine.routers.lagging(topic):
                        await engine.routers.catch_up(topic)
                    async for chunk in self._drain(session, topic, first, caught, terminal, seen):
                        out.append(chunk)
                        size += len(chunk)
                        if size >= FLUSH_BYTES:
                            yield b"".join(out)
                            out, size = [], 0
                            last_frame = time.monotonic()
                if out:
                    yield b"".join(out)
                    last_frame = time.monotonic()
                if len(terminal) == len(session.cursors):
                    return
                now = time.monotonic()
                if now - last_frame >= heartbeat:
                    yield comment(f"hb {now_ms()}")
                    last_frame = now
                # a frame's send may have waited on a slow client while writers went on:
                # park only if nothing changed since each topic was last caught up
                live = [t for t in session.cursors if t not in terminal]
                logs = [log for t in live if (log := engine.topics.get(t)) is not None]
                if len(logs) < len(live) or any(
                    seen.get(log.name) != (log, log.head) for log in logs
                ):
                    continue
                await wait_any(logs, max(heartbeat - (time.monotonic() - last_frame), 0.001))
        finally:
            session.open_streams -= 1
            engine.sse_connections -= 1
            session.last_access = time.monotonic()

    async def _read(
        self, log: TopicLog, cursor: int, options: WatchOptions
    ) -> tuple[ReadResult, bytes | None]:
        """Read (or reuse a read of) ``log`` after ``cursor``; with the rendered records."""
        key = (log.instance_id, log.version, cursor, options.read_key)
        hit = self._reads.get(key)
        if hit is not None and hit[0] is log:
            return hit[1], hit[2]
        shape = (options.include_tags, options.include_meta, options.include_data)
        result = await self.engine.read(
            log, cursor, options.limit, options.max_batch_bytes, options.nodes, shape
        )
        body = None
        if result.records:
            body = orjson.dumps(
                {
                    "topic": log.name,
                    "from_seq": cursor,
                    "to_seq": result.next_from_seq,
                    "head_seq": result.head_seq,
                    "records": result.records,
                }
            )
        if len(self._reads) >= READ_CACHE:
            self._reads.clear()
        self._reads[key] = (log, result, body)
        return result, body

    async def _drain(
        self,
        session: WatchSession,
        topic: str,
        first: dict[str, bool],
        caught: dict[str, bool],
        terminal: set[str],
        seen: dict[str, tuple[TopicLog, int]],
    ) -> AsyncIterator[bytes]:
        """Read one topic from its session cursor until caught up."""
        engine = self.engine
        log = engine.get(topic)
        if log is None:
            terminal.add(topic)
            yield frame(
                "topic-deleted",
                {"topic": topic, "head_seq": 0, "reason": "deleted"},
                session.cursor_id(),
            )
            return
        engine.mark_read(log, now_ms())
        cursors = session.cursors
        while True:
            cursor = cursors[topic]
            result, body = await self._read(log, cursor, session.options)
            sent = False
            tombstone = result.tombstone
            if tombstone is not None:
                data: dict[str, Any] = {"topic": topic, **tombstone}
                if first[topic]:
                    data["reason"] = "from_seq_too_old"
                # SPEC §9.3 moves the cursor to gap_to; for a recreated topic that is the
                # new head, and a client resuming from this frame's id would skip the new
                # instance's records. The scan restarts after earliest_seq - 1: so do we.
                if tombstone["reason"] == "recreated":
                    cursors[topic] = tombstone["earliest_seq"] - 1
                else:
                    cursors[topic] = tombstone["gap_to"]
                yield frame("tombstone", data, session.cursor_id())
                sent = True
            first[topic] = False
            if body is not None:
                cursors[topic] = result.next_from_seq
                yield raw_frame("record", body, session.cursor_id())
                sent = True
            else:
                cursors[topic] = max(cursors[topic], result.next_from_seq)
            if sent:
                caught[topic] = False
            if result.caught_up:
                seen[topic] = (log, result.head_seq)
                if not caught[topic]:
                    caught[topic] = True
                    data = {"topic": topic, "head_seq": result.head_seq}
                    yield frame("caught-up", data, session.cursor_id())
                return
            if not sent and cursors[topic] == cursor:
                seen[topic] = (log, log.head)  # no progress possible now: wait for a change
                return
