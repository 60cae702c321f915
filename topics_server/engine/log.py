"""One topic instance: its chunks, watermarks, retention and tombstones.

The log is a list of :class:`~topics_server.storage.records.Chunk` in seq order.
``(lo, pos)`` is the front: the record ``chunks[lo].first + pos`` is the first
live one, everything before it was evicted or deleted. A delete in the middle
only adds the seq to ``deleted``; the front skips such seqs as it passes them.

Watermarks (SPEC §5.1):

* ``head`` - the highest *published* seq (committed per the topic's class);
  ``assigned`` runs ahead of it while writes wait for their commit;
* ``earliest_seq`` - the first live seq, ``head + 1`` when none is live;
* ``evict_floor`` - one past the highest seq lost *involuntarily* (cap, TTL,
  router source trim). Deletes never move it. A reader whose cursor is below
  it gets a tombstone; a reader in a purely deleted range moves on silently.
"""

from __future__ import annotations

import asyncio
from array import array
from bisect import bisect_left
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sortedcontainers import SortedDict

from topics_server.engine.config import TopicConfig
from topics_server.engine.idempotency import IdempotencyTable
from topics_server.engine.predicates import TagPredicate
from topics_server.storage.records import Chunk, Payload

__all__ = [
    "HOT_RECORDS",
    "ColdMiss",
    "ReadResult",
    "RecordRun",
    "TopicLog",
    "Totals",
    "WireRecord",
    "wire_record",
]

# A read that only skips (deleted or node-filtered records) stops after this many
# examined seqs so one request never walks an unbounded log (SPEC §4.2 allows it).
SCAN_BUDGET = 65_536
# Payloads kept in memory per topic once they are safely in the store.
HOT_RECORDS = 8192
HOT_BYTES = 8 << 20

# (seq, ts, node, tag, data, meta, hops) of a record being delivered
WireRecord = tuple[int, int, str | None, str | None, str, str | None, int]
# (first, ts, payload, start, stop): the live records ``first + start .. first + stop - 1``
# of one chunk (``first`` is the chunk's first seq), none skipped in between; their
# columns are ``payload``'s ``[start:stop]``
RecordRun = tuple[int, int, Payload, int, int]


def wire_record(seq: int, ts: int, payload: Payload, i: int) -> WireRecord:
    """Record ``i`` of a chunk's payload, delivered as ``seq`` written at ``ts``."""
    return (
        seq,
        ts,
        payload.nodes[i] if payload.nodes is not None else None,
        payload.tags[i] if payload.tags is not None else None,
        payload.datas[i],
        payload.metas[i] if payload.metas is not None else None,
        payload.hops[i] if payload.hops is not None else 0,
    )


class ColdMiss(Exception):
    """A read needs payloads only the store holds: chunks starting in ``first..last``.

    Reads never touch the store themselves: the caller fetches the range and
    reads again with it. ``size`` (the records' bytes) lets the store read a
    small range at once rather than on a reader thread.
    """

    def __init__(self, first: int, last: int, size: int) -> None:
        super().__init__(first, last)
        self.first = first
        self.last = last
        self.size = size


_NO_COLD: Mapping[int, Payload] = {}


class Totals:
    """Server-wide live counters, shared by every topic."""

    __slots__ = ("bytes", "records")

    def __init__(self) -> None:
        self.records = 0
        self.bytes = 0


@dataclass(slots=True)
class ReadResult:
    records: list[Any]  # WireRecord tuples, or RecordRun column slices when read as runs
    next_from_seq: int
    head_seq: int
    earliest_seq: int
    tombstone: dict[str, Any] | None
    scanned: int
    size: int = 0  # bytes of the records returned
    count: int = 0  # records returned (``records`` holds fewer runs than that)

    @property
    def caught_up(self) -> bool:
        return self.next_from_seq == self.head_seq


def _last(chunk: Chunk) -> int:
    return chunk.last


def _first(chunk: Chunk) -> int:
    return chunk.first


