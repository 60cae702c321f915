from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio.from_thread
import pytest

from topics_client import AsyncClient, Client


class Facade:
    """Drive a sync or async client through one sync surface, so each test runs twice.

    Coroutines are awaited on a blocking portal; iterators (sync or async) are collected
    into lists, which keeps sync/async parity checks one assertion each.
    """

    def __init__(self, target: Any, portal: anyio.from_thread.BlockingPortal | None) -> None:
        self._target = target
        self._portal = portal

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if callable(attr):
            return lambda *a, **k: self._run(attr, *a, **k)
        return Facade(attr, self._portal)

    def _run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._portal is None:
            result = fn(*args, **kwargs)
            if isinstance(result, Iterator) or type(result).__name__ == "Replay":
                return list(result)
            return result

        async def go() -> Any:
            result = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            if hasattr(result, "__aiter__"):
                return [item async for item in result]
            return result

        return self._portal.call(go)


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest, base_url: str) -> Iterator[Facade]:
    """The same API on ``Client`` and on ``AsyncClient``."""
    if request.param == "sync":
        with Client(base_url) as client:
            yield Facade(client, None)
        return
    with anyio.from_thread.start_blocking_portal() as portal:
        aclient = AsyncClient(base_url)
        try:
            yield Facade(aclient, portal)
        finally:
            portal.call(aclient.close)


@pytest.fixture
def client(base_url: str) -> Iterator[Client]:
    with Client(base_url) as c:
        yield c


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def collect(it: AsyncIterator[Any]) -> list[Any]:
    return [x async for x in it]
