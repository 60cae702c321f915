"""Lease queues (SPEC §10): leases, the reclaim set, cohorts and dead-lettering.

A queue is a topic with ``type: "queue"``; its records are jobs. The jobs stay
in the topic's log; this module keeps the *lease state* beside it, one
:class:`QueueState` per queue instance:

* ``leases`` - seq -> :class:`Lease` (holder node, deadline, lease id, the
  ``/work`` connection it was pushed on);
* ``reclaim`` - released jobs (expired, nacked, dropped connections), served in
  ascending seq before any fresh job;
* ``cursor`` - the claim cursor: every seq at or below it was handed out once
  (or passed over), fresh jobs come from above it;
* ``delayed`` - jobs nacked with a delay: neither ready nor in flight until due;
* ``deliveries`` - per-job delivery counter (memory only, SPEC §10.10).

Expiry is lazy: :meth:`QueueRegistry.sweep` runs before every claim, ack, nack,
extend and counter read and moves expired leases and due delays into the
reclaim set. Everything runs on the event loop; the state changes only between
suspension points, so no locks are needed.

With ``leases_durable`` (never on ``ephemeral`` queues) lease events are written
to the store's ``leases`` table so live leases survive a restart; otherwise
every in-flight job is simply ready again after a restart.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from sortedcontainers import SortedSet

from topics_server.engine.log import ColdMiss, TopicLog
from topics_server.errors import ApiError, topic_not_found
from topics_server.storage.base import Change, DropLeases, MarkDeleted, SaveLeases
from topics_server.storage.records import Chunk, Payload
from topics_server.wire import now_ms

if TYPE_CHECKING:
    from topics_server.engine.engine import Engine

__all__ = [
    "LEASE_MAX_MS",
    "LEASE_MIN_MS",
    "MAX_DELAY_MS",
    "MAX_SETTLE_SEQS",
    "Claimed",
    "QueueRegistry",
    "QueueState",
    "Settled",
    "clamp_lease_ms",
    "not_a_queue",
]

logger = logging.getLogger("topics_server.queues")

LEASE_MIN_MS = 100
LEASE_MAX_MS = 86_400_000
MAX_DELAY_MS = 86_400_000
MAX_SETTLE_SEQS = 1000  # seqs per ack/nack/extend (SPEC §10.3, fixed)
# A claim pass examines at most this many fresh seqs (deleted ones are skipped).
FRESH_SCAN_BUDGET = 65_536


def clamp_lease_ms(value: int) -> int:
    return min(max(value, LEASE_MIN_MS), LEASE_MAX_MS)


def not_a_queue(topic: str) -> ApiError:
    return ApiError(409, "not_a_queue", f"topic {topic!r} is not a queue", {"topic": topic})


@dataclass(slots=True)
class Lease:
    lease_id: int
    node: str
    deadline: int
    deliveries: int
    conn: int = 0  # the /work connection it was pushed on; 0 for POST claims


@dataclass(slots=True)
class Claimed:
    """One job leased by a claim: the claim entry of SPEC §10.2."""

    seq: int
    lease_id: int
    deadline: int
    ts: int
    tag: str | None
    deliveries: int
    data: str  # stored JSON text
    meta: str | None

    def to_wire(self, topic: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {} if topic is None else {"topic": topic}
        out["$seq"] = self.seq
        out["lease_id"] = f"lease_{self.lease_id:x}"
        out["deadline"] = self.deadline
        out["$ts"] = self.ts
        if self.tag is not None:
            out["$tag"] = self.tag
        out["deliveries"] = self.deliveries
        out["data"] = orjson.Fragment(self.data)
        if self.meta is not None:
            out["meta"] = orjson.Fragment(self.meta)
        return out


@dataclass(slots=True)
class Settled:
    """The outcome of an ack, nack or extend."""

    done: list[int]
    skipped: list[int]
    deadlines: dict[int, int] = field(default_factory=dict)
    fsync_ms: float = 0.0


@dataclass(slots=True)
class _Member:
    """One claimer of a pass (a POST claim or a ``/work`` refill)."""

    node: str
    want: int
    lease_ms: int
    conn: int
    future: asyncio.Future[list[Claimed]] | None = None
    jobs: list[Claimed] = field(default_factory=list)


@dataclass(slots=True)
class _DeadLetter:
    seq: int
    record: tuple[int, int, str | None, str | None, str, str | None]


class QueueState:
    """The lease state of one queue instance."""

    def __init__(self, name: str, instance_id: int) -> None:
        self.name = name
        self.instance_id = instance_id
        self.leases: dict[int, Lease] = {}
        self.expiry: list[tuple[int, int, int]] = []  # heap of (deadline, seq, lease_id)
        self.reclaim: SortedSet[int] = SortedSet()
        self.delayed: dict[int, int] = {}  # seq -> due
        self.delay_heap: list[tuple[int, int]] = []  # heap of (due, seq)
        self.deliveries: dict[int, int] = {}
        self.dl_pending: set[int] = set()  # being appended to the dead-letter topic
        self.cursor = 0
        self.dead_lettered = 0
        # Lease ids start at a clock-derived value so ids handed out before a restart are
        # never handed out again after it (a stale fence can never match a new lease).
        self.next_lease = now_ms() << 10
        self.by_conn: dict[int, set[int]] = {}
        self.cohort: list[_Member] | None = None
        self.waiters: list[asyncio.Future[None]] = []

    def notify(self) -> None:
        """Wake every ``/work`` stream parked on this queue (ack, nack, release)."""
        waiters, self.waiters = self.waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def _unbind(self, seq: int, lease: Lease) -> None:
        if lease.conn:
            held = self.by_conn.get(lease.conn)
            if held is not None:
                held.discard(seq)


def _alive(log: TopicLog, seq: int) -> bool:
    """Is ``seq`` (known to have been published) still a live record?"""
    return log.earliest_seq <= seq <= log.head and seq not in log.deleted


def _payload(chunk: Chunk, cache: dict[int, Payload]) -> Payload:
    payload = chunk.payload or cache.get(chunk.first)
    if payload is None:
        raise ColdMiss(chunk.first, chunk.first, sum(chunk.sizes))
    return payload


class QueueRegistry:
    """Every queue's lease state, and the queue operations of SPEC §10."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.states: dict[str, QueueState] = {}
        self._next_conn = 1

    # -- state ------------------------------------------------------------------

    def state(self, log: TopicLog) -> QueueState:
        state = self.states.get(log.name)
        if state is None or state.instance_id != log.instance_id:
            state = QueueState(log.name, log.instance_id)
            self.states[log.name] = state
        return state

    def require(self, name: str) -> tuple[TopicLog, QueueState]:
        """The queue ``name``: 404 when absent (never created), 409 on a log topic."""
        log = self.engine.get(name)
        if log is None:
            raise topic_not_found(name)
        if not log.config.is_queue:
            raise not_a_queue(name)
        return log, self.state(log)

    def topic_removed(self, name: str) -> list[str]:
        """``Engine.on_topic_removed`` hook: the queue state dies with its topic."""
        state = self.states.pop(name, None)
        if state is not None:
            state.notify()  # its leases went with the topic's DropTopic
        return []

    def _durable(self, log: TopicLog) -> bool:
        config = log.config
        return config.leases_durable and config.durability != "ephemeral"

    def _lease_wait(self, log: TopicLog) -> tuple[bool, bool]:
        """(fsync, wait) for lease events that must survive a restart."""
        durability = log.config.durability
        return durability == "fsync", durability in ("disk", "fsync")

    # -- recovery -----------------------------------------------------------------

    def restore(self, log: TopicLog, leases: list[tuple[int, int, str, int, int]]) -> None:
        """Recovery (worker thread): reload live leases of a ``leases_durable`` queue."""
        if not log.config.is_queue or not self._durable(log):
            return
        state = self.state(log)
        for seq, lease_id, node, deadline, deliveries in leases:
            if log.locate(seq) is None:
                continue
            state.leases[seq] = Lease(lease_id, node, deadline, deliveries)
            state.deliveries[seq] = deliveries
            heapq.heappush(state.expiry, (deadline, seq, lease_id))
            state.next_lease = max(state.next_lease, lease_id + 1)

    # -- sweep and counters ---------------------------------------------------------

    def sweep(self, log: TopicLog, state: QueueState, now: int) -> None:
        """Release expired leases and due delays into the reclaim set (SPEC §10.1)."""
        expiry = state.expiry
        leases = state.leases
        released = False
        while expiry and expiry[0][0] < now:
            deadline, seq, lease_id = heapq.heappop(expiry)
            lease = leases.get(seq)
            if lease is None or lease.lease_id != lease_id or lease.deadline != deadline:
                continue  # acked, released or extended since
            del leases[seq]
            state._unbind(seq, lease)
            if _alive(log, seq):
                state.reclaim.add(seq)
                released = True
        heap = state.delay_heap
        while heap and heap[0][0] <= now:
            due, seq = heapq.heappop(heap)
            if state.delayed.get(seq) == due:
                del state.delayed[seq]
                if _alive(log, seq):
                    state.reclaim.add(seq)
                    released = True
        if released:
            state.notify()

    def counters(self, log: TopicLog, now: int) -> dict[str, int]:
        """``ready``/``in_flight``/``dead_lettered`` (SPEC §10.8), after a sweep."""
        state = self.state(log)
        self.sweep(log, state, now)
        in_flight = self._in_flight(log, state)
        waiting = sum(1 for seq in state.delayed if _alive(log, seq))
        waiting += sum(1 for seq in state.dl_pending if _alive(log, seq))
        ready = max(log.count - in_flight - waiting, 0)
        return {"ready": ready, "in_flight": in_flight, "dead_lettered": state.dead_lettered}

    def _in_flight(self, log: TopicLog, state: QueueState) -> int:
        """Unexpired leases on live jobs; leases on jobs gone otherwise are dropped."""
        dead = [seq for seq in state.leases if not _alive(log, seq)]
        for seq in dead:
            state._unbind(seq, state.leases.pop(seq))
            state.deliveries.pop(seq, None)
        return len(state.leases)

    def leases_in_flight(self, now: int) -> int:
        total = 0
        for name, state in list(self.states.items()):
            log = self.engine.topics.get(name)
            if log is None or log.instance_id != state.instance_id:
                continue
            self.sweep(log, state, now)
            total += self._in_flight(log, state)
        return total

    # -- claims (SPEC §10.2) ---------------------------------------------------------

    async def claim(
        self, name: str, node: str, want: int, lease_ms: int | None, conn: int = 0
    ) -> tuple[TopicLog, list[Claimed]]:
        """Lease up to ``want`` jobs to ``node``, through the coalescing window if any."""
        await self.engine.routers.catch_up(name)  # a claim sees what routers owe the queue
        log, state = self.require(name)
        member = _Member(node, want, clamp_lease_ms(lease_ms or log.config.lease_ms), conn)
        jitter = log.config.claim_jitter_ms
        if jitter <= 0:
            await self._serve(log, state, [member])
            return log, member.jobs
        loop = asyncio.get_running_loop()
        member.future = loop.create_future()
        if state.cohort is None:
            cohort: list[_Member] = []
            state.cohort = cohort
            loop.call_later(jitter / 1000, self._close_cohort, log, state, cohort)
        state.cohort.append(member)
        return log, await member.future

    def _close_cohort(self, log: TopicLog, state: QueueState, cohort: list[_Member]) -> None:
        if state.cohort is cohort:
            state.cohort = None
        asyncio.get_running_loop().create_task(self._serve_cohort(log, state, cohort))

    async def _serve_cohort(self, log: TopicLog, state: QueueState, cohort: list[_Member]) -> None:
        members = [m for m in cohort if m.future is not None and not m.future.done()]
        current = self.engine.topics.get(log.name)
        if current is not log or log.removed or not log.config.is_queue:
            error = topic_not_found(log.name) if current is None else not_a_queue(log.name)
            for m in members:
                assert m.future is not None
                m.future.set_exception(error)
            return
        try:
            await self._serve(log, state, members)
        except BaseException as exc:
            for m in members:
                assert m.future is not None
                if not m.future.done():
                    m.future.set_exception(exc)
            raise
        for m in members:
            assert m.future is not None
            if not m.future.done():
                m.future.set_result(m.jobs)

    async def _serve(self, log: TopicLog, state: QueueState, members: list[_Member]) -> None:
        """One pass for a cohort (or a lone claimer), then its persistence and dead letters."""
        now = now_ms()
        self.sweep(log, state, now)
        dead: list[_DeadLetter] = []
        cache: dict[int, Payload] = {}
        while True:
            try:
                self._deal(log, state, members, now, cache, dead)
                break
            except ColdMiss as miss:  # a cold job: fetch its payload off the loop, go on
                cache.update(await self.engine._load_cold(log, miss))
        if self._durable(log):
            rows = [
                (job.seq, job.lease_id, m.node, job.deadline, job.deliveries)
                for m in members
                for job in m.jobs
            ]
            if rows:
                fsync, wait = self._lease_wait(log)
                try:
                    await self.engine.commit(
                        SaveLeases(log.instance_id, tuple(rows)), fsync=fsync, wait=wait
                    )
                except ApiError:
                    self._undo_claims(log, state, members)
                    raise
        if dead:
            await self._dead_letter(log, state, dead)

    def _candidates(
        self, log: TopicLog, state: QueueState
    ) -> Iterator[tuple[int, Chunk, int, bool]]:
        """Claimable jobs: the reclaim set ascending, then fresh seqs past the cursor."""
        leases, delayed, pending = state.leases, state.delayed, state.dl_pending
        reclaim = state.reclaim
        while reclaim:
            seq = reclaim.pop(0)
            if seq in leases or seq in delayed or seq in pending:
                continue
            found = log.locate(seq)
            if found is None:
                state.deliveries.pop(seq, None)
                continue
            yield seq, found[0], found[1], False
        seq = max(state.cursor, log.earliest_seq - 1)
        budget = FRESH_SCAN_BUDGET
        while seq < log.head and budget > 0:
            budget -= 1
            nxt = seq + 1
            found = log.locate(nxt)
            if found is None:
                if nxt not in log.deleted and nxt >= log.earliest_seq and log.pending_count:
                    break  # an earlier write not yet published: wait for it, never skip it
                seq = state.cursor = nxt
                continue
            seq = state.cursor = nxt
            if nxt in leases or nxt in delayed or nxt in pending:
                continue
            yield nxt, found[0], found[1], True

    def _deal(
        self,
        log: TopicLog,
        state: QueueState,
        members: list[_Member],
        now: int,
        cache: dict[int, Payload],
        dead: list[_DeadLetter],
    ) -> None:
        """Deal jobs round-robin, one at a time, to members still under their ``max``."""
        config = log.config
        limit = config.max_deliveries if config.dead_letter is not None else 0
        candidates = self._candidates(log, state)
        active = [m for m in members if m.want > len(m.jobs)]
        exhausted = False
        while active and not exhausted:
            for member in active:
                for seq, chunk, i, fresh in candidates:
                    n = state.deliveries.get(seq, 0) + 1
                    try:
                        payload = _payload(chunk, cache)
                    except ColdMiss:
                        # give the job back exactly where it came from, then fetch
                        if fresh:
                            state.cursor = seq - 1
                        else:
                            state.reclaim.add(seq)
                        raise
                    tag = payload.tags[i] if payload.tags is not None else None
                    meta = payload.metas[i] if payload.metas is not None else None
                    if limit and n > limit:
                        node = payload.nodes[i] if payload.nodes is not None else None
                        record = (seq, chunk.ts, node, tag, payload.datas[i], meta)
                        dead.append(_DeadLetter(seq, record))
                        state.dl_pending.add(seq)
                        state.dead_lettered += 1
                        continue
                    lease_id = state.next_lease
                    state.next_lease += 1
                    deadline = now + member.lease_ms
                    state.leases[seq] = Lease(lease_id, member.node, deadline, n, member.conn)
                    state.deliveries[seq] = n
                    heapq.heappush(state.expiry, (deadline, seq, lease_id))
                    if member.conn:
                        state.by_conn.setdefault(member.conn, set()).add(seq)
                    member.jobs.append(
                        Claimed(seq, lease_id, deadline, chunk.ts, tag, n, payload.datas[i], meta)
                    )
                    break
                else:
                    exhausted = True
                    break
            active = [m for m in active if m.want > len(m.jobs)]
        for member in members:
            member.jobs.sort(key=lambda job: job.seq)

    # -- dead-lettering (SPEC §10.7) ----------------------------------------------------

    async def _dead_letter(self, log: TopicLog, state: QueueState, dead: list[_DeadLetter]) -> None:
        config = log.config
        target = config.dead_letter
        assert target is not None
        stamps = {
            "$dead_letter_from": log.name,
            "$dead_letter_deliveries": str(config.max_deliveries),
        }
        sizes: list[int] = []
        datas: list[str] = []
        metas: list[str | None] = []
        nodes: list[str | None] = []
        tags: list[str | None] = []
        for item in dead:
            _, _, node, tag, data, meta_text = item.record
            original = orjson.loads(meta_text) if meta_text is not None else None
            meta = dict(original) if isinstance(original, dict) else {}
            meta.update(stamps)
            meta["$dead_letter_src_seq"] = str(item.seq)
            encoded = orjson.dumps(meta).decode()
            sizes.append(len(data.encode()) + len(encoded.encode()))
            datas.append(data)
            metas.append(encoded)
            nodes.append(node)
            tags.append(tag)
        payload = Payload(
            datas,
            metas,
            nodes if any(n is not None for n in nodes) else None,
            tags if any(t is not None for t in tags) else None,
            None,
        )
        seqs = [item.seq for item in dead]
        try:
            await self.engine.write(target, (array("I", sizes), payload), create=True)
        except Exception as exc:
            # the jobs go back to the reclaim set and the counter is rolled back
            message = getattr(exc, "message", str(exc))
            logger.warning("dead-lettering from %r into %r failed: %s", log.name, target, message)
            for seq in seqs:
                state.dl_pending.discard(seq)
            if self.states.get(log.name) is state:
                state.dead_lettered -= len(seqs)
                state.reclaim.update(s for s in seqs if _alive(log, s))
                state.notify()
            return
        for seq in seqs:
            state.dl_pending.discard(seq)
            state.deliveries.pop(seq, None)
        if not log.removed:
            await self.delete_jobs(log, seqs)

    # -- ack / nack / extend (SPEC §10.3-§10.6) ---------------------------------------

    def _match(
        self,
        log: TopicLog,
        state: QueueState,
        node: str,
        seqs: list[int],
        fences: list[int | None] | None,
        now: int,
    ) -> tuple[list[tuple[int, Lease]], list[int]]:
        """Leases held by ``node`` (fenced where a token was given); the rest are skipped."""
        matched: list[tuple[int, Lease]] = []
        skipped: list[int] = []
        seen: set[int] = set()
        leases = state.leases
        for k, seq in enumerate(seqs):
            lease = leases.get(seq)
            fence = fences[k] if fences is not None else None
            if (
                lease is None
                or seq in seen  # a seq repeated in one request matches once
                or lease.node != node
                or (fence is not None and fence != lease.lease_id)
                or lease.deadline < now
                or not _alive(log, seq)
            ):
                skipped.append(seq)
                continue
            seen.add(seq)
            matched.append((seq, lease))
        return matched, skipped

    def _undo_claims(self, log: TopicLog, state: QueueState, members: list[_Member]) -> None:
        """A claim whose leases failed to commit: its jobs go back as they were."""
        for member in members:
            for job in member.jobs:
                lease = state.leases.get(job.seq)
                if lease is not None and lease.lease_id == job.lease_id:
                    del state.leases[job.seq]
                    state._unbind(job.seq, lease)
                    if job.deliveries > 1:
                        state.deliveries[job.seq] = job.deliveries - 1
                    else:
                        state.deliveries.pop(job.seq, None)
                    state.reclaim.add(job.seq)
            member.jobs = []
        state.notify()

    def _drop(self, log: TopicLog, state: QueueState, matched: list[tuple[int, Lease]]) -> None:
        for seq, lease in matched:
            del state.leases[seq]
            state._unbind(seq, lease)

    async def _commit_drop(self, log: TopicLog, seqs: list[int], *extra: Change) -> float:
        """Persist released leases (and ``extra``) before memory forgets them."""
        changes: list[Change] = list(extra)
        if seqs and self._durable(log):
            changes.append(DropLeases(log.instance_id, tuple(seqs)))
        durability = log.config.durability
        if not changes or durability == "ephemeral":
            return 0.0
        _, fsync_ms = await self.engine.commit(
            *changes, fsync=durability == "fsync", wait=durability in ("disk", "fsync")
        )
        return fsync_ms

    async def ack(
        self, name: str, node: str, seqs: list[int], fences: list[int | None] | None
    ) -> tuple[TopicLog, Settled]:
        log, state = self.require(name)
        now = now_ms()
        self.sweep(log, state, now)
        matched, skipped = self._match(log, state, node, seqs, fences, now)
        done = [seq for seq, _ in matched]
        live = tuple(seq for seq in done if log.locate(seq) is not None)
        extra = (MarkDeleted(log.instance_id, live),) if live else ()
        fsync_ms = await self._commit_drop(log, done, *extra)
        matched = [(seq, lease) for seq, lease in matched if state.leases.get(seq) is lease]
        done = [seq for seq, _ in matched]
        self._drop(log, state, matched)
        for seq in done:
            state.deliveries.pop(seq, None)
        log.delete_seqs(done)
        self.engine._sync_front(log)
        state.notify()
        return log, Settled(done, skipped, fsync_ms=fsync_ms)

    async def delete_jobs(self, log: TopicLog, seqs: list[int]) -> float:
        """Delete jobs for good, persisted per the queue's class (as ``delete_records``)."""
        live = tuple(seq for seq in sorted(set(seqs)) if log.locate(seq) is not None)
        if not live:
            return 0.0
        fsync_ms = await self._commit_drop(log, [], MarkDeleted(log.instance_id, live))
        log.delete_seqs(live)
        self.engine._sync_front(log)
        return fsync_ms

    async def nack(
        self,
        name: str,
        node: str,
        seqs: list[int],
        fences: list[int | None] | None,
        delay_ms: int,
    ) -> tuple[TopicLog, Settled]:
        log, state = self.require(name)
        now = now_ms()
        self.sweep(log, state, now)
        matched, skipped = self._match(log, state, node, seqs, fences, now)
        await self._commit_drop(log, [seq for seq, _ in matched])
        matched = [(seq, lease) for seq, lease in matched if state.leases.get(seq) is lease]
        self._drop(log, state, matched)
        for seq, _ in matched:
            if delay_ms:
                due = now + delay_ms
                state.delayed[seq] = due
                heapq.heappush(state.delay_heap, (due, seq))
            else:
                state.reclaim.add(seq)
        if matched and not delay_ms:
            state.notify()
        return log, Settled([seq for seq, _ in matched], skipped)

    async def extend(
        self,
        name: str,
        node: str,
        seqs: list[int],
        fences: list[int | None] | None,
        lease_ms: int,
    ) -> tuple[TopicLog, Settled]:
        log, state = self.require(name)
        now = now_ms()
        self.sweep(log, state, now)
        matched, skipped = self._match(log, state, node, seqs, fences, now)
        deadline = now + clamp_lease_ms(lease_ms)
        if matched and self._durable(log):
            rows = tuple((s, ls.lease_id, ls.node, deadline, ls.deliveries) for s, ls in matched)
            fsync, wait = self._lease_wait(log)
            await self.engine.commit(SaveLeases(log.instance_id, rows), fsync=fsync, wait=wait)
        deadlines: dict[int, int] = {}
        for seq, lease in matched:
            if state.leases.get(seq) is not lease:
                continue  # settled by someone else while the extension committed
            lease.deadline = deadline
            heapq.heappush(state.expiry, (deadline, seq, lease.lease_id))
            deadlines[seq] = deadline
        return log, Settled([seq for seq, _ in matched], skipped, deadlines)

    # -- /work connections (SPEC §10.9) -------------------------------------------------

    def open_conn(self) -> int:
        conn = self._next_conn
        self._next_conn += 1
        return conn

    def held(self, log: TopicLog, conn: int) -> int:
        """Unexpired leases on live jobs delivered on ``conn`` (after a sweep)."""
        state = self.states.get(log.name)
        if state is None or state.instance_id != log.instance_id:
            return 0
        self.sweep(log, state, now_ms())
        held = state.by_conn.get(conn)
        if not held:
            return 0
        return sum(1 for seq in held if _alive(log, seq))

    def release_conn(self, log: TopicLog, conn: int) -> int:
        """A ``/work`` connection ended: its leases go back to the reclaim set at once."""
        state = self.states.get(log.name)
        if state is None or state.instance_id != log.instance_id:
            return 0
        held = state.by_conn.pop(conn, None)
        if not held:
            return 0
        released: list[tuple[int, Lease]] = []
        for seq in held:
            lease = state.leases.get(seq)
            if lease is not None and lease.conn == conn:
                released.append((seq, lease))
        self._drop(log, state, released)
        for seq, _ in released:
            if _alive(log, seq):
                state.reclaim.add(seq)
        if released:
            state.notify()
        return len(released)

    async def wait_change(self, log: TopicLog, timeout: float) -> None:
        """Park until an append to the queue, a queue change, removal, or ``timeout``."""
        state = self.states.get(log.name)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        log.waiters.append(fut)
        if state is not None:
            state.waiters.append(fut)
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            pass
        finally:
            if not fut.done():
                fut.cancel()
            if fut in log.waiters:
                log.waiters.remove(fut)
            if state is not None and fut in state.waiters:
                state.waiters.remove(fut)
