"""``topics mirror`` figures: relay throughput between two local servers (records/s while
catching up on a backlog) and the latency it adds (source write → visible on the
destination's watch stream, p50/p99, one record at a time, relay caught up).

Run: python -m bench.bench_mirror [--records 50000] [--samples 200]
The relay runs as a real ``topics mirror`` process; figures include its HTTP hops and its
checkpoint fsync per batch. Prints figures; never passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._common import PAYLOAD, ServerProcess, percentile, report
from topics_client import AsyncClient, Client, RecordsEvent


def _relay(src: str, dst: str, workdir: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOPICS")}
    args = ["-t", "bench:*", "-c", str(workdir / "bench.cp"), "--relist", "1s", "-q"]
    return subprocess.Popen(
        [sys.executable, "-m", "topics_cli", "mirror", f"src={src}", f"dst={dst}", *args],
        stdout=subprocess.DEVNULL,
        env=env,
    )


def throughput(src: ServerProcess, dst: ServerProcess, workdir: Path, total: int) -> None:
    with Client(src.url) as client:
        for start in range(0, total, 5000):
            client.topics.write("bench:backlog", [{"data": PAYLOAD}] * min(5000, total - start))
    proc = _relay(src.url, dst.url, workdir)
    first = done = None
    try:
        with Client(dst.url) as client:
            while done is None:
                try:
                    head = client.topics.get("bench:backlog", touch=False).head_seq
                except Exception:
                    head = 0
                now = time.perf_counter()
                if head and first is None:
                    first = (now, head)
                if head >= total:
                    done = now
                time.sleep(0.02)
    finally:
        proc.terminate()
        proc.wait(30)
    assert first is not None
    rate = (total - first[1]) / (done - first[0]) if done > first[0] else float("nan")
    report(f"mirror throughput ({total:,} backlog records)", rate, "records/s")


async def latency(src: ServerProcess, dst: ServerProcess, workdir: Path, samples: int) -> None:
    async with AsyncClient(src.url) as source, AsyncClient(dst.url) as dest:
        await source.topics.write("bench:live", [{"data": {"i": -1}}])
        proc = _relay(src.url, dst.url, workdir)
        sent: dict[int, float] = {}
        seen: list[float] = []
        warm = asyncio.Event()

        async def watch() -> None:
            while True:  # the topic appears once the relay copies the warm-up record
                try:
                    await dest.topics.get("bench:live", touch=False)
                    break
                except Exception:
                    await asyncio.sleep(0.05)
            async with dest.watch.stream({"bench:live": 0}) as stream:
                async for event in stream:
                    if not isinstance(event, RecordsEvent):
                        continue
                    now = time.perf_counter()
                    for record in event.records:
                        i = record.data["i"]
                        if i < 0:
                            warm.set()
                        elif i in sent:
                            seen.append(now - sent[i])
                    if len(seen) >= samples:
                        return

        direct: list[float] = []

        async def watch_source() -> None:  # the baseline: the same write, watched at its source
            async with source.watch.stream({"bench:live": 0}) as stream:
                async for event in stream:
                    if isinstance(event, RecordsEvent):
                        now = time.perf_counter()
                        direct.extend(
                            now - sent[r.data["i"]] for r in event.records if r.data["i"] in sent
                        )
                    if len(direct) >= samples:
                        return

        watcher = asyncio.ensure_future(watch())
        baseline = asyncio.ensure_future(watch_source())
        try:
            await asyncio.wait_for(warm.wait(), 60)
            for i in range(samples):
                sent[i] = time.perf_counter()
                await source.topics.write("bench:live", [{"data": {"i": i}}])
                await asyncio.sleep(0.02)
            await asyncio.wait_for(watcher, 60)
            await asyncio.wait_for(baseline, 60)
        finally:
            watcher.cancel()
            baseline.cancel()
            proc.terminate()
            proc.wait(30)
    ms = [s * 1000 for s in seen]
    report("mirror added latency p50 (write → dest visible)", percentile(ms, 50), "ms")
    report("mirror added latency p99 (write → dest visible)", percentile(ms, 99), "ms")
    base = [s * 1000 for s in direct]
    report("  baseline p50, no relay (write → source watch)", percentile(base, 50), "ms")
    report("  baseline p99, no relay (write → source watch)", percentile(base, 99), "ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-mirror-") as tmp:
        workdir = Path(tmp)
        with (
            ServerProcess(data_dir=workdir / "src") as src,
            ServerProcess(data_dir=workdir / "dst") as dst,
        ):
            throughput(src, dst, workdir, args.records)
            asyncio.run(latency(src, dst, workdir, args.samples))


if __name__ == "__main__":
    main()
