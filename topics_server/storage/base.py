"""The storage seam: what the engine asks of a store, and nothing else.

The engine owns the in-memory state; a store persists *changes* to it. A
change is a small typed value (:class:`SaveTopic`, :class:`AppendChunk`, …);
the engine hands a store one or more of them at a time with :meth:`Store.commit`
and they land in one transaction, all or nothing. The engine changes its memory
only after that commit (SPEC §14 "storage faults"), so what a client was told
and what a restart recovers never differ.

Two stores implement :class:`Store`: :class:`~topics_server.storage.sqlite.SqliteStore`
(the server's, one SQLite file) and :class:`~topics_server.storage.memory.MemoryStore`
(nothing survives the process: ephemeral-only servers and fast tests). Both
consult a :class:`~topics_server.storage.failpoints.Failpoints` inside their
commit, which is how the fault tests make a named change fail for real.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from topics_server.storage.failpoints import Failpoints
from topics_server.storage.records import Chunk, Payload, TagPredicate

__all__ = [
    "AppendChunk",
    "Change",
    "DiscardRecords",
    "DropLeases",
    "DropRouter",
    "DropTopic",
    "MarkDeleted",
    "MoveFront",
    "PruneIdempotency",
    "RaiseHead",
    "RecoveredRouter",
    "RecoveredTopic",
    "Reserve",
    "RouterCursor",
    "SaveLeases",
    "SaveRouter",
    "SaveTopic",
    "StorageFull",
    "Store",
    "StoreCorrupt",
    "StoreError",
    "StoreFailed",
    "Timing",
    "TopicGone",
]

# (ms spent applying the commit group, ms of it waiting for fsync)
Timing = tuple[float, float]
LeaseRow = tuple[int, int, str, int, int]  # seq, lease_id, node, deadline, deliveries


# -- errors ---------------------------------------------------------------------


class StoreError(RuntimeError):
    """A commit did not happen: nothing of it is in the store."""


class StoreFailed(StoreError):
    """The store could not commit (I/O error, injected fault, …)."""


class StorageFull(StoreError):
    """The store is out of space; freeing changes (deletes) still commit."""


class TopicGone(StoreError):
    """A change names a topic instance the store no longer holds (deleted meanwhile)."""


class StoreCorrupt(RuntimeError):
    """The store cannot be read; start-up stops and names what is damaged."""


# -- changes --------------------------------------------------------------------


class Change:
    """One state change; ``kind`` names it for failpoints and metrics."""

    __slots__ = ()
    kind: ClassVar[str] = "change"
    freeing: ClassVar[bool] = False  # only removes data: still committed on a full disk


@dataclass(frozen=True, slots=True)
class SaveTopic(Change):
    """Create a topic instance, or replace its config."""

    kind: ClassVar[str] = "save_topic"
    name: str
    instance: int
    config: dict[str, Any]
    next_instance: int


@dataclass(frozen=True, slots=True)
class DropTopic(Change):
    kind: ClassVar[str] = "drop_topic"
    freeing: ClassVar[bool] = True
    instance: int


@dataclass(frozen=True, slots=True)
class AppendChunk(Change):
    """Records ``chunk.first..chunk.last``; raises the stored head (never lowers it)."""

    kind: ClassVar[str] = "append"
    instance: int
    chunk: Chunk
    idempotency: tuple[str, int] | None = None  # (key, expires)


@dataclass(frozen=True, slots=True)
class Reserve(Change):
    """Seqs up to ``reserved`` may be handed out: a restart starts above them."""

    kind: ClassVar[str] = "reserve"
    instance: int
    reserved: int
    exact: bool = False  # clean shutdown: shrink the reservation to the head


@dataclass(frozen=True, slots=True)
class MarkDeleted(Change):
    kind: ClassVar[str] = "mark_deleted"
    freeing: ClassVar[bool] = True
    instance: int
    seqs: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class MoveFront(Change):
    """Everything below ``front`` is gone; the loss watermarks move with it."""

    kind: ClassVar[str] = "move_front"
    freeing: ClassVar[bool] = True
    instance: int
    front: int
    evict_floor: int
    his: tuple[int, int, int]  # cap_hi, ttl_hi, trim_hi


@dataclass(frozen=True, slots=True)
class RaiseHead(Change):
    """Seqs burned as holes (router source trim): head, reservation and floor move up."""

    kind: ClassVar[str] = "raise_head"
    instance: int
    head: int
    evict_floor: int
    his: tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class SaveRouter(Change):
    kind: ClassVar[str] = "save_router"
    name: str
    spec: dict[str, Any]
    cursor: int
    source_instance: int
    forwarded_total: int


@dataclass(frozen=True, slots=True)
class RouterCursor(Change):
    kind: ClassVar[str] = "router_cursor"
    name: str
    cursor: int
    forwarded: int


@dataclass(frozen=True, slots=True)
class DropRouter(Change):
    kind: ClassVar[str] = "drop_router"
    freeing: ClassVar[bool] = True
    name: str


@dataclass(frozen=True, slots=True)
class SaveLeases(Change):
    """Claimed or extended leases of a ``leases_durable`` queue."""

    kind: ClassVar[str] = "save_leases"
    instance: int
    rows: tuple[LeaseRow, ...]


@dataclass(frozen=True, slots=True)
class DropLeases(Change):
    """Released or acked leases (``seqs``), or all of an instance's (``None``)."""

    kind: ClassVar[str] = "drop_leases"
    freeing: ClassVar[bool] = True
    instance: int
    seqs: tuple[int, ...] | None


