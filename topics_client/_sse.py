"""Watch and work streams without I/O: SSE frames → typed events, cursor bookkeeping.

:class:`WatchCursor` is the whole resume logic of a watch (SPEC §9): it decodes frames,
remembers the composite ``id`` to send as ``Last-Event-ID``, keeps a per-topic cursor map,
drops records already handed to the caller (a reconnect may rewind) and says where a new
session must start when the old one was collected. The resources drive it over httpx-sse.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from ._models.queues import Job
from ._models.records import Gap, Record, Tombstone, parse_record

__all__ = [
    "CaughtUpEvent",
    "RecordsEvent",
    "StreamErrorEvent",
    "TopicDeletedEvent",
    "WatchCursor",
    "WatchEvent",
    "decode_composite_id",
    "decode_error_frame",
    "decode_job_frame",
]


@dataclass(frozen=True, slots=True)
class RecordsEvent:
    """A ``record`` frame: ``records`` ascend; ``to_seq`` may exceed the last ``seq``."""

    topic: str
    from_seq: int
    to_seq: int
    head_seq: int
    records: tuple[Record, ...]
    cursor: str | None = None

    @property
    def lag(self) -> int:
        return max(0, self.head_seq - self.to_seq)


@dataclass(frozen=True, slots=True)
class CaughtUpEvent:
    topic: str
    head_seq: int


@dataclass(frozen=True, slots=True)
class TopicDeletedEvent:
    """The topic is gone; the stream goes on for the others."""

    topic: str
    reason: str = "deleted"


SHUTTING_DOWN = "server_shutting_down"
"""``code`` of the error frame a draining server sends before it closes every stream."""


@dataclass(frozen=True, slots=True)
class StreamErrorEvent:
    """An ``error`` frame. Only code ``429`` (advisory pacing) is not ``terminal``.

    A watch never yields the ``server_shutting_down`` frame: it reconnects instead.
    """

    code: int | str
    message: str
    terminal: bool
    retry_after_ms: int | None = None
    data: Mapping[str, Any] = field(default_factory=dict, repr=False)


WatchEvent = RecordsEvent | Gap | CaughtUpEvent | TopicDeletedEvent | StreamErrorEvent
"""What a watch yields; a ``tombstone`` frame arrives as a :class:`~topics_client.Gap`."""


def decode_error_frame(data: str) -> StreamErrorEvent:
    """Integer or string ``code``; text in ``error`` or ``message`` (SPEC §9.4)."""
    try:
        body = orjson.loads(data) if data else {}
    except orjson.JSONDecodeError:
        body = {"error": data}
    if not isinstance(body, dict):
        body = {"error": str(body)}
    code = body.get("code", "unknown")
    if isinstance(code, str) and code.isdigit():
        code = int(code)
    message = body.get("error") or body.get("message") or str(code)
    retry = body.get("retry_after_ms")
    return StreamErrorEvent(
        code, str(message), code != 429, retry if isinstance(retry, int) else None, body
    )


def decode_job_frame(data: str) -> Job:
    return Job.from_wire(orjson.loads(data))


def decode_composite_id(event_id: str) -> dict[str, int] | None:
    """The per-topic map inside a composite id (unpadded base64url JSON), if it is one.

    Ids are opaque by contract (a server may send a checkpoint token), so anything that is
    not such a map yields ``None`` and the caller falls back to its own tracking.
    """
    if not event_id:
        return None
    try:
        raw = base64.urlsafe_b64decode(event_id + "=" * (-len(event_id) % 4))
        value = orjson.loads(raw)
    except (binascii.Error, ValueError):
        return None
    if not isinstance(value, dict):
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in value.values()):
        return None
    return value


class WatchCursor:
    """Resume state of one logical watch across connections and sessions.

    ``positions[topic]`` is the cursor the caller has been handed everything up to;
    :meth:`feed` never returns a record at or below it, so a rewinding reconnect cannot
    deliver twice, and it only moves on a complete frame, so a cut frame is re-sent.
    """

    def __init__(self, start: Mapping[str, int] | None = None) -> None:
        self.positions: dict[str, int] = dict(start or {})
        self.last_event_id: str | None = None
        self.deleted: set[str] = set()
        self.error: StreamErrorEvent | None = None
        self.duplicates = 0  # records re-sent at or below the cursor and dropped

    def adopt(self, starts: Mapping[str, int]) -> None:
        """Seed cursors for topics not yet tracked (e.g. resolved ``tail`` starts)."""
        for topic, seq in starts.items():
            self.positions.setdefault(topic, seq)

    @property
    def cursors(self) -> dict[str, int]:
        """Per-topic checkpoint map (``{topic: seq}``) of everything delivered so far."""
        return dict(self.positions)

    def resume_positions(self, topics: Iterable[str]) -> dict[str, int]:
        """``from_seq`` per live topic for a replacement session: the newer of the last
        composite id (when decodable) and what frames told us."""
        decoded = decode_composite_id(self.last_event_id or "") or {}
        out: dict[str, int] = {}
        for topic in topics:
            if topic in self.deleted:
                continue
            out[topic] = max(decoded.get(topic, 0), self.positions.get(topic, 0))
        return out

    def feed(self, event: str, data: str, event_id: str | None) -> WatchEvent | None:
        """Decode one complete frame; ``None`` for heartbeats, unknown events, duplicates."""
        if event == "error":
            error = decode_error_frame(data)
            if error.code == SHUTTING_DOWN:
                # The server is going away, not this watch: the connection ends and the
                # stream reconnects (re-creating the session, which dies with the server
                # process, from the cursors), so the caller sees no event at all.
                return None
            self.error = error
            return error
        if event not in _DATA_EVENTS or not data:
            return None
        body = orjson.loads(data)
        if event_id:
            self.last_event_id = event_id
        topic = body["topic"]
        if event == "record":
            return self._records(topic, body, event_id)
        if event == "tombstone":
            return self._tombstone(topic, body)
        if event == "caught-up":
            return CaughtUpEvent(topic, body.get("head_seq", 0))
        self.deleted.add(topic)
        return TopicDeletedEvent(topic, body.get("reason", "deleted"))

    def _records(
        self, topic: str, body: dict[str, Any], event_id: str | None
    ) -> RecordsEvent | None:
        seen = self.positions.get(topic, 0)
        records = tuple(map(parse_record, body.get("records", ())))
        if records and records[0].seq <= seen:
            fresh = tuple(r for r in records if r.seq > seen)
            self.duplicates += len(records) - len(fresh)
            records = fresh
        to_seq = body.get("to_seq", records[-1].seq if records else seen)
        self.positions[topic] = max(seen, to_seq)
        if not records:
            return None
        return RecordsEvent(
            topic,
            body.get("from_seq", seen),
            to_seq,
            body.get("head_seq", to_seq),
            records,
            event_id,
        )

    def _tombstone(self, topic: str, body: dict[str, Any]) -> Gap | None:
        seen = self.positions.get(topic, 0)
        tomb = Tombstone.from_wire(body)
        gap = Gap.from_tombstone(topic, tomb, seen)
        if tomb.reason == "recreated" or tomb.head_seq < seen:
            # A head below what the caller already has means a new instance of the topic
            # (within one instance the head never moves back). On a connection's first
            # read the server labels every tombstone ``from_seq_too_old``, which is how a
            # session re-created after a restart or a reconnect sees a recreated topic:
            # say what happened, and read the new instance from its start.
            self.positions[topic] = max(0, tomb.earliest_seq - 1)
            return gap if gap.reason == "recreated" else replace(gap, reason="recreated")
        if tomb.gap_to <= seen:
            return None  # already behind the caller: a rewound reconnect re-announcing it
        self.positions[topic] = max(seen, tomb.gap_to)
        return gap


_DATA_EVENTS = frozenset({"record", "tombstone", "caught-up", "topic-deleted"})
