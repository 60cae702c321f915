"""Routers (SPEC §8): copy one topic's records into another.

A router that is caught up copies a source write **in the write's own
transaction** (:meth:`Routers.prepare`): the copies' seqs are assigned before
the source commits, one commit stores both, and the copies go live right after
the source's records, so a destination reader never waits for them. It applies
only when that costs the source write nothing it did not already pay: the
router idle and exactly at the source's head, a ``disk``/``fsync`` source, a
destination of the same or a weaker class that takes the copies now (no
``reject`` cap in the way, no new seq reservation, no create/config/delete of
either topic under way). Anything else is left to the background.

Each router has one forwarding task, woken when its source publishes. A pass
reads from the router's cursor, builds the copies (node/tag kept or stripped,
filter applied, hop count + 1) and appends them to the destination through the
engine's normal write path, so the destination's config governs: caps, TTL,
durability. The cursor is persisted *in the same store transaction* as the
copies, so after a crash either both are there or neither is: forwarding
resumes exactly where it stopped, with no duplicates and no silent skips.

Source records lost involuntarily before they were forwarded (cap/TTL below
the cursor) reserve destination seqs as holes and raise the destination's
floor, so its readers get a ``source_trim`` tombstone instead of a silent gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from array import array
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import orjson
from sortedcontainers import SortedDict

from topics_server.engine.config import TopicConfig
from topics_server.engine.log import TopicLog, WireRecord, wire_record
from topics_server.engine.predicates import TagPredicate
from topics_server.errors import ApiError, throttled, topic_not_found
from topics_server.storage.base import AppendChunk, Change, DropRouter, RouterCursor, SaveRouter
from topics_server.storage.records import Chunk, Payload

if TYPE_CHECKING:
    from topics_server.engine.engine import Engine

__all__ = ["MAX_HOPS", "Eager", "Router", "RouterSpec", "Routers"]

log = logging.getLogger("topics_server.routers")

MAX_HOPS = 8  # a record that has travelled this many hops is not forwarded again
PASS_RECORDS = 1000  # records read per forwarding pass
BACKOFF_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)  # destination full (discard: reject)
STALL_BACKOFF_S = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)  # a record that cannot be forwarded

Guarantee = Literal["at_least_once", "exactly_once"]


@dataclass(slots=True)
class RouterSpec:
    """What a PUT says; every field but source/dest may change on a re-PUT."""

    source: str
    dest: str
    preserve_node: bool = True
    preserve_tag: bool = True
    create_dest: bool = True
    filter: TagPredicate | None = None
    allow_cycle: bool = False
    guarantee: Guarantee = "at_least_once"

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "dest": self.dest,
            "preserve_node": self.preserve_node,
            "preserve_tag": self.preserve_tag,
            "create_dest": self.create_dest,
            "filter": None if self.filter is None else self.filter.to_json(),
            "allow_cycle": self.allow_cycle,
            "guarantee": self.guarantee,
        }


@dataclass(slots=True)
class Router:
    name: str
    spec: RouterSpec
    cursor: int = 0  # source seqs up to here were forwarded (or passed over)
    source_instance: int = 0  # the source instance the cursor belongs to
    forwarded_total: int = 0
    state: str = "running"  # running | paused (destination full) | stalled (cannot forward)
    reason: str | None = None  # why it is paused or stalled
    stalls: int = 0  # times it stalled since start
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def describe(self) -> dict[str, Any]:
        body = {"router": self.name, **self.spec.to_json()}
        body.pop("create_dest")
        body["state"] = self.state
        body["source_cursor"] = self.cursor  # additive: lag = source head - this
        if self.reason is not None:
            body["reason"] = self.reason
        return body


@dataclass(slots=True)
class Eager:
    """Copies of one source chunk, committed in the source write's transaction."""

    router: Router
    dest: TopicLog
    chunk: Chunk | None  # None: no record passed the filter; only the cursor moves
    cursor: int  # the router's cursor once committed: the source chunk's last seq
    changes: tuple[Change, ...]


