"""pytest plugin: a topics server, clients and throwaway topics for your own tests.

Installed with topics-py and registered through the ``pytest11`` entry point, so a test can
simply ask for the fixtures::

    from topics_client.testing import assert_complete, wait_for_records

    def test_orders_are_kept(topics_client, topic):
        topics_client.topics.write(topic, [{"data": {"id": i}} for i in range(3)])
        assert [r.data["id"] for r in wait_for_records(topics_client, topic, 3)] == [0, 1, 2]
        assert_complete(topics_client, topic)

Fixtures:

* ``topics_server`` (session): the base URL of a server. By default the bundled reference
  server (the ``server`` extra) started on an ephemeral loopback port with a temporary data
  directory, stopped and removed at the end of the session. With ``--topics-url URL`` (or
  ``TOPICS_URL``) the tests use that server instead and nothing is started.
* ``topics_client`` / ``async_topics_client``: a :class:`~topics_client.Client` /
  :class:`~topics_client.AsyncClient` bound to it (``--topics-api-key`` or
  ``TOPICS_API_KEY`` for servers with keys), closed after the test. The async one is an async
  fixture: use it from tests run by anyio's pytest plugin (``@pytest.mark.anyio``; anyio comes
  with httpx) or by pytest-asyncio.
* ``topic``: a unique topic name per test (``topics_prefix`` ini option, default ``test-``),
  created before the test and deleted after it. ``@pytest.mark.topic_config(cap_records=100,
  durability="memory")`` creates it with that config.

Unused, the plugin costs an import of pytest-only code: nothing of the server, httpx or the
client loads until a test asks for one of these fixtures.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import subprocess

    from ._client import AsyncClient, Client

__all__ = ["ReferenceServer"]

_SERVER_EXTRA = "pip install 'topics-py[server]'"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("topics", "topics event log")
    group.addoption(
        "--topics-url",
        default=None,
        help="use this topics server (default: TOPICS_URL, else start the bundled one)",
    )
    group.addoption(
        "--topics-api-key",
        default=None,
        help="API key for --topics-url (default: TOPICS_API_KEY)",
    )
    parser.addini("topics_prefix", "name prefix of the `topic` fixture's topics", default="test-")
    parser.addini(
        "topics_store",
        "store of the bundled server: sqlite (default, on disk) or memory",
        default="sqlite",
    )
    parser.addini("topics_startup_timeout", "seconds to wait for the bundled server", default="30")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "topic_config(**fields): create the `topic` fixture's topic with this config "
        "(cap_records=…, ttl_ms=…, durability=…)",
    )


def pytest_report_header(config: pytest.Config) -> str | None:
    url = _external_url(config)
    return f"topics: using the server at {url}" if url else None


def _external_url(config: pytest.Config) -> str | None:
    url = config.getoption("--topics-url") or os.environ.get("TOPICS_URL", "")
    return str(url).strip() or None


def _api_key(config: pytest.Config) -> str | None:
    key = config.getoption("--topics-api-key") or os.environ.get("TOPICS_API_KEY", "")
    return str(key).strip() or None


# ------------------------------------------------------------------ the bundled server


@dataclass
class ReferenceServer:
    """The bundled server as a child process: ``python -m topics_server`` on port 0.

    The server writes the port it bound to ``TOPICS_PORT_FILE``; readiness is
    ``GET /v0/ready`` answering 200. Usable on its own (``with ReferenceServer(dir) as s``).
    """

    data_dir: Path
    store: str = "sqlite"
    startup_timeout: float = 30.0
    url: str = ""
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def _log_path(self) -> Path:
        return self.data_dir / "server.log"

    def start(self) -> ReferenceServer:
        import subprocess

        _require_server_extra()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        port_file = self.data_dir / "port"
        env = {
            **os.environ,
            "TOPICS_HOST": "127.0.0.1",
            "TOPICS_PORT": "0",
            "TOPICS_PORT_FILE": str(port_file),
            "TOPICS_DATA_DIR": str(self.data_dir / "data"),
            "TOPICS_STORE": self.store,
        }
        env.pop("TOPICS_API_KEYS", None)
        with open(self._log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "topics_server"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + self.startup_timeout
        try:
            self.url = self._wait_for_port(port_file, deadline)
            self._wait_until_ready(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_for_port(self, port_file: Path, deadline: float) -> str:
        while time.monotonic() < deadline:
            self._check_alive()
            text = port_file.read_text().strip() if port_file.exists() else ""
            if text:
                return f"http://{text}"
            time.sleep(0.02)
        raise RuntimeError(f"the topics server did not report its port:\n{self.log()}")

    def _wait_until_ready(self, deadline: float) -> None:
        from urllib.error import URLError
        from urllib.request import urlopen

        while time.monotonic() < deadline:
            self._check_alive()
            try:
                with urlopen(f"{self.url}/v0/ready", timeout=1.0) as answer:
                    if answer.status == 200:
                        return
            except (URLError, OSError):
                pass
            time.sleep(0.02)
        raise RuntimeError(f"the topics server at {self.url} did not become ready:\n{self.log()}")

    def _check_alive(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            code = self._proc.returncode
            raise RuntimeError(f"the topics server exited with {code}:\n{self.log()}")

    def log(self) -> str:
        try:
            return self._log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        import signal
        import subprocess

        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def __enter__(self) -> ReferenceServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _require_server_extra() -> None:
    from importlib.util import find_spec

    missing = [
        name for name in ("topics_server", "starlette", "uvicorn") if find_spec(name) is None
    ]
    if missing:
        raise RuntimeError(
            f"the topics_server fixture starts the bundled reference server, which needs the "
            f"server extra ({', '.join(missing)} not installed): {_SERVER_EXTRA}; "
            f"or point the tests at a running server with --topics-url URL"
        )


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def topics_server(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Base URL of the topics server the tests use (see the module docstring)."""
    import shutil

    external = _external_url(pytestconfig)
    if external:
        yield external
        return
    root = tmp_path_factory.mktemp("topics-server")
    server = ReferenceServer(
        root,
        store=str(pytestconfig.getini("topics_store")),
        startup_timeout=float(pytestconfig.getini("topics_startup_timeout")),
    )
    try:
        server.start()
    except RuntimeError as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def topics_client(topics_server: str, pytestconfig: pytest.Config) -> Iterator[Client]:
    """A :class:`~topics_client.Client` bound to ``topics_server``."""
    from ._client import Client

    with Client(topics_server, api_key=_api_key(pytestconfig)) as client:
        yield client