@dataclass(frozen=True, slots=True)
class PruneIdempotency(Change):
    kind: ClassVar[str] = "prune_idempotency"
    freeing: ClassVar[bool] = True
    now: int


@dataclass(frozen=True, slots=True)
class DiscardRecords(Change):
    """An ephemeral topic after a restart: whatever it had stored is gone."""

    kind: ClassVar[str] = "discard_records"
    freeing: ClassVar[bool] = True
    instance: int


# -- recovery -------------------------------------------------------------------


@dataclass(slots=True)
class RecoveredTopic:
    name: str
    instance: int
    config: dict[str, Any]
    head: int
    reserved: int
    front: int
    evict_floor: int
    cap_hi: int
    ttl_hi: int
    trim_hi: int
    last_ts: int
    last_write_ts: int | None
    chunks: list[Chunk] = field(default_factory=list)
    deleted: set[int] = field(default_factory=set)
    idempotency: list[tuple[str, int, int, int, int]] = field(default_factory=list)
    leases: list[LeaseRow] = field(default_factory=list)


@dataclass(slots=True)
class RecoveredRouter:
    name: str
    spec: dict[str, Any]
    cursor: int
    source_instance: int
    forwarded_total: int


# -- the protocol ---------------------------------------------------------------


class Store(Protocol):
    """What the engine needs from persistence (see the module docstring)."""

    failpoints: Failpoints

    @property
    def full(self) -> bool:
        """Out of space: growing changes fail with :class:`StorageFull` until space returns."""

    def start(self, loop: asyncio.AbstractEventLoop) -> None: ...

    async def close(self) -> None: ...

    def commit(
        self,
        *changes: Change,
        fsync: bool = False,
        wait: bool = True,
        on_commit: Callable[[], None] | None = None,
    ) -> asyncio.Future[Timing] | None:
        """Queue ``changes`` as one transaction; with ``wait`` a future resolves on commit
        (or fails with a :class:`StoreError`); ``on_commit`` runs on the loop after it."""

    # recovery (called from a worker thread before the server is ready)

    def next_instance(self) -> int: ...

    def topic_count(self) -> int: ...

    def recover(self, now: int) -> Iterator[RecoveredTopic]: ...

    def recover_routers(self) -> list[RecoveredRouter]: ...

    # reads of cold data (on the event loop's thread only when small)

    async def read_payloads(
        self, instance: int, first_from: int, first_to: int, size: int = 0
    ) -> dict[int, Payload]:
        """Payloads of the chunks starting in ``first_from..first_to``; ``size`` is
        about how many bytes of records they hold (0: not known)."""

    async def tag_matches(
        self, instance: int, predicate: TagPredicate, bound: int
    ) -> list[int]: ...

    def stats(self) -> dict[str, int]: ...
