"""CLI test helpers: run ``python -m topics_cli`` as a real subprocess against the server."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Run:
    code: int
    out: str
    err: str

    def jsonl(self) -> list[dict]:
        return [orjson.loads(line) for line in self.out.splitlines() if line.strip()]

    def err_jsonl(self) -> list[dict]:
        return [orjson.loads(line) for line in self.err.splitlines() if line.startswith("{")]


def cli_env(base_url: str, tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOPICS")}
    env.update(TOPICS_URL=base_url, XDG_CONFIG_HOME=str(tmp / "xdg"), NO_COLOR="1", **extra)
    return env


@pytest.fixture
def topics(base_url: str, tmp_path: Path) -> Callable[..., Run]:
    """``topics(*args, input=..., env=..., timeout=...)`` → :class:`Run`."""

    def run(
        *args: str,
        input: str | bytes | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 60.0,
    ) -> Run:
        data = input.encode() if isinstance(input, str) else input
        proc = subprocess.run(
            [sys.executable, "-m", "topics_cli", *args],
            input=data,
            capture_output=True,
            env={**cli_env(base_url, tmp_path), **(env or {})},
            cwd=tmp_path,
            timeout=timeout,
        )
        return Run(proc.returncode, proc.stdout.decode(), proc.stderr.decode())

    return run


def run_in_pty(args: list[str], env: dict[str, str], timeout: float = 30.0) -> tuple[int, str]:
    """Run ``topics ARGS`` on a pseudo-terminal; returns (exit code, everything it wrote)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "topics_cli", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    chunks = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks += data
        elif proc.poll() is not None:
            break
    proc.wait(10)
    os.close(master)
    return proc.returncode, chunks.decode(errors="replace")
