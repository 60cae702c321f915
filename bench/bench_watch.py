"""Watch and router figures: write->deliver latency at 1/10/100 watchers, router added
latency, and records/s delivered across 100 watchers.

Run: .venv/bin/python -m bench.bench_watch
Writers and watchers run in this process on raw asyncio sockets (so the client's
own cost stays small); latency is measured from just before a write is sent to
the moment its frame is parsed by a watcher. Prints figures; never passes or fails.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import orjson

from bench._common import RawClient, ServerProcess, cpu_seconds, percentile, report


class RawWatcher:
    """A minimal SSE reader: collects (receive time, record) per record frame."""

    def __init__(self, url: str, wid: str) -> None:
        self.host, port = url.removeprefix("http://").rsplit(":", 1)
        self.port = int(port)
        self.wid = wid
        self.received: list[tuple[float, dict[str, object]]] = []
        self.count = 0
        self.keep = True

    async def run(self, ready: asyncio.Event) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        writer.write(f"GET /v0/watch/{self.wid} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        ready.set()
        event = b""
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                if line.startswith(b"event: "):
                    event = line[7:].strip()
                elif line.startswith(b"data: ") and event == b"record":
                    now = time.perf_counter()
                    records = orjson.loads(line[6:])["records"]
                    self.count += len(records)
                    if self.keep:
                        self.received.extend((now, r) for r in records)
                elif line.strip() and line[0:1] not in (b":", b"i", b"r", b"e", b"d"):
                    # chunked transfer framing (hex sizes) between frames
                    continue
        finally:
            writer.close()


async def latency(
    url: str, topic: str, watchers: int, pid: int, writes: int = 300
) -> tuple[list[float], float]:
    """Write -> deliver samples (ms), and the server's CPU per write per watcher (µs)."""
    async with httpx.AsyncClient(base_url=url) as http:
        await http.put(f"/v0/topics/{topic}", json={})
        wids = [
            (await http.post("/v0/watch", json={"topics": {topic: {"tail": True}}})).json()["wid"]
            for _ in range(watchers)
        ]
    readers = [RawWatcher(url, wid) for wid in wids]
    readies = [asyncio.Event() for _ in readers]
    tasks = [asyncio.create_task(r.run(e)) for r, e in zip(readers, readies, strict=True)]
    await asyncio.gather(*(e.wait() for e in readies))
    await asyncio.sleep(0.2)
    sent: dict[int, float] = {}
    cpu = cpu_seconds(pid)
    async with RawClient(url) as writer:
        for i in range(writes):
            sent[i] = time.perf_counter()
            await writer.post(f"/v0/topics/{topic}", orjson.dumps({"records": [{"data": i}]}))
            await asyncio.sleep(0.002)
    deadline = time.monotonic() + 20
    while any(len(r.received) < writes for r in readers) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    cpu = cpu_seconds(pid) - cpu
    for task in tasks:
        task.cancel()
    samples = [(t - sent[rec["data"]]) * 1000 for r in readers for t, rec in r.received]  # type: ignore[index]
    return samples, cpu / writes / watchers * 1e6


async def router_latency(url: str, writes: int = 300) -> tuple[list[float], list[float]]:
    async with httpx.AsyncClient(base_url=url) as http:
        await http.put("/v0/routers/rsrc-%3Erdst", json={"source": "rsrc", "dest": "rdst"})
        src = (await http.post("/v0/watch", json={"topics": {"rsrc": {"tail": True}}})).json()
        dst = (await http.post("/v0/watch", json={"topics": {"rdst": {"tail": True}}})).json()
    direct, routed = RawWatcher(url, src["wid"]), RawWatcher(url, dst["wid"])
    ready = [asyncio.Event(), asyncio.Event()]
    tasks = [asyncio.create_task(direct.run(ready[0])), asyncio.create_task(routed.run(ready[1]))]
    await asyncio.gather(*(e.wait() for e in ready))
    sent: dict[int, float] = {}
    async with RawClient(url) as writer:
        for i in range(writes):
            sent[i] = time.perf_counter()
            await writer.post("/v0/topics/rsrc", orjson.dumps({"records": [{"data": i}]}))
            await asyncio.sleep(0.002)
    deadline = time.monotonic() + 20
    while len(routed.received) < writes and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    for task in tasks:
        task.cancel()
    d = {rec["data"]: t for t, rec in direct.received}
    added = [(t - d[rec["data"]]) * 1000 for t, rec in routed.received if rec["data"] in d]
    end_to_end = [(t - sent[rec["data"]]) * 1000 for t, rec in routed.received]  # type: ignore[index]
    return added, end_to_end


async def fan_out(url: str, watchers: int = 100, batches: int = 200) -> float:
    topic = "fan"
    async with httpx.AsyncClient(base_url=url) as http:
        await http.put(f"/v0/topics/{topic}", json={"durability": "memory"})
        wids = [
            (await http.post("/v0/watch", json={"topics": {topic: {"tail": True}}})).json()["wid"]
            for _ in range(watchers)
        ]
    readers = [RawWatcher(url, wid) for wid in wids]
    for r in readers:
        r.keep = False
    readies = [asyncio.Event() for _ in readers]
    tasks = [asyncio.create_task(r.run(e)) for r, e in zip(readers, readies, strict=True)]
    await asyncio.gather(*(e.wait() for e in readies))
    body = orjson.dumps({"records": [{"data": {"i": i}} for i in range(100)]})
    started = time.perf_counter()
    async with RawClient(url) as writer:
        for _ in range(batches):
            await writer.post(f"/v0/topics/{topic}?return_seqs=false", body)
    total = watchers * batches * 100
    deadline = time.monotonic() + 60
    while sum(r.count for r in readers) < total and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - started
    for task in tasks:
        task.cancel()
    return sum(r.count for r in readers) / elapsed


def main() -> None:
    with ServerProcess() as server:
        for n, target in ((1, ""), (10, "p99 <= 5 ms"), (100, "p99 <= 25 ms")):
            assert server.proc is not None
            samples, per_watcher = asyncio.run(latency(server.url, f"lat{n}", n, server.proc.pid))
            report(
                f"write->deliver, {n:3} watchers p50 / p99",
                percentile(samples, 50),
                f"ms / {percentile(samples, 99):.2f} ms",
                target,
            )
            report(
                f"server CPU per write per watcher, {n:3} watchers",
                per_watcher,
                "µs (the write itself included)",
            )
        added, e2e = asyncio.run(router_latency(server.url))
        report(
            "router added latency p50 / p99",
            percentile(added, 50),
            f"ms / {percentile(added, 99):.2f} ms",
            "p50 <= 2 ms",
        )
        report(
            "source write -> dest delivery p50 / p99",
            percentile(e2e, 50),
            f"ms / {percentile(e2e, 99):.2f} ms",
        )
        rate = asyncio.run(fan_out(server.url))
        report("records delivered across 100 watchers", rate, "rec/s")


if __name__ == "__main__":
    main()
