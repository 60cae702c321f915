"""``topics bench`` against the real server, with tiny workloads (each run takes seconds)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli.conftest import Run, cli_env, run_in_pty

ORDER = ("min", "p50", "p90", "p99", "p99.9", "max")


def names_under(base_url: str, prefix: str) -> list[str]:
    """Topics and routers on the server whose names start with ``prefix``."""
    topics = httpx.get(f"{base_url}/v0/topics", params={"prefix": prefix}).json()["topics"]
    routers = httpx.get(f"{base_url}/v0/routers", params={"prefix": prefix}).json()["routers"]
    return [t["topic"] for t in topics] + [r["router"] for r in routers]


def bench_json(topics: Callable[..., Run], *args: str) -> dict[str, Any]:
    run = topics("bench", *args, "-o", "json", timeout=60)
    assert run.code == 0, run.err
    doc: dict[str, Any] = json.loads(run.out)
    return doc


def check_row(row: dict[str, Any], records: int) -> None:
    """Counts add up and the percentiles are ordered."""
    assert row["records"] == row["expected"] == records
    assert row["histogram"]["count"] == row["ops"] > 0
    latency = [row["latency_ms"][key] for key in ORDER]
    assert latency == sorted(latency) and latency[0] > 0
    assert row["seconds"] > 0 and row["throughput"] == pytest.approx(
        records / row["seconds"], rel=0.01
    )
    assert row["generator"]["cpu_seconds"] > 0


@pytest.fixture
def prefix() -> str:
    return f"bt{uuid.uuid4().hex[:8]}-"


def test_write_single_records(topics: Callable[..., Run], base_url: str, prefix: str) -> None:
    doc = bench_json(topics, "write", "--records", "40", "--clients", "2", "--topic-prefix", prefix)
    (row,) = doc["results"]
    assert row["name"] == "write" and row["params"]["clients"] == 2
    check_row(row, 40)
    assert row["ops"] == 40
    assert doc["cleanup"] == {"ok": True, "problems": []}
    assert doc["options"]["prefix"].startswith(prefix)
    assert names_under(base_url, prefix) == []


def test_write_batched(topics: Callable[..., Run], prefix: str) -> None:
    doc = bench_json(
        topics, "write", "-n", "50", "--batch", "10", "--size", "300", "--clients", "2"
    )
    (row,) = doc["results"]
    assert row["name"] == "write batch=10"
    check_row(row, 50)
    assert row["ops"] == 5


def test_replay_pages_per_limit(topics: Callable[..., Run], base_url: str, prefix: str) -> None:
    doc = bench_json(
        topics, "replay", "-n", "50", "--limit", "1,7", "--clients", "2", "--topic-prefix", prefix
    )
    assert [r["name"] for r in doc["results"]] == ["replay limit=1", "replay limit=7"]
    one, seven = doc["results"]
    check_row(one, 50)
    check_row(seven, 50)
    assert one["ops"] == 50
    assert seven["ops"] == 2 * math.ceil(25 / 7)  # two readers, 25 records each
    assert names_under(base_url, prefix) == []


def test_fanout_every_watcher_gets_every_write(topics: Callable[..., Run]) -> None:
    doc = bench_json(topics, "fanout", "-n", "15", "--watchers", "1,3")
    assert [r["name"] for r in doc["results"]] == ["fanout watchers=1", "fanout watchers=3"]
    check_row(doc["results"][0], 15)
    check_row(doc["results"][1], 45)


def test_router_added_latency(topics: Callable[..., Run], base_url: str, prefix: str) -> None:
    doc = bench_json(topics, "router", "-n", "15", "--topic-prefix", prefix)
    (row,) = doc["results"]
    assert row["records"] == row["expected"] == row["histogram"]["count"] == 15
    assert row["latency_ms"]["p50"] <= row["latency_ms"]["max"]
    assert names_under(base_url, prefix) == []


def test_queue_claims_and_acks_every_job(topics: Callable[..., Run]) -> None:
    doc = bench_json(topics, "queue", "-n", "30", "--clients", "2", "--batch", "4")
    (row,) = doc["results"]
    check_row(row, 30)
    assert row["ops"] >= math.ceil(30 / 4)


def test_all_runs_every_workload(topics: Callable[..., Run], base_url: str, prefix: str) -> None:
    args = (
        "-n",
        "40",
        "--clients",
        "4",
        "--limit",
        "20",
        "--watchers",
        "2",
        "--topic-prefix",
        prefix,
    )
    doc = bench_json(topics, "all", *args)
    assert [r["name"] for r in doc["results"]] == [
        "write",
        "write batch=100",  # all without --batch: ack latency and batched throughput
        "replay limit=20",
        "fanout watchers=2",
        "router",
        "queue",
    ]
    for row in doc["results"]:
        assert row["records"] == row["expected"] > 0, row["name"]
    assert doc["results"][1]["records"] == 100  # rounded up to whole batches
    assert names_under(base_url, prefix) == []


def test_json_schema(topics: Callable[..., Run]) -> None:
    doc = bench_json(topics, "write", "-n", "5", "--clients", "1")
    assert doc["schema"] == "topics-bench/1"
    assert set(doc) >= {"url", "started", "seconds", "options", "generator", "results", "cleanup"}
    assert set(doc["generator"]) == {"cpu_count", "cpu_seconds", "cpu_cores"}
    (row,) = doc["results"]
    assert set(row) == {
        "name",
        "workload",
        "params",
        "procs",
        "ops",
        "records",
        "expected",
        "seconds",
        "throughput",
        "ops_per_s",
        "latency_ms",
        "generator",
        "histogram",
    }
    assert set(row["latency_ms"]) == {*ORDER, "mean"}
    assert set(row["histogram"]) == {"precision", "count", "sum", "min", "max", "buckets"}


def test_procs_two_merges_histograms(topics: Callable[..., Run]) -> None:
    doc = bench_json(topics, "write", "-n", "40", "--clients", "4", "--procs", "2")
    (row,) = doc["results"]
    assert row["procs"] == 2
    check_row(row, 40)
    assert row["ops"] == 40


def test_procs_two_split_the_replayed_range_exactly(topics: Callable[..., Run]) -> None:
    doc = bench_json(topics, "replay", "-n", "31", "--limit", "4", "--clients", "3", "--procs", "2")
    (row,) = doc["results"]
    assert row["procs"] == 2
    check_row(row, 31)  # every record read once: no range overlaps or is left out


def test_procs_two_splits_fanout_watchers(topics: Callable[..., Run]) -> None:
    doc = bench_json(topics, "fanout", "-n", "10", "--watchers", "3", "--procs", "2")
    (row,) = doc["results"]
    assert row["procs"] == 2
    check_row(row, 30)


def test_compare_prints_ratios(topics: Callable[..., Run], tmp_path: Path) -> None:
    first = topics("bench", "write", "-n", "10", "--clients", "2", "-o", "json", timeout=60)
    assert first.code == 0, first.err
    (tmp_path / "before.json").write_text(first.out)
    doc = bench_json(topics, "write", "-n", "10", "--clients", "2", "--compare", "before.json")
    old, new = json.loads(first.out)["results"][0], doc["results"][0]
    ratios = doc["compare"]["ratios"]["write"]
    for key in ("p50", "p99", "max"):
        want = round(new["latency_ms"][key] / old["latency_ms"][key], 3)
        assert ratios[key] == pytest.approx(want, abs=0.002)
    assert ratios["throughput"] == pytest.approx(new["throughput"] / old["throughput"], rel=0.01)
    pretty = topics("bench", "write", "-n", "5", "--compare", "before.json", "-o", "pretty")
    assert pretty.code == 0, pretty.err
    assert "ratio (this ÷ earlier)" in pretty.out and "before.json" in pretty.out


@pytest.mark.parametrize("procs", ["1", "2"])
def test_a_server_error_is_one_line_and_cleans_up(
    topics: Callable[..., Run], base_url: str, prefix: str, procs: str
) -> None:
    # records over the server's 1 MiB limit: every write (in the generators) is refused
    args = ("-n", "2", "--size", "1100000", "--procs", procs, "--topic-prefix", prefix)
    run = topics("bench", "write", *args)
    assert run.code == 1, run.err
    (line,) = [text for text in run.err.splitlines() if text.startswith("topics: error:")]
    assert "record_too_large" in line or "RecordTooLarge" in line
    assert "Traceback" not in run.err
    assert names_under(base_url, prefix) == []


def test_compare_with_a_file_that_is_not_a_report(
    topics: Callable[..., Run], tmp_path: Path
) -> None:
    (tmp_path / "other.json").write_text('{"hello": 1}')
    run = topics("bench", "write", "-n", "5", "--compare", "other.json")
    assert run.code == 2
    assert run.err.startswith("topics: error: --compare: other.json is not a `topics bench")
    assert "Traceback" not in run.err
    missing = topics("bench", "write", "-n", "5", "--compare", "nope.json")
    assert missing.code == 2 and "cannot read nope.json" in missing.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "unknown workload nope"),
        (["write", "--durability", "paper"], "one of ephemeral, memory, disk, fsync"),
        (["fanout", "--watchers", "0"], "positive integers"),
        (["write", "--topic-prefix", "-x"], "must start with a letter or digit"),
        (["write", "--duration", "soon"], "--duration"),
    ],
)
def test_usage_errors(topics: Callable[..., Run], args: list[str], message: str) -> None:
    run = topics("bench", *args)
    assert run.code == 2
    assert message in run.err


def test_pretty_on_a_terminal_draws_progress_summary_and_histogram(
    base_url: str, tmp_path: Path
) -> None:
    code, text = run_in_pty(
        ["bench", "write", "-n", "30", "--clients", "2"], cli_env(base_url, tmp_path)
    )
    assert code == 0, text
    assert "[1/1] write" in text and "░" in text  # the progress bar
    assert "p50" in text and "records/s" in text and "gen CPU" in text
    assert "write: 30 samples" in text and "│█" in text  # the histogram


def generators_of(pid: int) -> list[int]:
    """The ``--procs`` generator processes (multiprocessing spawn children) of ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def gone(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def _interrupt(
    base_url: str, tmp_path: Path, prefix: str, *args: str, generators: int = 0
) -> tuple[int, str]:
    """Start a long bench, SIGINT it once its topic (and its ``generators`` processes)
    exist; return (exit code, stderr) after checking those processes ended too."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "topics_cli", "bench", *args, "--topic-prefix", prefix],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=cli_env(base_url, tmp_path),
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 30
        while not names_under(base_url, prefix) or len(generators_of(proc.pid)) < generators:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the bench never got going"
            time.sleep(0.05)
        children = generators_of(proc.pid)
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        while not all(gone(child) for child in children):
            assert time.monotonic() < deadline + 30, "a generator process outlived the bench"
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err.decode()


def test_ctrl_c_deletes_what_the_run_created(base_url: str, tmp_path: Path, prefix: str) -> None:
    code, err = _interrupt(base_url, tmp_path, prefix, "write", "-n", "10000000", "--clients", "2")
    assert code == 130
    assert "interrupted" in err and "Traceback" not in err
    assert names_under(base_url, prefix) == []


@pytest.mark.parametrize(
    ("args", "generators"),
    [
        pytest.param(("router", "-n", "10000000"), 0, id="router"),
        pytest.param(("write", "-n", "10000000", "--clients", "2", "--procs", "2"), 2, id="procs"),
    ],
)
def test_ctrl_c_deletes_routers_and_stops_generators(
    base_url: str, tmp_path: Path, prefix: str, args: tuple[str, ...], generators: int
) -> None:
    code, err = _interrupt(base_url, tmp_path, prefix, *args, generators=generators)
    assert code == 130
    assert "interrupted" in err and "Traceback" not in err
    assert names_under(base_url, prefix) == []


def test_off_a_terminal_each_step_says_when_it_starts_and_ends(
    topics: Callable[..., Run], prefix: str
) -> None:
    """A run of minutes in CI shows where it is: a line on stderr as each step starts and
    ends (the progress bar is for terminals)."""
    run = topics("bench", "write,replay", "-n", "20", "--limit", "10", "--topic-prefix", prefix)
    assert run.code == 0, run.err
    events = [(k, v["step"]) for line in run.err_jsonl() for k, v in line.items()]
    assert events == [
        ("$bench_start", "write"),
        ("$bench_step", "write"),
        ("$bench_start", "replay limit=10"),
        ("$bench_step", "replay limit=10"),
    ]
    quiet = topics("bench", "write", "-n", "5", "-q", "--topic-prefix", prefix)
    assert quiet.code == 0 and quiet.err == ""
