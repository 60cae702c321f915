"""The engine: the registry of topics and the operations of the log core.

Every operation runs on the event loop. The only suspension points are store
commits and long-poll waits, and a topic's in-memory state changes only
between them, so no locks are needed.

Durability classes (SPEC §14) decide what a write waits for:

========== ============================================================
ephemeral  nothing: records live in memory only (seq reservations are
           persisted in blocks so seqs are never reused)
memory     handed to the store's writer queue; the ack does not wait
disk       committed to the store (no fsync) before the ack
fsync      committed and fsynced before the ack (group commit)
========== ============================================================
"""

from __future__ import annotations

import asyncio
import math
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass

from sortedcontainers import SortedDict

from topics_server.engine.chunks import Chunk, Payload
from topics_server.engine.config import TopicConfig, parse_config
from topics_server.engine.idempotency import IdempotencyEntry
from topics_server.engine.log import ColdMiss, ReadResult, TopicLog, Totals, WireRecord
from topics_server.engine.names import is_topic_name
from topics_server.engine.predicates import TagPredicate
from topics_server.engine.queues import QueueRegistry
from topics_server.engine.routers import Routers
from topics_server.engine.watch import Watches
from topics_server.errors import ApiError, invalid_request, throttled, topic_not_found
from topics_server.settings import Settings
from topics_server.storage.sqlite import Operation, RecoveredTopic, SqliteStore
from topics_server.wire import now_ms

__all__ = ["Batch", "DiffRequest", "Engine", "WriteOutcome"]

# An ephemeral topic persists its seq reservation this far ahead of the head.
RESERVE_BLOCK = 1 << 16
# A read retries this often when the front moved while its cold payloads loaded.
COLD_ATTEMPTS = 8

