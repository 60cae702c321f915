"""Retention runs where time and writes move; reads change nothing (issue 16.4).

TTL expiry happens on a timer: the floor moves and the store learns of it with
no read and no write. Caps are enforced by the write that crosses them and by
the config change that lowers them.
"""

from __future__ import annotations

import httpx

from tests.server._helpers import diff, poll, put_topic, state, unique, write_n


def _earliest(http: httpx.Client, topic: str) -> int:
    """The topic's state: a read, and reads apply nothing (only the timer can move it)."""
    value: int = state(http, topic, touch=False)["earliest_seq"]
    return value


def test_ttl_expiry_moves_the_floor_without_any_read(http: httpx.Client) -> None:
    topic = unique("ttl")
    put_topic(http, topic, {"ttl_ms": 300})
    write_n(http, topic, 5)
    assert _earliest(http, topic) == 1
    poll(lambda: _earliest(http, topic), until=lambda e: e == 6, timeout=10)
    body = diff(http, topic, from_seq=0)
    assert body["tombstone"]["reason"] == "ttl"
    assert body["tombstone"]["gap_to"] == 5
    assert body["records"] == []


def test_reads_do_not_evict(http: httpx.Client) -> None:
    topic = unique("pure")
    put_topic(http, topic, {"cap_records": 3})
    write_n(http, topic, 5)  # the write that crossed the cap evicted 1..2
    first = state(http, topic)
    for _ in range(3):
        diff(http, topic, from_seq=0)
        state(http, topic)
    assert state(http, topic)["earliest_seq"] == first["earliest_seq"] == 3
    assert state(http, topic)["count"] == 3


def test_lowering_a_cap_evicts_at_once(http: httpx.Client) -> None:
    topic = unique("lower")
    put_topic(http, topic)
    write_n(http, topic, 10)
    put_topic(http, topic, {"cap_records": 4})
    assert _earliest(http, topic) == 7
    assert diff(http, topic, from_seq=0)["tombstone"]["reason"] == "cap"
