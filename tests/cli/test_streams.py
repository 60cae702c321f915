"""watch, routers and the demo: these need /v0/watch and /v0/routers on the server."""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.cli.conftest import Run, cli_env, run_in_pty

Topics = Callable[..., Run]


def test_watch_jsonl_lossless_and_until_caught_up(
    topics: Topics, topic: str, base_url: str
) -> None:
    other = topic + "-b"
    topics("put", topic, '{"a": 1}', "--tag", "x", "--meta", "k=v", "--node", "n1")
    topics("put", other, "2")
    r = topics("watch", topic, other, "--from", "start", "--until-caught-up", "-o", "jsonl")
    assert r.code == 0, r.err
    lines = r.jsonl()
    diff = httpx.post(f"{base_url}/v0/topics/{topic}/diff", json={"include_tags": True}).json()
    assert [x for x in lines if x["topic"] == topic] == [{"topic": topic, **diff["records"][0]}]
    assert [x["data"] for x in lines if x["topic"] == other] == [2]


def test_watch_topic_at_seq_count_and_checkpoint(
    topics: Topics, topic: str, tmp_path: Path
) -> None:
    topics("put", topic, "1", "2", "3", "4")
    cp = tmp_path / "w.json"
    r = topics("watch", f"{topic}@2", "--count", "1", "-c", str(cp))
    assert [x["data"] for x in r.jsonl()] == [3]
    assert json.loads(cp.read_text()) == {topic: 3}
    r = topics("watch", topic, "-c", str(cp), "--until-caught-up")
    assert [x["data"] for x in r.jsonl()] == [4]