class Routers:
    """The router registry, its persistence and the forwarding tasks."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.routers: SortedDict[str, Router] = SortedDict()
        self.by_source: dict[str, set[str]] = {}
        self.by_dest: dict[str, set[str]] = {}
        engine.on_topic_removed.append(self._topic_removed)
        engine.on_publish.append(self._published)
        self._started = False

    def __len__(self) -> int:
        return len(self.routers)

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        """Start forwarding (after recovery)."""
        self._started = True
        for router in self.routers.values():
            self._spawn(router)

    async def drain(self, timeout: float) -> None:
        """At shutdown: forward what the sources hold now, for a bounded time."""
        routers = list(self.routers.values())
        with contextlib.suppress(TimeoutError, Exception):
            async with asyncio.timeout(timeout):
                for router in routers:
                    await self.forward(router)

    async def stop(self) -> None:
        tasks = [r.task for r in self.routers.values() if r.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def restore(
        self, name: str, spec: dict[str, Any], cursor: int, instance: int, total: int
    ) -> None:
        router = Router(name, _spec_from_json(spec), cursor, instance, total)
        self._add(router)

    def _add(self, router: Router) -> None:
        self.routers[router.name] = router
        self.by_source.setdefault(router.spec.source, set()).add(router.name)
        self.by_dest.setdefault(router.spec.dest, set()).add(router.name)

    def _spawn(self, router: Router) -> None:
        if self._started and router.task is None:
            router.task = asyncio.create_task(self._run(router), name=f"router {router.name}")

    # -- PUT / DELETE (SPEC §8.1, §8.5) ------------------------------------------

    async def put(self, name: str, spec: RouterSpec) -> tuple[Router, bool]:
        engine = self.engine
        existing = self.routers.get(name)
        if not spec.create_dest and engine.get(spec.dest) is None:
            raise topic_not_found(spec.dest)
        self._check_fan_in(name, spec)
        if existing is not None and (
            existing.spec.source != spec.source or existing.spec.dest != spec.dest
        ):
            raise ApiError(
                409,
                "topic_exists_incompatible",
                f"router {name!r} already routes {existing.spec.source} -> {existing.spec.dest}",
                {
                    "router": name,
                    "reason": "router_repoint_forbidden",
                    "existing_source": existing.spec.source,
                    "existing_dest": existing.spec.dest,
                },
            )
        if existing is None:
            limit = engine.settings.max_routers
            if limit and len(self.routers) >= limit:
                raise throttled(
                    "max_routers", limit, f"the server holds its maximum of {limit} routers"
                )
        if not spec.allow_cycle:
            cycle = self._cycle(name, spec.source, spec.dest)
            if cycle is not None:
                raise ApiError(
                    409,
                    "router_cycle",
                    f"router {name!r} would close the cycle {' -> '.join(cycle)}",
                    {"cycle": cycle},
                )
        source = engine.get(spec.source)
        if existing is None:
            if source is None:
                source = (await engine.put_topic(spec.source, TopicConfig()))[0]
            if spec.create_dest and engine.get(spec.dest) is None:
                await engine.put_topic(spec.dest, TopicConfig())
            router = Router(name, spec, cursor=source.head, source_instance=source.instance_id)
            await self._save(router)
            if name in self.routers:  # a concurrent PUT of the same name won meanwhile
                return await self.put(name, spec)
            self._add(router)
            self._spawn(router)
            return router, True
        await self._save(Router(name, spec, existing.cursor, existing.source_instance))
        existing.spec = spec
        existing.wake.set()
        return existing, False

    def _check_fan_in(self, name: str, spec: RouterSpec) -> None:
        for other in self.routers.values():
            if (
                other.name != name
                and other.spec.dest == spec.dest
                and other.spec.source != spec.source
            ):
                raise ApiError(
                    409,
                    "topic_exists_incompatible",
                    f"topic {spec.dest!r} is already fed by router {other.name!r}",
                    {"topic": spec.dest, "reason": "router_dest_fan_in"},
                )

    def _cycle(self, name: str, source: str, dest: str) -> list[str] | None:
        """The topic path dest -> … -> source over the other routers, closed at source."""
        edges: dict[str, list[str]] = {}
        for other in self.routers.values():
            if other.name != name:
                edges.setdefault(other.spec.source, []).append(other.spec.dest)
        path = [source, dest]
        seen = {dest}
        stack = [iter(sorted(edges.get(dest, ())))]
        if dest == source:
            return path
        while stack:
            children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                continue
            if child == source:
                return [*path, source]
            if child not in seen:
                seen.add(child)
                path.append(child)
                stack.append(iter(sorted(edges.get(child, ()))))
        return None

    async def delete(self, name: str) -> bool:
        router = self.routers.get(name)
        if router is None:
            return False
        await self.engine.commit(DropRouter(name), fsync=True)
        if self.routers.get(name) is router:
            self._remove(router)
        return True

    def _remove(self, router: Router) -> None:
        del self.routers[router.name]
        for index, topic in (
            (self.by_source, router.spec.source),
            (self.by_dest, router.spec.dest),
        ):
            names = index.get(topic)
            if names is not None:
                names.discard(router.name)
                if not names:
                    del index[topic]
        if router.task is not None:
            router.task.cancel()
            router.task = None

    def touching(self, topic: str) -> list[str]:
        """Routers that die with ``topic`` (its source or destination)."""
        return [n for n, r in self.routers.items() if topic in (r.spec.source, r.spec.dest)]

    def _topic_removed(self, topic: str) -> list[str]:
        """After the topic's drop committed (its routers' rows went in the same commit)."""
        gone = [r for r in self.routers.values() if topic in (r.spec.source, r.spec.dest)]
        for router in gone:
            self._remove(router)
        return [r.name for r in gone]

    async def _save(self, router: Router) -> None:
        change = SaveRouter(
            router.name,
            router.spec.to_json(),
            router.cursor,
            router.source_instance,
            router.forwarded_total,
        )
        await self.engine.commit(change, fsync=True)

    # -- forwarding (SPEC §8.2) ----------------------------------------------------

    def _published(self, source: TopicLog) -> None:
        for name in self.by_source.get(source.name, ()):
            router = self.routers[name]
            if router.cursor < source.head:  # copied eagerly otherwise: nothing to do
                router.wake.set()

    def prepare(self, source: TopicLog, chunk: Chunk, now: int) -> list[Eager]:
        """Copies of ``chunk`` to commit with it, for every router that can take them now."""
        names = self.by_source.get(source.name)
        engine = self.engine
        payload = chunk.payload
        if (
            not names
            or not self._started
            or payload is None
            or source.config.durability not in ("disk", "fsync")
            or engine.changing(source.name)
        ):
            return []
        out: list[Eager] = []
        records: list[WireRecord] | None = None
        for name in sorted(names):
            router = self.routers[name]
            spec = router.spec
            if (
                router.cursor != chunk.first - 1
                or router.lock.locked()
                or router.state != "running"
                or router.source_instance != source.instance_id
            ):
                continue
            dest = engine.topics.get(spec.dest)
            if dest is None or dest is source or engine.changing(dest.name):
                continue
            durability = dest.config.durability
            if durability not in ("memory", "disk") and durability != source.config.durability:
                continue
            if records is None:
                # a chunk just assigned: none of its records is deleted yet
                records = [
                    wire_record(chunk.first + i, chunk.ts, payload, i) for i in range(len(chunk))
                ]
            copies = [r for r in records if _forwards(spec, r)]
            if not copies:
                out.append(
                    Eager(router, dest, None, chunk.last, (RouterCursor(name, chunk.last, 0),))
                )
                continue
            if self._room(dest, copies) < len(copies):
                continue  # a full reject destination: the background backs off
            if dest.assigned + len(copies) > engine.reserved(dest):
                continue  # a new reservation wants its own fsync: not on this write
            sizes, batch = self._batch(router, source, copies)
            copy = dest.assign(sizes, batch, now)
            changes = (
                AppendChunk(dest.instance_id, copy),
                RouterCursor(name, chunk.last, len(copies)),
            )
            out.append(Eager(router, dest, copy, chunk.last, changes))
        return out

    def abandon(self, eager: list[Eager]) -> None:
        """The source write failed: its copies never happened."""
        for item in eager:
            if item.chunk is not None:
                item.dest.abandon(item.chunk)

    def settle(self, eager: list[Eager], now: int) -> None:
        """The source write committed: its copies go live, the cursors move on."""
        for item in eager:
            router = item.router
            if item.chunk is not None:
                item.chunk.stored = True
                router.forwarded_total += len(item.chunk)
                self.engine.went_live(item.dest, item.chunk, now)
            router.cursor = max(router.cursor, item.cursor)

    def lagging(self, dest: str) -> list[Router]:
        """Routers into ``dest`` whose source holds records they have not forwarded."""
        names = self.by_dest.get(dest)
        if not names:
            return []
        behind = []
        for name in names:
            router = self.routers[name]
            source = self.engine.topics.get(router.spec.source)
            if source is not None and source.head > router.cursor:
                behind.append(router)
        return behind

    async def catch_up(self, dest: str) -> None:
        """Before a read of ``dest``: forward what its source committed before now."""
        for router in self.lagging(dest):
            source = self.engine.topics.get(router.spec.source)
            if source is not None:
                with contextlib.suppress(Exception):
                    await self.forward(router, until=source.head)

    async def _run(self, router: Router) -> None:
        backoff = 0
        while True:
            router.wake.clear()
            try:
                progress = await self.forward(router)
            except asyncio.CancelledError:
                raise
            except _DestFull:
                router.state, router.reason = "paused", "destination full (discard: reject)"
                delay = BACKOFF_S[min(backoff, len(BACKOFF_S) - 1)]
                backoff += 1
                await asyncio.sleep(delay)
                continue
            except Exception as exc:
                reason = exc.message if isinstance(exc, ApiError) else str(exc)
                reason = reason or type(exc).__name__
                if router.state != "stalled" or router.reason != reason:
                    router.stalls += 1
                    log.warning(
                        "router %s stalled at seq %d: %s", router.name, router.cursor + 1, reason
                    )
                router.state, router.reason = "stalled", reason
                delay = STALL_BACKOFF_S[min(backoff, len(STALL_BACKOFF_S) - 1)]
                backoff += 1
                await asyncio.sleep(delay)
                continue
            backoff = 0
            router.state, router.reason = "running", None
            if progress:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(router.wake.wait(), timeout=1.0)

    async def forward(self, router: Router, until: int | None = None) -> bool:
        """Forward until caught up (or past ``until``); True if anything moved."""
        moved = False
        async with router.lock:
            while router.name in self.routers:
                step = await self._pass(router)
                moved = moved or step
                source = self.engine.topics.get(router.spec.source)
                if not step or source is None or router.cursor >= (until or source.head):
                    break
        return moved

    async def _pass(self, router: Router) -> bool:
        engine = self.engine
        spec = router.spec
        source = engine.get(spec.source)
        if source is None:
            return False
        if source.instance_id != router.source_instance:
            # the source was deleted and recreated: its routers died with it (§2.4)
            return False
        dest = engine.get(spec.dest)
        if dest is None:
            if not spec.create_dest:
                return False
            dest = (await engine.put_topic(spec.dest, TopicConfig()))[0]
        if router.cursor + 1 < source.evict_floor:
            return await self._trim(router, source, dest)
        result = await engine.read(source, router.cursor, PASS_RECORDS, 8 << 20)
        if result.next_from_seq == router.cursor and not result.records:
            return False
        copies = [r for r in result.records if _forwards(spec, r)]
        end = result.next_from_seq
        if copies:
            fits = self._room(dest, copies)
            if fits == 0:
                raise _DestFull
            if fits < len(copies):
                copies = copies[:fits]
                end = copies[-1][0]
            await engine.append(
                dest,
                self._batch(router, source, copies),
                also=(RouterCursor(router.name, end, len(copies)),),
            )
        else:
            engine.store.commit(RouterCursor(router.name, end, 0), wait=False)
        router.cursor = end
        router.forwarded_total += len(copies)
        return True

    def _room(self, dest: TopicLog, copies: list[WireRecord]) -> int:
        """How many copies a ``discard: "reject"`` destination takes now."""
        config = dest.config
        if config.discard != "reject" or not (config.cap_records or config.cap_bytes):
            return len(copies)
        count = dest.count + dest.pending_count
        size = dest.bytes + dest.pending_bytes
        fits = 0
        for record in copies:
            rsize = len(record[4].encode()) + (len(record[5].encode()) if record[5] else 0)
            if (config.cap_records and count + 1 > config.cap_records) or (
                config.cap_bytes and size + rsize > config.cap_bytes
            ):
                break
            count += 1
            size += rsize
            fits += 1
        return fits

    def _batch(
        self, router: Router, source: TopicLog, records: list[WireRecord]
    ) -> tuple[array[int], Payload]:
        spec = router.spec
        datas: list[str] = []
        metas: list[str | None] = []
        nodes: list[str | None] = []
        tags: list[str | None] = []
        hops: list[int] = []
        sizes: list[int] = []
        for seq, _ts, node, tag, data, meta, hop in records:
            if spec.guarantee == "exactly_once":
                meta = _stamp(meta, router, source, seq)
            datas.append(data)
            metas.append(meta)
            nodes.append(node if spec.preserve_node else None)
            tags.append(tag if spec.preserve_tag else None)
            hops.append(hop + 1)
            sizes.append(len(data.encode()) + (len(meta.encode()) if meta is not None else 0))
        return array("I", sizes), Payload(
            datas,
            metas if any(m is not None for m in metas) else None,
            nodes if any(n is not None for n in nodes) else None,
            tags if any(t is not None for t in tags) else None,
            hops,
        )

    async def _trim(self, router: Router, source: TopicLog, dest: TopicLog) -> bool:
        """Source records were lost before forwarding: tell the destination's readers."""
        lost_to = source.evict_floor - 1
        missed = lost_to - router.cursor
        if dest.pending_count:
            return False  # let in-flight writes publish first; the next pass trims
        self.engine.reserve_holes(dest, missed)
        router.cursor = lost_to
        self.engine.store.commit(RouterCursor(router.name, lost_to, 0), wait=False)
        return True


