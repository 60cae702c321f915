"""Sync/async twins without drift: every public method of each sync class has an async
twin with the same name, parameters (names, kinds, defaults) and docstring, and the
async class has nothing the sync one lacks. Types differ by design (``Client`` vs
``AsyncClient``, ``Iterator`` vs ``AsyncIterator``) and are left to mypy."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from topics_client import (
    AsyncClient,
    AsyncReplay,
    AsyncWatchStream,
    AsyncWorker,
    AsyncWorkStream,
    Client,
    Replay,
    WatchStream,
    Worker,
    WorkStream,
)
from topics_client._raw import (
    AsyncClientWithRawResponse,
    AsyncQueuesWithRawResponse,
    AsyncRoutersWithRawResponse,
    AsyncTopicsWithRawResponse,
    AsyncWatchWithRawResponse,
    ClientWithRawResponse,
    QueuesWithRawResponse,
    RoutersWithRawResponse,
    TopicsWithRawResponse,
    WatchWithRawResponse,
)
from topics_client.resources.probes import AsyncProbes, Probes
from topics_client.resources.queues import AsyncQueues, Queues
from topics_client.resources.routers import AsyncRouters, Routers
from topics_client.resources.topics import AsyncTopics, Topics
from topics_client.resources.watch import AsyncWatch, Watch

PAIRS: list[tuple[type, type]] = [
    (Client, AsyncClient),
    (Topics, AsyncTopics),
    (Routers, AsyncRouters),
    (Queues, AsyncQueues),
    (Watch, AsyncWatch),
    (Probes, AsyncProbes),
    (WatchStream, AsyncWatchStream),
    (WorkStream, AsyncWorkStream),
    (Replay, AsyncReplay),
    (Worker, AsyncWorker),
    (ClientWithRawResponse, AsyncClientWithRawResponse),
    (TopicsWithRawResponse, AsyncTopicsWithRawResponse),
    (RoutersWithRawResponse, AsyncRoutersWithRawResponse),
    (QueuesWithRawResponse, AsyncQueuesWithRawResponse),
    (WatchWithRawResponse, AsyncWatchWithRawResponse),
]
# sync name → async name where the protocols differ
RENAMED = {
    "__iter__": "__aiter__",
    "__next__": "__anext__",
    "__enter__": "__aenter__",
    "__exit__": "__aexit__",
}
STREAM_CLOSE = {"close": "aclose"}  # streams close like async generators


def _public(cls: type) -> dict[str, Any]:
    out = {}
    for klass in reversed(cls.__mro__[:-1]):  # own and inherited, not object's
        for name, value in vars(klass).items():
            if name.startswith("_") and name not in RENAMED and name not in RENAMED.values():
                continue
            out[name] = value
    return out


def _signature(member: Any) -> list[tuple[str, Any, Any]] | str:
    if isinstance(member, property | type) or not callable(member):
        return "attribute"
    fn = getattr(member, "func", member)  # cached_property
    sig = inspect.signature(fn)
    return [(p.name, p.kind, p.default) for p in sig.parameters.values()]


@pytest.mark.parametrize("sync_cls,async_cls", PAIRS, ids=lambda c: c.__name__)
def test_sync_and_async_twins_match(sync_cls: type, async_cls: type) -> None:
    rename = dict(RENAMED)
    if sync_cls in (WatchStream, WorkStream):
        rename.update(STREAM_CLOSE)
    sync_members = _public(sync_cls)
    async_members = _public(async_cls)
    expected = {rename.get(name, name) for name in sync_members}
    assert set(async_members) == expected
    for name, member in sync_members.items():
        twin = async_members[rename.get(name, name)]
        assert _signature(twin) == _signature(member), name
        assert inspect.getdoc(twin) == inspect.getdoc(member), name
