"""The multiplexed watch (SPEC §9): sessions, and the events a stream is made of.

A session holds its options and one cursor per topic; it lives in memory and
is collected after ``session_ttl_ms`` without an open stream. A stream pulls:
it reads each topic from the session cursor exactly as ``/diff`` does and
hands out typed events (:data:`WatchEvent`) only as fast as its consumer takes
them. Nothing is queued per watcher, so a slow consumer costs no server memory
and never holds up writers or other watchers; its next read simply returns a
bigger batch (coalescing). Readers park on the topics' change futures, so
delivery is woken by appends, never by polling.

The engine knows no wire: turning events into SSE frames, and sharing one
rendering between watchers at the same cursor, is the API layer's business
(:mod:`topics_server.api.render`). It plugs in through the :data:`Reader` a
stream is given, so the engine decides *what* is read and when, and the reader
decides what a batch's records look like (bytes rendered once, say).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypeVar

from topics_server.engine.log import TopicLog
from topics_server.wire import now_ms

if TYPE_CHECKING:
    from topics_server.engine.engine import Engine

__all__ = [
    "PASS_DONE",
    "SESSION_TTL_MS",
    "Batch",
    "CaughtUp",
    "Deadline",
    "Heartbeat",
    "LiveRecords",
    "Park",
    "PassDone",
    "Reader",
    "Records",
    "ShuttingDown",
    "Tombstone",
    "TopicDeleted",
    "WatchEvent",
    "WatchOptions",
    "WatchSession",
    "Watches",
]

SESSION_TTL_MS = 300_000

P = TypeVar("P")

Cursors: TypeAlias = Mapping[str, int]


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
    _read_key: tuple[Any, ...] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def read_key(self) -> tuple[Any, ...]:
        """Everything that shapes a read and its rendering (made once: options are set
        before a session starts, and a stream's every read asks for it)."""
        key = self._read_key
        if key is None:
            key = self._read_key = (
                self.nodes,
                self.limit,
                self.max_batch_bytes,
                self.include_meta,
                self.include_tags,
                self.include_data,
            )
        return key

    @property
    def shape(self) -> tuple[bool, bool, bool]:
        """The wire shape records are rendered in (include_tags, include_meta, include_data)."""
        return (self.include_tags, self.include_meta, self.include_data)


@dataclass(slots=True)
class WatchSession:
    wid: str
    options: WatchOptions
    cursors: dict[str, int]  # in stable (sorted) topic order
    key_index: int | None = None  # the creating API key; the stream needs the same one
    last_access: float = field(default_factory=time.monotonic)
    open_streams: int = 0
    _snap_key: tuple[int, ...] = ()
    _snap: Cursors = field(default_factory=dict)

    def snapshot(self) -> Cursors:
        """A copy of the whole cursor map; the same object until a cursor moves.

        Events carry it so the composite cursor (SPEC §9.5) of an unchanged map
        is encoded once, however many frames share it.
        """
        key = tuple(self.cursors.values())
        if key != self._snap_key or not self._snap:
            self._snap_key, self._snap = key, dict(self.cursors)
        return self._snap


# -- what a stream reads ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Batch(Generic[P]):
    """One read of one topic after ``from_seq`` (SPEC §4.2), as a stream needs it.

    ``records`` is None when the read returned no record; otherwise it is
    whatever the stream's :data:`Reader` makes of them (never empty).
    """

    from_seq: int
    next_from_seq: int
    head_seq: int
    tombstone: dict[str, Any] | None
    records: P | None

    @property
    def caught_up(self) -> bool:
        return self.next_from_seq == self.head_seq


Park: TypeAlias = Callable[[TopicLog, int, float], Awaitable[float | None]]
"""Parks a one-topic stream caught up at ``cursor`` (the head of ``log``) until its
heartbeat ``deadline`` (``time.monotonic()``) or until it has to look for itself. The
one parking it may deliver batches meanwhile, moving the session cursor as the stream
would; it returns when it last did (None: it did not)."""

Reader: TypeAlias = Callable[[TopicLog, int, WatchOptions], Awaitable[Batch[P]]]
"""Reads ``log`` after a cursor with the session's options, through :meth:`Engine.read`
(``limit``, ``max_batch_bytes``, ``nodes``), and returns the batch with its records in
whatever form the stream's consumer wants them (rendered in ``options.shape``)."""


# -- what a stream hands out (SPEC §9.3/§9.4) ----------------------------------


@dataclass(frozen=True, slots=True)
class Records(Generic[P]):
    """A batch of records; ``cursors`` is the session map after it."""

    topic: str
    batch: Batch[P]
    cursors: Cursors


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A gap (SPEC §5.4); ``gap`` holds ``topic``, ``reason``, ``gap_from``, ``gap_to``…"""

    topic: str
    gap: dict[str, Any]
    cursors: Cursors


@dataclass(slots=True)
class LiveRecords(Generic[P]):
    """A one-topic stream's records that brought it back to the head.

    Stands for :class:`Records`, :class:`CaughtUp` and :class:`PassDone` in a row:
    the whole answer of a caught-up tail to one write, the same for every stream at
    that cursor, so a renderer can share its bytes between them. The session's
    cursor map after it is ``{topic: batch.next_from_seq}``. (Not frozen: it is
    made once per watcher per write, and a frozen dataclass's ``__init__`` is slow.)
    """

    topic: str
    batch: Batch[P]


@dataclass(frozen=True, slots=True)
class CaughtUp:
    topic: str
    head_seq: int
    cursors: Cursors


@dataclass(frozen=True, slots=True)
class TopicDeleted:
    """The topic is gone: terminal for that topic on this stream only."""

    topic: str
    cursors: Cursors


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Nothing was handed out for ``heartbeat_ms``."""

    at_ms: int


@dataclass(frozen=True, slots=True)
class PassDone:
    """Every live topic was read up to its head: a good moment to send what is pending."""


@dataclass(frozen=True, slots=True)
class ShuttingDown:
    """The server is stopping; the stream ends after this."""


PASS_DONE = PassDone()  # carries nothing: one instance serves every pass

WatchEvent: TypeAlias = (
    Records[P]
    | LiveRecords[P]
    | Tombstone
    | CaughtUp
    | TopicDeleted
    | Heartbeat
    | PassDone
    | ShuttingDown
)


class Deadline:
    """Calls ``due`` once ``at`` (``time.monotonic()``) has passed; moving ``at`` later is free.

    The timer is armed once and, when it fires early (``at`` moved on since), re-arms
    for what is left: a stream woken by every write would otherwise make and cancel a
    timer per write. ``due`` decides what a deadline means when it comes.
    """

    __slots__ = ("_due", "_timer", "at")

    def __init__(self, due: Callable[[], None]) -> None:
        self._due = due
        self._timer: asyncio.TimerHandle | None = None
        self.at = 0.0

    def arm(self, at: float) -> None:
        self.at = at
        if self._timer is None:
            delay = max(at - time.monotonic(), 0.0)
            self._timer = asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        left = self.at - time.monotonic()
        if left > 0.0005:
            self._timer = asyncio.get_running_loop().call_later(left, self._fire)
        else:
            self._due()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class _Parker:
    """Where one stream waits for its topics: one future per wait, one :class:`Deadline`."""

    __slots__ = ("_deadline", "_future")

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None
        self._deadline = Deadline(self._due)

    async def wait(self, logs: list[TopicLog], deadline: float) -> None:
        """Until any of ``logs`` publishes or ``deadline`` (``time.monotonic()``) passes."""
        future = self._future = asyncio.get_running_loop().create_future()
        for log in logs:
            log.waiters.append(future)
        self._deadline.arm(deadline)
        try:
            await future
        finally:
            self._future = None
            for log in logs:
                if future in log.waiters:
                    log.waiters.remove(future)

    def _due(self) -> None:
        future = self._future
        if future is not None and not future.done():
            future.set_result(None)

    def close(self) -> None:
        self._deadline.cancel()


def new_wid() -> str:
    return "wid_" + secrets.token_urlsafe(16)


class Watches:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions: dict[str, WatchSession] = {}

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

    async def stream(
        self, session: WatchSession, read: Reader[P], park: Park | None = None
    ) -> AsyncGenerator[WatchEvent[P], None]:
        """The events of one connection (SPEC §9.3); ends when every topic is terminal.

        Each event is handed out after the session cursors moved past it; the
        consumer is expected to send it before asking for the next one. One
        generator, no nested ones: every watcher resumes it a few times per write,
        and each generator level a resume passes through showed in fan-out profiles.
        """
        engine = self.engine
        routers = engine.routers
        options = session.options
        cursors = session.cursors
        heartbeat = options.heartbeat_ms / 1000
        first = dict.fromkeys(cursors, True)
        caught = dict.fromkeys(cursors, False)
        terminal: set[str] = set()
        seen: dict[str, tuple[TopicLog, int]] = {}  # what each topic looked like when caught up
        session.open_streams += 1
        engine.sse_connections += 1
        session.last_access = time.monotonic()
        # a stream of one topic, once caught up, takes the tail path: one read and one
        # event per write (the common live tail, and what fan-out to many watchers costs)
        only = next(iter(cursors)) if len(cursors) == 1 else None
        parker = _Parker()
        try:
            last_event = time.monotonic()
            while True:
                if engine.shutting_down:
                    yield ShuttingDown()
                    return
                tail = only is not None and caught[only] and only not in terminal
                if tail:
                    assert only is not None
                    log = engine.topics.get(only)
                    tail = log is not None and seen[only][0] is log and not routers.lagging(only)
                if tail:
                    assert only is not None and log is not None
                    cursor = cursors[only]
                    engine.mark_read(log, now_ms())
                    if log.head == cursor:
                        now = time.monotonic()
                        if now - last_event >= heartbeat:
                            yield Heartbeat(now_ms())
                            last_event = now
                        if park is None:
                            await parker.wait([log], last_event + heartbeat)
                        elif delivered := await park(log, cursor, last_event + heartbeat):
                            last_event = max(last_event, delivered)
                        continue
                    batch = await read(log, cursor, options)
                    if batch.tombstone is None and batch.records is not None and batch.caught_up:
                        cursors[only] = batch.next_from_seq
                        seen[only] = (log, batch.head_seq)
                        yield LiveRecords(only, batch)
                        last_event = time.monotonic()
                        continue
                    # anything else (a gap, a filtered read, a cut page): the full pass
                    # reads it again from the same cursor (a shared read: no cost)
                # one pass: every topic read up to its head
                for topic in cursors:
                    if topic in terminal:
                        continue
                    if routers.lagging(topic):
                        await routers.catch_up(topic)
                    log = engine.get(topic)
                    if log is None:
                        terminal.add(topic)
                        yield TopicDeleted(topic, session.snapshot())
                        last_event = time.monotonic()
                        continue
                    engine.mark_read(log, now_ms())
                    while True:  # this topic, from its session cursor until caught up
                        cursor = cursors[topic]
                        batch = await read(log, cursor, options)
                        sent = False
                        tombstone = batch.tombstone
                        if tombstone is not None:
                            gap: dict[str, Any] = {"topic": topic, **tombstone}
                            if first[topic]:
                                gap["reason"] = "from_seq_too_old"
                            # SPEC §9.3 moves the cursor to gap_to; for a recreated topic
                            # that is the new head, and a client resuming from this frame's
                            # id would skip the new instance's records. The scan restarts
                            # after earliest_seq - 1: so do we.
                            if tombstone["reason"] == "recreated":
                                cursors[topic] = tombstone["earliest_seq"] - 1
                            else:
                                cursors[topic] = tombstone["gap_to"]
                            yield Tombstone(topic, gap, session.snapshot())
                            sent = True
                        first[topic] = False
                        if batch.records is not None:
                            cursors[topic] = batch.next_from_seq
                            yield Records(topic, batch, session.snapshot())
                            sent = True
                        else:
                            cursors[topic] = max(cursors[topic], batch.next_from_seq)
                        if sent:
                            caught[topic] = False
                            last_event = time.monotonic()
                        if batch.caught_up:
                            seen[topic] = (log, batch.head_seq)
                            if not caught[topic]:
                                caught[topic] = True
                                yield CaughtUp(topic, batch.head_seq, session.snapshot())
                                last_event = time.monotonic()
                            break
                        if not sent and cursors[topic] == cursor:
                            seen[topic] = (log, log.head)  # no progress possible: wait
                            break
                yield PASS_DONE
                if len(terminal) == len(cursors):
                    return
                now = time.monotonic()
                if now - last_event >= heartbeat:
                    yield Heartbeat(now_ms())
                    last_event = now
                # handing an event out may have waited on a slow client while writers
                # went on: park only if nothing changed since each topic was caught up
                live = [t for t in cursors if t not in terminal]
                logs = [log for t in live if (log := engine.topics.get(t)) is not None]
                if len(logs) < len(live) or any(
                    seen.get(log.name) != (log, log.head) for log in logs
                ):
                    continue
                if (
                    park is not None
                    and only is not None
                    and caught[only]
                    and cursors[only] == logs[0].head
                    and not routers.lagging(only)
                ):
                    continue  # at the head of its one topic: the tail path parks it there
                await parker.wait(logs, last_event + heartbeat)
        finally:
            parker.close()
            session.open_streams -= 1
            engine.sse_connections -= 1
            session.last_access = time.monotonic()
