"""A store that keeps everything in the process: nothing survives a restart.

For servers that hold only ``ephemeral`` data (``TOPICS_STORE=memory``) and for
fast tests. It implements the same :class:`~topics_server.storage.base.Store`
protocol as SQLite, changes commit synchronously on the caller's thread, all or
nothing (a change set is validated and its failpoints consulted before any of it
is applied), and cold payloads are kept so the engine's hot/cold split works
unchanged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sortedcontainers import SortedDict

from topics_server.storage.base import (
    AppendChunk,
    Change,
    DiscardRecords,
    DropLeases,
    DropRouter,
    DropTopic,
    MarkDeleted,
    MoveFront,
    PruneIdempotency,
    RaiseHead,
    RecoveredRouter,
    RecoveredTopic,
    Reserve,
    RouterCursor,
    SaveLeases,
    SaveRouter,
    SaveTopic,
    StorageFull,
    StoreError,
    StoreFailed,
    Timing,
    TopicGone,
)
from topics_server.storage.failpoints import STALL, STALL_S, Failpoints
from topics_server.storage.records import Payload, TagPredicate

__all__ = ["MemoryStore"]


@dataclass(slots=True)
class _Topic:
    name: str
    instance: int
    config: dict[str, Any]
    head: int = 0
    reserved: int = 0
    chunks: SortedDict[int, Payload] = field(default_factory=SortedDict)
    tags: dict[int, str] = field(default_factory=dict)


class MemoryStore:
    """Everything in dicts; see the module docstring."""

    def __init__(self, failpoints: Failpoints | None = None) -> None:
        self.failpoints = failpoints or Failpoints()
        self._topics: dict[int, _Topic] = {}
        self._routers: dict[str, RecoveredRouter] = {}
        self.commits = 0
        self.operations = 0
        self.failures = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def full(self) -> bool:
        return False

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    async def close(self) -> None:
        self._loop = None

    def commit(
        self,
        *changes: Change,
        fsync: bool = False,
        wait: bool = True,
        on_commit: Callable[[], None] | None = None,
    ) -> asyncio.Future[Timing] | None:
        assert self._loop is not None, "store not started"
        started = time.perf_counter()
        future = self._loop.create_future() if wait else None
        error: StoreError | None = None
        known = set(self._topics)
        for change in changes:  # decide every fault before anything is applied
            if isinstance(change, SaveTopic):
                known.add(change.instance)
            action = self.failpoints.hit(change.kind) if self.failpoints.armed else None
            if action == STALL:
                time.sleep(STALL_S)  # the memory store commits on the loop: so it stalls
            elif action is not None:
                error = (StorageFull if action == "full" else StoreFailed)(
                    f"failpoint {change.kind}"
                )
                break
            if isinstance(change, AppendChunk | Reserve) and change.instance not in known:
                error = TopicGone(f"topic instance {change.instance} is no longer stored")
                break
        if error is None:
            for change in changes:
                self._apply(change)
            self.commits += 1
            self.operations += 1
            if on_commit is not None:
                on_commit()
            if future is not None:
                future.set_result(((time.perf_counter() - started) * 1000, 0.0))
        else:
            self.failures += 1
            if future is not None:
                future.set_exception(error)
        return future

    def _apply(self, change: Change) -> None:
        topics = self._topics
        if isinstance(change, SaveTopic):
            for stale in [t for t in topics.values() if t.name == change.name]:
                if stale.instance != change.instance:
                    del topics[stale.instance]
            topic = topics.get(change.instance)
            if topic is None:
                topics[change.instance] = _Topic(change.name, change.instance, change.config)
            else:
                topic.config = change.config
        elif isinstance(change, DropTopic | DiscardRecords):
            if isinstance(change, DropTopic):
                topics.pop(change.instance, None)
            elif (t := topics.get(change.instance)) is not None:
                t.chunks.clear()
                t.tags.clear()
        elif isinstance(change, AppendChunk):
            t = topics[change.instance]
            chunk = change.chunk
            assert chunk.payload is not None
            t.chunks[chunk.first] = chunk.payload
            t.head = max(t.head, chunk.last)
            if chunk.payload.tags is not None:
                for i, tag in enumerate(chunk.payload.tags):
                    if tag is not None:
                        t.tags[chunk.first + i] = tag
        elif isinstance(change, Reserve | RaiseHead):
            t = topics[change.instance]
            top = change.reserved if isinstance(change, Reserve) else change.head
            t.reserved = max(t.reserved, top)
        elif isinstance(change, MarkDeleted):
            if (t := topics.get(change.instance)) is not None:
                for seq in change.seqs:
                    t.tags.pop(seq, None)
        elif isinstance(change, MoveFront):
            if (t := topics.get(change.instance)) is not None:
                for first in list(t.chunks.irange(maximum=change.front - 1)):
                    payload = t.chunks[first]
                    if first + len(payload.datas) - 1 < change.front:
                        del t.chunks[first]
                for seq in [s for s in t.tags if s < change.front]:
                    del t.tags[seq]
        elif isinstance(change, SaveRouter):
            old = self._routers.get(change.name)
            self._routers[change.name] = RecoveredRouter(
                change.name,
                change.spec,
                old.cursor if old else change.cursor,
                change.source_instance,
                old.forwarded_total if old else change.forwarded_total,
            )
        elif isinstance(change, RouterCursor):
            if (r := self._routers.get(change.name)) is not None:
                r.cursor = max(r.cursor, change.cursor)
                r.forwarded_total += change.forwarded
        elif isinstance(change, DropRouter):
            self._routers.pop(change.name, None)
        elif not isinstance(change, SaveLeases | DropLeases | PruneIdempotency):
            raise TypeError(f"unknown change {change!r}")

    # -- recovery: a memory store starts empty -------------------------------------

    def next_instance(self) -> int:
        return max(self._topics, default=0) + 1

    def topic_count(self) -> int:
        return 0

    def recover(self, now: int) -> Iterator[RecoveredTopic]:
        return iter(())

    def recover_routers(self) -> list[RecoveredRouter]:
        return []

    # -- reads -----------------------------------------------------------------

    async def read_payloads(
        self, instance: int, first_from: int, first_to: int, size: int = 0
    ) -> dict[int, Payload]:
        topic = self._topics.get(instance)
        if topic is None:
            return {}
        return {
            first: topic.chunks[first]
            for first in topic.chunks.irange(minimum=first_from, maximum=first_to)
        }

    async def tag_matches(self, instance: int, predicate: TagPredicate, bound: int) -> list[int]:
        topic = self._topics.get(instance)
        if topic is None:
            return []
        return sorted(s for s, tag in topic.tags.items() if s < bound and predicate.matches(tag))

    def stats(self) -> dict[str, int]:
        return {
            "frames_total": self.operations,
            "batches_total": self.commits,
            "fsyncs_total": 0,
            "queue_depth": 0,
            "failures_total": self.failures,
            "storage_full": 0,
            "full_events_total": 0,
        }
