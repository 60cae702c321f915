"""Watch delivery through the typed client: records/s one watcher gets from
``client.watch.stream`` while a producer writes batches.

Starts a reference server (``tests.serverproc.ServerProcess``) unless ``--url`` is given. The
producer is a separate process (its own interpreter, so it does not share the watcher's GIL)
writing ``--records`` records in batches of ``--batch``; the watcher follows the topic from
the head (``tail``) with the sync ``Client`` and then with the ``AsyncClient``, counting
records until it has seen them all. A final run drains the same number of records already
written (backlog: delivery with no producer running). Prints figures; never passes or fails.

    .venv/bin/python bench/bench_client_watch.py [--records 200000] [--batch 1000]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import report
from tests.serverproc import ServerProcess
from topics_client import AsyncClient, CaughtUpEvent, Client, RecordsEvent


def produce(url: str, topic: str, total: int, batch: int, go: Any, done: Any) -> None:
    payload = [{"data": {"i": i, "user": f"u-{i % 97}", "ok": True}} for i in range(batch)]
    with Client(url, timeout=120.0) as client:
        go.wait()
        start = time.perf_counter()
        for _ in range(total // batch):
            client.topics.write(topic, payload, return_seqs=False)
        done.value = time.perf_counter() - start


def live_sync(url: str, total: int, batch: int) -> tuple[float, float]:
    """(delivery rec/s, producer rec/s) with the sync client."""
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    with Client(url, timeout=120.0) as client:
        client.topics.put(topic)
        go, done = mp.Event(), mp.Value("d", 0.0)
        producer = mp.Process(target=produce, args=(url, topic, total, batch, go, done))
        producer.start()
        count = 0
        start = 0.0
        with client.watch.stream([topic], tail=True, limit=1000) as stream:
            for event in stream:
                if isinstance(event, CaughtUpEvent) and not start:
                    start = time.perf_counter()
                    go.set()  # the session is open and caught up: start producing
                elif isinstance(event, RecordsEvent):
                    count += len(event.records)
                    if count >= total:
                        break
        elapsed = time.perf_counter() - start
        producer.join()
        return count / elapsed, total / done.value


def live_async(url: str, total: int, batch: int) -> tuple[float, float]:
    import anyio

    topic = f"bench-{uuid.uuid4().hex[:8]}"

    async def main() -> tuple[float, float]:
        async with AsyncClient(url, timeout=120.0) as client:
            await client.topics.put(topic)
            go, done = mp.Event(), mp.Value("d", 0.0)
            producer = mp.Process(target=produce, args=(url, topic, total, batch, go, done))
            producer.start()
            count = 0
            start = 0.0
            async with client.watch.stream([topic], tail=True, limit=1000) as stream:
                async for event in stream:
                    if isinstance(event, CaughtUpEvent) and not start:
                        start = time.perf_counter()
                        go.set()
                    elif isinstance(event, RecordsEvent):
                        count += len(event.records)
                        if count >= total:
                            break
            elapsed = time.perf_counter() - start
            producer.join()
            return count / elapsed, total / done.value

    return anyio.run(main)


def backlog_sync(url: str, total: int, batch: int) -> float:
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    with Client(url, timeout=120.0) as client:
        payload = [{"data": {"i": i, "user": f"u-{i % 97}", "ok": True}} for i in range(batch)]
        for _ in range(total // batch):
            client.topics.write(topic, payload, return_seqs=False)
        count = 0
        start = time.perf_counter()
        with client.watch.stream({topic: 0}, limit=1000) as stream:
            for event in stream:
                if isinstance(event, RecordsEvent):
                    count += len(event.records)
                elif isinstance(event, CaughtUpEvent):
                    break
        assert count == total, (count, total)
        return count / (time.perf_counter() - start)


def run(url: str, total: int, batch: int) -> None:
    print(f"one watcher, {total:,} records of ~36 bytes, producer batches of {batch}")
    rate, produced = live_sync(url, total, batch)
    report("watch delivery, sync Client (live)", rate, "rec/s")
    report("  producer write rate meanwhile", produced, "rec/s")
    rate, produced = live_async(url, total, batch)
    report("watch delivery, AsyncClient (live)", rate, "rec/s")
    report("  producer write rate meanwhile", produced, "rec/s")
    report("watch delivery, sync Client (backlog)", backlog_sync(url, total, batch), "rec/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", help="an already running server (default: start one)")
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    if args.url:
        run(args.url, args.records, args.batch)
        return
    with ServerProcess() as server:
        run(server.url, args.records, args.batch)


if __name__ == "__main__":
    main()
