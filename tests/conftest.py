from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.serverproc import ServerProcess


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One shared server for the whole run; tests isolate themselves by topic name."""
    with ServerProcess(data_dir=tmp_path_factory.mktemp("shared") / "data") as proc:
        yield proc


@pytest.fixture
def server_factory(tmp_path: object) -> Iterator[Callable[..., ServerProcess]]:
    """Start a private server with extra environment (limits, keys...)."""
    started: list[ServerProcess] = []

    def start(env: dict[str, str] | None = None, data_dir: object = None) -> ServerProcess:
        proc = ServerProcess(data_dir=data_dir, env=env).start()  # type: ignore[arg-type]
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def base_url(server: ServerProcess) -> str:
    return server.url


@pytest.fixture
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30.0) as client:
        yield client


@pytest.fixture
def topic() -> str:
    """A fresh topic name, unique across the whole run."""
    return f"t-{uuid.uuid4().hex[:12]}"
