"""Durability figures: per-class write latency and throughput, group commit,
restart-to-ready and memory with a million records.

Run: .venv/bin/python -m bench.bench_durability [--big 1000000]
Prints figures; never passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time

import httpx
import orjson

from bench._common import PAYLOAD, RawClient, ServerProcess, percentile, report, rss_mb

CLASSES = ("ephemeral", "memory", "disk", "fsync")
ONE = orjson.dumps({"records": [{"data": PAYLOAD}]})
BATCH = orjson.dumps({"records": [{"data": PAYLOAD}] * 1000})


async def latencies(url: str, topic: str, n: int = 2000) -> list[float]:
    samples = []
    async with RawClient(url) as client:
        for _ in range(n):
            t0 = time.perf_counter()
            status, _ = await client.post(f"/v0/topics/{topic}", ONE)
            assert status in (200, 201)
            samples.append((time.perf_counter() - t0) * 1000)
    return samples[100:]


async def concurrent_writes(url: str, topic: str, writers: int, seconds: float = 3.0) -> float:
    done = 0
    stop = time.perf_counter() + seconds

    async def writer() -> None:
        nonlocal done
        async with RawClient(url) as client:
            while time.perf_counter() < stop:
                status, _ = await client.post(f"/v0/topics/{topic}", ONE)
                assert status in (200, 201)
                done += 1

    started = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    return done / (time.perf_counter() - started)


async def batched(url: str, topic: str, total: int) -> float:
    async with RawClient(url) as client:
        started = time.perf_counter()
        for _ in range(total // 1000):
            status, _ = await client.post(f"/v0/topics/{topic}?return_seqs=false", BATCH)
            assert status in (200, 201)
        return total / (time.perf_counter() - started)


def replay(url: str, topic: str) -> tuple[float, int]:
    cursor = seen = 0
    with httpx.Client(base_url=url, timeout=60) as client:
        started = time.perf_counter()
        while True:
            page = orjson.loads(
                client.post(
                    f"/v0/topics/{topic}/diff", json={"from_seq": cursor, "limit": 1000}
                ).content
            )
            seen += len(page["records"])
            cursor = page["next_from_seq"]
            if page["caught_up"]:
                return seen / (time.perf_counter() - started), seen


def wal(url: str) -> dict[str, int]:
    metrics = httpx.get(f"{url}/v0/metrics", headers={"accept": "application/json"}).json()
    return dict(metrics["wal"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--big", type=int, default=1_000_000)
    parser.add_argument("--batched", type=int, default=200_000)
    args = parser.parse_args()
    with ServerProcess() as server:
        url = server.url
        for cls in CLASSES:
            httpx.put(f"{url}/v0/topics/lat-{cls}", json={"durability": cls})
            lat = asyncio.run(latencies(url, f"lat-{cls}"))
            report(
                f"write-ack latency {cls:9} p50 / p99",
                percentile(lat, 50),
                f"ms / {percentile(lat, 99):.2f} ms",
            )
        for writers in (1, 16):
            httpx.put(f"{url}/v0/topics/gc-{writers}", json={"durability": "fsync"})
            before = wal(url)
            rate = asyncio.run(concurrent_writes(url, f"gc-{writers}", writers))
            after = wal(url)
            per_fsync = (after["frames_total"] - before["frames_total"]) / max(
                after["fsyncs_total"] - before["fsyncs_total"], 1
            )
            report(f"fsync single-record writes, {writers:2} writers", rate, "writes/s")
            report(f"  writes sharing one fsync, {writers:2} writers", per_fsync, "writes")
        for cls in CLASSES:
            httpx.put(f"{url}/v0/topics/batch-{cls}", json={"durability": cls})
            rate = asyncio.run(batched(url, f"batch-{cls}", args.batched))
            report(f"batched writes (1000/batch) {cls}", rate, "rec/s")

    with ServerProcess() as server:
        httpx.put(f"{server.url}/v0/topics/big", json={"durability": "disk"})
        rate = asyncio.run(batched(server.url, "big", args.big))
        report(f"filled {args.big:,} records (disk)", rate, "rec/s")
        assert server.proc is not None
        report("RSS with the big topic", rss_mb(server.proc.pid), "MB", "<= 250")
        rate, seen = replay(server.url, "big")
        report(f"replay from seq 0 ({seen:,} records, httpx)", rate, "rec/s", ">= 100,000")
        report("RSS after the full replay", rss_mb(server.proc.pid), "MB", "<= 250")
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()
        started = time.perf_counter()
        server.start()
        report("restart to ready after SIGKILL", time.perf_counter() - started, "s", "<= 5")
        assert server.proc is not None
        report("RSS after restart", rss_mb(server.proc.pid), "MB")
        rate, seen = replay(server.url, "big")
        report(f"replay from seq 0 after restart ({seen:,})", rate, "rec/s")


if __name__ == "__main__":
    main()
