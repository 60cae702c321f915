"""Startup and throughput of the ``topics`` CLI (prints figures; never passes or fails).

* wall time of ``topics --help`` and of a one-record ``topics put`` (median of runs), each
  beside the import floor of the libraries it cannot start without (``import typer``;
  ``import typer, httpx, httpcore``), so a figure reads as "our own cost over the floor"
  on whatever machine it runs;
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


# What a sending ``put`` cannot avoid: the CLI framework, the HTTP client and its transport
# (imported the way the client imports it, without httpx's own command-line extra).
_PUT_FLOOR = "import sys; sys.modules['httpx._main'] = None; import typer, httpx, httpcore"


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
    python = sys.executable
    help_floor = _time([python, "-c", "import typer"], env, 7)
    help_ = _time([TOPICS, "--help"], env, 7)
    report("import typer (floor of --help)", help_floor * 1000, "ms")
    report("topics --help", help_ * 1000, "ms", "<= 120 ms")
    report("  --help / its floor", help_ / help_floor, "x")
    put_floor = _time([python, "-c", _PUT_FLOOR], env, 7)
    put = _time([TOPICS, "put", topic, '{"n": 1}', "-q"], env, 7)
    report("import typer, httpx, httpcore (floor of put)", put_floor * 1000, "ms")
    report("topics put (one record)", put * 1000, "ms", "<= 150 ms")
    report("  put / its floor", put / put_floor, "x")
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
