"""Cold-replay figures: hot write-ack and watch-delivery latency, idle and while
another client replays a million cold records.

Run (PYTHONPATH picks the server code under test; the bench never imports it):
    PYTHONPATH=/path/to/checkout python /path/to/bench/bench_cold_replay.py [--records 1000000]

Three kinds of process, so neither load nor measurement shares an interpreter:
the server (``python -m topics_server``, started from a neutral directory so the
code on PYTHONPATH is what runs), a replay process (``--replay``) paging the big
``disk`` topic from seq 0 with ``/diff`` (limit 1000) over and over, and a
measurement process (``--measure``) timing sequential single-record writes to a
fresh small ``disk`` topic over a raw keep-alive connection (write sent -> ack) and
the same records arriving on an open watch of that topic (write sent -> SSE
record frame). Rounds alternate idle and replay. Prints figures; never passes
or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import orjson

from bench._common import RawClient, ServerProcess, percentile, report
from bench.bench_watch import RawWatcher

COLD = "cold-big"
BATCH = orjson.dumps({"records": [{"data": {"payload": "x" * 86}}] * 1000})
PAD = "x" * 80


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "n": len(samples),
        "p50": percentile(samples, 50),
        "p99": percentile(samples, 99),
        "max": max(samples, default=float("nan")),
    }


# -- the replay process ---------------------------------------------------------


async def replay_loop(url: str, topic: str, stop: threading.Event, limit_s: float) -> None:
    """Page ``topic`` from seq 0 to its head, again and again, until told to stop."""
    pages: list[float] = []
    records = passes = 0
    cursor = 0
    deadline = time.monotonic() + limit_s
    announced = False
    async with RawClient(url) as client:
        started = time.perf_counter()
        while not stop.is_set() and time.monotonic() < deadline:
            body = orjson.dumps({"from_seq": cursor, "limit": 1000})
            t0 = time.perf_counter()
            status, raw = await client.post(f"/v0/topics/{topic}/diff", body)
            pages.append((time.perf_counter() - t0) * 1000)
            if status != 200:
                raise RuntimeError(f"diff answered {status}: {raw[:200]!r}")
            page = orjson.loads(raw)
            records += len(page["records"])
            cursor = page["next_from_seq"]
            if page["caught_up"]:
                cursor, passes = 0, passes + 1
            if not announced:
                print("replaying", flush=True)
                announced = True
        elapsed = time.perf_counter() - started
    out = {"records": records, "seconds": elapsed, "passes": passes, "page": summary(pages)}
    print(json.dumps(out), flush=True)


def replay_main(url: str, topic: str, limit_s: float) -> None:
    stop = threading.Event()

    def wait_stdin() -> None:
        sys.stdin.read()  # the parent closes our stdin to stop us
        stop.set()

    threading.Thread(target=wait_stdin, daemon=True).start()
    asyncio.run(replay_loop(url, topic, stop, limit_s))


# -- the measurement process ----------------------------------------------------


async def measure(url: str, topic: str, writes: int, limit_s: float) -> dict[str, Any]:
    """Sequential one-record writes to ``topic``: ack latency and watch delivery latency."""
    async with RawClient(url) as http:
        status, raw = await http.post(
            "/v0/watch", orjson.dumps({"topics": {topic: {"tail": True}}})
        )
        if status not in (200, 201):
            raise RuntimeError(f"watch open answered {status}: {raw[:200]!r}")
        wid = orjson.loads(raw)["wid"]
    watcher = RawWatcher(url, wid)
    ready = asyncio.Event()
    task = asyncio.create_task(watcher.run(ready))
    await asyncio.wait_for(ready.wait(), 10)
    sent: dict[int, float] = {}
    acks: list[float] = []
    deadline = time.monotonic() + limit_s
    async with RawClient(url) as writer:
        for i in range(writes):
            if time.monotonic() > deadline:
                break
            body = orjson.dumps({"records": [{"data": {"i": i, "pad": PAD}}]})
            t0 = sent[i] = time.perf_counter()
            status, raw = await writer.post(f"/v0/topics/{topic}", body)
            acks.append((time.perf_counter() - t0) * 1000)
            if status not in (200, 201):
                raise RuntimeError(f"write answered {status}: {raw[:200]!r}")
            await asyncio.sleep(0.002)  # let the frame go out before the next write
    wait_until = time.monotonic() + 10
    while len(watcher.received) < len(sent) and time.monotonic() < wait_until:
        await asyncio.sleep(0.01)
    task.cancel()
    delivered = {
        data["i"]: (t - sent[data["i"]]) * 1000
        for t, rec in watcher.received
        if isinstance(data := rec["data"], dict)
    }
    skip = min(100, len(acks) // 10)  # the first writes warm the connection up
    return {
        "ack": summary(acks[skip:]),
        "deliver": summary([ms for i, ms in delivered.items() if i >= skip]),
        "lost": len(sent) - len(delivered),
    }


# -- the orchestrator ---------------------------------------------------------------


def child(*args: str, stdin: int | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, *args], stdin=stdin, stdout=subprocess.PIPE, text=True
    )


def run_measure(url: str, topic: str, writes: int) -> dict[str, Any]:
    proc = child("--measure", url, "--topic", topic, "--writes", str(writes))
    out, _ = proc.communicate(timeout=180)
    if proc.returncode != 0:
        raise RuntimeError(f"measurement process failed ({proc.returncode})")
    result: dict[str, Any] = json.loads(out)
    return result


async def fill(url: str, topic: str, total: int) -> float:
    async with RawClient(url) as client:
        started = time.perf_counter()
        for _ in range(total // 1000):
            status, raw = await client.post(f"/v0/topics/{topic}?return_seqs=false", BATCH)
            if status not in (200, 201):
                raise RuntimeError(f"fill write answered {status}: {raw[:200]!r}")
        return (total // 1000 * 1000) / (time.perf_counter() - started)


def settle(client: httpx.Client, limit_s: float = 120) -> None:
    """Wait until the store has committed everything (so evicted payloads are cold)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        metrics = client.get("/v0/metrics", headers={"accept": "application/json"}).json()
        if metrics["wal"]["queue_depth"] == 0:
            return
        time.sleep(0.1)
    raise RuntimeError("the store did not drain its write queue")


