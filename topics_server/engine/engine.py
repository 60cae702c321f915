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
import contextlib
import math
import time
from array import array
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from sortedcontainers import SortedDict

from topics_server.engine.config import TopicConfig, parse_config
from topics_server.engine.idempotency import IdempotencyEntry
from topics_server.engine.log import ColdMiss, ReadResult, TopicLog, Totals, WireRecord
from topics_server.engine.names import is_topic_name
from topics_server.engine.predicates import TagPredicate
from topics_server.engine.queues import QueueRegistry
from topics_server.engine.retention import Retention
from topics_server.engine.routers import Eager, Routers
from topics_server.engine.watch import Watches
from topics_server.errors import (
    ApiError,
    insufficient_storage,
    invalid_request,
    storage_failed,
    throttled,
    topic_not_found,
)
from topics_server.settings import Settings
from topics_server.storage.base import (
    AppendChunk,
    Change,
    DiscardRecords,
    DropRouter,
    DropTopic,
    MarkDeleted,
    MoveFront,
    PruneIdempotency,
    RaiseHead,
    RecoveredTopic,
    Reserve,
    SaveTopic,
    StorageFull,
    Store,
    StoreCorrupt,
    StoreError,
    Timing,
    TopicGone,
)
from topics_server.storage.records import Chunk, Payload
from topics_server.wire import now_ms

__all__ = ["Batch", "DiffRequest", "Engine", "WriteOutcome"]

# Seqs are reserved (with a synced commit) this far ahead of use, so no crash or
# power loss can make a topic hand out an acknowledged seq twice (SPEC §14).
RESERVE_BLOCK = 1 << 16
# A read retries this often when the front moved while its cold payloads loaded.
COLD_ATTEMPTS = 8
# Small cold ranges just loaded, kept for the next small read (least recently used out
# first): a consumer paging a cold chunk with limit 1 loads it once, not once a page.
COLD_CACHE_BYTES = 8 << 20
COLD_CACHE_RANGE = 64 << 10  # only ranges this small are kept
# A page is read this many records at a time, the loop free for others in between.
READ_SLICE = 256

