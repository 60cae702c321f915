"""Log-core figures: batched writes, write-ack latency, replay, long-poll wake-up.

Run: .venv/bin/python bench/bench_log_core.py [--records 200000]
Prints figures; never passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import httpx
import orjson

from bench._common import PAYLOAD, RawClient, ServerProcess, percentile, report

JSON = {"content-type": "application/json"}


def batched_writes(client: httpx.Client, topic: str, total: int, batch: int = 1000) -> float:
    body = orjson.dumps({"records": [{"data": PAYLOAD}] * batch})
    started = time.perf_counter()
    for _ in range(total // batch):
        r = client.post(f"/v0/topics/{topic}?return_seqs=false", content=body, headers=JSON)
        r.raise_for_status()
    return (total // batch * batch) / (time.perf_counter() - started)


def write_latency(client: httpx.Client, topic: str, n: int = 3000) -> list[float]:
    body = orjson.dumps({"records": [{"data": PAYLOAD}]})
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        client.post(f"/v0/topics/{topic}", content=body, headers=JSON).raise_for_status()
        samples.append((time.perf_counter() - t0) * 1000)
    return samples[100:]


def replay(client: httpx.Client, topic: str) -> tuple[float, int]:
    cursor, seen = 0, 0
    started = time.perf_counter()
    while True:
        r = client.post(
            f"/v0/topics/{topic}/diff",
            content=orjson.dumps({"from_seq": cursor, "limit": 1000}),
            headers=JSON,
        )
        page = orjson.loads(r.content)
        seen += len(page["records"])
        cursor = page["next_from_seq"]
        if page["caught_up"]:
            break
    return seen / (time.perf_counter() - started), seen


async def wakeups(url: str, topic: str, rounds: int = 300) -> list[float]:
    """Time from sending a write to a parked long-poll returning its record.

    Poller and writer are raw keep-alive connections in one event loop, so the
    figure is the server's wake-up plus two loopback round trips, without
    client-side thread scheduling in it.
    """
    body = orjson.dumps({"records": [{"data": 1}]})
    samples: list[float] = []
    async with RawClient(url) as writer, RawClient(url) as poller:
        _, raw = await writer.post(f"/v0/topics/{topic}", body)
        head = orjson.loads(raw)["head_seq"]
        for _ in range(rounds):
            poll = asyncio.create_task(
                poller.post(
                    f"/v0/topics/{topic}/diff",
                    orjson.dumps({"from_seq": head, "wait_ms": 5000}),
                )
            )
            await asyncio.sleep(0.003)  # the poll parks on the server
            t0 = time.perf_counter()
            await writer.post(f"/v0/topics/{topic}", body)
            _, raw = await poll
            samples.append((time.perf_counter() - t0) * 1000)
            head = orjson.loads(raw)["next_from_seq"]
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200_000)
    args = parser.parse_args()
    print(f"log core on {os.cpu_count()} cores; {args.records:,} records of 100-byte payloads")
    with ServerProcess() as server, httpx.Client(base_url=server.url, timeout=60) as client:
        client.put("/v0/topics/bench-batch", json={"durability": "ephemeral"})
        rate = batched_writes(client, "bench-batch", args.records)
        report("batched writes (1000/batch, ephemeral)", rate, "rec/s", ">= 120,000")
        client.put("/v0/topics/bench-disk", json={})
        rate = batched_writes(client, "bench-disk", args.records)
        report("batched writes (1000/batch, disk)", rate, "rec/s")
        lat = write_latency(client, "bench-lat")
        report("write-ack latency p50", percentile(lat, 50), "ms", "<= 1.5")
        report("write-ack latency p99", percentile(lat, 99), "ms")
        rate, seen = replay(client, "bench-batch")
        report(f"replay limit 1000 ({seen:,} records)", rate, "rec/s", ">= 200,000")
        wake = asyncio.run(wakeups(server.url, "bench-wake"))
        report("long-poll wake-up p50 (write sent -> poll returns)", percentile(wake, 50), "ms")
        report("long-poll wake-up p99", percentile(wake, 99), "ms", "<= 5")


if __name__ == "__main__":
    main()
