"""``topics top`` against the real server: the live view on a pseudo-terminal (records being
written, a router, a queue; keys, resize, leaving cleanly) and the ``--once`` snapshot checked
field by field."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli.conftest import Run, cli_env

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


SGR = re.compile(r"\x1b\[([0-9;]*)m")


def _colours(out: bytes) -> set[str]:
    """The colour parameters (foreground/background) of every SGR sequence in ``out``."""
    found = set()
    for params in SGR.findall(out.decode(errors="replace")):
        for p in params.split(";"):
            if p.isdigit() and (30 <= int(p) <= 38 or 40 <= int(p) <= 48 or int(p) >= 90):
                found.add(p)
    return found


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class PtySession:
    """``topics ARGS`` on a pseudo-terminal it controls (so Ctrl-C and SIGWINCH reach it the
    way a terminal delivers them); the same spawn as ``tests.cli.conftest.run_in_pty``, kept
    open for keys and resizes."""

    def __init__(self, args: list[str], env: dict[str, str], rows: int = 40, cols: int = 160):
        self.master, self.slave = pty.openpty()
        _set_size(self.slave, rows, cols)
        self.tty_before = termios.tcgetattr(self.slave)
        self.out = b""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "topics_cli", *args],
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            env={**env, "TERM": "xterm-256color", "COLUMNS": "", "LINES": ""},
            start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )

    def pump(self, seconds: float) -> bool:
        """Read what arrives for up to ``seconds``; False once the terminal closed."""
        ready, _, _ = select.select([self.master], [], [], seconds)
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:
            return False
        self.out += data
        return bool(data)

    def frames(self) -> list[str]:
        """Each redraw starts at the top-left corner (``ESC [ H``): the screens drawn so far,
        escape codes removed."""
        text = self.out.decode(errors="replace")
        return [ANSI.sub("", part) for part in text.split("\x1b[H")]

    def wait_for(self, check: Callable[[str], bool], timeout: float = 30.0) -> str:
        """The first complete screen (from the ones drawn after this call) passing ``check``."""
        start = len(self.frames()) - 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            frames = self.frames()
            for frame in frames[start:-1]:  # the last one may still be arriving
                if check(frame):
                    return frame
            if self.proc.poll() is not None:
                self.pump(0.2)
                break
            self.pump(0.2)
        tail = self.frames()[-2:] if len(self.frames()) > 1 else self.frames()
        raise AssertionError("no screen matched; last:\n" + "\n".join(tail))

    def key(self, data: bytes) -> None:
        os.write(self.master, data)

    def resize(self, rows: int, cols: int) -> None:
        _set_size(self.master, rows, cols)
        self.proc.send_signal(signal.SIGWINCH)

    def finish(self, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.pump(0.2):
            if self.proc.poll() is not None and not select.select([self.master], [], [], 0)[0]:
                break
        return self.proc.wait(max(0.1, deadline - time.monotonic()))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def session_env(base_url: str, tmp_path: Path) -> dict[str, str]:
    return cli_env(base_url, tmp_path)


@pytest.fixture
def prefix(http: httpx.Client) -> str:
    """A fresh name prefix with: ``{p}orders`` (cap 1,000 records, written to), a router
    ``{p}orders->{p}audit``, a queue ``{p}jobs`` with 5 jobs (2 claimed, 1 delayed) and a
    TTL topic ``{p}sess``."""
    p = f"top{uuid.uuid4().hex[:8]}-"
    assert http.put(f"/v0/topics/{p}orders", json={"cap_records": 1000}).status_code == 201
    assert http.put(f"/v0/topics/{p}sess", json={"ttl_ms": 3_600_000}).status_code == 201
    assert http.put(f"/v0/topics/{p}jobs", json={"type": "queue"}).status_code == 201
    spec = {"source": f"{p}orders", "dest": f"{p}audit"}
    assert http.put(f"/v0/routers/{p}orders->{p}audit", json=spec).status_code == 201
    write(http, f"{p}orders", 30)
    write(http, f"{p}sess", 3)
    write(http, f"{p}jobs", 5)
    claimed = http.post(f"/v0/topics/{p}jobs/claim", json={"node": "w1", "max": 3}).json()
    seq = claimed["claimed"][0]["$seq"]
    nack = {"node": "w1", "seqs": [seq], "delay_ms": 3_600_000}
    assert http.post(f"/v0/topics/{p}jobs/nack", json=nack).json()["nacked"] == 1
    return p


def write(http: httpx.Client, topic: str, n: int) -> None:
    body = {"records": [{"data": {"i": i}} for i in range(n)]}
    assert http.post(f"/v0/topics/{topic}", json=body).status_code == 200


@pytest.fixture
def writer(base_url: str, prefix: str) -> Iterator[threading.Event]:
    """Writes 10 records to ``{prefix}orders`` every 100 ms until the test ends."""
    stop = threading.Event()

    def run() -> None:
        with httpx.Client(base_url=base_url, timeout=10.0) as c:
            while not stop.wait(0.1):
                write(c, f"{prefix}orders", 10)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield stop
    stop.set()
    thread.join(10)


def _line(frame: str, name: str, last: bool = False) -> list[str]:
    """The cells of the (first or last) line starting with ``name``."""
    found = [line.split() for line in frame.splitlines() if line.split()[:1] == [name]]
    return (found[-1] if last else found[0]) if found else []


def _orders_rate(frame: str, p: str) -> float | None:
    """REC/S of the orders row (the token after the bytes figure and its unit)."""
    cells = _line(frame, f"{p}orders")
    for i, cell in enumerate(cells[:-1]):
        if cell in ("B", "KB", "MB", "GB") and i + 1 < len(cells):
            try:
                return float(cells[i + 1].replace(",", ""))
            except ValueError:
                return None
    return None


def test_live_view_on_a_terminal(
    session_env: dict[str, str], prefix: str, writer: threading.Event
) -> None:
    p = prefix
    s = PtySession(["top", "--prefix", p, "--interval", "0.5s"], session_env)
    try:
        # the rows, a non-zero write rate on the topic being written, the router and queue
        def full_view(f: str) -> bool:
            rate = _orders_rate(f, p)
            return (
                rate is not None
                and rate > 0
                and "running" in f
                and bool(_line(f, f"{p}jobs"))
                and "sort rate" in f
            )

        frame = s.wait_for(full_view)
        header = frame.splitlines()[0]
        assert header.startswith("topics top http://127.0.0.1:") and "ready" in header
        orders = _line(frame, f"{p}orders")
        assert orders[1:3] == ["log", "disk"] and f"{p}sess" in frame
        assert "no cap" not in " ".join(orders)  # capped: a fill percentage
        assert re.search(r"\d+%", " ".join(orders))
        router = _line(frame, f"{p}orders->{p}audit")
        assert router[1:4] == [f"{p}orders", "→", f"{p}audit"] and router[-1] == "running"
        # the queue table: READY IN FLIGHT DELAYED DEAD DONE/S
        queue = _line(frame, f"{p}jobs", last=True)
        assert queue[1:5] == ["2", "2", "1", "0"], queue
        assert "q quit" in frame

        # keys: s cycles the sort, p pauses, any resize redraws at the new size
        s.key(b"s")
        s.wait_for(lambda f: "sort head" in f)
        s.key(b"n")
        s.wait_for(lambda f: "sort name" in f)
        s.key(b"p")
        s.wait_for(lambda f: "PAUSED" in f)
        s.key(b"p")
        s.wait_for(lambda f: "PAUSED" not in f and "sort name" in f)
        s.resize(20, 90)
        narrow = s.wait_for(lambda f: "q quit" in f and max(map(len, f.splitlines())) <= 90)
        assert f"{p}orders" in narrow
        s.resize(12, 60)
        s.wait_for(lambda f: "q quit" in f and max(map(len, f.splitlines())) <= 60)
        assert s.proc.poll() is None

        s.key(b"q")
        assert s.finish() == 0
        # the alternate screen was entered once and left last: nothing after it
        assert s.out.count(b"\x1b[?1049h") == 1 and s.out.count(b"\x1b[?1049l") == 1
        tail = s.out[s.out.rindex(b"\x1b[?1049l") + len(b"\x1b[?1049l") :]
        assert tail.strip() == b"", tail
        assert b"\x1b[?25h" in s.out  # cursor shown again
        assert b"Traceback" not in s.out
        assert termios.tcgetattr(s.slave) == s.tty_before  # echo and line mode are back
        assert _colours(s.out) == set()  # NO_COLOR (set by cli_env): bold and dim only
    finally:
        s.close()


def test_ctrl_c_leaves_and_restores_the_terminal(session_env: dict[str, str], prefix: str) -> None:
    colour = {k: v for k, v in session_env.items() if k != "NO_COLOR"}
    s = PtySession(["top", "--prefix", prefix, "--interval", "0.5s"], colour)
    try:
        s.wait_for(lambda f: f"{prefix}orders" in f)
        assert _colours(s.out)  # without NO_COLOR: "ready" in green, the sparkline in cyan
        s.key(b"\x03")
        assert s.finish() == 0
        tail = s.out[s.out.rindex(b"\x1b[?1049l") + len(b"\x1b[?1049l") :]
        assert tail.strip() == b"" and b"Traceback" not in s.out
        assert termios.tcgetattr(s.slave) == s.tty_before
    finally:
        s.close()


def test_once_json_field_by_field(
    topics: Callable[..., Run], http: httpx.Client, prefix: str, writer: threading.Event
) -> None:
    p = prefix
    started = time.time() * 1000
    r = topics("top", "--once", "-o", "json", "--prefix", p, "--interval", "1s", "--rows", "0")
    assert r.code == 0, r.err
    import orjson

    snap = orjson.loads(r.out)
    health = http.get("/v0/health").json()
    server = snap["server"]
    assert snap["url"].startswith("http://127.0.0.1:")
    assert server["version"] == health["version"]
    assert server["ready"] is True
    assert 0 < server["uptime_ms"] <= health["uptime_ms"]
    for key in ("topics", "routers", "records_live", "bytes_live", "sse_connections"):
        assert isinstance(server[key], int), key
    assert server["write_rate"] > 0 and server["routers_stalled"] == 0
    assert (snap["sort"], snap["prefix"], snap["samples"]) == ("rate", p, 2)
    names = [t["topic"] for t in snap["topics"]]
    assert sorted(names) == sorted(f"{p}{n}" for n in ("audit", "jobs", "orders", "sess"))
    assert snap["topics_matching"] == 4
    # sorted by rate: the topic being written and its router's destination lead
    assert set(names[:2]) == {f"{p}orders", f"{p}audit"}
    rows = {t["topic"]: t for t in snap["topics"]}

    orders = rows[f"{p}orders"]
    state = http.get(f"/v0/topics/{p}orders", params={"touch": "false"}).json()
    assert (orders["type"], orders["durability"]) == ("log", "disk")
    assert orders["cap_records"] == 1000 and orders["cap_bytes"] == 0 and orders["ttl_ms"] == 0
    assert 30 <= orders["head_seq"] <= state["head_seq"]
    assert orders["earliest_seq"] == 1 or orders["records"] == 1000
    assert orders["fill"] == pytest.approx(orders["records"] / 1000, abs=1e-4)
    assert orders["bytes"] > 0 and orders["rate"] > 0 and orders["oldest_age_ms"] is None

    sess = rows[f"{p}sess"]
    assert (sess["head_seq"], sess["records"], sess["earliest_seq"]) == (3, 3, 1)
    assert sess["ttl_ms"] == 3_600_000 and sess["fill"] is None and sess["rate"] == 0.0
    assert 0 <= sess["oldest_age_ms"] <= time.time() * 1000 - started + 60_000

    jobs = rows[f"{p}jobs"]
    assert (jobs["type"], jobs["head_seq"], jobs["records"]) == ("queue", 5, 5)

    (router,) = snap["routers"]
    assert router["router"] == f"{p}orders->{p}audit"
    assert (router["source"], router["dest"]) == (f"{p}orders", f"{p}audit")
    assert router["state"] == "running"
    assert router["forwarded_total"] >= 30 and router["reason"] is None
    assert isinstance(router["lag"], int) and router["lag"] >= 0
    assert router["forward_rate"] is not None and router["forward_rate"] >= 0

    (queue,) = snap["queues"]
    assert queue == {
        "topic": f"{p}jobs",
        "ready": 2,
        "in_flight": 2,
        "delayed": 1,
        "dead_lettered": 0,
        "done_rate": 0.0,
    }


def test_once_one_sample_jsonl_sort_rows_and_pipes(
    topics: Callable[..., Run], http: httpx.Client, prefix: str
) -> None:
    p = prefix
    # --interval 0: one listing, so rates are null; jsonl: one object per line, by kind
    r = topics("top", "--once", "-o", "jsonl", "--prefix", p, "--interval", "0", "--sort", "head")
    assert r.code == 0, r.err
    lines = r.jsonl()
    assert [line["kind"] for line in lines] == ["server"] + ["topic"] * 4 + ["router", "queue"]
    assert lines[0]["write_rate"] is None
    topic_lines = lines[1:5]
    assert all(t["rate"] is None for t in topic_lines)
    heads = [t["head_seq"] for t in topic_lines]
    assert heads == sorted(heads, reverse=True)
    # --rows and --sort name
    r = topics("top", "--prefix", p, "--interval", "0", "--sort", "name", "-n", "2")
    assert r.code == 0, r.err  # not a terminal: a snapshot without --once
    assert [t["topic"] for t in r.jsonl() if t["kind"] == "topic"] == [f"{p}audit", f"{p}jobs"]
    # pretty in a pipe: the tables, once
    r = topics("top", "--once", "-o", "pretty", "--prefix", p, "--interval", "0")
    assert r.code == 0 and f"{p}orders" in r.out and "QUEUE" in r.out and "q quit" not in r.out


def test_usage_errors(topics: Callable[..., Run]) -> None:
    assert topics("top", "--sort", "size", "--once").code == 2
    assert topics("top", "--interval", "soon", "--once").code == 2
    r = topics("top", "--once", env={"TOPICS_URL": "http://127.0.0.1:9"})
    assert r.code == 6 and r.err.startswith("topics: error: cannot connect")


class _SparseServer:
    """A relay in front of the real server that answers like a server offering less: no
    ``/v0/metrics`` or ``/v0/health`` (404 envelope), and router GETs without the reference
    server's additions (``state``, ``reason``, ``source_cursor``)."""

    def __init__(self, upstream: str) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        import orjson

        client = httpx.Client(base_url=upstream, timeout=30.0)
        self.client = client

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if path in ("/v0/metrics", "/v0/health"):
                    status = 404
                    body = orjson.dumps({"error": {"code": "not_found", "message": "no"}})
                else:
                    r = client.get(self.path)
                    status, body = r.status_code, r.content
                    if path.startswith("/v0/routers/") and status == 200:
                        data = orjson.loads(body)
                        for key in ("state", "reason", "source_cursor"):
                            data.pop(key, None)
                        body = orjson.dumps(data)
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # diff (the oldest record of a TTL topic)
                length = int(self.headers.get("content-length") or 0)
                r = client.post(
                    self.path,
                    content=self.rfile.read(length),
                    headers={"content-type": "application/json"},
                )
                self.send_response(r.status_code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.client.close()


def test_figures_a_server_does_not_give_are_null_not_errors(
    topics: Callable[..., Run], base_url: str, prefix: str
) -> None:
    sparse = _SparseServer(base_url)
    try:
        r = topics(
            "top", "--once", "-o", "json", "--prefix", prefix, "--interval", "0",
            env={"TOPICS_URL": sparse.url},
        )  # fmt: skip
        assert r.code == 0, r.err
        import orjson

        snap = orjson.loads(r.out)
        assert snap["server"]["version"] is None and snap["server"]["uptime_ms"] is None
        assert snap["server"]["ready"] is None and snap["server"]["topics"] is None
        (router,) = snap["routers"]
        assert (router["state"], router["lag"], router["reason"]) == (None, None, None)
        assert router["forwarded_total"] >= 30  # the listing still says this
        (queue,) = snap["queues"]  # known as a queue from its state, counters from there too
        assert (queue["ready"], queue["in_flight"], queue["delayed"]) == (2, 2, 1)
        r = topics(
            "top", "--once", "-o", "pretty", "--prefix", prefix, "--interval", "0",
            env={"TOPICS_URL": sparse.url, "COLUMNS": "160"},
        )  # fmt: skip
        assert r.code == 0, r.err
        assert f"{prefix}orders" in r.out and "–" in r.out
    finally:
        sparse.close()


def test_a_server_lost_mid_view_is_reported_on_screen_and_q_still_leaves(
    server_factory: Callable[..., object], tmp_path: Path
) -> None:
    from tests.serverproc import ServerProcess

    private = server_factory(data_dir=tmp_path / "server")  # its files stay under tmp_path
    assert isinstance(private, ServerProcess)
    httpx.post(f"{private.url}/v0/topics/lonely", json={"records": [{"data": 1}]})
    s = PtySession(["top", "--interval", "0.5s"], cli_env(private.url, tmp_path))
    try:
        s.wait_for(lambda f: "lonely" in f and "ready" in f)
        private.stop()
        frame = s.wait_for(lambda f: "refresh failed" in f)
        assert "lonely" in frame  # the last figures stay on screen
        assert s.proc.poll() is None
        s.key(b"q")
        assert s.finish() == 0
        assert termios.tcgetattr(s.slave) == s.tty_before and b"Traceback" not in s.out
    finally:
        s.close()


def test_the_risk_probe_seam(base_url: str, prefix: str) -> None:
    """What ``--checkpoints`` plugs into: the probe gets every listed topic's rate once per
    refresh, its answer becomes the AT RISK column and the ``at_risk`` field."""
    from rich.console import Console

    from topics_cli.commands.top import snapshot
    from topics_cli.top_model import AtRisk, TopModel
    from topics_cli.top_render import render
    from topics_client import Client

    asked: list[dict[str, float | None]] = []

    def probe(rates: object) -> dict[str, AtRisk]:
        asked.append(dict(rates))  # type: ignore[call-overload]
        return {f"{prefix}orders": AtRisk("search: LOST 12", danger=True)}

    with Client(base_url) as client:
        model = TopModel(prefix=prefix)
        snap = snapshot(client, model, interval=0.2, rows=None, risk=probe)
    assert len(asked) == 1 and set(asked[0]) == {
        f"{prefix}{n}" for n in ("audit", "jobs", "orders", "sess")
    }
    assert asked[0][f"{prefix}sess"] == 0.0  # two samples: rates are measured
    rows = {r["topic"]: r for r in snap.to_json()["topics"]}
    assert rows[f"{prefix}orders"]["at_risk"] == {"label": "search: LOST 12", "danger": True}
    assert rows[f"{prefix}sess"]["at_risk"] is None
    console = Console(width=200, record=True, color_system="truecolor")
    console.print(render(snap, url=base_url, footer=False, width=200))
    text = console.export_text(clear=False)
    assert "AT RISK" in text and "search: LOST 12" in text
    danger = [line for line in console.export_text(styles=True).splitlines() if "7;31m" in line]
    assert len(danger) == 1 and f"{prefix}orders" in danger[0]  # the flagged row, reversed red


def test_checkpoints_column_from_real_cursors(
    topics: Callable[..., Run], http: httpx.Client, tmp_path: Path
) -> None:
    """``--checkpoints``: a reader behind a capped topic's eviction is flagged LOST; a reader
    at the head of another topic is safe; topics nobody reads have no label."""
    import orjson

    p = f"ck{uuid.uuid4().hex[:6]}-"
    http.put(f"/v0/topics/{p}capped", json={"cap_records": 5}).raise_for_status()
    records = [{"data": i} for i in range(12)]
    http.post(f"/v0/topics/{p}capped", json={"records": records}).raise_for_status()
    http.post(f"/v0/topics/{p}plain", json={"records": records[:3]}).raise_for_status()
    http.put(f"/v0/topics/{p}unread").raise_for_status()
    (tmp_path / "search.cp").write_text(orjson.dumps({f"{p}capped": 2}).decode() + "\n")
    try:
        r = topics(
            "top", "--once", "-o", "json", "--prefix", p, "--interval", "0", "--rows", "0",
            "--checkpoints", "*.cp", "--checkpoints", f"{p}plain=3",
        )  # fmt: skip
        assert r.code == 0, r.err
        rows = {t["topic"]: t for t in orjson.loads(r.out)["topics"]}
        assert rows[f"{p}capped"]["at_risk"] == {"label": "1 reader: 1 LOST ~5", "danger": True}
        assert rows[f"{p}plain"]["at_risk"] == {"label": "1 reader: safe", "danger": False}
        assert rows[f"{p}unread"]["at_risk"] is None
        bad = topics("top", "--once", "--checkpoints", "nothing-here-*.cp")
        assert bad.code == 2 and "Traceback" not in bad.err
    finally:
        for name in ("capped", "plain", "unread"):
            http.delete(f"/v0/topics/{p}{name}")