async def wait_any(logs: Iterable[TopicLog], timeout: float) -> bool:
    """Park until any of ``logs`` publishes (or is removed); False on timeout.

    One future joins each log's waiter list; :meth:`TopicLog.notify` resolves it.
    A plain timer instead of ``asyncio.wait_for``: this runs once per watcher per
    write, and ``wait_for``'s extra task machinery showed in profiles.
    """
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    logs = list(logs)
    for log in logs:
        log.waiters.append(fut)
    timer = loop.call_later(timeout, _expire, fut)
    try:
        await fut
        return True
    except TimeoutError:
        return False
    finally:
        timer.cancel()
        for log in logs:
            if fut in log.waiters:
                log.waiters.remove(fut)


def _expire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


class TopicLog:
    def __init__(self, name: str, instance_id: int, config: TopicConfig, totals: Totals) -> None:
        self.name = name
        self.instance_id = instance_id
        self.config = config
        self.totals = totals
        self.chunks: list[Chunk] = []
        self.lo = 0
        self.pos = 0
        self.deleted: set[int] = set()  # deleted seqs at or after the front
        self.head = 0
        self.assigned = 0
        self.evict_floor = 1
        self.count = 0
        self.bytes = 0
        self.pending_count = 0  # assigned, not yet published
        self.pending_bytes = 0
        self.cap_hi = 0  # highest seq evicted by a cap
        self.ttl_hi = 0  # highest seq expired by TTL
        self.trim_hi = 0  # highest seq lost by a router source trim
        self.last_ts = 0
        self.last_write_ts: int | None = None
        self.last_read_ts: int | None = None
        self.hot_records = 0
        self.hot_bytes = 0
        self.hot_from = 0  # chunks[lo:hot_from] are all cold
        self.tags: SortedDict[str, deque[int]] = SortedDict()  # hot records' tags -> seqs
        self.idempotency = IdempotencyTable()
        self.waiters: list[asyncio.Future[None]] = []
        self.removed = False
        self.version = 0  # bumped by every change a reader could see (read caches key on it)
        self.persisted_front = 1  # the front as last handed to the store

    # -- watermarks ---------------------------------------------------------

    @property
    def earliest_seq(self) -> int:
        if self.lo < len(self.chunks):
            return self.chunks[self.lo].first + self.pos
        return self.head + 1

    # -- notification -------------------------------------------------------

    def notify(self) -> None:
        """Wake every reader parked on this topic (long-poll, watch, routers)."""
        waiters, self.waiters = self.waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def wait_change(self, timeout: float) -> bool:
        """Park until the next publication (or removal); False on timeout."""
        return await wait_any((self,), timeout)

    # -- writes -------------------------------------------------------------

    def assign(self, sizes: array[int], payload: Payload, now: int) -> Chunk:
        """Reserve seqs and the commit clock for a batch; publish it later."""
        ts = now if now > self.last_ts else self.last_ts
        chunk = Chunk(self.assigned + 1, ts, sizes, payload, stored=False)
        self.assigned = chunk.last
        self.last_ts = ts
        self.pending_count += len(sizes)
        self.pending_bytes += sum(sizes)
        return chunk

    def publish(self, chunk: Chunk, now: int) -> None:
        """Make an assigned chunk live and visible to every reader."""
        n = len(chunk)
        size = sum(chunk.sizes)
        self.pending_count -= n
        self.pending_bytes -= size
        chunks = self.chunks
        if not chunks or chunks[-1].first < chunk.first:
            chunks.append(chunk)
        else:  # a commit that overtook an earlier one: keep seq order
            at = bisect_left(chunks, chunk.first, lo=self.lo, key=_first)
            chunks.insert(at, chunk)
            self.hot_from = min(self.hot_from, at)
        if chunk.last > self.head:
            self.head = chunk.last
        self.last_write_ts = now
        self.version += 1
        self.count += n
        self.bytes += size
        self.totals.records += n
        self.totals.bytes += size
        self.hot_records += n
        self.hot_bytes += size
        if chunk.payload is not None and chunk.payload.tags is not None:
            self._index_tags(chunk)

    def abandon(self, chunk: Chunk) -> None:
        """An assigned chunk failed to commit: it is never published."""
        self.pending_count -= len(chunk)
        self.pending_bytes -= sum(chunk.sizes)

    def _index_tags(self, chunk: Chunk) -> None:
        assert chunk.payload is not None and chunk.payload.tags is not None
        tags = self.tags
        seq = chunk.first
        for tag in chunk.payload.tags:
            if tag is not None:
                index = tags.get(tag)
                if index is None:
                    tags[tag] = deque((seq,))
                else:
                    index.append(seq)
            seq += 1

    def _unindex_tag(self, tag: str, seq: int) -> None:
        index = self.tags.get(tag)
        if index is None:
            return
        if index[0] == seq:
            index.popleft()
        else:
            try:
                index.remove(seq)
            except ValueError:
                return
        if not index:
            del self.tags[tag]

    def cool(self) -> None:
        """Drop payloads the store already holds, oldest first, down to the hot budget.

        ``hot_from`` remembers where the hot chunks start, so an append to a long
        topic does not walk every cold chunk before it (that was O(chunks) a write).
        """
        if self.hot_records <= HOT_RECORDS and self.hot_bytes <= HOT_BYTES:
            return
        chunks = self.chunks
        k = max(self.lo, self.hot_from)
        while k < len(chunks) and (self.hot_records > HOT_RECORDS or self.hot_bytes > HOT_BYTES):
            chunk = chunks[k]
            payload = chunk.payload
            if payload is not None:
                if not chunk.stored:
                    break
                self._cool_chunk(chunk, payload)
            k += 1
        self.hot_from = k

    def _cool_chunk(self, chunk: Chunk, payload: Payload) -> None:
        chunk.payload = None
        front = self.earliest_seq
        deleted = self.deleted
        tags = payload.tags
        for i, size in enumerate(chunk.sizes):
            seq = chunk.first + i
            if seq < front or seq in deleted:
                continue  # already out of the hot accounting
            self.hot_records -= 1
            self.hot_bytes -= size
            if tags is not None and (tag := tags[i]) is not None:
                self._unindex_tag(tag, seq)

    # -- retention ----------------------------------------------------------

    def oldest_ts(self) -> int | None:
        """``$ts`` of the first live record (what TTL expires next), or None."""
        return self.chunks[self.lo].ts if self.lo < len(self.chunks) else None

    def apply_retention(self, now: int) -> None:
        """Expire by TTL, then evict while over a cap (``discard: "old"``)."""
        ttl = self.config.ttl_ms
        if ttl:
            cutoff = now - ttl
            chunks = self.chunks
            while self.lo < len(chunks) and chunks[self.lo].ts < cutoff:
                self._evict_first("ttl")
        self.enforce_caps()

    def enforce_caps(self) -> None:
        config = self.config
        if config.discard != "old":
            return
        cap_records, cap_bytes = config.cap_records, config.cap_bytes
        while (cap_records and self.count > cap_records) or (cap_bytes and self.bytes > cap_bytes):
            self._evict_first("cap")

    def _evict_first(self, reason: str) -> None:
        seq = self._drop_front()
        self.evict_floor = seq + 1
        if reason == "cap":
            self.cap_hi = seq
        elif reason == "ttl":
            self.ttl_hi = seq
        else:
            self.trim_hi = seq

    def _drop_front(self) -> int:
        """Take the first live record out; returns its seq."""
        chunk = self.chunks[self.lo]
        seq = chunk.first + self.pos
        self._forget(chunk, self.pos)
        self.pos += 1
        self._settle_front()
        return seq

    def _forget(self, chunk: Chunk, i: int) -> None:
        """Take record ``i`` of ``chunk`` out of the counters and the tag index."""
        self.version += 1
        size = chunk.sizes[i]
        self.count -= 1
        self.bytes -= size
        self.totals.records -= 1
        self.totals.bytes -= size
        payload = chunk.payload
        if payload is not None:
            self.hot_records -= 1
            self.hot_bytes -= size
            if payload.tags is not None and (tag := payload.tags[i]) is not None:
                self._unindex_tag(tag, chunk.first + i)

    def _settle_front(self) -> None:
        """Move the front past deleted seqs and spent chunks; compact the list."""
        chunks = self.chunks
        deleted = self.deleted
        while self.lo < len(chunks):
            chunk = chunks[self.lo]
            if self.pos >= len(chunk):
                # every record of it was forgotten one by one on the way out
                chunk.payload = None
                self.lo += 1
                self.pos = 0
                continue
            seq = chunk.first + self.pos
            if deleted and seq in deleted:
                deleted.discard(seq)
                self.pos += 1
                continue
            break
        if self.lo > 64 and self.lo * 2 > len(chunks):
            del chunks[: self.lo]
            self.hot_from = max(self.hot_from - self.lo, 0)
            self.lo = 0

    # -- deletes (SPEC §7) --------------------------------------------------

    def locate(self, seq: int) -> tuple[Chunk, int] | None:
        """The chunk and offset of live record ``seq``, if it is live."""
        if seq < self.earliest_seq or seq > self.head or seq in self.deleted:
            return None
        chunks = self.chunks
        k = bisect_left(chunks, seq, lo=self.lo, key=_last)
        if k == len(chunks) or chunks[k].first > seq:
            return None
        return chunks[k], seq - chunks[k].first

    def get(self, seq: int, cold: Mapping[int, Payload] = _NO_COLD) -> WireRecord | None:
        """The live record ``seq`` with its payload, or None; raises :class:`ColdMiss`."""
        found = self.locate(seq)
        if found is None:
            return None
        chunk, i = found
        payload = chunk.payload or cold.get(chunk.first)
        if payload is None:
            raise ColdMiss(chunk.first, chunk.first, sum(chunk.sizes))
        return wire_record(seq, chunk.ts, payload, i)

    def delete_seqs(self, seqs: Iterable[int]) -> list[int]:
        """Delete the given seqs where live; returns the seqs actually deleted."""
        done: list[int] = []
        for seq in sorted(set(seqs)):
            found = self.locate(seq)
            if found is None:
                continue
            chunk, i = found
            self._forget(chunk, i)
            self.deleted.add(seq)
            done.append(seq)
        if done:
            self._settle_front()
        return done

    def delete_before(self, before_seq: int) -> list[int]:
        """Delete every live record with ``$seq < before_seq`` (a prefix)."""
        done: list[int] = []
        while self.lo < len(self.chunks) and self.earliest_seq < before_seq:
            done.append(self._drop_front())
        return done

    def hot_tag_matches(self, predicate: TagPredicate, bound: int) -> list[int]:
        """Seqs ``< bound`` of hot records whose tag matches (index look-up)."""
        if predicate.op == "Eq":
            tags = [predicate.value] if predicate.value in self.tags else []
        else:
            tags = []
            for tag in self.tags.irange(minimum=predicate.value):
                if not tag.startswith(predicate.value):
                    break
                tags.append(tag)
        victims: list[int] = []
        for tag in tags:
            for seq in self.tags[tag]:
                if seq >= bound:
                    break
                victims.append(seq)
        return victims

    # -- reads (SPEC §4.2, §5.4) --------------------------------------------

    def tombstone(self, from_seq: int) -> tuple[dict[str, Any] | None, int]:
        """The tombstone a reader at ``from_seq`` gets, and where its scan starts."""
        head = self.head
        if from_seq > head:
            earliest = self.earliest_seq
            return {
                "gap_from": 1,
                "gap_to": head,
                "reason": "recreated",
                "missed_estimate": head,
                "earliest_seq": earliest,
                "head_seq": head,
            }, earliest - 1
        floor = self.evict_floor
        if from_seq + 1 < floor:
            gap_from = from_seq + 1
            by_cap = self.cap_hi >= gap_from
            by_ttl = self.ttl_hi >= gap_from
            if by_cap and by_ttl:
                reason = "mixed"
            elif by_ttl:
                reason = "ttl"
            elif not by_cap and self.trim_hi >= gap_from:
                reason = "source_trim"
            else:
                reason = "cap"
            return {
                "gap_from": gap_from,
                "gap_to": floor - 1,
                "reason": reason,
                "missed_estimate": floor - gap_from,
                "earliest_seq": floor,
                "head_seq": head,
            }, max(self.earliest_seq - 1, from_seq)
        return None, from_seq

    def read(
        self,
        from_seq: int,
        limit: int,
        max_bytes: int,
        nodes: frozenset[str] | None = None,
        cold: Mapping[int, Payload] = _NO_COLD,
        strict: bool = False,
        runs: bool = False,
    ) -> ReadResult:
        """Records after ``from_seq`` (SPEC §4.2).

        The first record always fits ``max_bytes`` unless ``strict`` (a page's later
        slice, whose budget is what the earlier slices left).

        Cold payloads come from ``cold`` (keyed by chunk ``first``); a chunk that
        is neither hot nor in ``cold`` raises :class:`ColdMiss`.

        Records come as :data:`WireRecord` tuples, or, with ``runs``, as
        :data:`RecordRun` slices of the payload columns: no per-record object is
        made here, and a stretch with nothing to skip is taken whole (one ``sum``
        of its sizes), so a page costs little more than its rendering.
        """
        tombstone, start = self.tombstone(from_seq)
        if nodes is not None and not self.config.dedupe_node:
            nodes = None
        chunks = self.chunks
        deleted = self.deleted
        begin = max(start + 1, self.earliest_seq)
        k = bisect_left(chunks, begin, lo=self.lo, key=_last)
        out: list[Any] = []
        count = 0
        total = 0
        scanned = 0
        next_from = start
        budget = max(limit, SCAN_BUDGET)
        done = False
        while k < len(chunks) and not done:
            chunk = chunks[k]
            payload = chunk.payload
            if payload is None:
                payload = cold.get(chunk.first)
                if payload is None:
                    raise self._cold_run(k, limit - count)
            first, ts, sizes = chunk.first, chunk.ts, chunk.sizes
            lo = max(begin - first, 0)
            k += 1
            if runs and nodes is None and not deleted:
                # nothing to skip: the run is as long as the limit and the bytes allow
                stop = min(len(sizes), lo + limit - count)
                size = sum(sizes[lo:stop])
                if lo < stop and total + size <= max_bytes:
                    out.append((first, ts, payload, lo, stop))
                    count += stop - lo
                    total += size
                    scanned += stop - lo
                    next_from = first + stop - 1
                    done = count >= limit
                    continue
            datas, metas, nodes_col, tags, hops = (
                payload.datas,
                payload.metas,
                payload.nodes,
                payload.tags,
                payload.hops,
            )
            run_start = end = -1
            for i in range(lo, len(sizes)):
                seq = first + i
                scanned += 1
                node = nodes_col[i] if nodes_col is not None else None
                if (deleted and seq in deleted) or (nodes is not None and node in nodes):
                    if run_start >= 0:
                        out.append((first, ts, payload, run_start, end))
                        run_start = -1
                    next_from = seq
                    if scanned >= budget and not count:
                        done = True
                        break
                    continue
                size = sizes[i]
                if (count or strict) and total + size > max_bytes:
                    next_from = seq - 1
                    done = True
                    break
                if runs:
                    if run_start < 0:
                        run_start = i
                    end = i + 1
                else:
                    out.append(
                        (
                            seq,
                            ts,
                            node,
                            tags[i] if tags is not None else None,
                            datas[i],
                            metas[i] if metas is not None else None,
                            hops[i] if hops is not None else 0,
                        )
                    )
                count += 1
                total += size
                next_from = seq
                if count >= limit:
                    done = True
                    break
            if run_start >= 0:
                out.append((first, ts, payload, run_start, end))
        if not done:
            next_from = self.head
        return ReadResult(
            out, next_from, self.head, self.earliest_seq, tombstone, scanned, total, count
        )

    def _cold_run(self, k: int, want: int) -> ColdMiss:
        """The run of cold chunks from ``chunks[k]`` a read still needs: about ``want``
        records (at least one chunk, at most ~4096 records), so a page loads no more
        than it can use."""
        chunks = self.chunks
        end = k
        records = size = 0
        budget = min(max(want, 1), 4096)
        while end < len(chunks) and chunks[end].payload is None and records < budget:
            records += len(chunks[end])
            size += sum(chunks[end].sizes)
            end += 1
        return ColdMiss(chunks[k].first, chunks[end - 1].first, size)