def test_watch_tails_new_records_and_idle_timeout(
    topics: Topics, topic: str, base_url: str, tmp_path: Path
) -> None:
    topics("put", topic, '"old"')
    proc = subprocess.Popen(
        [sys.executable, "-m", "topics_cli", "watch", topic, "--idle-timeout", "3s", "-o", "jsonl"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(base_url, tmp_path),
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # wait for the session to exist, then write
        if (
            httpx.get(f"{base_url}/v0/metrics", headers={"accept": "application/json"})
            .json()
            .get("sse_connections", 0)
        ):
            break
        time.sleep(0.05)
    httpx.post(f"{base_url}/v0/topics/{topic}", json={"records": [{"data": "new"}]})
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert [json.loads(x)["data"] for x in out.decode().splitlines()] == ["new"]


def test_watch_gap_reporting(topics: Topics, topic: str) -> None:
    topics("create", topic, "--cap-records", "5")
    topics("put", topic, input="".join(f"{i}\n" for i in range(1, 21)))
    r = topics("watch", topic, "--from", "start", "--until-caught-up", "--on-gap", "inline")
    assert r.code == 0, r.err
    assert "$gap" in r.jsonl()[0]
    assert [x["$seq"] for x in r.jsonl()[1:]] == [16, 17, 18, 19, 20]
    assert any("$gap" in e for e in r.err_jsonl())
    r = topics("watch", topic, "--from", "start", "--until-caught-up", "--fail-on-gap")
    assert r.code == 3


def test_watch_pretty_on_a_terminal(
    topics: Topics, topic: str, base_url: str, tmp_path: Path
) -> None:
    """Pretty mode and the live status line, through a pseudo-terminal."""
    topics("put", topic, '{"hello": "tty"}', "--tag", "greet")
    env = cli_env(base_url, tmp_path)
    env.pop("NO_COLOR")
    code, text = run_in_pty(["watch", topic, "--from", "start", "--idle-timeout", "2s"], env)
    assert code == 0, text
    assert '{"hello":"tty"}' in text and "#greet" in text
    assert "watching" in text and "records" in text  # the status line
    assert "\x1b[" in text  # colour on a terminal


class _Proxy:
    """A TCP relay whose connections the test can cut (to force a reconnect)."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.all: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.conns += [client, upstream]
            self.all += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.cut()
        self.sock.close()
        for s in self.all:
            s.close()

    def cut(self) -> None:
        conns, self.conns = self.conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def test_watch_reconnect_receipt(topic: str, base_url: str, server: object, tmp_path: Path) -> None:
    proxy = _Proxy(server.port)  # type: ignore[attr-defined]
    env = cli_env(f"http://127.0.0.1:{proxy.port}", tmp_path)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "topics_cli",
            "watch",
            topic,
            "--from",
            "start",
            "--count",
            "2",
            "--heartbeat-ms",
            "1000",
            "-o",
            "jsonl",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    write = lambda d: httpx.post(f"{base_url}/v0/topics/{topic}", json={"records": [{"data": d}]})  # noqa: E731
    write(1)
    assert proc.stdout is not None
    first = proc.stdout.readline()  # record 1 delivered: the stream is open and at cursor 1
    proxy.cut()
    write(2)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        proxy.close()
    assert proc.returncode == 0, err
    assert [json.loads(x)["data"] for x in [first, *out.splitlines()]] == [1, 2]
    receipts = [json.loads(x)["$reconnect"] for x in err.decode().splitlines() if "$reconnect" in x]
    # what the receipt counts is real: where it resumed and what was lost on the way
    assert receipts[0] == {
        "connection": 2,
        "resumed_at": {topic: 1},
        "new_session": False,
        "missing": 0,
    }, receipts


def test_router_commands(topics: Topics, topic: str) -> None:
    src, dst = topic + "-src", topic + "-dst"
    name = f"{src}->{dst}"
    r = topics(
        "router",
        "put",
        name,
        "--source",
        src,
        "--dest",
        dst,
        "--exactly-once",
        "--filter-prefix",
        "pub:",
        "-o",
        "json",
    )
    assert r.code == 0, r.err
    body = json.loads(r.out)
    assert body["guarantee"] == "exactly_once" and body["filter"] == ["tag", "Glob", "pub:*"]
    topics("put", src, "1", "--tag", "pub:1")
    topics("put", src, "2", "--tag", "priv")
    assert [x["data"] for x in topics("diff", dst).jsonl()] == [1]
    got = json.loads(topics("router", "get", name, "-o", "json").out)
    assert got["forwarded_total"] == 1
    rows = topics("router", "ls", "--source", src).jsonl()
    assert rows[0]["router"] == name and rows[0]["forwarded_total"] == 1
    assert "dest_lag" in rows[0]
    assert topics("router", "rm", name, "--yes").jsonl()[0]["deleted"] is True
    assert topics("router", "get", name).code == 4


def _demo(tmp_path: Path, *steps: str) -> subprocess.CompletedProcess[str]:
    args = [a for step in steps for a in ("--step", step)]
    return subprocess.run(
        [sys.executable, "-m", "topics_cli", "demo", "--fast", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=cli_env("http://127.0.0.1:9", tmp_path),
    )


def _transcript(stdout: str) -> list[tuple[list[str], list[str]]]:
    """``(argv, output lines)`` for each ``$ topics …`` line the demo printed."""
    runs: list[tuple[list[str], list[str]]] = []
    for line in stdout.splitlines():
        if line.startswith("$ topics "):
            runs.append((shlex.split(line)[2:], []))
        elif runs and line and not line.startswith(("   ", "==", "done:")):
            runs[-1][1].append(line)
    return runs


_VOLATILE = re.compile(
    r'"(\$ts|deadline|lease_id|last_write_ts|seconds|write_rate)":("[^"]*"|[\d.]+)'
)


def test_demo_runs_every_step(tmp_path: Path) -> None:
    r = _demo(tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    for title in ("durable stream", "slow reader", "job queue", "two-node mirror", "lease queue"):
        assert title in r.stdout
    runs = {" ".join(argv): out for argv, out in _transcript(r.stdout)}
    echoes = runs["diff a --node edge-a -o data -q"]
    assert echoes and set(echoes) == {"written at B"}  # never its own write
    assert set(runs["diff b --node edge-b -o data -q"]) == {"written at A"}
    dead = json.loads(runs["diff render.dlq -q"][0])
    assert dead["data"] == {"clip": 3} and dead["meta"]["$dead_letter_from"] == "render"
    info = json.loads(runs["info render"][0])
    assert info["queue"] == {"ready": 0, "in_flight": 0, "dead_lettered": 1}
    assert '"$gap"' in r.stderr  # the slow reader's diff reports its gap


def test_demo_prints_what_it_runs(tmp_path: Path, server_factory: Callable[..., Any]) -> None:
    """Each ``$ topics …`` line is the command that ran: replaying the printed lines, in
    order, against a fresh server gives the very output the demo printed under each."""
    r = _demo(tmp_path, "stream", "fanout", "queue")
    assert r.returncode == 0, r.stdout + r.stderr
    runs = _transcript(r.stdout)
    assert [argv[0] for argv, _ in runs].count("put") >= 4
    server = server_factory()
    workdir = tmp_path / "replay"
    workdir.mkdir()
    for argv, printed in runs:
        again = subprocess.run(
            [sys.executable, "-m", "topics_cli", *argv],
            capture_output=True,
            text=True,
            cwd=workdir,
            env=cli_env(server.url, tmp_path),
            timeout=60,
        )
        assert again.returncode in (0, 3), (argv, again.stderr)
        assert printed, argv  # every command shown printed its own output
        replayed = [_VOLATILE.sub("", line) for line in again.stdout.splitlines()]
        assert replayed == [_VOLATILE.sub("", line) for line in printed], argv
