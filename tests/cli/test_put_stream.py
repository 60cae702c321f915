"""``topics put`` from a pipe (issue 14, items 4 and 5): compact acks per batch, and a
partial batch sent after ``--linger`` so a slow producer is written as it goes."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import httpx

from tests.cli.conftest import Run, cli_env

Topics = Callable[..., Run]


def _records(base_url: str, topic: str) -> list[object]:
    r = httpx.post(f"{base_url}/v0/topics/{topic}/diff", json={})
    if r.status_code == 404:
        return []
    return [x["data"] for x in r.json()["records"]]


def _until(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _readline(stream: IO[bytes], timeout: float = 20.0) -> bytes:
    """One line of a child's stdout, or fail after ``timeout`` (never blocks forever)."""
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, "no output line in time"
    return stream.readline()


def test_a_slow_pipe_is_written_as_it_goes(base_url: str, topic: str, tmp_path: Path) -> None:
    """``(echo a; sleep …; echo b) | topics put TOPIC --raw``: ``a`` is appended (and
    acked) while stdin is still open, long before 500 lines or EOF."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "topics_cli", "put", topic, "--raw"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(base_url, tmp_path),
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(b"a\n")
        proc.stdin.flush()
        _until(lambda: _records(base_url, topic) == ["a"], "the first line to be appended")
        assert proc.poll() is None  # stdin is still open
        first = json.loads(_readline(proc.stdout))
        proc.stdin.write(b"b\n")
        proc.stdin.flush()
        _until(lambda: _records(base_url, topic) == ["a", "b"], "the second line")
        out, err = proc.communicate(timeout=30)  # closes stdin: EOF
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None and not pipe.closed:
                pipe.close()
    assert proc.returncode == 0, err
    acks = [first, *map(json.loads, out.splitlines())]
    base = {"topic": topic, "deduped": False}
    assert acks == [
        {**base, "first_seq": 1, "last_seq": 1, "count": 1, "created": True},
        {**base, "first_seq": 2, "last_seq": 2, "count": 1, "created": False},
    ]


def test_linger_takes_the_cli_duration_syntax(topics: Topics, topic: str) -> None:
    for value in ("0", "250ms", "1s"):
        r = topics("put", topic, "--linger", value, input="1\n2\n")
        assert r.code == 0, r.err
    r = topics("put", topic, "--linger", "soon", input="1\n")
    assert r.code == 2 and "Invalid value for --linger" in r.err and "Traceback" not in r.err


def test_piped_acks_are_compact_one_per_batch(topics: Topics, topic: str) -> None:
    n, size = 20_000, 500
    r = topics("put", topic, "--batch-size", str(size), input="".join(f"{i}\n" for i in range(n)))
    assert r.code == 0, r.err
    acks = r.jsonl()
    assert len(acks) == n // size
    for i, ack in enumerate(acks):
        first = i * size + 1
        assert ack == {
            "topic": topic,
            "first_seq": first,
            "last_seq": first + size - 1,
            "count": size,
            "created": i == 0,
            "deduped": False,
        }
    assert len(r.out) < 150 * len(acks)  # was every seq of every batch
    # -o json keeps the full answer: one document with every seq
    r = topics("put", topic, "-o", "json", input="".join(f"{i}\n" for i in range(1200)))
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["seqs"] == list(range(n + 1, n + 1201)) and doc["count"] == 1200


def test_stdin_line_numbers_across_reads(topics: Topics, topic: str) -> None:
    """Lines far longer than one read: an invalid one is still named by its number, and
    the batches before it are appended, none of its own."""
    pad = "x" * 300
    lines = [json.dumps({"i": i, "pad": pad}) for i in range(1, 2001)]
    lines[1499] = "{oops"
    r = topics("put", topic, "--batch-size", "500", input="\n".join(lines) + "\n")
    assert r.code == 2
    assert "line 1500" in r.err and "nothing of its batch" in r.err
    got = topics("diff", topic, "-o", "jsonl").jsonl()
    assert [x["data"]["i"] for x in got] == list(range(1, 1001))


def test_last_line_without_newline_and_blank_lines(topics: Topics, topic: str) -> None:
    r = topics("put", topic, input="1\n\n2\r\n3")
    assert r.code == 0, r.err
    assert [x["data"] for x in topics("diff", topic, "-o", "jsonl").jsonl()] == [1, 2, 3]


def test_acks_on_a_terminal_never_share_a_line_with_the_progress_line(
    base_url: str, topic: str, tmp_path: Path
) -> None:
    """``… | topics put TOPIC -o jsonl`` with stdout and stderr on a terminal: the
    progress line is redrawn after every batch, each ack goes above it."""
    import os
    import pty

    from tests.cli.test_screen import screen_lines

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "topics_cli", "put", topic, "-o", "jsonl", "--batch-size", "100"],
        stdin=subprocess.PIPE,
        stdout=slave,
        stderr=slave,
        env=cli_env(base_url, tmp_path),
    )
    os.close(slave)
    assert proc.stdin is not None
    proc.stdin.write("".join(f"{i}\n" for i in range(1000)).encode())
    proc.stdin.close()
    raw = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if select.select([master], [], [], 0.2)[0]:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            raw += data
        elif proc.poll() is not None:
            break
    proc.wait(10)
    os.close(master)
    text = raw.decode(errors="replace")
    assert proc.returncode == 0, text
    lines = screen_lines(text)
    assert any(s.startswith(f"put {topic}: ") for s in lines), text
    acks = [json.loads(s) for s in lines if s.startswith("{")]
    assert [a["first_seq"] for a in acks] == list(range(1, 1001, 100)), text
    assert [s for s in lines if f"put {topic}: " in s and '"topic"' in s] == [], text


def test_in_memory_stdin_is_read_too(base_url: str, topic: str) -> None:
    """Run in-process (``CliRunner``), stdin has no descriptor: read in chunks, no linger."""
    from typer.testing import CliRunner

    from topics_cli.app import app

    r = CliRunner().invoke(app, ["--url", base_url, "put", topic, "-o", "jsonl"], input="1\n2\n")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["count"] == 2
    assert _records(base_url, topic) == [1, 2]