Batch = tuple["array[int]", Payload]  # (sizes, payload columns) of a validated write


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
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.topics: SortedDict[str, TopicLog] = SortedDict()
        self.totals = Totals()
        self.started = time.monotonic()
        self.shutting_down = False
        self.ready = False
        self.recovery_progress = 0.0
        self.sse_connections = 0
        self._next_instance = 1
        self._reserved: dict[int, int] = {}  # instance -> seqs reserved by a committed Reserve
        self._lifecycles: dict[str, _Lifecycle] = {}  # create/config/delete, one at a time
        self._housekeeping: list[Change] = []  # what recovery found stale, committed once ready
        self._cold: OrderedDict[tuple[int, int], tuple[Payload, int]] = OrderedDict()
        self._cold_bytes = 0
        # called with the topic name whenever a topic is removed; routers hook in here
        self.on_topic_removed: list[Callable[[str], list[str]]] = []
        # called with every log that just published records (router wake-ups)
        self.on_publish: list[Callable[[TopicLog], None]] = []
        self.retention = Retention(self._expire)
        self.routers = Routers(self)
        self.watches = Watches(self)
        self.queues = QueueRegistry(self)  # lease state of queue topics (SPEC §10)
        self.on_topic_removed.append(self.queues.topic_removed)

    # -- recovery ---------------------------------------------------------------

    def recover(self) -> None:
        """Rebuild every topic from the store (run in a worker thread at start-up).

        Anything the store holds that cannot be understood ends start-up with a
        :class:`StoreCorrupt` naming it; nothing is written before recovery ends.
        """
        store = self.store
        now = now_ms()
        total = max(store.topic_count(), 1)
        self._next_instance = store.next_instance()
        discard: list[Change] = []
        for done, topic in enumerate(store.recover(now), start=1):
            try:
                self._restore(topic, discard)
            except StoreCorrupt:
                raise
            except Exception as exc:
                raise StoreCorrupt(f"cannot restore topic {topic.name!r}: {_reason(exc)}") from None
            self.recovery_progress = done / total
        for row in store.recover_routers():
            try:
                self.routers.restore(
                    row.name, row.spec, row.cursor, row.source_instance, row.forwarded_total
                )
            except Exception as exc:
                raise StoreCorrupt(f"cannot restore router {row.name!r}: {_reason(exc)}") from None
        self._housekeeping = [*discard, PruneIdempotency(now)]
        self.recovery_progress = 1.0

    async def finish_recovery(self) -> None:
        """After :meth:`recover`, on the loop: commit what recovery found stale."""
        changes, self._housekeeping = self._housekeeping, []
        if changes:
            self.store.commit(*changes, wait=False)
        now = now_ms()
        for log in self.topics.values():
            self._reserved.setdefault(log.instance_id, log.head)
            self._retain(log, now)

    def _restore(self, row: RecoveredTopic, discard: list[Change]) -> None:
        config = parse_config(row.config, row.name)
        log = TopicLog(row.name, row.instance, config, self.totals)
        log.evict_floor = row.evict_floor
        log.cap_hi, log.ttl_hi, log.trim_hi = row.cap_hi, row.ttl_hi, row.trim_hi
        log.last_ts = row.last_ts
        log.last_write_ts = row.last_write_ts
        # never below a reservation: seqs up to it may have been acknowledged and lost
        head = max(row.head, row.reserved, row.chunks[-1].last if row.chunks else 0)
        self._reserved[row.instance] = head
        if config.durability == "ephemeral":
            # its records are gone; every reader below the old head gets a tombstone
            discard.append(DiscardRecords(row.instance))
            log.head = log.assigned = head
            log.evict_floor = head + 1
            front = head + 1
        else:
            log.head = log.assigned = head
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
        self.queues.restore(log, row.leases)

    # -- lookup -------------------------------------------------------------

    def get(self, name: str) -> TopicLog | None:
        """The topic, or None. Reads change nothing: retention runs on append, on
        config changes and on the TTL timer (:mod:`topics_server.engine.retention`)."""
        log: TopicLog | None = self.topics.get(name)
        return log

    def require(self, name: str) -> TopicLog:
        log = self.topics.get(name)
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

    # -- committing: the store first, memory second ------------------------------

    async def commit(
        self,
        *changes: Change,
        fsync: bool = False,
        wait: bool = True,
        on_commit: Callable[[], None] | None = None,
        topic: str = "",
    ) -> Timing:
        """Commit ``changes`` in one transaction; a failure raises the client's answer.

        Every state change goes through here before memory moves (SPEC §14): a
        :class:`StoreError` becomes ``507 insufficient_storage`` (out of space),
        ``404`` (the topic went away meanwhile) or ``500 internal``, and the
        caller changes nothing.
        """
        try:
            future = self.store.commit(*changes, fsync=fsync, wait=wait, on_commit=on_commit)
            return (0.0, 0.0) if future is None else await future
        except StorageFull:
            raise insufficient_storage() from None
        except TopicGone:
            names = [c.name for c in changes if isinstance(c, SaveTopic)]
            raise topic_not_found(topic or (names[0] if names else "")) from None
        except StoreError as exc:
            raise storage_failed(str(exc)) from None

    def _persistent(self, log: TopicLog) -> bool:
        return log.config.durability != "ephemeral"

    @contextlib.asynccontextmanager
    async def _lifecycle(self, name: str) -> AsyncIterator[None]:
        """Creating, re-configuring and deleting one topic never interleave; the lock
        lives only while someone holds or waits for it."""
        entry = self._lifecycles.get(name)
        if entry is None:
            entry = self._lifecycles[name] = _Lifecycle()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._lifecycles[name]

    def _front_change(self, log: TopicLog) -> MoveFront:
        return MoveFront(
            log.instance_id,
            log.earliest_seq,
            log.evict_floor,
            (log.cap_hi, log.ttl_hi, log.trim_hi),
        )

    def _sync_front(self, log: TopicLog) -> None:
        """Hand a front moved by retention to the store (not awaited), then cool.

        Retention is re-derived from configs and clocks at every start, so a lost
        front move only keeps records the server meant to drop a little longer.
        """
        front = log.earliest_seq
        if front > log.persisted_front and self._persistent(log):
            log.persisted_front = front
            self.store.commit(self._front_change(log), wait=False)
        log.cool()

    def _retain(self, log: TopicLog, now: int) -> None:
        """Apply caps and TTL now (a config change, recovery), then re-arm the TTL timer."""
        log.apply_retention(now)
        self._sync_front(log)
        self.retention.schedule(log)

    def _expire(self, log: TopicLog) -> None:
        """The TTL timer fired: the expired prefix goes, readers below get a tombstone."""
        log.apply_retention(now_ms())
        self._sync_front(log)

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
        self._reserved[log.instance_id] = max(self._reserved.get(log.instance_id, 0), last)
        self.store.commit(
            RaiseHead(
                log.instance_id, last, log.evict_floor, (log.cap_hi, log.ttl_hi, log.trim_hi)
            ),
            wait=False,
        )
        log.notify()

    # -- topic lifecycle (SPEC §2) --------------------------------------------

    def _new_log(self, name: str, config: TopicConfig) -> TopicLog:
        """A topic not yet visible to anyone: it is registered once its save committed."""
        if not is_topic_name(name):
            raise invalid_request(f"invalid topic name {name!r}", topic=name)
        limit = self.settings.max_topics
        if limit and len(self.topics) >= limit:
            raise throttled("max_topics", limit, f"the server holds its maximum of {limit} topics")
        log = TopicLog(name, self._next_instance, config, self.totals)
        self._next_instance += 1
        return log

    def _save_change(self, log: TopicLog, config: TopicConfig) -> SaveTopic:
        return SaveTopic(log.name, log.instance_id, config.to_json(), self._next_instance)

    def _register(self, log: TopicLog) -> None:
        self.topics[log.name] = log
        self._reserved.setdefault(log.instance_id, 0)

    async def put_topic(self, name: str, config: TopicConfig) -> tuple[TopicLog, bool]:
        """Create, or replace the config of, a topic (full replacement over defaults)."""
        async with self._lifecycle(name):
            return await self._put_topic(name, config)

    async def _put_topic(self, name: str, config: TopicConfig) -> tuple[TopicLog, bool]:
        log = self.get(name)
        if log is None:
            log = self._new_log(name, config)
            await self.commit(self._save_change(log, config), fsync=True)
            self._register(log)
            return log, True
        if log.config.type != config.type:
            raise ApiError(
                409,
                "topic_exists_incompatible",
                f"topic {name!r} is a {log.config.type}; its type cannot change",
                {"topic": name, "existing_type": log.config.type, "requested_type": config.type},
            )
        changes: list[Change] = [self._save_change(log, config)]
        flushed: list[Chunk] = []
        if log.config.durability == "ephemeral" and config.durability != "ephemeral":
            # leaving ephemeral: the records memory holds go to the store with the config
            flushed = [c for c in log.chunks[log.lo :] if not c.stored and c.payload is not None]
            changes.extend(AppendChunk(log.instance_id, chunk) for chunk in flushed)
            deleted = tuple(sorted(s for s in log.deleted if s >= log.earliest_seq))
            if deleted:
                changes.append(MarkDeleted(log.instance_id, deleted))
            changes.append(self._front_change(log))
        await self.commit(*changes, fsync=True)
        for chunk in flushed:
            chunk.stored = True
        log.config = config
        log.version += 1
        self._retain(log, now_ms())
        log.notify()
        return log, False

    async def delete_topic(self, name: str, if_empty: bool) -> tuple[bool, list[str]]:
        async with self._lifecycle(name):
            return await self._delete_topic(name, if_empty)

    async def _delete_topic(self, name: str, if_empty: bool) -> tuple[bool, list[str]]:
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
        routers = self.routers.touching(name)
        await self.commit(DropTopic(log.instance_id), *(DropRouter(r) for r in routers), fsync=True)
        del self.topics[name]
        self._reserved.pop(log.instance_id, None)
        self.retention.cancel(log)
        log.removed = True
        self.totals.records -= log.count
        self.totals.bytes -= log.bytes
        log.notify()
        removed: list[str] = []
        for hook in self.on_topic_removed:
            removed.extend(hook(name))
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
        log = self.get(name)
        if log is None:
            allowed = create if create is not None else (config or TopicConfig()).auto_create
            if not allowed:
                raise topic_not_found(name)
            async with self._lifecycle(name):
                if self.topics.get(name) is None:
                    # the topic and its first records commit together, or neither does
                    log = self._new_log(name, config or TopicConfig())
                    return await self._write(log, batch, now, idempotency_key, True)
            return await self.write(name, batch, idempotency_key=idempotency_key)
        if idempotency_key is not None:
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
        return await self._write(log, batch, now, idempotency_key, False)

    async def _write(
        self, log: TopicLog, batch: Batch, now: int, key: str | None, created: bool
    ) -> WriteOutcome:
        sizes = batch[0]
        self._check_capacity(log, len(sizes), sum(sizes))
        entry = None
        expires = now + log.config.idempotency_window_ms
        if key is not None:
            entry = IdempotencyEntry(expires_at=expires)
            entry.pending = asyncio.get_running_loop().create_future()
            log.idempotency.put(key, entry)
        before = (self._save_change(log, log.config),) if created else ()
        try:
            chunk, timing = await self.append(
                log, batch, now=now, key=key, expires=expires, before=before
            )
        except BaseException:
            if entry is not None:
                assert key is not None
                log.idempotency.discard(key)
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
        before: tuple[Change, ...] = (),
        also: tuple[Change, ...] = (),
    ) -> tuple[Chunk, tuple[float, float]]:
        """Commit ``batch`` to ``log`` per its class, then publish it and wake readers.

        The write path of every producer: client writes, router copies and
        dead-letter moves. ``before`` and ``also`` commit in the same transaction
        as the records (a new topic's save; a router's cursor), so all land or
        none does. A ``log`` not yet registered (a topic created by this write)
        is registered once the commit succeeded.
        """
        now = now_ms() if now is None else now
        sizes, payload = batch
        chunk = log.assign(sizes, payload, now)
        # caught-up routers copy this write in its own transaction (see routers.py)
        eager = [] if before else self.routers.prepare(log, chunk, now)
        if eager:
            also = also + tuple(change for item in eager for change in item.changes)
        try:
            timing = await self._persist_append(log, chunk, key, expires, before, also)
        except BaseException:
            log.abandon(chunk)  # nothing was acknowledged: nothing is published
            self.routers.abandon(eager)
            raise
        if before and self.topics.get(log.name) is not log:
            self._register(log)
        self.went_live(log, chunk, now, eager)
        return chunk, timing

    def went_live(
        self, log: TopicLog, chunk: Chunk, now: int, eager: list[Eager] | None = None
    ) -> None:
        """A committed chunk becomes visible: caps, TTL, readers woken, then its router
        copies (committed with it), then the listeners (router wake-ups)."""
        log.publish(chunk, now)
        log.enforce_caps()
        self._sync_front(log)
        if log.config.ttl_ms:
            self.retention.schedule(log)
        log.notify()
        if eager:
            self.routers.settle(eager, now)
        for listener in self.on_publish:
            listener(log)

    def changing(self, name: str) -> bool:
        """A create, config change or delete of ``name`` is under way."""
        return name in self._lifecycles

    def reserved(self, log: TopicLog) -> int:
        """The highest seq ``log`` may hand out without a new synced reservation."""
        return self._reserved.get(log.instance_id, 0)

    async def _persist_append(
        self,
        log: TopicLog,
        chunk: Chunk,
        key: str | None,
        expires: int,
        before: tuple[Change, ...],
        also: tuple[Change, ...],
    ) -> Timing:
        durability = log.config.durability
        instance = log.instance_id
        changes = list(before)
        # seqs are handed out only inside a synced reservation (SPEC §14)
        fsync = durability == "fsync"
        top = None
        if chunk.last > self._reserved.get(instance, 0):
            top = chunk.last + RESERVE_BLOCK
            changes.append(Reserve(instance, top))
            fsync = True

        def reserved_now() -> None:  # memory moves with the commit, never ahead of it
            if top is not None and self._reserved.get(instance, top) < top:
                self._reserved[instance] = top

        if durability == "ephemeral":
            changes.extend(also)
            if not changes:
                return 0.0, 0.0
            await self.commit(*changes, fsync=fsync, on_commit=reserved_now, topic=log.name)
            return 0.0, 0.0
        if self.store.full:
            raise insufficient_storage()
        started = time.perf_counter()
        # memory-class records may be acknowledged before they commit, but never a new
        # reservation or a new topic: those are waited for
        wait = durability != "memory" or bool(before) or top is not None
        persisted_key = (key, expires) if key is not None and wait else None
        changes.append(AppendChunk(instance, chunk, persisted_key))
        changes.extend(also)

        def committed() -> None:
            chunk.stored = True
            reserved_now()

        timing = await self.commit(
            *changes, fsync=fsync, wait=wait, on_commit=committed, topic=log.name
        )
        if not wait:
            return (time.perf_counter() - started) * 1000, 0.0
        # a reservation's sync is the server's own cost, not this class's fsync wait
        return timing if durability == "fsync" else (timing[0], 0.0)

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
        runs: bool = False,
    ) -> ReadResult:
        """:meth:`TopicLog.read` in slices of :data:`READ_SLICE` records, yielding to the
        loop between them, with cold payloads fetched off the loop.

        A big page (a cold replay's 1,000 records) would otherwise hold the loop for
        milliseconds while hot writes and heartbeats wait behind it. A slice that
        would start with a tombstone (the floor moved meanwhile) is left for the
        next page: a page carries at most one tombstone, before its records.
        With ``runs`` the records come as :data:`~topics_server.engine.log.RecordRun`
        column slices for the API to render.
        """
        cold: dict[int, Payload] = {}  # shared by the slices: a chunk is fetched once a page
        result = await self._read_slice(
            log, from_seq, min(limit, READ_SLICE), max_bytes, nodes, runs, cold
        )
        while (
            result.count < limit
            and result.count
            and not result.caught_up
            and result.size < max_bytes
            and result.count % READ_SLICE == 0
        ):
            await asyncio.sleep(0)
            if log.removed:
                break
            want = min(limit - result.count, READ_SLICE)
            more = await self._read_slice(
                log,
                result.next_from_seq,
                want,
                max_bytes - result.size,
                nodes,
                runs,
                cold,
                first=False,
            )
            if more.tombstone is not None or (
                not more.count and more.next_from_seq == result.next_from_seq
            ):
                break
            result.records.extend(more.records)
            result.count += more.count
            result.next_from_seq = more.next_from_seq
            result.head_seq = more.head_seq
            result.earliest_seq = more.earliest_seq
            result.scanned += more.scanned
            result.size += more.size
            if more.count < want:
                break
        return result

    async def _read_slice(
        self,
        log: TopicLog,
        from_seq: int,
        limit: int,
        max_bytes: int,
        nodes: frozenset[str] | None,
        runs: bool,
        cold: dict[int, Payload],
        first: bool = True,
    ) -> ReadResult:
        for _ in range(COLD_ATTEMPTS):
            try:
                return log.read(
                    from_seq, limit, max_bytes, nodes, cold, strict=not first, runs=runs
                )
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
        instance = log.instance_id
        small = miss.size <= COLD_CACHE_RANGE
        if small and miss.first == miss.last:
            hit = self._cold.get((instance, miss.first))
            if hit is not None:
                self._cold.move_to_end((instance, miss.first))
                return {miss.first: hit[0]}
        loaded = await self.store.read_payloads(instance, miss.first, miss.last, size=miss.size)
        if small:
            cache = self._cold
            for first, payload in loaded.items():
                cost = 256 + sum(map(len, payload.datas))
                if payload.metas is not None:
                    cost += sum(len(m) for m in payload.metas if m is not None)
                old = cache.pop((instance, first), None)
                if old is not None:
                    self._cold_bytes -= old[1]
                cache[(instance, first)] = (payload, cost)
                self._cold_bytes += cost
            while self._cold_bytes > COLD_CACHE_BYTES and cache:
                self._cold_bytes -= cache.popitem(last=False)[1][1]
        return loaded

    async def diff(self, name: str, request: DiffRequest) -> tuple[TopicLog, ReadResult]:
        await self.routers.catch_up(name)
        now = now_ms()
        log = self.require(name)
        self.mark_read(log, now)
        result = await self.read(
            log, request.from_seq, request.limit, request.max_batch_bytes, request.nodes, runs=True
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
                result = await self.read(
                    log,
                    request.from_seq,
                    request.limit,
                    request.max_batch_bytes,
                    request.nodes,
                    runs=True,
                )
        return log, result

    # -- record deletes (SPEC §7) -----------------------------------------------

    async def delete_records(
        self, name: str, before_seq: int | None, predicate: TagPredicate | None
    ) -> tuple[TopicLog, int]:
        log = self.require(name)
        durability = log.config.durability
        persist = durability != "ephemeral"
        wait = durability in ("disk", "fsync")
        fsync = durability == "fsync"
        if predicate is None:
            assert before_seq is not None
            front = min(before_seq, log.head + 1)
            if persist and front > log.earliest_seq:
                change = MoveFront(
                    log.instance_id, front, log.evict_floor, (log.cap_hi, log.ttl_hi, log.trim_hi)
                )
                await self.commit(change, fsync=fsync, wait=wait)
            deleted = len(log.delete_before(before_seq))
            log.persisted_front = max(log.persisted_front, log.earliest_seq)
            self._sync_front(log)
            return log, deleted
        bound = log.head + 1 if before_seq is None else min(before_seq, log.head + 1)
        victims = log.hot_tag_matches(predicate, bound)
        if persist:
            victims.extend(await self.store.tag_matches(log.instance_id, predicate, bound))
        seqs = tuple(sorted({s for s in victims if log.locate(s) is not None}))
        if seqs and persist:
            await self.commit(MarkDeleted(log.instance_id, seqs), fsync=fsync, wait=wait)
        done = log.delete_seqs(seqs)
        self._sync_front(log)
        return log, len(done)

    # -- lifecycle ----------------------------------------------------------------

    async def close(self) -> None:
        """Clean shutdown: reservations shrink to the heads, so a clean restart leaves
        no unused seq range behind; then the store closes."""
        changes = [Reserve(log.instance_id, log.head, exact=True) for log in self.topics.values()]
        if changes and self.ready:
            with contextlib.suppress(ApiError):
                await self.commit(*changes, fsync=True)
        await self.store.close()

    def begin_shutdown(self) -> None:
        """Stop parking readers: every long-poll returns now."""
        self.shutting_down = True
        self.retention.stop()
        for log in self.topics.values():
            log.notify()


def _reason(exc: BaseException) -> str:
    return exc.message if isinstance(exc, ApiError) else str(exc) or type(exc).__name__


class _Lifecycle:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


def _resolve(entry: IdempotencyEntry) -> None:
    pending, entry.pending = entry.pending, None
    if pending is not None and not pending.done():
        pending.set_result(None)
