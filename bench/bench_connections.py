"""Slow connections: other clients' latency and server RSS while 500 sockets dawdle.

The attacker (a separate process) holds N connections that never finish a request:
half stay silent, half trickle one header byte a second, and each one the server
closes is opened again at once. Meanwhile this process times single-record writes
over one keep-alive connection, as it did with the server idle.

Run: .venv/bin/python -m bench.bench_connections [--slow 500] [--writes 2000]
Prints figures; never passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson

from bench._common import PAYLOAD, ServerProcess, percentile, report, rss_mb

JSON = {"content-type": "application/json"}


def write_latency(client: httpx.Client, topic: str, n: int) -> list[float]:
    body = orjson.dumps({"records": [{"data": PAYLOAD}]})
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        client.post(f"/v0/topics/{topic}", content=body, headers=JSON).raise_for_status()
        samples.append((time.perf_counter() - t0) * 1000)
    return samples[100:]


async def attack(host: str, port: int, count: int) -> None:
    """Keep ``count`` unfinished requests open until killed."""

    async def one(trickle: bool) -> None:
        head = b"POST /v0/topics/slow HTTP/1.1\r\nhost: x\r\nx-pad: " + b"a" * 10_000
        while True:
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            try:
                for byte in head if trickle else ():
                    writer.write(bytes((byte,)))
                    await writer.drain()
                    await asyncio.sleep(1.0)
                await reader.read()  # until the server closes it
            except OSError:
                pass
            finally:
                writer.close()

    tasks = [asyncio.create_task(one(i % 2 == 1)) for i in range(count)]
    print("attacking", flush=True)
    await asyncio.gather(*tasks)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slow", type=int, default=500)
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--attack", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.attack:
        host, port = args.attack.rsplit(":", 1)
        asyncio.run(attack(host, int(port), args.slow))
        return
    print(f"slow connections on {os.cpu_count()} cores; {args.slow} slow sockets")
    with ServerProcess() as server, httpx.Client(base_url=server.url, timeout=60) as client:
        assert server.proc is not None
        write_latency(client, "bench-warm", 500)
        idle = write_latency(client, "bench-idle", args.writes)
        rss_idle = rss_mb(server.proc.pid)
        report("write-ack p50, idle server", percentile(idle, 50), "ms")
        report("write-ack p99, idle server", percentile(idle, 99), "ms")
        report("server RSS, idle", rss_idle, "MB")
        attacker = subprocess.Popen(
            [
                sys.executable,
                *("-m", "bench.bench_connections", "--slow", str(args.slow)),
                *("--attack", server.url.removeprefix("http://")),
            ],
            stdout=subprocess.PIPE,
            cwd=Path(__file__).resolve().parent.parent,
        )
        try:
            assert attacker.stdout is not None
            attacker.stdout.readline()  # "attacking"
            time.sleep(2.0)  # let every socket connect
            busy = write_latency(client, "bench-busy", args.writes)
            rss_busy = rss_mb(server.proc.pid)
        finally:
            attacker.kill()
            attacker.wait()
        # the machine's load drifts: time idle again and compare with both
        after = write_latency(client, "bench-after", args.writes)
        report("write-ack p50, idle again after", percentile(after, 50), "ms")
        p50, idle50 = percentile(busy, 50), percentile(idle + after, 50)
        report(f"write-ack p50, {args.slow} slow connections", p50, "ms")
        report(f"write-ack p99, {args.slow} slow connections", percentile(busy, 99), "ms")
        report("p50 slow / p50 idle", p50 / idle50, "x", "<= 2")
        report(f"server RSS, {args.slow} slow connections", rss_busy, "MB")


if __name__ == "__main__":
    main()