Batch = tuple["array[int]", Payload]
Committed = (
    asyncio.Future[tuple[float, float]] | None
)  # (sizes, payload columns) of a validated write


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
    def __init__(self, settings: Settings, store: SqliteStore | None = None) -> None:
        self.settings = settings
        self.store = store
        self.topics: SortedDict[str, TopicLog] = SortedDict()
        self.totals = Totals()
        self.started = time.monotonic()
        self.shutting_down = False
        self.ready = store is None
        self.recovery_progress = 1.0 if store is None else 0.0
        self.sse_connections = 0
        self._next_instance = 1
        self._reserved: dict[int, int] = {}  # ephemeral topics: instance -> persisted reservation
        # called with the topic name whenever a topic is removed; routers hook in here
        self.on_topic_removed: list[Callable[[str], list[str]]] = []
        # called with every log that just published records (router wake-ups)
        self.on_publish: list[Callable[[TopicLog], None]] = []
        self.routers = Routers(self)
        self.watches = Watches(self)
        self.queues = QueueRegistry(self)  # lease state of queue topics (SPEC §10)
        self.on_topic_removed.append(self.queues.topic_removed)

    # -- recovery ---------------------------------------------------------------

    def recover(self) -> None:
        """Rebuild every topic from the store (run in a worker thread at start-up)."""
        store = self.store
        if store is None:
            return
        now = now_ms()
        total = max(store.topic_count(), 1)
        self._next_instance = store.next_instance()
        for done, topic in enumerate(store.recover(now), start=1):
            self._restore(topic, now)
            self.recovery_progress = done / total
        for name, spec, cursor, instance, total in store.recover_routers():
            self.routers.restore(name, spec, cursor, instance, total)
        store.prune_idempotency(now)
        self.recovery_progress = 1.0

    def _restore(self, row: RecoveredTopic, now: int) -> None:
        assert self.store is not None
        config = parse_config(row.config, row.name)
        log = TopicLog(row.name, row.instance, config, self.totals)
        log.evict_floor = row.evict_floor
        log.cap_hi, log.ttl_hi, log.trim_hi = row.cap_hi, row.ttl_hi, row.trim_hi
        log.last_ts = row.last_ts
        log.last_write_ts = row.last_write_ts
        head = max(row.head, row.reserved)
        if config.durability == "ephemeral":
            # its records are gone; every reader below the old head gets a tombstone
            self.store.discard_records(row.instance)
            log.head = log.assigned = head
            log.evict_floor = head + 1
            self._reserved[row.instance] = row.reserved
            front = head + 1
        else:
            log.head = log.assigned = max(head, row.chunks[-1].last if row.chunks else 0)
            log.chunks = [c for c in row.chunks if c.last >= row.front]
            log.deleted = row.deleted
            front = row.front
        count = size = 0
        for chunk in log.chunks:
            for i, rsize in enumerate(chunk.sizes):
                seq = chunk.first + i
                if seq >= front and seq not in log.deleted:
                    count += 1
                    size += rsize
        log.count, log.bytes = count, size
        self.totals.records += count
        self.totals.bytes += size
        if log.chunks:
            log.pos = max(front - log.chunks[0].first, 0)
            log._settle_front()
        log.persisted_front = log.earliest_seq
        for key, first, last, head_seq, expires in row.idempotency:
            entry = IdempotencyEntry(expires, first, last, head_seq)
            log.idempotency.put(key, entry)
        self.topics[row.name] = log
        self.queues.restore(log)

    # -- lookup -------------------------------------------------------------

    def get(self, name: str, now: int | None = None) -> TopicLog | None:
        """The topic with retention applied, or None."""
        log: TopicLog | None = self.topics.get(name)
        if log is not None:
            log.apply_retention(now_ms() if now is None else now)
            self._sync_front(log)
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
        return len(self.routers)

    def watch_session_count(self) -> int:
        return len(self.watches)

    def leases_in_flight(self) -> int:
        return self.queues.leases_in_flight(now_ms())

    def queue_counters(self, log: TopicLog, now: int) -> dict[str, int]:
        """``ready``/``in_flight``/``dead_lettered`` of a queue (SPEC §10.8)."""
        return self.queues.counters(log, now)

    def mark_read(self, log: TopicLog, now: int) -> None:
        log.last_read_ts = now

    # -- persistence helpers ----------------------------------------------------

    def _persistent(self, log: TopicLog) -> bool:
        return self.store is not None and log.config.durability != "ephemeral"

    def _sync_front(self, log: TopicLog) -> None:
        """Hand a moved front (eviction, prefix delete) to the store, then cool."""
        store = self.store
        if store is None:
            return
        front = log.earliest_seq
        if front > log.persisted_front:
            log.persisted_front = front
            store.move_front(
                log.instance_id,
                front,
                log.evict_floor,
                (log.cap_hi, log.ttl_hi, log.trim_hi),
                fsync=False,
                wait=False,
            )
        log.cool()

    async def _await(
        self, future: asyncio.Future[tuple[float, float]] | None
    ) -> tuple[float, float]:
        return (0.0, 0.0) if future is None else await future

    def reserve_holes(self, log: TopicLog, k: int) -> None:
        """Burn ``k`` seqs on ``log`` as an involuntary loss (router source trim).

        Readers whose cursor is below get a ``source_trim`` tombstone (SPEC §8.2).
        """
        if k <= 0:
            return
        last = log.assigned + k
        log.assigned = last
        log.head = max(log.head, last)
        log.evict_floor = max(log.evict_floor, last + 1)
        log.trim_hi = last
        log.version += 1
        if self.store is not None:
            if log.config.durability == "ephemeral":
                self._reserved[log.instance_id] = max(self._reserved.get(log.instance_id, 0), last)
            self.store.raise_head(
                log.instance_id, last, log.evict_floor, (log.cap_hi, log.ttl_hi, log.trim_hi)
            )
        log.notify()

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

    def _register(self, log: TopicLog) -> Committed:
        """Make a new topic visible at once; its persistence is queued (awaited by callers)."""
        self.topics[log.name] = log
        return self._save(log)

    def _save(self, log: TopicLog) -> Committed:
        if self.store is None:
            return None
        config = log.config.to_json()
        return self.store.save_topic(log.name, log.instance_id, config, self._next_instance)

    async def put_topic(self, name: str, config: TopicConfig) -> tuple[TopicLog, bool]:
        """Create, or replace the config of, a topic (full replacement over defaults)."""
        log = self.get(name)
        if log is None:
            log = self._new_log(name, config)
            await self._await(self._register(log))
            return log, True
        if log.config.type != config.type:
            raise ApiError(
                409,
                "topic_exists_incompatible",
                f"topic {name!r} is a {log.config.type}; its type cannot change",
                {"topic": name, "existing_type": log.config.type, "requested_type": config.type},
            )
        was_ephemeral = log.config.durability == "ephemeral"
        log.config = config
        log.version += 1
        log.apply_retention(now_ms())
        self._sync_front(log)
        await self._await(self._save(log))
        if was_ephemeral and self._persistent(log):
            await self._flush_unstored(log)
        return log, False

    async def _flush_unstored(self, log: TopicLog) -> None:
        """A topic leaving ``ephemeral``: its in-memory records go to the store now."""
        assert self.store is not None
        last = None
        for chunk in log.chunks[log.lo :]:
            if not chunk.stored and chunk.payload is not None:
                last = self.store.append(log.instance_id, chunk, None, fsync=False, wait=True)
        await self._await(last)
        deleted = sorted(s for s in log.deleted if s >= log.earliest_seq)
        if deleted:
            await self._await(self.store.mark_deleted(log.instance_id, deleted, False, True))

    async def delete_topic(self, name: str, if_empty: bool) -> tuple[bool, list[str]]:
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
        log.notify()
        removed: list[str] = []
        for hook in self.on_topic_removed:
            removed.extend(hook(name))
        if self.store is not None:
            await self._await(self.store.drop_topic(log.instance_id))
        return True, sorted(removed)

    # -- writes (SPEC §3) -----------------------------------------------------

    async def write(
        self,
        name: str,
        batch: Batch,
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
                    await asyncio.shield(entry.pending)
                    return await self.write(name, batch, idempotency_key=idempotency_key)
                return WriteOutcome(
                    entry.first_seq,
                    entry.last_seq,
                    entry.head_seq,
                    entry.last_seq - entry.first_seq + 1,
                    created=False,
                    deduped=True,
                )
        sizes = batch[0]
        self._check_capacity(log, len(sizes), sum(sizes))
        saved = self._register(log) if created else None

        entry = None
        expires = now + log.config.idempotency_window_ms
        if idempotency_key is not None:
            entry = IdempotencyEntry(expires_at=expires)
            entry.pending = asyncio.get_running_loop().create_future()
            log.idempotency.put(idempotency_key, entry)
        try:
            await self._await(saved)
            chunk, timing = await self.append(
                log, batch, now=now, key=idempotency_key, expires=expires
            )
        except BaseException:
            if entry is not None:
                assert idempotency_key is not None
                log.idempotency.discard(idempotency_key)
                _resolve(entry)
            raise
        if entry is not None:
            entry.first_seq, entry.last_seq, entry.head_seq = chunk.first, chunk.last, log.head
            _resolve(entry)
        return WriteOutcome(
            chunk.first,
            chunk.last,
            log.head,
            len(sizes),
            created=created,
            deduped=False,
            wal_append_ms=timing[0],
            fsync_ms=timing[1],
        )

    async def append(
        self,
        log: TopicLog,
        batch: Batch,
        *,
        now: int | None = None,
        key: str | None = None,
        expires: int = 0,
        also: Operation | None = None,
    ) -> tuple[Chunk, tuple[float, float]]:
        """Commit ``batch`` to ``log`` per its class, then publish it and wake readers.

        The write path of every producer: client writes, router copies and
        dead-letter moves. ``also`` runs in the same store transaction as the
        records (a router's cursor), so both land or neither does.
        """
        now = now_ms() if now is None else now
        sizes, payload = batch
        chunk = log.assign(sizes, payload, now)
        try:
            timing = await self._persist_append(log, chunk, key, expires, also)
        except BaseException:
            log.abandon(chunk)  # nothing was acknowledged: nothing is published
            raise
        log.publish(chunk, now)
        log.enforce_caps()
        self._sync_front(log)
        log.notify()
        for listener in self.on_publish:
            listener(log)
        return chunk, timing

    async def _persist_append(
        self, log: TopicLog, chunk: Chunk, key: str | None, expires: int, also: Operation | None
    ) -> tuple[float, float]:
        store = self.store
        if store is None:
            return 0.0, 0.0
        durability = log.config.durability
        if durability == "ephemeral":
            reserved = self._reserved.get(log.instance_id, 0)
            if chunk.last > reserved:
                reserved = chunk.last + RESERVE_BLOCK
                self._reserved[log.instance_id] = reserved
                await self._await(store.reserve(log.instance_id, reserved))
            if also is not None:
                store.submit(also, wait=False)
            return 0.0, 0.0
        started = time.perf_counter()
        wait = durability != "memory"
        persisted_key = (key, expires) if key is not None and wait else None
        future = store.append(
            log.instance_id,
            chunk,
            persisted_key,
            fsync=durability == "fsync",
            wait=wait,
            also=also,
        )
        if future is None:
            return (time.perf_counter() - started) * 1000, 0.0
        return await future

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
            count = log.count + log.pending_count
            size = log.bytes + log.pending_bytes
            if (config.cap_records and count + n > config.cap_records) or (
                config.cap_bytes and size + incoming > config.cap_bytes
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

    async def read(
        self,
        log: TopicLog,
        from_seq: int,
        limit: int,
        max_bytes: int,
        nodes: frozenset[str] | None = None,
        shape: tuple[bool, bool, bool] | None = None,
    ) -> ReadResult:
        """:meth:`TopicLog.read`, with cold payloads fetched off the event loop."""
        cold: dict[int, Payload] = {}
        for _ in range(COLD_ATTEMPTS):
            try:
                return log.read(from_seq, limit, max_bytes, nodes, shape, cold)
            except ColdMiss as miss:
                cold.update(await self._load_cold(log, miss))
        raise RuntimeError(f"topic {log.name!r}: cold payloads missing from the store")

    async def record(self, log: TopicLog, seq: int) -> WireRecord | None:
        """One live record with its payload (cold ones fetched off the loop)."""
        cold: dict[int, Payload] = {}
        for _ in range(COLD_ATTEMPTS):
            try:
                return log.get(seq, cold)
            except ColdMiss as miss:
                cold.update(await self._load_cold(log, miss))
        raise RuntimeError(f"topic {log.name!r}: cold payloads missing from the store")

    async def _load_cold(self, log: TopicLog, miss: ColdMiss) -> dict[int, Payload]:
        assert self.store is not None, "cold chunk without a store"
        return await self.store.read_payloads(log.instance_id, miss.first, miss.last)

    async def diff(self, name: str, request: DiffRequest) -> tuple[TopicLog, ReadResult]:
        await self.routers.catch_up(name)
        now = now_ms()
        log = self.require(name, now)
        self.mark_read(log, now)
        shape = (request.include_tags, request.include_meta, True)
        result = await self.read(
            log, request.from_seq, request.limit, request.max_batch_bytes, request.nodes, shape
        )
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
                self._sync_front(log)
                result = await self.read(
                    log,
                    request.from_seq,
                    request.limit,
                    request.max_batch_bytes,
                    request.nodes,
                    shape,
                )
        return log, result

    # -- record deletes (SPEC §7) -----------------------------------------------

    async def delete_records(
        self, name: str, before_seq: int | None, predicate: TagPredicate | None
    ) -> tuple[TopicLog, int]:
        log = self.require(name)
        if predicate is None:
            assert before_seq is not None
            deleted = len(log.delete_before(before_seq))
            self._sync_front(log)
            await self._settle_persisted(log)
            return log, deleted
        bound = log.head + 1 if before_seq is None else min(before_seq, log.head + 1)
        victims = log.hot_tag_matches(predicate, bound)
        if self.store is not None:
            victims.extend(await self.store.tag_matches(log.instance_id, predicate, bound))
        done = log.delete_seqs(victims)
        if done and self.store is not None:
            durability = log.config.durability
            wait = durability in ("disk", "fsync")
            future = self.store.mark_deleted(
                log.instance_id, done, fsync=durability == "fsync", wait=wait
            )
            self._sync_front(log)
            await self._await(future)
        return log, len(done)

    async def _settle_persisted(self, log: TopicLog) -> None:
        """Wait until the store holds this topic's front (durable classes only)."""
        store = self.store
        if store is None or log.config.durability not in ("disk", "fsync"):
            return
        front = log.earliest_seq
        await self._await(
            store.move_front(
                log.instance_id,
                front,
                log.evict_floor,
                (log.cap_hi, log.ttl_hi, log.trim_hi),
                fsync=log.config.durability == "fsync",
                wait=True,
            )
        )

    # -- lifecycle ----------------------------------------------------------------

    def begin_shutdown(self) -> None:
        """Stop parking readers: every long-poll returns now."""
        self.shutting_down = True
        for log in self.topics.values():
            log.notify()


def _resolve(entry: IdempotencyEntry) -> None:
    pending, entry.pending = entry.pending, None
    if pending is not None and not pending.done():
        pending.set_result(None)
