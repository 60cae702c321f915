"""Startup and throughput of the ``topics`` CLI (prints figures; never passes or fails).

* wall time of ``topics --help`` and of a one-record ``topics put`` (median of runs);
* ``topics diff --from start -o jsonl > /dev/null`` records/s over ``--records`` records;
* ``topics watch --from start --until-caught-up -o jsonl`` records/s over the same topic.

    .venv/bin/python bench/bench_cli.py [--records 200000] [--url URL]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import ServerProcess, report

TOPICS = str(Path(sys.executable).with_name("topics"))


def _time(argv: list[str], env: dict[str, str], runs: int, stdin: bytes | None = None) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, env=env, input=stdin, stdout=subprocess.DEVNULL, check=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def run(url: str, total: int) -> None:
    env = {**os.environ, "TOPICS_URL": url}
    topic = f"bench-cli-{uuid.uuid4().hex[:8]}"
    report("topics --help", _time([TOPICS, "--help"], env, 7) * 1000, "ms", "<= 250 ms")
    put = _time([TOPICS, "put", topic, '{"n": 1}', "-q"], env, 7)
    report("topics put (one record)", put * 1000, "ms", "<= 300 ms")
    lines = b"".join(b'{"n": %d, "payload": "%s"}\n' % (i, b"x" * 60) for i in range(total))
    start = time.perf_counter()
    subprocess.run(
        [TOPICS, "put", topic, "-q", "--batch-size", "5000"],
        env=env,
        input=lines,
        stdout=subprocess.DEVNULL,
        check=True,
    )
    elapsed = time.perf_counter() - start
    report("topics put from stdin", total / elapsed, "records/s")
    count = total + 7
    for name, argv in (
        ("topics diff -o jsonl > /dev/null", [TOPICS, "diff", topic, "-o", "jsonl", "-q"]),
        (
            "topics watch -o jsonl > /dev/null",
            [TOPICS, "watch", topic, "--from", "start", "--until-caught-up", "-o", "jsonl", "-q"],
        ),
    ):
        try:
            seconds = _time(argv, env, 3)
        except subprocess.CalledProcessError as exc:
            print(f"{name:<46} failed (exit {exc.returncode})")
            continue
        report(name, count / seconds, "records/s", ">= 100,000" if "diff" in name else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--url")
    args = parser.parse_args()
    if args.url:
        run(args.url, args.records)
        return
    with ServerProcess() as server:
        run(server.url, args.records)


if __name__ == "__main__":
    main()
