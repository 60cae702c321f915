"""``client.watch``: multiplexed live streams (SPEC §9).

``client.watch.stream({"orders": 41, "audit": 0})`` creates a session on first iteration
(``POST /v0/watch``), streams ``GET /v0/watch/{wid}`` and yields typed events. It survives
dropped or silent connections (reconnect with ``Last-Event-ID``) and collected sessions
(``404`` → a new session starting from the per-topic cursors), and never hands a record
out twice. ``stream.cursors`` is the ``{topic: seq}`` map to checkpoint.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from .._base import Call, path
from .._config import (
    DEFAULT_HEARTBEAT_MS,
    DEFAULT_MAX_RECONNECTS,
    WATCHDOG_SLACK,
    clamp_heartbeat_ms,
)
from .._exceptions import NotFoundError, TopicNotFoundError
from .._models.watch import WatchSession
from .._sse import TopicDeletedEvent, WatchCursor, WatchEvent
from .._twins import twin_of
from ._resource import AsyncResource, SyncResource, json_parser
from ._streaming import StreamTarget, aiter_stream, iter_stream

if TYPE_CHECKING:
    from .._client import AsyncClient, Client

__all__ = ["AsyncWatch", "AsyncWatchStream", "Watch", "WatchStream"]

TopicStarts = Mapping[str, int | None] | Iterable[str]
"""Topics to watch: ``{topic: from_seq}`` (``None`` = tail) or names (all from ``0``,
or from the head with ``tail=True``)."""


def _options(
    node: str | Sequence[str] | None,
    limit: int | None,
    max_batch_bytes: int | None,
    heartbeat_ms: int,
    include_meta: bool | None,
    include_tags: bool | None,
    include_data: bool | None,
    consistency: Literal["eventual", "strong"] | None,
) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "node": node if node is None or isinstance(node, str) else list(node),
        "limit": limit,
        "max_batch_bytes": max_batch_bytes,
        "heartbeat_ms": heartbeat_ms,
        "include_meta": include_meta,
        "include_tags": include_tags,
        "include_data": include_data,
        "consistency": consistency,
    }
    return {k: v for k, v in raw.items() if v is not None}


def create_call(
    topics: Mapping[str, Mapping[str, Any]], options: Mapping[str, Any], lenient: bool
) -> Call:
    if not topics:
        raise ValueError("watch needs at least one topic")
    body = {**options, "topics": {t: dict(spec) for t, spec in topics.items()}}
    params = {"lenient": "true"} if lenient else None
    return Call("POST", "/v0/watch", params=params, body=body)


def _starts(topics: TopicStarts, tail: bool) -> dict[str, int | None]:
    if isinstance(topics, Mapping):
        return dict(topics)
    return {t: (None if tail else 0) for t in topics}


_session_parser = json_parser(WatchSession.from_wire)


class _WatchSpec:
    """Pure per-stream state the reconnect loop drives (see ``_streaming.StreamSpec``)."""

    def __init__(
        self,
        starts: dict[str, int | None],
        options: dict[str, Any],
        lenient: bool,
        max_reconnects: int,
    ) -> None:
        self.starts = starts
        self.options = options
        self.lenient = lenient
        self.max_reconnects = max_reconnects
        self.cursor = WatchCursor({t: s for t, s in starts.items() if s is not None})
        self.session: WatchSession | None = None
        self.created = False  # a session existed once: later POSTs re-create it
        self.sessions = 0
        self.connections = 0
        self.pending: list[WatchEvent] = []
        hb = clamp_heartbeat_ms(options.get("heartbeat_ms", DEFAULT_HEARTBEAT_MS))
        self.watchdog = 2 * hb / 1000.0 + WATCHDOG_SLACK

    def live_topics(self) -> list[str]:
        return [t for t in self.starts if t not in self.cursor.deleted]

    def create_call(self) -> Call:
        if not self.created:
            topics: dict[str, dict[str, Any]] = {
                t: ({"tail": True} if s is None else {"from_seq": s})
                for t, s in self.starts.items()
            }
        else:
            resume = self.cursor.resume_positions(self.live_topics())
            topics = {
                t: ({"from_seq": resume[t]} if t in resume else _initial(self.starts[t]))
                for t in self.live_topics()
            }
        return create_call(topics, self.options, self.lenient)

    def adopt(self, session: WatchSession) -> None:
        self.session = session
        self.created = True
        self.sessions += 1
        self.cursor.adopt({t: s.from_seq for t, s in session.topics.items()})
        for topic in self.live_topics():
            if self.lenient and topic not in session.topics:  # dropped by ?lenient=true
                self.topic_gone(topic)

    def topic_gone(self, topic: str) -> None:
        self.cursor.deleted.add(topic)
        self.pending.append(TopicDeletedEvent(topic, "not_found"))

    # StreamSpec
    def target(self) -> StreamTarget:
        assert self.session is not None
        return StreamTarget(
            path("watch", self.session.wid), self.watchdog, None, self.cursor.last_event_id
        )

    def feed(self, event: str, data: str, event_id: str) -> WatchEvent | None:
        return self.cursor.feed(event, data, event_id)

    def finished(self) -> bool:
        error = self.cursor.error
        return (error is not None and error.terminal) or not self.live_topics()

    def lost(self, error: NotFoundError) -> None:
        self.session = None

    def take_pending(self) -> list[WatchEvent]:
        pending, self.pending = self.pending, []
        return pending

    def connected(self, response: object) -> None:
        if response is not None:
            self.connections += 1


def _initial(start: int | None) -> dict[str, Any]:
    return {"tail": True} if start is None else {"from_seq": start}


def _missing_topic(spec: _WatchSpec, exc: TopicNotFoundError) -> bool:
    """When a collected session is re-created, a topic deleted meanwhile becomes a
    ``TopicDeletedEvent``; on the first POST a missing topic is the caller's error."""
    topic = exc.detail.get("topic")
    if not spec.created or not isinstance(topic, str) or topic not in spec.live_topics():
        return False
    spec.topic_gone(topic)
    return True


