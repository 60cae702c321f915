"""Server-suite fixtures: one keep-alive client for the whole run.

Overrides the function-scoped ``http`` of ``tests/conftest.py``: building an
``httpx.Client`` costs tens of milliseconds (TLS context), which adds up over
hundreds of tests. Tests still isolate themselves by topic name.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.serverproc import ServerProcess


@pytest.fixture(scope="session")
def shared_http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        yield client


@pytest.fixture
def http(shared_http: httpx.Client) -> httpx.Client:
    return shared_http
