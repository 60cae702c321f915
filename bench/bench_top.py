"""``topics top`` against many topics: wall time and server requests (prints figures; never
passes or fails).

A server gets ``--topics`` topics (10,000 by default; a few records each, every 100th a
queue, 20 routers); a counting proxy in front of it counts the HTTP requests each run makes,
by route. Measured:

* ``topics top --once -o json`` (two listings ``--interval`` apart, details of the 20 rows
  shown), and with ``--interval 0`` (one listing);
* live refreshes in process (``Poller.refresh`` with the live budget, 30 rows on screen):
  wall time and requests of the steady ones (listing, metrics, routers) and of the busiest
  (the first ones also fetch the configs of the rows on screen); they have to stay under
  the 1 s interval.

    python -m bench.bench_top [--topics 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import RawClient, ServerProcess, report

_REQUEST = re.compile(rb"(?:^|\r\n)(GET|POST|PUT|DELETE) (/[^ ?]*)")


def _route(path: str) -> str:
    parts = path.split("/")
    if path.startswith("/v0/topics/") and len(parts) > 4:
        return f"{parts[4]} (per topic)"
    if path.startswith("/v0/topics/"):
        return "topic state (per topic)"
    if path.startswith("/v0/routers/"):
        return "router get (per router)"
    return path


class CountingProxy:
    """A TCP relay that counts the HTTP requests passing through it, by route."""

    def __init__(self, target: str) -> None:
        host, port = target.removeprefix("http://").rsplit(":", 1)
        self.target = (host, int(port))
        self.counts: Counter[str] = Counter()
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection(*self.target)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, count: bool) -> None:
            try:
                while data := await src.read(65536):
                    if count:
                        for _, path in _REQUEST.findall(data):
                            self.counts[_route(path.decode())] += 1
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_w, True), pipe(up_r, writer, False))

    def take(self) -> Counter[str]:
        counts, self.counts = self.counts, Counter()
        return counts


async def _populate(url: str, n: int) -> None:
    names = [f"bench-top-{i:05}" for i in range(n)]

    async def worker(chunk: list[str]) -> None:
        async with RawClient(url) as c:
            for name in chunk:
                i = int(name.rsplit("-", 1)[1])
                body = b'{"records":[%s]' % b",".join(b'{"data":%d}' % k for k in range(1 + i % 5))
                if i % 100 == 0:
                    body += b',"config":{"type":"queue"}'
                status, _ = await c.post(f"/v0/topics/{name}", body + b"}")
                assert status in (200, 201), status

    await asyncio.gather(*(worker(names[k::8]) for k in range(8)))


def _routers(url: str, count: int) -> None:
    import httpx

    with httpx.Client(base_url=url, timeout=30) as c:
        for i in range(count):
            src, dst = f"bench-top-{i * 7 + 1:05}", f"bench-top-copy-{i:03}"
            c.put(f"/v0/routers/{src}-%3E{dst}", json={"source": src, "dest": dst})


def _summary(counts: Counter[str]) -> str:
    return ", ".join(f"{route} {n}" for route, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def run(url: str, topics: int) -> None:
    t0 = time.perf_counter()
    asyncio.run(_populate(url, topics))
    _routers(url, 20)
    print(f"# {topics:,} topics + 20 routers created in {time.perf_counter() - t0:.1f} s")
    proxy = CountingProxy(url)
    env = {**os.environ, "TOPICS_URL": proxy.url, "NO_COLOR": "1"}
    for label, extra in (("--interval 1s", []), ("--interval 0", ["--interval", "0"])):
        walls = []
        for _ in range(3):
            proxy.take()
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "topics_cli", "top", "--once", "-o", "json", *extra],
                env=env,
                stdout=subprocess.DEVNULL,
                check=True,
            )
            walls.append(time.perf_counter() - start)
            counts = proxy.take()
        report(f"topics top --once {label}: wall (best of 3)", min(walls), "s")
        report(f"topics top --once {label}: requests", sum(counts.values()), "")
        print(f"#   {_summary(counts)}")

    from topics_cli.commands.top import DETAIL_BUDGET, Poller
    from topics_cli.top_model import TopModel
    from topics_client import Client

    with Client(proxy.url, max_retries=0, timeout=30) as client:
        model = TopModel()
        poller = Poller(client, model)
        poller.refresh([], 0)
        proxy.take()
        times: list[float] = []
        per_refresh: list[Counter[str]] = []
        for _ in range(10):
            visible = [r.topic for r in model.snapshot(rows=30, wall_ms=0).topics]
            start = time.perf_counter()
            poller.refresh(visible, DETAIL_BUDGET)
            times.append(time.perf_counter() - start)
            per_refresh.append(proxy.take())
        totals = [sum(c.values()) for c in per_refresh]
        steady = sorted(t for t, n in zip(times, totals, strict=True) if n == min(totals))
        busiest = totals.index(max(totals))
        report(
            f"live refresh, steady ({min(totals)} requests): median",
            steady[len(steady) // 2],
            "s",
            "< 1 s",
        )
        report(f"live refresh, busiest ({max(totals)} requests)", times[busiest], "s", "< 1 s")
        print(f"#   busiest: {_summary(per_refresh[busiest])}")
        print(f"#   requests per refresh: {totals}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--topics", type=int, default=10_000)
    parser.add_argument("--url", help="an empty server to fill (default: start one)")
    args = parser.parse_args()
    if args.url:
        run(args.url, args.topics)
        return
    import tempfile

    with (
        tempfile.TemporaryDirectory(prefix="bench-top-") as tmp,  # removed afterwards
        ServerProcess(data_dir=Path(tmp) / "data") as server,
    ):
        run(server.url, args.topics)


if __name__ == "__main__":
    main()
