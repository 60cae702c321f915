"""The engine: the registry of topics and the operations of the log core.

Every operation runs on the event loop; the only suspension points are the
store commit of a write and a long-poll wait. That keeps each topic's state
changes atomic without locks.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sortedcontainers import SortedDict

from topics_server.engine.config import TopicConfig
from topics_server.engine.idempotency import IdempotencyEntry
from topics_server.engine.log import ReadResult, TopicLog, Totals
from topics_server.engine.names import is_topic_name
from topics_server.engine.predicates import TagPredicate
from topics_server.engine.records import Pending
from topics_server.errors import ApiError, invalid_request, throttled, topic_not_found
from topics_server.settings import Settings
from topics_server.storage.base import Store
from topics_server.storage.memory import MemoryStore
from topics_server.wire import now_ms

__all__ = ["DiffRequest", "Engine", "WriteOutcome"]


@dataclass(slots=True)
class WriteOutcome:
    first_seq: int
    last_seq: int
    head_seq: int
    count: int
    created: bool
    deduped: bool
    wal_append_ms: float = 0.0
    fsync_ms: float = 0.0


@dataclass(slots=True)
class DiffRequest:
    from_seq: int = 0
    limit: int = 256
    nodes: frozenset[str] | None = None
    include_tags: bool = False
    include_meta: bool = True
    wait_ms: int = 0
    max_batch_bytes: int = 1_048_576


class Engine:
    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.store: Store = store or MemoryStore()
        self.topics: SortedDict[str, TopicLog] = SortedDict()
        self.totals = Totals()
        self.started = time.monotonic()
        self.shutting_down = False
        self._next_instance = 1
        self.sse_connections = 0
        # called with the topic name whenever a topic is removed; routers hook in here
        self.on_topic_removed: list[Callable[[str], list[str]]] = []

    # -- lookup -------------------------------------------------------------

    def get(self, name: str, now: int | None = None) -> TopicLog | None:
        """The topic with retention applied, or None."""
        log: TopicLog | None = self.topics.get(name)
        if log is not None:
            log.apply_retention(now_ms() if now is None else now)
        return log

    def require(self, name: str, now: int | None = None) -> TopicLog:
        log = self.get(name, now)
        if log is None:
            raise topic_not_found(name)
        return log

    def effective_priority(self, log: TopicLog, now: int) -> int:
        config = log.config
        if config.priority is not None:
            return min(max(config.priority, -1000), 1000)
        if not config.auto_priority or log.last_read_ts is None:
            return 0
        idle = now - log.last_read_ts
        if idle >= 300_000:
            return 0
        return round(500 * math.pow(2.0, -max(idle, 0) / 30_000))

    def router_count(self) -> int:
        return 0

    def watch_session_count(self) -> int:
        return 0

    def leases_in_flight(self) -> int:
        return 0

    def queue_counters(self, log: TopicLog, now: int) -> dict[str, int]:
        """``ready``/``in_flight``/``dead_lettered`` of a queue (SPEC §10.8)."""
        return {"ready": log.count, "in_flight": 0, "dead_lettered": 0}

    def mark_read(self, log: TopicLog, now: int) -> None:
        log.last_read_ts = now

    # -- topic lifecycle (SPEC §2) --------------------------------------------

    def _new_log(self, name: str, config: TopicConfig) -> TopicLog:
        if not is_topic_name(name):
            raise invalid_request(f"invalid topic name {name!r}", topic=name)
        limit = self.settings.max_topics
        if limit and len(self.topics) >= limit:
            raise throttled("max_topics", limit, f"the server holds its maximum of {limit} topics")
        log = TopicLog(name, self._next_instance, config, self.totals)
        self._next_instance += 1
        return log

    def _register(self, log: TopicLog) -> None:
        self.topics[log.name] = log
        self.store.topic_saved(log)

    def put_topic(self, name: str, config: TopicConfig) -> tuple[TopicLog, bool]:
        """Create, or replace the config of, a topic (full replacement over defaults)."""
        log = self.get(name)
        if log is None:
            log = self._new_log(name, config)
            self._register(log)
            return log, True
        if log.config.type != config.type:
            raise ApiError(
                409,
                "topic_exists_incompatible",
                f"topic {name!r} is a {log.config.type}; its type cannot change",
                {"topic": name, "existing_type": log.config.type, "requested_type": config.type},
            )
        log.config = config
        log.apply_retention(now_ms())
        self.store.topic_saved(log)
        return log, False

    def delete_topic(self, name: str, if_empty: bool) -> tuple[bool, list[str]]:
        log = self.get(name)
        if log is None:
            return False, []
        if if_empty and log.count > 0:
            raise ApiError(
                409,
                "topic_not_empty",
                f"topic {name!r} still holds {log.count} records",
                {"topic": name, "count": log.count},
            )
        del self.topics[name]
        log.removed = True
        self.totals.records -= log.count
        self.totals.bytes -= log.bytes
        self.store.topic_dropped(log)
        log.notify()
        removed: list[str] = []
        for hook in self.on_topic_removed:
            removed.extend(hook(name))
        return True, sorted(removed)

    # -- writes (SPEC §3) -----------------------------------------------------

    async def write(
        self,
        name: str,
        batch: list[Pending],
        *,
        create: bool | None = None,
        config: TopicConfig | None = None,
        idempotency_key: str | None = None,
    ) -> WriteOutcome:
        now = now_ms()
        log = self.get(name, now)
        created = False
        if log is None:
            allowed = create if create is not None else (config or TopicConfig()).auto_create
            if not allowed:
                raise topic_not_found(name)
            log = self._new_log(name, config or TopicConfig())
            created = True
        elif idempotency_key is not None:
            entry = log.idempotency.get(idempotency_key, now)
            if entry is not None:
                if entry.pending is not None:
                    await entry.pending
                    return await self.write(name, batch, idempotency_key=idempotency_key)
                return WriteOutcome(
                    entry.first_seq,
                    entry.last_seq,
                    entry.head_seq,
                    entry.last_seq - entry.first_seq + 1,
                    created=False,
                    deduped=True,
                )
        incoming = sum([p[4] for p in batch])
        self._check_capacity(log, len(batch), incoming)
        if created:
            self._register(log)

        entry = None
        if idempotency_key is not None:
            entry = IdempotencyEntry(expires_at=now + log.config.idempotency_window_ms)
            entry.pending = _loop_future()
            log.idempotency.put(idempotency_key, entry)
        first, last = log.append(batch, now)
        try:
            timing = await self.store.append(log, first, last)
        except BaseException:
            # nothing was acknowledged: take the records back out of sight
            log.delete_seqs(range(first, last + 1))
            if entry is not None:
                assert idempotency_key is not None
                log.idempotency.discard(idempotency_key)
                _resolve(entry)
            raise
        log.enforce_caps()
        if entry is not None:
            entry.first_seq, entry.last_seq, entry.head_seq = first, last, log.head
            _resolve(entry)
        log.notify()
        return WriteOutcome(
            first,
            last,
            log.head,
            len(batch),
            created=created,
            deduped=False,
            wal_append_ms=timing[0],
            fsync_ms=timing[1],
        )

    def _check_capacity(self, log: TopicLog, n: int, incoming: int) -> None:
        config = log.config
        if config.discard == "reject" and (config.cap_records or config.cap_bytes):
            if (config.cap_records and n > config.cap_records) or (
                config.cap_bytes and incoming > config.cap_bytes
            ):
                raise ApiError(
                    400,
                    "record_too_large",
                    "the batch alone exceeds the topic's whole cap",
                    {
                        "topic": log.name,
                        "cap_records": config.cap_records,
                        "cap_bytes": config.cap_bytes,
                        "records": n,
                        "bytes": incoming,
                    },
                )
            if (config.cap_records and log.count + n > config.cap_records) or (
                config.cap_bytes and log.bytes + incoming > config.cap_bytes
            ):
                raise ApiError(
                    422,
                    "topic_full",
                    f"topic {log.name!r} is full and discards nothing (discard: reject)",
                    {
                        "topic": log.name,
                        "cap_records": config.cap_records,
                        "cap_bytes": config.cap_bytes,
                        "head_seq": log.head,
                        "earliest_seq": log.earliest_seq,
                    },
                )
        quota = self.settings.max_total_bytes
        if quota and self.totals.bytes + incoming > quota:
            raise throttled("max_total_bytes", quota, "the server's byte quota is exhausted")

    # -- reads (SPEC §4) --------------------------------------------------------

    async def diff(self, name: str, request: DiffRequest) -> tuple[TopicLog, ReadResult]:
        now = now_ms()
        log = self.require(name, now)
        self.mark_read(log, now)
        result = log.read(request.from_seq, request.limit, request.max_batch_bytes, request.nodes)
        if (
            request.wait_ms
            and not result.records
            and result.tombstone is None
            and result.caught_up
            and not self.shutting_down
        ):
            woke = await log.wait_change(request.wait_ms / 1000)
            if woke and not log.removed:
                log.apply_retention(now_ms())
                result = log.read(
                    request.from_seq, request.limit, request.max_batch_bytes, request.nodes
                )
        return log, result

    # -- record deletes (SPEC §7) -----------------------------------------------

    async def delete_records(
        self, name: str, before_seq: int | None, predicate: TagPredicate | None
    ) -> tuple[TopicLog, int]:
        log = self.require(name)
        if predicate is not None:
            deleted = log.delete_matching(predicate, before_seq)
        else:
            assert before_seq is not None
            deleted = log.delete_before(before_seq)
        if deleted:
            await self.store.records_deleted(log)
        return log, deleted

    # -- lifecycle ----------------------------------------------------------------

    def begin_shutdown(self) -> None:
        """Stop parking readers: every long-poll returns now."""
        self.shutting_down = True
        for log in self.topics.values():
            log.notify()

    def stats(self) -> dict[str, Any]:
        return {
            "topics": len(self.topics),
            "records_live": self.totals.records,
            "bytes_live": self.totals.bytes,
        }


def _loop_future() -> asyncio.Future[None]:
    return asyncio.get_running_loop().create_future()


def _resolve(entry: IdempotencyEntry) -> None:
    pending, entry.pending = entry.pending, None
    if pending is not None and not pending.done():
        pending.set_result(None)
