"""watch and routers: these need /v0/watch and /v0/routers on the server."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

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