class WatchStream:
    """Iterator of :data:`WatchEvent`; also a context manager that closes the connection."""

    def __init__(self, client: Client, spec: _WatchSpec) -> None:
        self._client = client
        self._spec = spec
        self._iter: Iterator[WatchEvent] | None = None

    @property
    def cursors(self) -> dict[str, int]:
        return self._spec.cursor.cursors

    @property
    def last_event_id(self) -> str | None:
        return self._spec.cursor.last_event_id

    @property
    def session(self) -> WatchSession | None:
        return self._spec.session

    @property
    def connections(self) -> int:
        """Stream requests answered so far (refusals included); each after the first is a
        reconnect."""
        return self._spec.connections

    @property
    def sessions(self) -> int:
        """Watch sessions created so far; more than one means a collected session was
        re-created from the cursors."""
        return self._spec.sessions

    @property
    def duplicates_dropped(self) -> int:
        """Records a reconnect re-sent at or below the cursors, dropped so the caller
        never sees one twice."""
        return self._spec.cursor.duplicates

    def _prepare(self) -> None:
        spec = self._spec
        while spec.session is None and spec.live_topics():
            try:
                session = self._client._call(spec.create_call(), _session_parser)
            except TopicNotFoundError as exc:
                if not _missing_topic(spec, exc):
                    raise
                continue
            spec.adopt(session)

    def __iter__(self) -> Iterator[WatchEvent]:
        if self._iter is None:
            self._iter = iter_stream(self._client, self._spec, self._prepare)
        return self._iter

    def __next__(self) -> WatchEvent:
        return next(iter(self))

    def close(self) -> None:
        if self._iter is not None:
            self._iter.close()  # type: ignore[attr-defined]

    def __enter__(self) -> WatchStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@twin_of(WatchStream)
class AsyncWatchStream:
    """Async twin of :class:`WatchStream`."""

    def __init__(self, client: AsyncClient, spec: _WatchSpec) -> None:
        self._client = client
        self._spec = spec
        self._iter: AsyncIterator[WatchEvent] | None = None

    @property
    def cursors(self) -> dict[str, int]:
        return self._spec.cursor.cursors

    @property
    def last_event_id(self) -> str | None:
        return self._spec.cursor.last_event_id

    @property
    def session(self) -> WatchSession | None:
        return self._spec.session

    @property
    def connections(self) -> int:
        """Stream requests answered so far (refusals included); each after the first is a
        reconnect."""
        return self._spec.connections

    @property
    def sessions(self) -> int:
        """Watch sessions created so far; more than one means a collected session was
        re-created from the cursors."""
        return self._spec.sessions

    @property
    def duplicates_dropped(self) -> int:
        """Records a reconnect re-sent at or below the cursors, dropped so the caller
        never sees one twice."""
        return self._spec.cursor.duplicates

    async def _prepare(self) -> None:
        spec = self._spec
        while spec.session is None and spec.live_topics():
            try:
                session = await self._client._call(spec.create_call(), _session_parser)
            except TopicNotFoundError as exc:
                if not _missing_topic(spec, exc):
                    raise
                continue
            spec.adopt(session)

    def __aiter__(self) -> AsyncIterator[WatchEvent]:
        if self._iter is None:
            self._iter = aiter_stream(self._client, self._spec, self._prepare)
        return self._iter

    async def __anext__(self) -> WatchEvent:
        return await self.__aiter__().__anext__()

    async def aclose(self) -> None:
        if self._iter is not None:
            await self._iter.aclose()  # type: ignore[attr-defined]

    async def __aenter__(self) -> AsyncWatchStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _spec(
    topics: TopicStarts,
    *,
    tail: bool,
    lenient: bool,
    max_reconnects: int,
    options: dict[str, Any],
) -> _WatchSpec:
    starts = _starts(topics, tail)
    if not starts:
        raise ValueError("watch needs at least one topic")
    return _WatchSpec(starts, options, lenient, max_reconnects)