_phases = itertools.count(1)


def phase(
    server_pid: int, url: str, writes: int, replay: bool, replay_limit: float
) -> tuple[dict[str, Any], dict[str, Any] | None, float]:
    """One measurement, idle or with the replay process running; returns the
    measurement, the replay's own figures and the server's CPU use (cores).

    Each measurement writes to a new small topic, so every phase sees the same
    hot-topic state (a few thousand records, all within the hot budget).
    """
    loader = None
    if replay:
        loader = child("--replay", url, "--seconds", str(replay_limit), stdin=subprocess.PIPE)
        assert loader.stdout is not None
        if loader.stdout.readline().strip() != "replaying":
            raise RuntimeError("replay process did not start")
    cpu0, t0 = cpu_seconds(server_pid), time.perf_counter()
    loader_cpu0 = cpu_seconds(loader.pid) if loader is not None else 0.0
    topic = f"hot-{'replay' if replay else 'idle'}-{next(_phases)}"
    httpx.put(f"{url}/v0/topics/{topic}", json={"durability": "disk"}).raise_for_status()
    result = run_measure(url, topic, writes)
    elapsed = time.perf_counter() - t0
    cpu = (cpu_seconds(server_pid) - cpu0) / elapsed
    figures = None
    if loader is not None:
        loader_cpu = (cpu_seconds(loader.pid) - loader_cpu0) / elapsed
        assert loader.stdin is not None and loader.stdout is not None
        loader.stdin.close()  # the replay process stops at its next page
        figures = json.loads(loader.stdout.read())
        figures["cpu"] = loader_cpu
        loader.wait(60)
    return result, figures, cpu


def show(label: str, result: dict[str, Any], cpu: float) -> None:
    ack, deliver = result["ack"], result["deliver"]
    report(f"{label}: write-ack p50 / p99", ack["p50"], f"ms / {ack['p99']:.2f} ms")
    report(f"{label}: watch delivery p50 / p99", deliver["p50"], f"ms / {deliver['p99']:.2f} ms")
    print(
        f"{'':<8}(n={ack['n']:.0f} acks, max {ack['max']:.1f} ms; "
        f"n={deliver['n']:.0f} frames, max {deliver['max']:.1f} ms; "
        f"lost {result['lost']}; server CPU {cpu:.2f} cores)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--writes", type=int, default=1500, help="hot writes per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="idle + replay pairs")
    parser.add_argument("--replay", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--measure", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=120, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.replay:
        replay_main(args.replay, COLD, args.seconds)
        return
    if args.measure:
        result = asyncio.run(measure(args.measure, args.topic, args.writes, args.seconds))
        print(json.dumps(result), flush=True)
        return

    with tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp:
        # `python -m` puts the working directory first on the server's path: start it
        # from an empty one so PYTHONPATH alone decides which server code runs.
        os.chdir(tmp)
        where = subprocess.run(
            [sys.executable, "-c", "import topics_server; print(topics_server.__file__)"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        load = Path("/proc/loadavg").read_text().split()[:3]
        print(
            f"cold replay on {os.cpu_count()} cores (load average {' '.join(load)}); "
            f"server code: {where}",
            flush=True,
        )
        with ServerProcess(data_dir=Path(tmp) / "data") as server:
            assert server.proc is not None
            url = server.url
            with httpx.Client(base_url=url, timeout=60) as client:
                client.put(f"/v0/topics/{COLD}", json={"durability": "disk"}).raise_for_status()
                rate = asyncio.run(fill(url, COLD, args.records))
                settle(client)
            report(f"filled {args.records:,} records (disk)", rate, "rec/s")
            for n in range(1, args.rounds + 1):
                result, _, cpu = phase(server.proc.pid, url, args.writes, False, args.seconds)
                show(f"idle #{n}", result, cpu)
                idle_p99 = result["ack"]["p99"]
                result, figures, cpu = phase(server.proc.pid, url, args.writes, True, args.seconds)
                show(f"replay #{n}", result, cpu)
                assert figures is not None
                page = figures["page"]
                report(
                    f"replay #{n}: cold replay rate",
                    figures["records"] / figures["seconds"],
                    f"rec/s (page p50 {page['p50']:.1f} / p99 {page['p99']:.1f} ms, "
                    f"{figures['passes']} passes; replay process CPU {figures['cpu']:.2f} cores)",
                )
                report(
                    f"replay #{n}: ack p99 replay / idle",
                    result["ack"]["p99"] / idle_p99,
                    "x",
                    "<= 2",
                )


if __name__ == "__main__":
    main()
