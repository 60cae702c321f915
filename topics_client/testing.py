"""Assertions for tests that talk to a topics server: wait with a deadline, check a range.

The two things people get wrong by hand are waiting (a bare ``sleep`` that is too short on a
busy CI machine and too long everywhere else) and checking completeness (``len(records) == n``
passes when a record was evicted and another written twice). These helpers poll the real
server until a deadline and fail with a message that says what was missing and why::

    from topics_client.testing import assert_complete, wait_for_records

    client.topics.write("orders", [{"id": i} for i in range(100)])
    records = wait_for_records(client, "orders", 100)
    assert_complete(client, "orders", 1, 100)

Each has an ``async`` twin (``async_wait_for_records``, ``async_assert_complete``,
``async_wait_until``) for :class:`~topics_client.AsyncClient`. The pytest plugin
(:mod:`topics_client.pytest_plugin`) provides the server, clients and throwaway topics.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from ._client import AsyncClient, Client
    from ._models import DiffResult, Gap, Record

__all__ = [
    "Missing",
    "assert_complete",
    "async_assert_complete",
    "async_wait_for_records",
    "async_wait_until",
    "missing_ranges",
    "wait_for_records",
    "wait_until",
]

T = TypeVar("T")

DEFAULT_TIMEOUT = 10.0
_POLL_S = 0.02
_LONG_POLL_MS = 500


def wait_until(
    predicate: Callable[[], T], *, timeout: float = DEFAULT_TIMEOUT, message: str = ""
) -> T:
    """Call ``predicate`` until it returns something truthy and return that; past
    ``timeout`` seconds raise ``AssertionError`` naming ``message`` and the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(_timed_out(message or "condition", timeout, value))
        time.sleep(_POLL_S)


