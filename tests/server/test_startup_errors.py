"""Start-up mistakes and routine disconnects, seen from the outside (issue 14, items 7, 9,
10, 11): a bad data directory or host is one line and exit 2, never a traceback; the URL
the server announces is the one clients take; a reader leaving early is no error.

Each test runs the real server process (``python -m topics_server`` or ``topics serve``).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serverproc import ServerProcess

SERVER = [sys.executable, "-m", "topics_server"]
SERVE = [sys.executable, "-m", "topics_cli", "serve"]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOPICS")}
    env.update(TOPICS_PORT="0", TOPICS_PORT_FILE=str(tmp_path / "port"), **extra)
    return env


def _start_fails(argv: list[str], env: dict[str, str], cwd: Path) -> str:
    """Run a server that must refuse to start: exit 2, one line on stderr; returns it."""
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, timeout=60)
    err = proc.stderr.decode()
    assert proc.returncode == 2, (proc.returncode, err)
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert not (cwd / "port").exists()
    return lines[0]


@pytest.mark.parametrize("argv", [SERVER, SERVE], ids=["python-m", "topics-serve"])
def test_data_dir_that_is_a_file_is_one_line_exit_2(tmp_path: Path, argv: list[str]) -> None:
    (tmp_path / "afile").write_text("not a directory\n")
    line = _start_fails(argv, _env(tmp_path, TOPICS_DATA_DIR="afile"), tmp_path)
    assert "data directory 'afile'" in line and "not a directory" in line, line
    assert "TOPICS_DATA_DIR" in line


@pytest.mark.parametrize("argv", [SERVER, SERVE], ids=["python-m", "topics-serve"])
def test_data_dir_that_cannot_be_created_is_one_line_exit_2(
    tmp_path: Path, argv: list[str]
) -> None:
    (tmp_path / "afile").write_text("x")
    line = _start_fails(argv, _env(tmp_path, TOPICS_DATA_DIR="afile/data"), tmp_path)
    assert "data directory 'afile/data'" in line and "cannot be created" in line, line


@pytest.mark.parametrize("argv", [SERVER, SERVE], ids=["python-m", "topics-serve"])
def test_unresolvable_host_is_named_before_the_missing_keys(
    tmp_path: Path, argv: list[str]
) -> None:
    # 'not a host' is not loopback, so the key check would refuse it too: the host comes first
    line = _start_fails(argv, _env(tmp_path, TOPICS_HOST="not a host"), tmp_path)
    assert "host 'not a host' does not resolve" in line, line
    assert "TOPICS_API_KEYS" not in line
    assert not (tmp_path / "topics-data").exists()  # nothing created before the check


def test_unbindable_host_is_named_before_the_missing_keys(tmp_path: Path) -> None:
    # TEST-NET-1 (RFC 5737): resolves, but no interface here owns it
    with socket.socket() as probe:
        try:
            probe.bind(("192.0.2.1", 0))
        except OSError:
            pass
        else:
            pytest.skip("this host may bind any address (net.ipv4.ip_nonlocal_bind)")
    line = _start_fails(SERVER, _env(tmp_path, TOPICS_HOST="192.0.2.1"), tmp_path)
    assert "cannot listen on 192.0.2.1:0" in line, line
    assert "TOPICS_API_KEYS" not in line


def test_announced_url_is_the_base_url_clients_take(tmp_path: Path) -> None:
    with ServerProcess(data_dir=tmp_path / "data") as server:
        match = re.search(r"topics serving (\S+) .*export TOPICS_URL=(\S+)", server.log())
        assert match, server.log()
        announced, exported = match.groups()
        assert announced == exported == server.url  # no /v0: clients add it themselves
        # pasted into TOPICS_URL, it works (it used to give "no route for /v0/v0/topics")
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOPICS")}
        env.update(TOPICS_URL=exported, XDG_CONFIG_HOME=str(tmp_path / "xdg"))
        proc = subprocess.run(
            [sys.executable, "-m", "topics_cli", "ls", "-o", "json"],
            env=env,
            capture_output=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr.decode()


# -- a reader that goes away --------------------------------------------------------


@pytest.fixture
def debug_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``topics serve --log-level debug``: (url, its stderr file)."""
    log = tmp_path / "server.err"
    port_file = tmp_path / "port"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOPICS")}
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [
                *SERVE,
                "--port",
                "0",
                "--port-file",
                str(port_file),
                "--data-dir",
                str(tmp_path / "data"),
                "--log-level",
                "debug",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
        url = f"http://{port_file.read_text().strip()}"
        while httpx.get(f"{url}/v0/ready", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
        yield url, log
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _diff_head(body: bytes, path: str = "/v0/topics/big/diff") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode()


def test_reader_leaving_early_is_no_error(debug_server: tuple[str, Path], tmp_path: Path) -> None:
    url, log = debug_server
    hostport = url.removeprefix("http://")
    host, port = hostport.rsplit(":", 1)
    with httpx.Client(base_url=url, timeout=30) as http:
        for _ in range(4):  # 20k records of ~250 bytes: 20 pages of 1000
            batch = [{"data": {"pad": "x" * 200}} for _ in range(5000)]
            http.post("/v0/topics/big", json={"records": batch}).raise_for_status()
    body = b'{"from_seq": 0, "limit": 1000}'
    # 1. mid-response: read the start of a 250 KB page, then hang up
    for _ in range(5):
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(_diff_head(body) + body)
            assert sock.recv(1024).startswith(b"HTTP/1.1 200")
    # 2. what `topics diff big | head -3` does to its prefetched next page: the request's
    #    head is sent, then the process is gone before its body
    for _ in range(3):
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(_diff_head(body))
    # 3. the command itself
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOPICS")}
    env.update(TOPICS_URL=url, XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    for _ in range(3):
        cli = f"{sys.executable} -m topics_cli diff big -o jsonl | head -3"
        out = subprocess.run(
            ["bash", "-c", cli], env=env, capture_output=True, timeout=60, cwd=tmp_path
        )
        assert len(out.stdout.splitlines()) == 3
        assert "Traceback" not in out.stderr.decode(), out.stderr.decode()
    # the early leavers of (2) are logged at debug level, one line each, and only there
    deadline = time.monotonic() + 15
    while log.read_text().count("went away before its answer") < 3:
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    text = log.read_text()
    leaving = [line for line in text.splitlines() if "went away" in line]
    assert all("went away before its answer: POST /v0/topics/big/diff" in x for x in leaving), text
    assert "Traceback" not in text and "internal error" not in text, text
    assert "ClientDisconnect" not in text, text
