"""Per-job overhead of ``topics lease run`` (prints figures; never passes or fails).

For each concurrency, ``--jobs`` jobs are written to a fresh queue, then
``topics lease run Q --exec true --once -j K`` drains it. Reported:

* jobs/s and ms/job from the run's own summary (``seconds``: from its first request to
  the drained queue, so interpreter startup is left out);
* the same from wall time, minus the wall time of a run on an empty queue (startup);
* for scale, the cost of spawning ``/bin/sh -c true`` alone (one at a time).

    .venv/bin/python bench/bench_lease.py [--jobs 500] [--concurrency 1 8] [--url URL]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import ServerProcess, report

TOPICS = str(Path(sys.executable).with_name("topics"))


def _queue(env: dict[str, str], jobs: int) -> str:
    name = f"bench-lease-{uuid.uuid4().hex[:8]}"
    quiet = {"env": env, "check": True, "stdout": subprocess.DEVNULL}
    subprocess.run([TOPICS, "create", name, "--type", "queue"], **quiet)
    if jobs:
        lines = b"".join(b'{"n": %d}\n' % i for i in range(jobs))
        subprocess.run([TOPICS, "put", name], input=lines, **quiet)
    return name


def _drain(env: dict[str, str], queue: str, concurrency: int) -> tuple[float, dict[str, object]]:
    argv = [TOPICS, "lease", "run", queue, "--exec", "true", "--once", "-j", str(concurrency)]
    start = time.perf_counter()
    done = subprocess.run(
        [*argv, "-o", "jsonl"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"lease run failed ({done.returncode}): {done.stderr.decode()}")
    summary = next(
        orjson.loads(line)["$summary"]
        for line in done.stderr.splitlines()
        if line.startswith(b'{"$summary"')
    )
    return wall, summary


def _spawn_ms(runs: int = 200) -> float:
    start = time.perf_counter()
    for _ in range(runs):
        subprocess.run(["/bin/sh", "-c", "true"], check=True)
    return (time.perf_counter() - start) / runs * 1000


def run(url: str, jobs: int, levels: list[int]) -> None:
    env = {**os.environ, "TOPICS_URL": url}
    report("spawn /bin/sh -c true (alone, serial)", _spawn_ms(), "ms")
    empty = min(_drain(env, _queue(env, 0), 1)[0] for _ in range(3))
    report("lease run --once, empty queue (wall)", empty * 1000, "ms")
    for k in levels:
        queue = _queue(env, jobs)
        wall, summary = _drain(env, queue, k)
        done = summary["done"]
        assert done == jobs, summary
        seconds = float(summary["seconds"])  # type: ignore[arg-type]
        report(f"lease run -j {k}: jobs/s (run)", jobs / seconds, "jobs/s")
        report(f"lease run -j {k}: ms/job (run)", seconds / jobs * 1000, "ms")
        net = max(wall - empty, 1e-9)
        report(f"lease run -j {k}: ms/job (wall - startup)", net / jobs * 1000, "ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--url")
    args = parser.parse_args()
    if args.url:
        run(args.url, args.jobs, args.concurrency)
        return
    with ServerProcess() as server:
        run(server.url, args.jobs, args.concurrency)


if __name__ == "__main__":
    main()