class Watch(SyncResource):
    def create(
        self,
        topics: TopicStarts,
        *,
        tail: bool = False,
        node: str | Sequence[str] | None = None,
        limit: int | None = None,
        max_batch_bytes: int | None = None,
        heartbeat_ms: int = DEFAULT_HEARTBEAT_MS,
        include_meta: bool | None = None,
        include_tags: bool | None = None,
        include_data: bool | None = None,
        consistency: Literal["eventual", "strong"] | None = None,
        lenient: bool = False,
    ) -> WatchSession:
        """Only the session (``POST /v0/watch``); :meth:`stream` is what most callers want."""
        starts = _starts(topics, tail)
        options = _options(
            node,
            limit,
            max_batch_bytes,
            heartbeat_ms,
            include_meta,
            include_tags,
            include_data,
            consistency,
        )
        call = create_call({t: _initial(s) for t, s in starts.items()}, options, lenient)
        return self._request(call, _session_parser)

    def stream(
        self,
        topics: TopicStarts,
        *,
        tail: bool = False,
        node: str | Sequence[str] | None = None,
        limit: int | None = None,
        max_batch_bytes: int | None = None,
        heartbeat_ms: int = DEFAULT_HEARTBEAT_MS,
        include_meta: bool | None = None,
        include_tags: bool | None = None,
        include_data: bool | None = None,
        consistency: Literal["eventual", "strong"] | None = None,
        lenient: bool = False,
        max_reconnects: int = DEFAULT_MAX_RECONNECTS,
    ) -> WatchStream:
        options = _options(
            node,
            limit,
            max_batch_bytes,
            heartbeat_ms,
            include_meta,
            include_tags,
            include_data,
            consistency,
        )
        spec = _spec(
            topics, tail=tail, lenient=lenient, max_reconnects=max_reconnects, options=options
        )
        return WatchStream(self._client, spec)


@twin_of(Watch)
class AsyncWatch(AsyncResource):
    async def create(
        self,
        topics: TopicStarts,
        *,
        tail: bool = False,
        node: str | Sequence[str] | None = None,
        limit: int | None = None,
        max_batch_bytes: int | None = None,
        heartbeat_ms: int = DEFAULT_HEARTBEAT_MS,
        include_meta: bool | None = None,
        include_tags: bool | None = None,
        include_data: bool | None = None,
        consistency: Literal["eventual", "strong"] | None = None,
        lenient: bool = False,
    ) -> WatchSession:
        starts = _starts(topics, tail)
        options = _options(
            node,
            limit,
            max_batch_bytes,
            heartbeat_ms,
            include_meta,
            include_tags,
            include_data,
            consistency,
        )
        call = create_call({t: _initial(s) for t, s in starts.items()}, options, lenient)
        return await self._request(call, _session_parser)

    def stream(
        self,
        topics: TopicStarts,
        *,
        tail: bool = False,
        node: str | Sequence[str] | None = None,
        limit: int | None = None,
        max_batch_bytes: int | None = None,
        heartbeat_ms: int = DEFAULT_HEARTBEAT_MS,
        include_meta: bool | None = None,
        include_tags: bool | None = None,
        include_data: bool | None = None,
        consistency: Literal["eventual", "strong"] | None = None,
        lenient: bool = False,
        max_reconnects: int = DEFAULT_MAX_RECONNECTS,
    ) -> AsyncWatchStream:
        options = _options(
            node,
            limit,
            max_batch_bytes,
            heartbeat_ms,
            include_meta,
            include_tags,
            include_data,
            consistency,
        )
        spec = _spec(
            topics, tail=tail, lenient=lenient, max_reconnects=max_reconnects, options=options
        )
        return AsyncWatchStream(self._client, spec)
