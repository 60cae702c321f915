"""Replay a topic through ``/diff`` with explicit gaps.

``client.topics.replay("orders", from_seq=c)`` pages through ``POST …/diff`` until
``caught_up`` (or, with ``follow=True``, keeps long-polling) and yields records and
:class:`~topics_client.Gap` events in order, so a consumer can never pass lost seqs
without being told::

    replay = client.topics.replay("orders", from_seq=load_checkpoint(path).get("orders", 0))
    for batch in replay.batches():
        handle(batch.gap, batch.records)
        save_checkpoint(path, {"orders": batch.next_from_seq})

Iterating the replay itself yields ``Record | Gap`` one by one; ``replay.next_from_seq``
is always the cursor to resume from after what has been handed out so far. Gap policy:
``on_gap="yield"`` (default), ``"raise"`` (:class:`~topics_client.GapError`, cursor left
before the gap) or a callback ``on_gap(gap)``.

The paging decisions live in :class:`ReplayState` and the time seek in :func:`seek_flow`
(a generator the sync and async drivers feed with probe results) and
:func:`evicted_into_window`, so only I/O is duplicated. ``replay(since=T)`` asks for
everything since ``T``: records evicted before they could be read come back as a ``Gap``
whenever they may be from that window.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Generator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ._config import DEFAULT_FOLLOW_WAIT_MS, DEFAULT_REPLAY_LIMIT
from ._exceptions import GapError
from ._models.records import DiffResult, Gap, Record
from ._twins import twin_of

if TYPE_CHECKING:
    from .resources.topics import AsyncTopics, Topics

__all__ = [
    "AsyncReplay",
    "GapPolicy",
    "Replay",
    "ReplayBatch",
    "ReplayState",
    "evicted_into_window",
    "seek_flow",
    "seek_plan",
]

GapPolicy = Literal["yield", "raise"] | Callable[[Gap], None]


@dataclass(frozen=True, slots=True)
class ReplayBatch:
    """One diff page as the replay saw it; checkpoint ``next_from_seq`` after handling it."""

    topic: str
    records: tuple[Record, ...]
    gap: Gap | None
    next_from_seq: int
    head_seq: int
    caught_up: bool


class ReplayState:
    """Pure paging state: what to ask next (:meth:`request`), and what a diff answer means
    (:meth:`advance`, or :meth:`step` for a caller that decodes the answer itself)::

        state = ReplayState("orders", cursor, until_seq=head)
        while not state.done:
            page = post_diff(**state.request())
            state.step(page["next_from_seq"], page["caught_up"])
    """

    def __init__(
        self,
        topic: str,
        from_seq: int,
        *,
        until_seq: int | None = None,
        follow: bool = False,
        limit: int = DEFAULT_REPLAY_LIMIT,
        wait_ms: int = DEFAULT_FOLLOW_WAIT_MS,
        on_gap: GapPolicy = "yield",
    ) -> None:
        if from_seq < 0:
            raise ValueError("from_seq must be >= 0")
        self.topic = topic
        self.cursor = from_seq
        self.until_seq = until_seq
        self.follow = follow
        self.limit = limit
        self.wait_ms = wait_ms
        self.on_gap = on_gap
        self.done = until_seq is not None and from_seq >= until_seq

    def restart(self, cursor: int) -> int:
        """Start from ``cursor`` instead (the result of a time seek); returns it."""
        self.cursor = cursor
        self.done = self.until_seq is not None and cursor >= self.until_seq
        return cursor

    def request(self) -> dict[str, Any]:
        limit = self.limit
        if self.until_seq is not None:
            # Never fetch (much) beyond the bound; missing seqs only make pages shorter.
            limit = max(1, min(limit, self.until_seq - self.cursor))
        body: dict[str, Any] = {"from_seq": self.cursor, "limit": limit}
        if self.follow:
            body["wait_ms"] = self.wait_ms
        return body

    def advance(self, diff: DiffResult) -> ReplayBatch:
        """Fold one diff answer in; raises :class:`GapError` (state untouched) per policy."""
        gap = None
        if diff.tombstone is not None:
            gap = Gap.from_tombstone(self.topic, diff.tombstone, self.cursor)
            if self.on_gap == "raise":
                raise GapError(gap)
            if callable(self.on_gap):
                self.on_gap(gap)
        cursor = self.step(diff.next_from_seq, diff.caught_up)
        records = diff.records
        if records and records[-1].seq > cursor:  # past until_seq
            records = tuple(r for r in records if r.seq <= cursor)
        return ReplayBatch(self.topic, records, gap, cursor, diff.head_seq, diff.caught_up)

    def step(self, next_from_seq: int, caught_up: bool) -> int:
        """Move past one diff answer (its ``next_from_seq`` and ``caught_up``): returns the
        new cursor, never past ``until_seq`` (records above it are not part of the replay),
        and sets ``done`` at the bound or, without ``follow``, once caught up. The whole
        fold for a caller that reads the answer itself (undecoded pages, say)."""
        cursor = next_from_seq
        until = self.until_seq
        if until is not None and cursor >= until:
            cursor = until
        if (until is not None and cursor >= until) or (caught_up and not self.follow):
            self.done = True
        self.cursor = cursor
        return cursor


def seek_flow(
    since_ms: int, earliest_seq: int, head_seq: int
) -> Generator[int, Record | None, int]:
    """Binary search for the cursor just before the first record with ``$ts >= since_ms``.

    Yields probe cursors ``c``; the driver answers with the first live record after ``c``
    (a diff with ``limit: 1``) or ``None``. Seqs may be missing (deleted, filtered), so a
    probe answering record ``r`` with ``r.ts < since`` proves every cursor below ``r.seq``
    too early and the search jumps to ``r.seq``. Returns the cursor to replay from.
    """
    lo, hi = max(0, earliest_seq - 1), max(0, head_seq)
    while lo < hi:
        mid = (lo + hi) // 2
        record = yield mid
        if record is None or record.ts >= since_ms:
            hi = mid
        else:
            lo = max(mid + 1, record.seq)
    return lo


def evicted_into_window(first: DiffResult, cursor: int) -> bool:
    """Whether records evicted below the live log may lie inside a time seek's window.

    ``first`` is the read at ``from_seq=0``; its tombstone says records below the live log
    were lost involuntarily (cap, TTL, source trim). Their times are gone with them, so
    when the seek found no live record older than ``since`` (``cursor`` is the bottom of
    the live log) nothing shows they were older: the replay must start at ``0`` so its
    first read reports them as a :class:`~topics_client.Gap`. A seek that found an older
    live record proves every evicted one older too (``$ts`` never decreases with ``$seq``).
    """
    return first.tombstone is not None and cursor <= max(0, first.earliest_seq - 1)


def seek_plan(since_ms: int) -> Generator[int | None, Any, int]:
    """The whole time seek as one flow both drivers (``topics.seek``) run.

    Yields ``c`` for a one-record diff at cursor ``c`` (send back the ``DiffResult``) or
    ``None`` for the topic's state (send back the ``TopicState``); returns the cursor. See
    :func:`seek_flow` for the search and :func:`evicted_into_window` for the gap rule.
    """
    first = yield 0
    search = seek_flow(since_ms, first.earliest_seq, first.head_seq)
    try:
        probe = next(search)
        while True:
            found = yield probe
            probe = search.send(found.records[0] if found.records else None)
    except StopIteration as stop:
        cursor: int = stop.value
    if not evicted_into_window(first, cursor):
        return cursor
    if not first.records:
        # Nothing is live: only the time of the last write can clear the window.
        state = yield None
        if state.last_write_ts is not None and state.last_write_ts < since_ms:
            return cursor
    return 0


def _diff_options(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if v is not None}


class Replay:
    """Sync replay; iterate it for ``Record | Gap`` or call :meth:`batches`."""

    def __init__(
        self,
        topics: Topics,
        state: ReplayState,
        *,
        since_ms: int | None = None,
        diff_options: dict[str, Any] | None = None,
    ) -> None:
        self._topics = topics
        self._state = state
        self._since_ms = since_ms
        self._options = _diff_options(diff_options or {})
        self._position = state.cursor

    @property
    def topic(self) -> str:
        return self._state.topic

    @property
    def next_from_seq(self) -> int:
        """Resume cursor covering everything handed out so far."""
        return self._position

    def _seek(self) -> None:
        if self._since_ms is None:
            return
        since, self._since_ms = self._since_ms, None
        self._position = self._state.restart(self._topics.seek(self.topic, since))

    def batches(self) -> Iterator[ReplayBatch]:
        self._seek()
        state = self._state
        while not state.done:
            diff = self._topics.diff(self.topic, **state.request(), **self._options)
            batch = state.advance(diff)
            self._position = batch.next_from_seq
            yield batch

    def __iter__(self) -> Iterator[Record | Gap]:
        yield_gaps = self._state.on_gap == "yield"
        for batch in self.batches():
            end = batch.next_from_seq
            if batch.gap is not None and yield_gaps:
                self._position = batch.gap.resume_from
                yield batch.gap
            for record in batch.records:
                self._position = record.seq
                yield record
            self._position = end


@twin_of(Replay)
class AsyncReplay:
    """Async twin of :class:`Replay`: ``async for item in replay`` / ``replay.batches()``."""

    def __init__(
        self,
        topics: AsyncTopics,
        state: ReplayState,
        *,
        since_ms: int | None = None,
        diff_options: dict[str, Any] | None = None,
    ) -> None:
        self._topics = topics
        self._state = state
        self._since_ms = since_ms
        self._options = _diff_options(diff_options or {})
        self._position = state.cursor

    @property
    def topic(self) -> str:
        return self._state.topic

    @property
    def next_from_seq(self) -> int:
        return self._position

    async def _seek(self) -> None:
        if self._since_ms is None:
            return
        since, self._since_ms = self._since_ms, None
        self._position = self._state.restart(await self._topics.seek(self.topic, since))

    async def batches(self) -> AsyncIterator[ReplayBatch]:
        await self._seek()
        state = self._state
        while not state.done:
            diff = await self._topics.diff(self.topic, **state.request(), **self._options)
            batch = state.advance(diff)
            self._position = batch.next_from_seq
            yield batch

    async def __aiter__(self) -> AsyncIterator[Record | Gap]:
        yield_gaps = self._state.on_gap == "yield"
        async for batch in self.batches():
            end = batch.next_from_seq
            if batch.gap is not None and yield_gaps:
                self._position = batch.gap.resume_from
                yield batch.gap
            for record in batch.records:
                self._position = record.seq
                yield record
            self._position = end
