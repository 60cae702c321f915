from __future__ import annotations

import itertools
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.serverproc import ServerProcess

_LEFT_BEHIND = pytest.StashKey[list[str]]()


@pytest.fixture(scope="session", autouse=True)
def private_tempdir(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """The run's temporary files (this process's ``tempfile`` and every child's, through
    ``TMPDIR``) go to one fresh directory under pytest's own temporary root, not the
    machine's temp dir. Whatever is still there at the end was left behind by a test:
    :func:`pytest_sessionfinish` fails the run and names it."""
    private = tmp_path_factory.mktemp("tempdir")
    saved_env, saved_tempdir = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = str(private)
    tempfile.tempdir = str(private)
    try:
        yield private
    finally:
        tempfile.tempdir = saved_tempdir
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        request.config.stash[_LEFT_BEHIND] = sorted(p.name for p in private.iterdir())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    left = session.config.stash.get(_LEFT_BEHIND, [])
    if not left:
        return
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = f"tests left {len(left)} temporary file(s) behind: {', '.join(left[:10])}"
    if reporter is not None:
        reporter.write_line(f"FAILED (temp files) {message}", red=True, bold=True)
    else:
        print(message)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One shared server for the whole run; tests isolate themselves by topic name."""
    with ServerProcess(data_dir=tmp_path_factory.mktemp("shared") / "data") as proc:
        yield proc


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start a private server with extra environment (limits, keys...); its data, port file
    and log live under the test's ``tmp_path`` unless ``data_dir`` says where."""
    started: list[ServerProcess] = []
    numbers = itertools.count()

    def start(env: dict[str, str] | None = None, data_dir: Path | None = None) -> ServerProcess:
        where = data_dir or tmp_path / f"server-{next(numbers)}"
        proc = ServerProcess(data_dir=where, env=env).start()
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