async def async_wait_until(
    predicate: Callable[[], Awaitable[T]], *, timeout: float = DEFAULT_TIMEOUT, message: str = ""
) -> T:
    """:func:`wait_until` for a coroutine predicate."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(_timed_out(message or "condition", timeout, value))
        await asyncio.sleep(_POLL_S)


def _timed_out(what: str, timeout: float, last: object) -> str:
    return f"{what} not met within {timeout:g} s (last value: {last!r})"


# ------------------------------------------------------------------ waiting for records


class _Collector:
    """Records read so far while waiting (the sync and async waits share it)."""

    def __init__(self, topic: str, count: int) -> None:
        self.topic = topic
        self.count = count
        self.records: list[Record] = []
        self.gaps: list[Gap] = []
        self.cursor = 0

    def take(self, page: DiffResult, gap: Gap | None) -> bool:
        if gap is not None:
            self.gaps.append(gap)
        self.records.extend(page.records)
        self.cursor = page.next_from_seq
        return len(self.records) >= self.count

    def failure(self, timeout: float) -> AssertionError:
        seqs = [record.seq for record in self.records]
        seen = f"{len(seqs)} ({_ranges_text(seqs)})" if seqs else "none"
        text = (
            f"topic {self.topic!r}: expected {self.count} records within {timeout:g} s; saw {seen}"
        )
        for gap in self.gaps:
            text += f"\n  gap {_span(gap.gap_from, gap.gap_to)}: {gap.reason}, never readable"
        return AssertionError(text)


def wait_for_records(
    client: Client, topic: str, count: int, *, from_seq: int = 0, timeout: float = DEFAULT_TIMEOUT
) -> list[Record]:
    """Read ``topic`` after ``from_seq`` until ``count`` records arrived; return them.

    Long-polls the server (no busy loop); a topic that does not exist yet counts as empty.
    Past ``timeout`` the ``AssertionError`` lists the seqs that did arrive and any gap met.
    """
    from ._exceptions import TopicNotFoundError

    seen = _Collector(topic, count)
    seen.cursor = from_seq
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise seen.failure(timeout)
        wait_ms = max(1, min(_LONG_POLL_MS, int(remaining * 1000)))
        try:
            page = client.topics.diff(topic, from_seq=seen.cursor, wait_ms=wait_ms)
        except TopicNotFoundError:
            time.sleep(min(_POLL_S, remaining))
            continue
        if seen.take(page, _gap_of(page, seen.cursor)):
            return seen.records[:count]


async def async_wait_for_records(
    client: AsyncClient,
    topic: str,
    count: int,
    *,
    from_seq: int = 0,
    timeout: float = DEFAULT_TIMEOUT,
) -> list[Record]:
    """:func:`wait_for_records` for an :class:`~topics_client.AsyncClient`."""
    from ._exceptions import TopicNotFoundError

    seen = _Collector(topic, count)
    seen.cursor = from_seq
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise seen.failure(timeout)
        wait_ms = max(1, min(_LONG_POLL_MS, int(remaining * 1000)))
        try:
            page = await client.topics.diff(topic, from_seq=seen.cursor, wait_ms=wait_ms)
        except TopicNotFoundError:
            await asyncio.sleep(min(_POLL_S, remaining))
            continue
        if seen.take(page, _gap_of(page, seen.cursor)):
            return seen.records[:count]


# ------------------------------------------------------------------ completeness


@dataclass(frozen=True, slots=True)
class Missing:
    """A run of seqs a range check did not find, and what the server said about them."""

    first: int
    last: int
    reason: str  # a tombstone's reason ("cap", "ttl", …) or "absent"

    def __str__(self) -> str:
        if self.reason == "absent":
            why = "absent: deleted, or never written"
        else:
            why = f"evicted ({self.reason}): the server answered with a tombstone"
        return f"{_span(self.first, self.last)}  {why}"


def missing_ranges(
    first: int, last: int, present: set[int], gaps: list[tuple[int, int, str]]
) -> list[Missing]:
    """The runs of ``first..last`` not in ``present``, each labelled with the reason of the
    tombstone covering it (``gaps`` as ``(from, to, reason)``) or ``"absent"``."""

    def reason_of(seq: int) -> str:
        for gap_from, gap_to, reason in gaps:
            if gap_from <= seq <= gap_to:
                return reason
        return "absent"

    runs: list[Missing] = []
    for seq in range(first, last + 1):
        if seq in present:
            continue
        reason = reason_of(seq)
        if runs and runs[-1].last == seq - 1 and runs[-1].reason == reason:
            runs[-1] = Missing(runs[-1].first, seq, reason)
        else:
            runs.append(Missing(seq, seq, reason))
    return runs


def _complete_or_fail(
    topic: str, first: int, last: int, present: set[int], gaps: list[tuple[int, int, str]]
) -> None:
    runs = missing_ranges(first, last, present, gaps)
    if not runs:
        return
    count = sum(run.last - run.first + 1 for run in runs)
    total = last - first + 1
    lines = [f"topic {topic!r} is missing {count} of {total} seqs in {_span(first, last)}:"]
    lines += [f"  {run}" for run in runs[:20]]
    if len(runs) > 20:
        lines.append(f"  … and {len(runs) - 20} more runs")
    raise AssertionError("\n".join(lines))


def assert_complete(client: Client, topic: str, first: int = 1, last: int | None = None) -> None:
    """Assert every seq of ``first..last`` (``last`` defaults to the head) is readable.

    The failure names each missing run and why: the tombstone's reason when records were
    evicted before they could be read (cap, TTL, …), else absent (deleted, or never written).
    """
    if last is None:
        last = client.topics.get(topic, touch=False).head_seq
    present: set[int] = set()
    gaps: list[tuple[int, int, str]] = []
    if last >= first:
        for item in client.topics.replay(topic, from_seq=first - 1, until_seq=last):
            _take(item, present, gaps)
    _complete_or_fail(topic, first, last, present, gaps)


async def async_assert_complete(
    client: AsyncClient, topic: str, first: int = 1, last: int | None = None
) -> None:
    """:func:`assert_complete` for an :class:`~topics_client.AsyncClient`."""
    if last is None:
        last = (await client.topics.get(topic, touch=False)).head_seq
    present: set[int] = set()
    gaps: list[tuple[int, int, str]] = []
    if last >= first:
        async for item in client.topics.replay(topic, from_seq=first - 1, until_seq=last):
            _take(item, present, gaps)
    _complete_or_fail(topic, first, last, present, gaps)


def _gap_of(page: DiffResult, cursor: int) -> Gap | None:
    from ._models import Gap

    return (
        None if page.tombstone is None else Gap.from_tombstone(page.topic, page.tombstone, cursor)
    )


def _take(item: Record | Gap, present: set[int], gaps: list[tuple[int, int, str]]) -> None:
    from ._models import Gap

    if isinstance(item, Gap):
        gaps.append((item.gap_from, item.gap_to, item.reason))
    else:
        present.add(item.seq)


def _span(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}..{last}"


def _ranges_text(seqs: list[int]) -> str:
    runs: list[tuple[int, int]] = []
    for seq in sorted(seqs):
        if runs and runs[-1][1] == seq - 1:
            runs[-1] = (runs[-1][0], seq)
        else:
            runs.append((seq, seq))
    text = ", ".join(_span(a, b) for a, b in runs[:10])
    return text + (", …" if len(runs) > 10 else "")
