"""Start the reference server as a real subprocess on an ephemeral port.

Shared by the server, client and CLI tests and by the benchmarks: the server is
launched with ``TOPICS_PORT=0`` (or a fixed ``port``) and reports the port it bound through
``TOPICS_PORT_FILE``; readiness is probed over real HTTP. The port file and the server's log
sit next to the data directory. Tests pass a ``data_dir`` under pytest's ``tmp_path``; without
one the server gets a temporary directory of its own, removed when the ``with`` block ends
(or at :meth:`ServerProcess.close`, at the latest when the interpreter exits).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx


def free_port() -> int:
    """A loopback port that was free a moment ago (for servers that must keep their URL)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """One reference-server process; usable as a context manager."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        startup_timeout: float = 20.0,
        port: int = 0,
    ) -> None:
        """``port=0`` (default) binds an ephemeral port, new on every start; a fixed
        ``port`` keeps the URL stable across :meth:`restart` (see :func:`free_port`)."""
        self._remove_own_dir: Callable[[], object] | None = None
        if data_dir is None:
            own = Path(tempfile.mkdtemp(prefix="topics-test-"))
            self.data_dir = own / "data"
            self._remove_own_dir = weakref.finalize(self, shutil.rmtree, own, ignore_errors=True)
        else:
            self.data_dir = Path(data_dir)
        self.extra_env = dict(env or {})
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.fixed_port = port
        self.port = 0
        self._log_path = self.data_dir.parent / f"{self.data_dir.name}.server.log"

    def start(self) -> ServerProcess:
        port_file = self.data_dir.parent / f"{self.data_dir.name}.port"
        port_file.unlink(missing_ok=True)
        env = {
            **os.environ,
            "TOPICS_HOST": "127.0.0.1",
            "TOPICS_PORT": str(self.fixed_port),
            "TOPICS_PORT_FILE": str(port_file),
            "TOPICS_DATA_DIR": str(self.data_dir),
            **self.extra_env,
        }
        log = open(self._log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "topics_server"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early ({self.proc.returncode}):\n{self.log()}")
            if port_file.exists():
                hostport = port_file.read_text().strip()
                self.port = int(hostport.rsplit(":", 1)[1])
                self.url = f"http://{hostport}"
                break
            time.sleep(0.02)
        else:
            self.stop()
            raise RuntimeError(f"server did not report its port:\n{self.log()}")
        keys = self.extra_env.get("TOPICS_API_KEYS", "")
        secret = keys.split(",")[0].split(":")[0].strip()
        headers = {"authorization": f"Bearer {secret}"} if secret else {}
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"{self.url}/v0/ready", timeout=1.0, headers=headers)
                if ready.status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"server did not become ready:\n{self.log()}")

    def log(self) -> str:
        try:
            return self._log_path.read_text(errors="replace")
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL: no shutdown work at all, as in a crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def restart(self) -> ServerProcess:
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the server and remove the directory it made for itself (if it made one)."""
        self.stop()
        if self._remove_own_dir is not None:
            self._remove_own_dir()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