@pytest.fixture
async def async_topics_client(
    topics_server: str, pytestconfig: pytest.Config
) -> AsyncIterator[AsyncClient]:
    """An :class:`~topics_client.AsyncClient` bound to ``topics_server`` (an async
    fixture: needs anyio's or pytest-asyncio's plugin to run the test)."""
    from ._client import AsyncClient

    async with AsyncClient(topics_server, api_key=_api_key(pytestconfig)) as client:
        yield client


_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]+")


def topic_name(prefix: str, test_name: str) -> str:
    """``prefix`` + the test's name made safe for a topic name + 8 random hex digits."""
    import uuid

    stem = _UNSAFE.sub("-", test_name).strip("-.:")[:80]
    name = f"{prefix}{stem}-{uuid.uuid4().hex[:8]}"
    if not name[0].isalnum():
        name = "t" + name
    return name[:255]


@pytest.fixture
def topic(request: pytest.FixtureRequest, topics_server: str) -> Iterator[str]:
    """A topic that exists for this test only (created first, deleted after)."""
    from ._client import Client
    from ._exceptions import TopicNotFoundError

    marker = request.node.get_closest_marker("topic_config")
    config: dict[str, Any] = dict(marker.kwargs) if marker else {}
    name = topic_name(str(request.config.getini("topics_prefix")), request.node.name)
    with Client(topics_server, api_key=_api_key(request.config)) as client:
        client.topics.put(name, config)
        try:
            yield name
        finally:
            with contextlib.suppress(TopicNotFoundError):
                client.topics.delete(name)
