"""Watermarks, eviction and tombstones (SPEC §5, §2.5)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.server._helpers import diff, ok, poll, put_topic, seqs_of, state, write, write_n


def _tomb(
    gap_from: int, gap_to: int, reason: str, earliest: int, head: int, missed: int | None = None
) -> dict[str, Any]:
    return {
        "gap_from": gap_from,
        "gap_to": gap_to,
        "reason": reason,
        "missed_estimate": gap_to - gap_from + 1 if missed is None else missed,
        "earliest_seq": earliest,
        "head_seq": head,
    }


def _delete_before(http: httpx.Client, topic: str, before: int) -> None:
    ok(http.post(f"/v0/topics/{topic}/delete", json={"before_seq": before}))


def test_cap_tombstone(http: httpx.Client, topic: str) -> None:
    put_topic(http, topic, {"cap_records": 3}, status=201)
    write_n(http, topic, 10)
    body = diff(http, topic, from_seq=0)
    assert body["tombstone"] == _tomb(1, 7, "cap", 8, 10)
    assert seqs_of(body) == [8, 9, 10]
    assert body["earliest_seq"] == 8
    assert body["next_from_seq"] == 10
    assert body["caught_up"] is True
    body = diff(http, topic, from_seq=5)
    assert body["tombstone"] == _tomb(6, 7, "cap", 8, 10)
    assert seqs_of(body) == [8, 9, 10]
    body = diff(http, topic, from_seq=6)
    assert body["tombstone"] == _tomb(7, 7, "cap", 8, 10)
    # from_seq + 1 == evict_floor: no gap
    body = diff(http, topic, from_seq=7)
    assert body["tombstone"] is None
    assert seqs_of(body) == [8, 9, 10]
    body = diff(http, topic, from_seq=9)
    assert body["tombstone"] is None
    assert seqs_of(body) == [10]


def test_cap_bytes_tombstone(http: httpx.Client, topic: str) -> None:
    put_topic(http, topic, {"cap_bytes": 3}, status=201)
    write_n(http, topic, 5)  # 1 byte each
    body = diff(http, topic)
    assert body["tombstone"] == _tomb(1, 2, "cap", 3, 5)
    assert seqs_of(body) == [3, 4, 5]


def test_tombstone_comes_with_limited_batch(http: httpx.Client, topic: str) -> None:
    put_topic(http, topic, {"cap_records": 5}, status=201)
    write_n(http, topic, 8)
    body = diff(http, topic, limit=2)
    assert body["tombstone"] == _tomb(1, 3, "cap", 4, 8)
    assert seqs_of(body) == [4, 5]
    assert body["next_from_seq"] == 5
    follow = diff(http, topic, from_seq=5)
    assert follow["tombstone"] is None
    assert seqs_of(follow) == [6, 7, 8]


def test_ttl_tombstone_without_writes(http: httpx.Client, topic: str) -> None:
    put_topic(http, topic, {"ttl_ms": 200}, status=201)
    write(http, topic, [{"data": "abc"}, {"data": 1}, {"data": 2}])
    body = poll(lambda: diff(http, topic), lambda b: b["tombstone"] is not None, timeout=5.0)
    assert body["tombstone"] == _tomb(1, 3, "ttl", 4, 3)
    assert body["records"] == []
    assert body["next_from_seq"] == 3
    assert body["caught_up"] is True
    assert body["earliest_seq"] == 4
    got = state(http, topic)
    assert (got["count"], got["bytes"], got["earliest_seq"], got["head_seq"]) == (0, 0, 4, 3)
    # a cursor at the head sees nothing missing
    assert diff(http, topic, from_seq=3)["tombstone"] is None
    # seqs continue after expiry
    assert write(http, topic, [{"data": "new"}])["seqs"] == [4]


def test_ttl_expiry_counts_on_state(http: httpx.Client, topic: str) -> None:
    put_topic(http, topic, {"ttl_ms": 150}, status=201)
    write_n(http, topic, 4)
    got = poll(lambda: state(http, topic, touch=False), lambda s: s["count"] == 0, timeout=5.0)
    assert (got["bytes"], got["earliest_seq"], got["head_seq"]) == (0, 5, 4)
    listed = ok(http.get("/v0/topics", params={"prefix": topic}))["topics"][0]
    assert (listed["count"], listed["bytes"], listed["earliest_seq"]) == (0, 0, 5)


def test_mixed_tombstone(http: httpx.Client, topic: str) -> None:
    put_topic(http, topic, {"cap_records": 2, "ttl_ms": 250}, status=201)
    write_n(http, topic, 4)  # cap evicts 1..2; TTL later expires 3..4
    body = poll(
        lambda: diff(http, topic, from_seq=0),
        lambda b: b["tombstone"] is not None and b["tombstone"]["gap_to"] == 4,
        timeout=5.0,
    )
    assert body["tombstone"] == _tomb(1, 4, "mixed", 5, 4)
    # from a cursor past the cap-evicted range only expiry reached the gap
    assert diff(http, topic, from_seq=2)["tombstone"] == _tomb(3, 4, "ttl", 5, 4)


def test_recreated_tombstone_on_live_topic(http: httpx.Client, topic: str) -> None:
    write_n(http, topic, 5)
    body = diff(http, topic, from_seq=9)
    assert body["tombstone"] == _tomb(1, 5, "recreated", 1, 5)
    assert seqs_of(body) == [1, 2, 3, 4, 5]
    assert body["next_from_seq"] == 5


def test_recreated_restarts_after_earliest(http: httpx.Client, topic: str) -> None:
    put_topic(http, topic, {"cap_records": 3}, status=201)
    write_n(http, topic, 6)
    body = diff(http, topic, from_seq=100)
    assert body["tombstone"] == _tomb(1, 6, "recreated", 4, 6)
    assert seqs_of(body) == [4, 5, 6]
    other = topic + "-d"
    write_n(http, other, 6)
    _delete_before(http, other, 3)
    body = diff(http, other, from_seq=7)
    assert body["tombstone"] == _tomb(1, 6, "recreated", 3, 6)
    assert seqs_of(body) == [3, 4, 5, 6]


def test_recreated_empty_topic_gap_to_below_gap_from(http: httpx.Client, topic: str) -> None:
    put_topic(http, topic, {}, status=201)
    body = diff(http, topic, from_seq=3)
    assert body["tombstone"] == {
        "gap_from": 1,
        "gap_to": 0,
        "reason": "recreated",
        "missed_estimate": 0,
        "earliest_seq": 1,
        "head_seq": 0,
    }
    assert body["tombstone"]["gap_to"] < body["tombstone"]["gap_from"]
    assert body["records"] == []
    assert body["next_from_seq"] == 0
    assert body["caught_up"] is True


def test_purely_deleted_prefix_is_silent(http: httpx.Client, topic: str) -> None:
    write_n(http, topic, 5)
    _delete_before(http, topic, 4)
    got = state(http, topic)
    assert (got["earliest_seq"], got["count"]) == (4, 2)
    for cursor in (0, 1, 2, 3):
        body = diff(http, topic, from_seq=cursor)
        assert body["tombstone"] is None, cursor
        assert seqs_of(body) == [4, 5]
        assert body["next_from_seq"] == 5


def test_deletes_never_move_evict_floor(http: httpx.Client, topic: str) -> None:
    """§5.1: a cursor below a deleted prefix gets no tombstone; later eviction does."""
    write_n(http, topic, 6)
    _delete_before(http, topic, 3)  # 1, 2 deleted
    assert diff(http, topic, from_seq=0)["tombstone"] is None
    put_topic(http, topic, {"cap_records": 2}, status=200)  # evicts 3, 4
    got = state(http, topic)
    assert (got["earliest_seq"], got["count"]) == (5, 2)
    body = diff(http, topic, from_seq=0)
    # the gap may include deleted seqs; it ends at evict_floor - 1
    assert body["tombstone"] == _tomb(1, 4, "cap", 5, 6)
    assert seqs_of(body) == [5, 6]
    assert diff(http, topic, from_seq=2)["tombstone"] == _tomb(3, 4, "cap", 5, 6)
    assert diff(http, topic, from_seq=4)["tombstone"] is None


def test_delete_after_eviction_keeps_floor(http: httpx.Client, topic: str) -> None:
    put_topic(http, topic, {"cap_records": 3}, status=201)
    write_n(http, topic, 6)  # evict_floor 4, earliest 4
    _delete_before(http, topic, 6)  # deletes 4, 5: earliest 6, floor stays 4
    assert state(http, topic)["earliest_seq"] == 6
    body = diff(http, topic, from_seq=3)
    assert body["tombstone"] is None
    assert seqs_of(body) == [6]
    body = diff(http, topic, from_seq=2)
    # gap_to = evict_floor - 1 (source), not earliest_seq - 1 (docs)
    assert body["tombstone"] == _tomb(3, 3, "cap", 4, 6)
    assert seqs_of(body) == [6]
    assert body["earliest_seq"] == 6


def test_scan_starts_after_tombstone(http: httpx.Client, topic: str) -> None:
    put_topic(http, topic, {"cap_records": 5}, status=201)
    write_n(http, topic, 10)  # floor 6
    _delete_before(http, topic, 8)  # 6, 7 deleted: earliest 8
    body = diff(http, topic, from_seq=2)
    assert body["tombstone"] == _tomb(3, 5, "cap", 6, 10)
    assert seqs_of(body) == [8, 9, 10]
    assert body["earliest_seq"] == 8
    assert body["next_from_seq"] == 10


def test_tombstone_at_most_once_per_read(http: httpx.Client, topic: str) -> None:
    put_topic(http, topic, {"cap_records": 2}, status=201)
    write_n(http, topic, 4)
    body = diff(http, topic)
    assert body["tombstone"] == _tomb(1, 2, "cap", 3, 4)
    follow = diff(http, topic, from_seq=body["next_from_seq"])
    assert follow["tombstone"] is None
    assert follow["records"] == []


def test_earliest_never_decreases(http: httpx.Client, topic: str) -> None:
    put_topic(http, topic, {"cap_records": 3}, status=201)
    seen = []
    for _ in range(5):
        write_n(http, topic, 2)
        seen.append(state(http, topic)["earliest_seq"])
    put_topic(http, topic, {}, status=200)  # caps lifted: evicted records stay gone
    seen.append(state(http, topic)["earliest_seq"])
    assert seen == sorted(seen)
    assert seen[-1] == 8


def test_tighter_ttl_by_put_expires_and_tombstones(http: httpx.Client, topic: str) -> None:
    write_n(http, topic, 3)
    put_topic(http, topic, {"ttl_ms": 1}, status=200)
    body = poll(lambda: diff(http, topic), lambda b: b["tombstone"] is not None, timeout=5.0)
    assert body["tombstone"] == _tomb(1, 3, "ttl", 4, 3)
    assert body["records"] == []


def test_cursor_at_u64_max_is_recreated(http: httpx.Client, topic: str) -> None:
    write_n(http, topic, 2)
    body = diff(http, topic, from_seq=2**64 - 1)
    assert body["tombstone"] == _tomb(1, 2, "recreated", 1, 2)
    assert seqs_of(body) == [1, 2]


def test_cap_bytes_eviction_around_deleted_records_in_one_batch(
    http: httpx.Client, topic: str
) -> None:
    put_topic(http, topic, {"cap_bytes": 5}, status=201)
    write(http, topic, [{"data": i, "tag": "x" if i == 2 else "k"} for i in range(1, 6)])
    ok(http.post(f"/v0/topics/{topic}/delete", json={"match": ["tag", "Eq", "x"]}))
    write(http, topic, [{"data": 6}])  # 4 live + 1: deleted records use no capacity
    got = state(http, topic)
    assert (got["count"], got["bytes"], got["earliest_seq"]) == (5, 5, 1)
    assert diff(http, topic)["tombstone"] is None
    write(http, topic, [{"data": 7}, {"data": 8}])  # evicts 1 and 3 (2 is deleted)
    got = state(http, topic)
    assert (got["count"], got["bytes"], got["earliest_seq"], got["head_seq"]) == (5, 5, 4, 8)
    body = diff(http, topic)
    assert body["tombstone"] == _tomb(1, 3, "cap", 4, 8)
    assert seqs_of(body) == [4, 5, 6, 7, 8]
    assert diff(http, topic, from_seq=1)["tombstone"] == _tomb(2, 3, "cap", 4, 8)
