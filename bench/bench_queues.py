"""Lease-queue throughput: claim → ack jobs/s through the client's workers.

Each run fills a fresh queue, then ``N`` workers drain it with batched claims
(``--batch`` per claim, one ack call per batch) and a no-op handler. Sync workers
each run on their own thread and ``Client``; async workers share one event loop.

Run: .venv/bin/python -m bench.bench_queues [--jobs 40000] [--batch 100]
Prints figures; never passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
import uuid

from bench._common import PAYLOAD, ServerProcess, report
from topics_client import AsyncClient, AsyncWorker, Client, Job, NewRecord, Worker


def fill(url: str, topic: str, jobs: int, durability: str) -> None:
    with Client(url, timeout=60) as client:
        client.topics.put(topic, type="queue", durability=durability, lease_ms=60_000)
        for start in range(0, jobs, 1000):
            n = min(1000, jobs - start)
            client.topics.write(topic, [NewRecord(PAYLOAD)] * n, return_seqs=False)


def noop(job: Job) -> None:
    return None


def run_sync(url: str, topic: str, workers: int, batch: int) -> tuple[float, int]:
    clients = [Client(url, timeout=60) for _ in range(workers)]
    pool = [
        Worker(c, topic, noop, node=f"w{i}", batch=batch, lease_ms=60_000)
        for i, c in enumerate(clients)
    ]
    threads = [threading.Thread(target=w.run, kwargs={"until_idle": True}) for w in pool]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    for c in clients:
        c.close()
    return elapsed, sum(w.stats.acked for w in pool)


async def run_async(url: str, topic: str, workers: int, batch: int) -> tuple[float, int]:
    clients = [AsyncClient(url, timeout=60) for _ in range(workers)]
    pool = [
        AsyncWorker(c, topic, noop, node=f"a{i}", batch=batch, lease_ms=60_000)
        for i, c in enumerate(clients)
    ]
    started = time.perf_counter()
    await asyncio.gather(*(w.run(until_idle=True) for w in pool))
    elapsed = time.perf_counter() - started
    for c in clients:
        await c.close()
    return elapsed, sum(w.stats.acked for w in pool)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=40_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--durability", default="disk")
    args = parser.parse_args()
    print(
        f"claim → ack through the client: {args.jobs} jobs per run, batch {args.batch}, "
        f"{args.durability} queues, no-op handler",
        flush=True,
    )
    with ServerProcess() as server:
        url = server.url
        for mode in ("sync", "async"):
            for workers in (1, 8):
                topic = f"bench-q-{uuid.uuid4().hex[:8]}"
                fill(url, topic, args.jobs, args.durability)
                if mode == "sync":
                    elapsed, acked = run_sync(url, topic, workers, args.batch)
                else:
                    elapsed, acked = asyncio.run(run_async(url, topic, workers, args.batch))
                assert acked == args.jobs, (acked, args.jobs)
                target = ">= 5,000" if workers == 8 else ""
                noun = "Worker" if mode == "sync" else "AsyncWorker"
                plural = "s" if workers > 1 else ""
                report(f"{workers} {noun}{plural} ({mode})", acked / elapsed, "jobs/s", target)


if __name__ == "__main__":
    main()
