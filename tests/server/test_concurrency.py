"""Concurrent writers (SPEC §3.4, §3.5): gap-free seqs, exactly-once idempotent appends."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.server._helpers import diff, state


def _writer(base_url: str, topic: str, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    with httpx.Client(base_url=base_url, timeout=30.0) as client:
        for body in bodies:
            resp = client.post(f"/v0/topics/{topic}", json=body)
            assert resp.status_code in (200, 201), resp.text
            out.append(resp.json())
    return out


def test_concurrent_writes_get_contiguous_disjoint_seqs(
    http: httpx.Client, base_url: str, topic: str
) -> None:
    workers, writes, size = 8, 15, 3
    jobs = [
        [{"records": [{"data": [w, i, k]} for k in range(size)]} for i in range(writes)]
        for w in range(workers)
    ]
    with ThreadPoolExecutor(workers) as pool:
        results = [
            r for batch in pool.map(lambda b: _writer(base_url, topic, b), jobs) for r in batch
        ]
    created = [r for r in results if r["created"]]
    assert len(created) == 1
    seen: list[int] = []
    for r in results:
        assert r["seqs"] == list(range(r["first_seq"], r["last_seq"] + 1))
        assert len(r["seqs"]) == size
        assert r["head_seq"] >= r["last_seq"]
        seen.extend(r["seqs"])
    total = workers * writes * size
    assert sorted(seen) == list(range(1, total + 1))
    got = state(http, topic)
    assert (got["head_seq"], got["count"]) == (total, total)
    # each batch landed contiguously and in order
    by_seq = {}
    cursor = 0
    while True:
        body = diff(http, topic, from_seq=cursor, limit=1000)
        for record in body["records"]:
            by_seq[record["$seq"]] = record["data"]
        cursor = body["next_from_seq"]
        if body["caught_up"]:
            break
    for r in results:
        datas = [by_seq[s] for s in r["seqs"]]
        assert [d[2] for d in datas] == list(range(size))
        assert len({(d[0], d[1]) for d in datas}) == 1


def test_racing_same_key_writes_append_once(http: httpx.Client, base_url: str, topic: str) -> None:
    workers = 12
    body = {"records": [{"data": "once"}, {"data": "twice"}], "idempotency_key": "race"}
    with ThreadPoolExecutor(workers) as pool:
        results = [
            r[0] for r in pool.map(lambda _: _writer(base_url, topic, [body]), range(workers))
        ]
    fresh = [r for r in results if not r["deduped"]]
    assert len(fresh) == 1
    for r in results:
        assert (r["first_seq"], r["last_seq"], r["seqs"]) == (1, 2, [1, 2])
        assert r["count"] == 2
    assert sum(r["created"] for r in results) == 1
    got = state(http, topic)
    assert (got["head_seq"], got["count"]) == (2, 2)
