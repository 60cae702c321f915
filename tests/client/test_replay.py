"""Replay: paging, gaps, cursors, bounds, follow and seek-by-time."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import orjson
import pytest
import respx
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.client.conftest import Facade
from topics_client import AsyncClient, Client, Gap, GapError, Record
from topics_client._replay import seek_flow


def test_replay_pages_and_checkpoints_batches(client: Client, topic: str) -> None:
    client.topics.write(topic, [{"data": i} for i in range(25)])
    client.topics.delete_records(topic, match="x")  # no-op predicate, still valid
    replay = client.topics.replay(topic, limit=10)
    cursors = []
    for batch in replay.batches():
        cursors.append((len(batch.records), batch.next_from_seq, replay.next_from_seq))
    assert cursors == [(10, 10, 10), (10, 20, 20), (5, 25, 25)]


def test_replay_cursor_tracks_each_record(client: Client, topic: str) -> None:
    client.topics.write(topic, [{"data": i} for i in range(6)])
    client.topics.delete_records(topic, before_seq=3)
    replay = client.topics.replay(topic, from_seq=0, limit=2)
    seen = []
    for item in replay:
        assert isinstance(item, Record)
        seen.append((item.seq, replay.next_from_seq))
    assert seen == [(3, 3), (4, 4), (5, 5), (6, 6)] and replay.next_from_seq == 6


def test_replay_until_seq(api: Facade, topic: str) -> None:
    api.topics.write(topic, [{"data": i} for i in range(20)])
    items = api.topics.replay(topic, from_seq=4, until_seq=9, limit=3)
    assert [r.seq for r in items] == [5, 6, 7, 8, 9]


def test_gap_policies(client: Client, topic: str) -> None:
    client.topics.put(topic, cap_records=5)
    client.topics.write(topic, [{"data": i} for i in range(12)])
    replay = client.topics.replay(topic, on_gap="raise")
    with pytest.raises(GapError) as info:
        list(replay)
    assert (info.value.gap.gap_from, info.value.gap.gap_to) == (1, 7)
    assert replay.next_from_seq == 0  # never moved past the gap
    got: list[Gap] = []
    records = list(client.topics.replay(topic, on_gap=got.append))
    assert [g.gap_to for g in got] == [7] and [r.seq for r in records] == [8, 9, 10, 11, 12]
    resumed = list(client.topics.replay(topic, from_seq=info.value.gap.resume_from))
    assert [r.seq for r in resumed] == [8, 9, 10, 11, 12]


def _write_later(base_url: str, topic: str, start: threading.Event) -> None:
    start.wait(10)
    with Client(base_url) as writer:
        for i in range(3):
            writer.topics.append(topic, i)


def test_follow_until_seq_long_polls(client: Client, base_url: str, topic: str) -> None:
    client.topics.append(topic, "first")
    go = threading.Event()
    thread = threading.Thread(target=_write_later, args=(base_url, topic, go))
    thread.start()
    try:
        replay = client.topics.replay(topic, follow=True, until_seq=4, wait_ms=5000)
        seen = []
        for item in replay:
            assert isinstance(item, Record)
            seen.append(item.seq)
            go.set()
    finally:
        go.set()
        thread.join(10)
    assert seen == [1, 2, 3, 4]


def _tick(after_ms: int) -> None:
    """Wait (bounded) until the wall clock has moved past ``after_ms``."""
    deadline = time.monotonic() + 1.0
    while time.time() * 1000 <= after_ms + 1 and time.monotonic() < deadline:
        time.sleep(0.002)


def test_seek_by_time(api: Facade, topic: str) -> None:
    first = api.topics.write(topic, [{"data": i} for i in range(7)])
    api.topics.delete_records(topic, before_seq=3)
    ts_old = api.topics.diff(topic, from_seq=first.last_seq - 1).records[0].ts
    _tick(ts_old)
    api.topics.write(topic, [{"data": "new"} for _ in range(3)])
    api.topics.delete_records(topic, match="none")
    new = api.topics.diff(topic, from_seq=first.last_seq).records
    since = new[0].ts
    items = api.topics.replay(topic, since=since)
    assert [r.seq for r in items] == [8, 9, 10]
    assert api.topics.replay(topic, since=0)[0].seq == 3
    assert api.topics.replay(topic, since=since + 10_000) == []


@given(
    ts=st.lists(st.integers(0, 50), min_size=0, max_size=40).map(sorted),
    live=st.lists(st.booleans(), min_size=40, max_size=40),
    since=st.integers(-1, 52),
)
def test_seek_flow_finds_first_record_at_or_after(
    ts: list[int], live: list[bool], since: int
) -> None:
    records = [Record(i + 1, t) for i, t in enumerate(ts) if live[i]]

    def probe(cursor: int) -> Record | None:
        return next((r for r in records if r.seq > cursor), None)

    earliest = records[0].seq if records else len(ts) + 1
    flow = seek_flow(since, earliest, len(ts))
    try:
        cursor = next(flow)
        for _ in range(64):
            cursor = flow.send(probe(cursor))
        raise AssertionError("seek did not converge")
    except StopIteration as stop:
        start = stop.value
    expected = next((r for r in records if r.ts >= since), None)
    assert probe(start) == expected


# ---------------------------------------------------------------- gap accounting (model)


@dataclass
class ModelLog:
    """A topic whose floor rises and whose records vanish while a replay pages through it."""

    head: int
    deleted: set[int]
    floor: int = 1
    evictions: list[int] = field(default_factory=list)

    def diff(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.evictions:  # something is evicted between pages
            self.floor = max(self.floor, min(self.head + 1, self.evictions.pop(0)))
        cursor, limit = body["from_seq"], body["limit"]
        earliest = next(
            (s for s in range(self.floor, self.head + 1) if s not in self.deleted), self.head + 1
        )
        tomb = None
        if cursor + 1 < self.floor:
            tomb = {
                "gap_from": cursor + 1,
                "gap_to": self.floor - 1,
                "reason": "cap",
                "missed_estimate": self.floor - 1 - cursor,
                "earliest_seq": self.floor,
                "head_seq": self.head,
            }
            cursor = max(earliest - 1, cursor)
        records, seq = [], cursor
        while seq < self.head and len(records) < limit:
            seq += 1
            if seq >= self.floor and seq not in self.deleted:
                records.append({"$seq": seq, "$ts": seq, "data": seq})
        return {
            "topic": "m",
            "records": records,
            "next_from_seq": seq,
            "head_seq": self.head,
            "earliest_seq": earliest,
            "caught_up": seq == self.head,
            "tombstone": tomb,
            "lag": self.head - seq,
        }


@settings(max_examples=120, deadline=None)
@given(
    head=st.integers(0, 60),
    deleted=st.sets(st.integers(1, 60), max_size=20),
    evictions=st.lists(st.integers(1, 61), max_size=6),
    start=st.integers(0, 60),
    limit=st.integers(1, 7),
)
def test_gap_accounting_never_skips_silently(
    head: int, deleted: set[int], evictions: list[int], start: int, limit: int
) -> None:
    start = min(start, head)
    model = ModelLog(head, deleted, 1, list(evictions))

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=orjson.dumps(model.diff(orjson.loads(request.content))))

    with Client("http://m", transport=httpx.MockTransport(handler)) as client:
        items = list(client.topics.replay("m", from_seq=start, limit=limit))
    delivered = [i.seq for i in items if isinstance(i, Record)]
    gaps = [i for i in items if isinstance(i, Gap)]
    assert delivered == sorted(set(delivered))  # strictly increasing, no duplicates
    covered = {s for g in gaps for s in range(g.gap_from, g.gap_to + 1)}
    assert not covered & set(delivered)
    for seq in range(start + 1, head + 1):
        # Every seq after the start is delivered, deleted (silent by contract) or in a gap.
        assert seq in delivered or seq in deleted or seq in covered, seq
    for gap in gaps:  # each gap comes before every record it precedes
        later = [s for s in delivered if s > gap.gap_to]
        assert items.index(gap) < (
            items.index(next(r for r in items if isinstance(r, Record) and r.seq == later[0]))
            if later
            else len(items)
        )


def test_async_replay_batches_and_seek(base_url: str, topic: str) -> None:
    async def main() -> tuple[list[int], list[int]]:
        async with AsyncClient(base_url) as client:
            await client.topics.write(topic, [{"data": i} for i in range(9)])
            replay = client.topics.replay(topic, limit=4)
            batches = [b.next_from_seq async for b in replay.batches()]
            seqs = [r.seq async for r in client.topics.replay(topic, since=0, until_seq=3)]
            return batches, seqs

    assert anyio.run(main) == ([4, 8, 9], [1, 2, 3])


def test_since_before_evicted_records_reports_the_gap(api: Facade, topic: str) -> None:
    """``replay(since=T)`` asks for everything since T: records evicted before they could
    be read come back as a Gap, never as a silent start at the earliest live record."""
    api.topics.put(topic, cap_records=3)
    api.topics.write(topic, [{"data": "t0"}, {"data": "t0"}])  # seqs 1-2, evicted below
    t0 = api.topics.diff(topic).records[0].ts
    _tick(t0)
    api.topics.append(topic, "t1")  # seq 3
    t1 = api.topics.diff(topic, from_seq=2).records[0].ts
    _tick(t1)
    api.topics.write(topic, [{"data": "t2"}, {"data": "t2"}])  # seqs 4-5: 1-2 evicted
    t2 = api.topics.diff(topic, from_seq=4).records[0].ts
    assert t0 < t1 < t2

    items = api.topics.replay(topic, since=t0)
    gap = items[0]
    assert isinstance(gap, Gap) and (gap.gap_from, gap.gap_to, gap.reason) == (1, 2, "cap")
    assert [r.seq for r in items[1:]] == [3, 4, 5]
    assert api.topics.seek(topic, t0) == 0
    # A live record older than T proves every evicted one older too: no gap.
    assert [r.seq for r in api.topics.replay(topic, since=t2)] == [4, 5]
    assert api.topics.seek(topic, t2) == 3


@pytest.mark.parametrize("last_write_ts,cursor", [(1_000, 5), (5_000, 0), (None, 0)])
def test_seek_on_a_fully_evicted_topic(last_write_ts: int | None, cursor: int) -> None:
    """Nothing live (all five records expired): only the last write's time can show that
    nothing since T was lost. Injected with respx: a TTL this short is a timing race."""
    tomb = {"gap_from": 1, "gap_to": 5, "reason": "ttl", "earliest_seq": 6, "head_seq": 5}
    diff = {
        "topic": "t",
        "records": [],
        "next_from_seq": 5,
        "head_seq": 5,
        "earliest_seq": 6,
        "caught_up": True,
        "tombstone": tomb,
        "lag": 0,
    }
    state = {
        "topic": "t",
        "head_seq": 5,
        "earliest_seq": 6,
        "count": 0,
        "bytes": 0,
        "config": {},
        "last_write_ts": last_write_ts,
    }
    with respx.mock(base_url="http://h") as mock, Client("http://h") as client:
        mock.post("/v0/topics/t/diff").respond(json=diff)
        mock.get("/v0/topics/t").respond(json=state)
        assert client.topics.seek("t", 2_000) == cursor