def _forwards(spec: RouterSpec, record: WireRecord) -> bool:
    """Under the hop cap and, with a filter, tagged and matching."""
    predicate = spec.filter
    return record[6] < MAX_HOPS and (predicate is None or predicate.matches(record[3]))


class _DestFull(Exception):
    """The destination refuses more records for now (``discard: "reject"``)."""


def _stamp(meta: str | None, router: Router, source: TopicLog, seq: int) -> str:
    """Add ``_topics_router`` (SPEC §8.3) to a copy's meta."""
    stamp = {
        "idempotency_key": f"router:{router.name}:{source.instance_id}:1:{seq}",
        "router": router.name,
        "source_topic": source.name,
        "source_topic_id": source.instance_id,
        "source_epoch": 1,
        "source_seq": seq,
    }
    original = orjson.loads(meta) if meta is not None else None
    if original is None:
        out: Any = {"_topics_router": stamp}
    elif isinstance(original, dict) and (len(original) < 64 or "_topics_router" in original):
        out = {**original, "_topics_router": stamp}
    else:
        out = {"_topics_router": stamp, "_topics_original_meta": original}
    return orjson.dumps(out).decode()


def _spec_from_json(raw: dict[str, Any]) -> RouterSpec:
    from topics_server.engine.predicates import parse_predicate

    filt = raw.get("filter")
    return RouterSpec(
        source=raw["source"],
        dest=raw["dest"],
        preserve_node=raw.get("preserve_node", True),
        preserve_tag=raw.get("preserve_tag", True),
        create_dest=raw.get("create_dest", True),
        filter=None if filt is None else parse_predicate(filt, "filter"),
        allow_cycle=raw.get("allow_cycle", False),
        guarantee=raw.get("guarantee", "at_least_once"),
    )
