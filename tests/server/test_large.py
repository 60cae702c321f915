"""Large topics (beyond what a server keeps in memory) and readers racing writers.

SPEC §4.2, §7 and §3.4 hold whatever the storage: records whose payloads are no
longer in memory read back verbatim, tag deletes still find them, and a reader
following `next_from_seq` while writers race never skips a record.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.server._helpers import diff, ok, put_topic, state, unique, write

N_BATCHES, BATCH = 4, 5000
TOTAL = N_BATCHES * BATCH


def _record(i: int) -> dict[str, Any]:
    record: dict[str, Any] = {"data": {"i": i}, "tag": f"g{i % 4}", "node": f"n{i % 3}"}
    if i % 5 == 0:
        record["meta"] = {"m": i}
    return record


def _read_all(http: httpx.Client, topic: str, **body: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = 0
    for _ in range(1000):
        page = diff(http, topic, from_seq=cursor, limit=1000, include_tags=True, **body)
        out.extend(page["records"])
        assert page["next_from_seq"] >= cursor
        cursor = page["next_from_seq"]
        if page["caught_up"]:
            return out
    raise AssertionError("paging did not finish")


def _fill(http: httpx.Client, topic: str) -> None:
    for b in range(N_BATCHES):
        body = write(http, topic, [_record(b * BATCH + k) for k in range(BATCH)])
        assert body["first_seq"] == b * BATCH + 1


def test_large_topic_reads_back_verbatim(http: httpx.Client, topic: str) -> None:
    _fill(http, topic)
    records = _read_all(http, topic)
    assert [r["$seq"] for r in records] == list(range(1, TOTAL + 1))
    for r in records:
        i = r["$seq"] - 1
        expected = _record(i)
        assert r["data"] == expected["data"]
        assert r["$tag"] == expected["tag"]
        assert r["$node"] == expected["node"]
        assert r.get("meta") == expected.get("meta")
    filtered = _read_all(http, topic, node=["n0", "n1"])
    assert [r["$seq"] - 1 for r in filtered] == [i for i in range(TOTAL) if i % 3 == 2]
    # seq 1 is 7 + 7 bytes (data + meta), then 7 bytes each: 28 fit in 30, 35 do not
    first = diff(http, topic, max_batch_bytes=30)
    assert [r["$seq"] for r in first["records"]] == [1, 2, 3]


def test_large_topic_tag_deletes(http: httpx.Client, topic: str) -> None:
    _fill(http, topic)
    body = ok(http.post(f"/v0/topics/{topic}/delete", json={"match": ["tag", "Eq", "g1"]}))
    assert body["deleted"] == TOTAL // 4
    assert body["count"] == TOTAL - TOTAL // 4
    body = ok(
        http.post(
            f"/v0/topics/{topic}/delete", json={"match": ["tag", "Glob", "g*"], "before_seq": 3001}
        )
    )
    gone = {i for i in range(TOTAL) if i % 4 == 1 or i < 3000}
    assert body["deleted"] == sum(1 for i in range(3000) if i % 4 != 1)
    assert body["count"] == TOTAL - len(gone)
    assert body["earliest_seq"] == 3001 + (1 if 3000 % 4 == 1 else 0)
    records = _read_all(http, topic)
    assert [r["$seq"] - 1 for r in records] == [i for i in range(TOTAL) if i not in gone]
    got = state(http, topic)
    assert got["count"] == TOTAL - len(gone)
    expected_bytes = 0
    for i in range(TOTAL):
        if i in gone:
            continue
        rec = _record(i)
        expected_bytes += len(f'{{"i":{i}}}')
        if "meta" in rec:
            expected_bytes += len(f'{{"m":{i}}}')
    assert got["bytes"] == expected_bytes


def test_large_topic_cap_eviction(http: httpx.Client, topic: str) -> None:
    _fill(http, topic)
    put_topic(http, topic, {"cap_records": 100}, status=200)
    got = state(http, topic)
    assert (got["count"], got["earliest_seq"], got["head_seq"]) == (100, TOTAL - 99, TOTAL)
    body = diff(http, topic)
    assert body["tombstone"] == {
        "gap_from": 1,
        "gap_to": TOTAL - 100,
        "reason": "cap",
        "missed_estimate": TOTAL - 100,
        "earliest_seq": TOTAL - 99,
        "head_seq": TOTAL,
    }
    assert [r["data"]["i"] for r in body["records"]] == list(range(TOTAL - 100, TOTAL))


def _follow(base_url: str, topic: str, total: int, seen: list[int], ts: list[int]) -> None:
    cursor = 0
    deadline = time.monotonic() + 10.0
    with httpx.Client(base_url=base_url, timeout=30.0) as client:
        while cursor < total and time.monotonic() < deadline:
            resp = client.post(
                f"/v0/topics/{topic}/diff",
                json={"from_seq": cursor, "limit": 1000, "wait_ms": 200},
            )
            if resp.status_code == 404:
                continue  # not created yet
            body = resp.json()
            assert body["tombstone"] is None, body["tombstone"]
            seen.extend(r["$seq"] for r in body["records"])
            ts.extend(r["$ts"] for r in body["records"])
            cursor = body["next_from_seq"]


@pytest.mark.parametrize("precreate", [False, True])
def test_reader_racing_writers_misses_nothing(
    http: httpx.Client, base_url: str, topic: str, precreate: bool
) -> None:
    """A cursor-following reader sees every seq exactly once, in order (§3.4, §4.2)."""
    if precreate:
        put_topic(http, topic, {}, status=201)
    workers, writes, size = 6, 25, 4
    total = workers * writes * size
    seen: list[int] = []
    ts: list[int] = []
    reader = threading.Thread(target=_follow, args=(base_url, topic, total, seen, ts))
    reader.start()

    def produce(w: int) -> None:
        with httpx.Client(base_url=base_url, timeout=30.0) as client:
            for i in range(writes):
                resp = client.post(
                    f"/v0/topics/{topic}",
                    json={"records": [{"data": [w, i, k]} for k in range(size)]},
                )
                assert resp.status_code in (200, 201), resp.text

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(produce, range(workers)))
    reader.join(40)
    assert not reader.is_alive()
    assert seen == list(range(1, total + 1))
    assert ts == sorted(ts), "$ts must be non-decreasing in seq"


def test_readers_racing_lazy_creation_miss_nothing(base_url: str) -> None:
    """The first writes to a topic race its creation; a reader must still see seq 1 on."""
    rounds, workers, writes = 8, 4, 3
    total = workers * writes
    failures = []
    for _ in range(rounds):
        topic = unique("race")
        seen: list[int] = []
        ts: list[int] = []
        reader = threading.Thread(target=_follow, args=(base_url, topic, total, seen, ts))
        reader.start()
        barrier = threading.Barrier(workers)

        def produce(w: int, topic: str = topic, barrier: threading.Barrier = barrier) -> None:
            with httpx.Client(base_url=base_url, timeout=30.0) as client:
                barrier.wait(10)
                for i in range(writes):
                    resp = client.post(f"/v0/topics/{topic}", json={"records": [{"data": [w, i]}]})
                    assert resp.status_code in (200, 201), resp.text

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(produce, range(workers)))
        reader.join(20)
        assert not reader.is_alive()
        if seen != list(range(1, total + 1)):
            failures.append((topic, seen))
    assert not failures, f"{len(failures)}/{rounds} readers skipped records: {failures[:2]}"
