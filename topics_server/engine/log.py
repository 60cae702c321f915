"""One topic instance: its records, watermarks, retention and tombstones.

The records of the instance sit in one list in ascending seq order. ``lo`` marks
the first entry still present; everything before it was evicted or deleted and
is dropped from the list at the next compaction. A delete in the middle only
adds the seq to ``deleted`` until compaction, so removal stays O(1) amortised.

Watermarks (SPEC §5.1):

* ``head`` - the highest assigned seq;
* ``earliest_seq`` - the first live seq, ``head + 1`` when none is live;
* ``evict_floor`` - one past the highest seq lost *involuntarily* (cap, TTL,
  router source trim). Deletes never move it. A reader whose cursor is below
  it gets a tombstone; a reader in a purely deleted range moves on silently.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_right
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sortedcontainers import SortedDict

from topics_server.engine.config import TopicConfig
from topics_server.engine.idempotency import IdempotencyTable
from topics_server.engine.predicates import TagPredicate
from topics_server.engine.records import SEQ, SIZE, TAG, TS, Pending, Record, record_key

__all__ = ["ReadResult", "TopicLog", "Totals"]

# A read that only skips (deleted or node-filtered records) stops after this many
# examined seqs so one request never walks an unbounded log (SPEC §4.2 allows it).
SCAN_BUDGET = 65_536


class Totals:
    """Server-wide live counters, shared by every topic."""

    __slots__ = ("bytes", "records")

    def __init__(self) -> None:
        self.records = 0
        self.bytes = 0


@dataclass(slots=True)
class ReadResult:
    records: list[Record]
    next_from_seq: int
    head_seq: int
    earliest_seq: int
    tombstone: dict[str, Any] | None
    scanned: int

    @property
    def caught_up(self) -> bool:
        return self.next_from_seq == self.head_seq


class TopicLog:
    def __init__(self, name: str, instance_id: int, config: TopicConfig, totals: Totals) -> None:
        self.name = name
        self.instance_id = instance_id
        self.config = config
        self.totals = totals
        self.records: list[Record] = []
        self.lo = 0
        self.deleted: set[int] = set()  # deleted seqs still in the list at or after lo
        self.head = 0
        self.evict_floor = 1
        self.count = 0
        self.bytes = 0
        self.cap_hi = 0  # highest seq evicted by a cap
        self.ttl_hi = 0  # highest seq expired by TTL
        self.trim_hi = 0  # highest seq lost by a router source trim
        self.last_ts = 0
        self.last_write_ts: int | None = None
        self.last_read_ts: int | None = None
        self.tags: SortedDict[str, deque[int]] = SortedDict()  # tag -> seqs, ascending
        self.idempotency = IdempotencyTable()
        self.waiters: list[asyncio.Future[None]] = []
        self.removed = False

    # -- watermarks ---------------------------------------------------------

    @property
    def earliest_seq(self) -> int:
        return self.records[self.lo][SEQ] if self.lo < len(self.records) else self.head + 1

    # -- notification -------------------------------------------------------

    def notify(self) -> None:
        """Wake every reader parked on this topic (long-poll, watch, routers)."""
        waiters, self.waiters = self.waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def wait_change(self, timeout: float) -> bool:
        """Park until the next append (or removal); False on timeout."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            if not fut.done():
                fut.cancel()
            if fut in self.waiters:
                self.waiters.remove(fut)

    # -- writes -------------------------------------------------------------

    def append(self, batch: list[Pending], now: int) -> tuple[int, int]:
        """Give ``batch`` its seqs and timestamp and make it live; returns (first, last)."""
        ts = now if now > self.last_ts else self.last_ts
        first = self.head + 1
        seq = self.head
        size = 0
        tags = self.tags
        records = self.records
        for node, tag, data, meta, rsize, hops in batch:
            seq += 1
            records.append((seq, ts, node, tag, data, meta, rsize, hops))
            size += rsize
            if tag is not None:
                index = tags.get(tag)
                if index is None:
                    tags[tag] = deque((seq,))
                else:
                    index.append(seq)
        self.head = seq
        self.last_ts = ts
        self.last_write_ts = now
        self.count += len(batch)
        self.bytes += size
        self.totals.records += len(batch)
        self.totals.bytes += size
        return first, seq

    # -- retention ----------------------------------------------------------

    def apply_retention(self, now: int) -> None:
        """Expire by TTL, then evict while over a cap (``discard: "old"``)."""
        config = self.config
        if config.ttl_ms:
            cutoff = now - config.ttl_ms
            records = self.records
            while self.lo < len(records) and records[self.lo][TS] < cutoff:
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
        record = self.records[self.lo]
        self._forget(record)
        seq = record[SEQ]
        self.evict_floor = seq + 1
        if reason == "cap":
            self.cap_hi = seq
        elif reason == "ttl":
            self.ttl_hi = seq
        else:
            self.trim_hi = seq
        self.lo += 1
        self._advance()

    def _forget(self, record: Record) -> None:
        """Take a live record out of the counters and the tag index."""
        size = record[SIZE]
        self.count -= 1
        self.bytes -= size
        self.totals.records -= 1
        self.totals.bytes -= size
        tag = record[TAG]
        if tag is not None:
            index = self.tags.get(tag)
            if index is not None:
                if index[0] == record[SEQ]:
                    index.popleft()
                else:
                    index.remove(record[SEQ])
                if not index:
                    del self.tags[tag]

    def _advance(self) -> None:
        """Move ``lo`` past deleted records; compact once enough is dead."""
        records = self.records
        deleted = self.deleted
        if deleted:
            while self.lo < len(records) and records[self.lo][SEQ] in deleted:
                deleted.discard(records[self.lo][SEQ])
                self.lo += 1
        if self.lo > 4096 and self.lo * 2 > len(records):
            del records[: self.lo]
            self.lo = 0
        if len(deleted) > 4096 and len(deleted) * 2 > len(records) - self.lo:
            self.records = [r for r in records[self.lo :] if r[SEQ] not in deleted]
            self.lo = 0
            deleted.clear()

    # -- deletes (SPEC §7) --------------------------------------------------

    def delete_seqs(self, seqs: Iterable[int]) -> int:
        """Delete the given seqs where live; returns how many were deleted."""
        deleted = 0
        for seq in seqs:
            record = self.find(seq)
            if record is not None:
                self._delete(record)
                deleted += 1
        if deleted:
            self._advance()
        return deleted

    def delete_before(self, before_seq: int) -> int:
        deleted = 0
        records = self.records
        gone = self.deleted
        i = self.lo
        while i < len(records) and records[i][SEQ] < before_seq:
            if records[i][SEQ] not in gone:
                self._forget(records[i])
                deleted += 1
            i += 1
        # the deleted records are a prefix: drop them outright
        for record in records[self.lo : i]:
            gone.discard(record[SEQ])
        self.lo = i
        self._advance()
        return deleted

    def delete_matching(self, predicate: TagPredicate, before_seq: int | None) -> int:
        """Delete tagged records matching ``predicate`` (and ``$seq < before_seq``).

        Uses the tag index: an ``Eq`` is one look-up, a ``Glob`` a range of
        tags sharing the prefix; the log itself is never scanned.
        """
        bound = self.head + 1 if before_seq is None else min(before_seq, self.head + 1)
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
        return self.delete_seqs(victims)

    def _delete(self, record: Record) -> None:
        self._forget(record)
        self.deleted.add(record[SEQ])

    def find(self, seq: int) -> Record | None:
        """The live record with ``seq``, if any."""
        records = self.records
        i = bisect_right(records, seq, lo=self.lo, key=record_key) - 1
        if i >= self.lo:
            record = records[i]
            if record[SEQ] == seq and seq not in self.deleted:
                return record
        return None

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
    ) -> ReadResult:
        """Records after ``from_seq`` (SPEC §4.2); call :meth:`apply_retention` first."""
        tombstone, start = self.tombstone(from_seq)
        if nodes is not None and not self.config.dedupe_node:
            nodes = None
        records = self.records
        deleted = self.deleted
        end = len(records)
        i = bisect_right(records, start, lo=self.lo, key=record_key)
        out: list[Record] = []
        total = 0
        scanned = 0
        next_from = start
        budget = max(limit, SCAN_BUDGET)
        while i < end:
            record = records[i]
            scanned += 1
            seq = record[0]
            if (deleted and seq in deleted) or (nodes is not None and record[2] in nodes):
                next_from = seq
                i += 1
                if scanned >= budget and not out:
                    break
                continue
            size = record[6]
            if out and total + size > max_bytes:
                next_from = seq - 1
                break
            out.append(record)
            total += size
            next_from = seq
            if len(out) >= limit:
                break
            i += 1
        else:
            next_from = self.head
        return ReadResult(out, next_from, self.head, self.earliest_seq, tombstone, scanned)
