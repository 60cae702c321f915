"""Server memory under hostile or heavy watchers: RSS of the server process.

Run: python -m bench.bench_watch_memory [--server-root DIR] [--data DIR]

Scenarios (each on a freshly restarted server over the same data directory, so
the baseline is the recovered store and nothing else):

- a stuck watcher: a socket that sends its GET and never reads, over 500,000
  100-byte records (default watch options);
- an 8 MiB ``max_batch_bytes`` watcher (``limit`` 1000) that reads ~400 MB of
  8 KB records as fast as it can, to caught-up, then closes;
- the ``/diff`` replay of the same 400 MB with the same page bounds, for comparison.

For each: the RSS after start-up (baseline), the peak during the scenario
(sampled every 5 ms from ``/proc/PID/status`` VmRSS, and VmHWM after resetting it
through ``/proc/PID/clear_refs`` where allowed), and the RSS once the stream has
closed. ``--server-root`` runs another checkout's server (for before/after
figures): the server subprocess is started with that directory as its working
directory and ``PYTHONPATH``. Prints figures; never passes or fails.
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson

from bench._common import ServerProcess, report

SMALL = "small"  # 500k x 100 B
LARGE = "large"  # ~400 MB of 8 KB records
SMALL_RECORDS = 500_000
LARGE_BYTES = 400_000_000
LARGE_RECORD = {"data": "x" * 8180}  # compact JSON of data: 8,182 bytes
BATCH_8M = {"limit": 1000, "max_batch_bytes": 8_388_608}


def status(pid: int, field: str) -> float:
    """A ``/proc/PID/status`` figure in MB (nan when unreadable)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def reset_hwm(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Sampler:
    """Polls VmRSS of ``pid`` on a thread; ``peak`` is the highest sample."""

    def __init__(self, pid: int, every: float = 0.005) -> None:
        self.pid, self.every = pid, every
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = status(self.pid, "VmRSS")
            if rss > self.peak:
                self.peak = rss
            time.sleep(self.every)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def settle(pid: int, seconds: float = 3.0) -> float:
    """RSS once it stops falling (or after ``seconds``)."""
    deadline = time.monotonic() + seconds
    last = status(pid, "VmRSS")
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = status(pid, "VmRSS")
        if abs(now - last) < 0.5:
            return now
        last = now
    return last


# -- data --------------------------------------------------------------------


def generate(url: str) -> None:
    headers = {"content-type": "application/json"}
    with httpx.Client(base_url=url, timeout=120, headers=headers) as http:
        small = orjson.dumps({"records": [{"data": {"payload": "x" * 86}}] * 1000})
        for _ in range(SMALL_RECORDS // 1000):
            r = http.post(f"/v0/topics/{SMALL}?return_seqs=false", content=small)
            assert r.status_code in (200, 201), r.text
        large = orjson.dumps({"records": [LARGE_RECORD] * 200})
        for _ in range(LARGE_BYTES // (200 * 8182) + 1):
            r = http.post(f"/v0/topics/{LARGE}?return_seqs=false", content=large)
            assert r.status_code in (200, 201), r.text


@contextmanager
def server(data: Path, root: str | None) -> Iterator[ServerProcess]:
    env = {"PYTHONPATH": root} if root else {}
    here = os.getcwd()
    if root:
        os.chdir(root)  # `python -m topics_server` finds the package in its cwd first
    try:
        proc = ServerProcess(data_dir=data, env=env, startup_timeout=120).start()
    finally:
        os.chdir(here)
    try:
        yield proc
    finally:
        proc.stop()


# -- clients -----------------------------------------------------------------


def open_watch(url: str, topic: str, **options: object) -> socket.socket:
    wid = httpx.post(f"{url}/v0/watch", json={"topics": {topic: {}}, **options}).json()["wid"]
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(f"GET /v0/watch/{wid} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
    return sock


def read_to_caught_up(sock: socket.socket) -> int:
    """Read (and drop) the stream until its first ``caught-up`` frame; bytes read."""
    marker = b"event: caught-up"
    total, tail = 0, b""
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise RuntimeError("stream closed before caught-up")
        total += len(chunk)
        if marker in tail + chunk[: len(marker)] or marker in chunk:
            return total
        tail = chunk[-len(marker) :]


def stuck_watcher(url: str) -> Callable[[], None]:
    sock = open_watch(url, SMALL)
    time.sleep(3.0)  # the server fills the socket buffers, then waits on the client
    return sock.close


def big_batch_watcher(url: str) -> Callable[[], None]:
    sock = open_watch(url, LARGE, **BATCH_8M)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    read_to_caught_up(sock)
    return sock.close


def diff_replay(url: str) -> Callable[[], None]:
    with httpx.Client(base_url=url, timeout=120) as http:
        from_seq = 0
        while True:
            r = http.post(f"/v0/topics/{LARGE}/diff", json={"from_seq": from_seq, **BATCH_8M})
            body = r.json()
            from_seq = body["next_from_seq"]
            if body["caught_up"]:
                break
    return lambda: None


def measure(
    data: Path, root: str | None, name: str, run: Callable[[str], Callable[[], None]]
) -> None:
    with server(data, root) as proc:
        assert proc.proc is not None
        pid = proc.proc.pid
        baseline = settle(pid, 2.0)
        hwm_ok = reset_hwm(pid)
        started = time.perf_counter()
        with Sampler(pid) as sampler:
            close = run(proc.url)
            elapsed = time.perf_counter() - started
            hwm = status(pid, "VmHWM") if hwm_ok else float("nan")
            close()
            after = settle(pid, 5.0)
        peak = max(sampler.peak, hwm if hwm == hwm else 0.0)
        report(
            f"{name}: RSS baseline / peak / after close",
            baseline,
            f"MB / {peak:,.0f} MB / {after:,.0f} MB",
        )
        report(f"{name}: time", elapsed, "s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server-root", help="checkout whose server to run (default: this one)")
    parser.add_argument("--data", help="data directory to reuse (generated when empty)")
    args = parser.parse_args()
    print(f"server code: {args.server_root or 'this checkout'}")
    data = Path(args.data or tempfile.mkdtemp(prefix="bench-watch-mem-")) / "data"
    if not (data / "topics.db").exists():
        data.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        with server(data, args.server_root) as proc:
            generate(proc.url)
        report("data generated (500k x 100 B, ~400 MB x 8 KB)", time.perf_counter() - started, "s")
    measure(data, args.server_root, "stuck watcher, 500k records", stuck_watcher)
    measure(data, args.server_root, "8 MiB-batch watcher, 400 MB", big_batch_watcher)
    measure(data, args.server_root, "/diff replay, 400 MB", diff_replay)


if __name__ == "__main__":
    main()
