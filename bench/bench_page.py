"""Per-page cost of a diff page, in one process: reading it from the log and rendering it.

Run: PYTHONPATH=$PWD python -m bench.bench_page [--records 1000]
Prints figures; never passes or fails.

A hot page of 1,000 100-byte records in chunks of 1,000 (the replay benches' shape),
then the same with a node, tag and meta on every record (the per-record path):
``TopicLog.read`` as column runs + :func:`render_records` + ``orjson.dumps`` of the
body, next to the same page built the other way (a wire dict per record with the
payloads as ``orjson.Fragment``, as the server did before it spliced text).
"""

from __future__ import annotations

import argparse
import time
from array import array
from collections.abc import Callable
from typing import Any

import orjson

from bench._common import PAYLOAD, report
from topics_server.api.pages import render_records
from topics_server.engine.config import TopicConfig
from topics_server.engine.log import TopicLog, Totals
from topics_server.storage.records import Payload

SHAPE = (True, True, True)  # include_tags, include_meta, include_data


def make_log(records: int, annotated: bool) -> TopicLog:
    log = TopicLog("bench", 1, TopicConfig(), Totals())
    data = orjson.dumps(PAYLOAD).decode()
    meta = orjson.dumps({"trace": "t-0001"}).decode()
    for _ in range(0, records, 1000):
        n = 1000
        payload = Payload(
            [data] * n,
            [meta] * n if annotated else None,
            ["edge-a"] * n if annotated else None,
            [f"cart:{i}" for i in range(n)] if annotated else None,
            None,
        )
        size = len(data) + (len(meta) if annotated else 0)
        chunk = log.assign(array("I", [size] * n), payload, 1_700_000_000_000)
        log.publish(chunk, 1_700_000_000_000)
    return log


def spliced(log: TopicLog, limit: int) -> bytes:
    result = log.read(0, limit, 8 << 20, runs=True)
    return orjson.dumps({"topic": "bench", "records": render_records(result.records, SHAPE)})


def dicts(log: TopicLog, limit: int) -> bytes:
    result = log.read(0, limit, 8 << 20)
    records: list[dict[str, Any]] = []
    for seq, ts, node, tag, data, meta, _ in result.records:
        wire: dict[str, Any] = {"$seq": seq, "$ts": ts}
        if node is not None:
            wire["$node"] = node
        if tag is not None:
            wire["$tag"] = tag
        wire["data"] = orjson.Fragment(data)
        if meta is not None:
            wire["meta"] = orjson.Fragment(meta)
        records.append(wire)
    return orjson.dumps({"topic": "bench", "records": records})


def read_only(log: TopicLog, limit: int) -> bytes:
    log.read(0, limit, 8 << 20, runs=True)
    return b""


def per_page_ms(fn: Callable[[TopicLog, int], bytes], log: TopicLog, limit: int) -> float:
    best = float("inf")
    for _ in range(7):
        rounds = 200
        started = time.perf_counter()
        for _ in range(rounds):
            fn(log, limit)
        best = min(best, (time.perf_counter() - started) / rounds * 1000)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1000)
    args = parser.parse_args()
    for annotated in (False, True):
        log = make_log(args.records, annotated)
        assert spliced(log, args.records) == dicts(log, args.records)
        label = "node+tag+meta" if annotated else "data only"
        for name, fn in (("spliced", spliced), ("dicts", dicts), ("read runs only", read_only)):
            ms = per_page_ms(fn, log, args.records)
            report(f"{args.records}-record page, {label}: {name}", ms, "ms")


if __name__ == "__main__":
    main()
