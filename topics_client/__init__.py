"""Typed client for the topics `/v0` API, sync (:class:`Client`) and async
(:class:`AsyncClient`).

``import topics_client`` is cheap (the CLI pays it on every run): only the errors, the
defaults and helpers of ``_config`` (``resolve_base_url``, ``backoff_ms``, the replay
defaults) and the ``NOT_GIVEN`` sentinel load eagerly; everything else (clients, httpx,
models) loads on first attribute access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._config import (
    BASE_URL_ENV,
    DEFAULT_BACKOFF_BASE_MS,
    DEFAULT_BACKOFF_MAX_MS,
    DEFAULT_BASE_URL,
    DEFAULT_FOLLOW_WAIT_MS,
    DEFAULT_REPLAY_LIMIT,
    NOT_GIVEN,
    NotGiven,
    backoff_ms,
    normalize_base_url,
    resolve_api_key,
    resolve_base_url,
)
from ._exceptions import (
    APIConnectionError,
    APIError,
    APIResponseError,
    APITimeoutError,
    AuthenticationError,
    BatchTooLargeError,
    ConflictError,
    GapError,
    IncompatibleTopicError,
    InternalServerError,
    InvalidRequestError,
    NotAQueueError,
    NotATopicsServerError,
    NotFoundError,
    NotReadyError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RecordTooLargeError,
    RouterCycleError,
    RouterNotFoundError,
    ServiceUnavailableError,
    ShuttingDownError,
    StreamError,
    ThrottledError,
    TopicFullError,
    TopicNotEmptyError,
    TopicNotFoundError,
    TopicsError,
)

if TYPE_CHECKING:
    from ._checkpoint import load_checkpoint, save_checkpoint
    from ._client import AsyncClient, Client
    from ._models import (
        TOPIC_CONFIG_FIELDS,
        AckResult,
        ClaimResult,
        DeleteRecordsResult,
        DiffResult,
        ExtendResult,
        Gap,
        Health,
        Job,
        Metrics,
        NackResult,
        NewRecord,
        QueueCounters,
        Ready,
        Record,
        Router,
        RouterDeleteResult,
        RouterPage,
        RouterSummary,
        Tombstone,
        TopicConfig,
        TopicDeleteResult,
        TopicPage,
        TopicPutResult,
        TopicState,
        TopicSummary,
        WatchSession,
        WatchTopicStart,
        WriteResult,
    )
    from ._replay import AsyncReplay, Replay, ReplayBatch, ReplayState
    from ._response import RawResponse
    from ._sse import CaughtUpEvent, RecordsEvent, StreamErrorEvent, TopicDeletedEvent, WatchEvent
    from ._worker import AsyncWorker, Worker, WorkerStats
    from .resources.queues import AsyncWorkStream, WorkStream
    from .resources.watch import AsyncWatchStream, WatchStream

__version__ = "0.1.0"

_LAZY = {
    "TOPIC_CONFIG_FIELDS": "._models",
    "AckResult": "._models",
    "ClaimResult": "._models",
    "DeleteRecordsResult": "._models",
    "DiffResult": "._models",
    "ExtendResult": "._models",
    "Gap": "._models",
    "Health": "._models",
    "Job": "._models",
    "Metrics": "._models",
    "NackResult": "._models",
    "NewRecord": "._models",
    "QueueCounters": "._models",
    "Ready": "._models",
    "Record": "._models",
    "Router": "._models",
    "RouterDeleteResult": "._models",
    "RouterPage": "._models",
    "RouterSummary": "._models",
    "Tombstone": "._models",
    "TopicConfig": "._models",
    "TopicDeleteResult": "._models",
    "TopicPage": "._models",
    "TopicPutResult": "._models",
    "TopicState": "._models",
    "TopicSummary": "._models",
    "WatchSession": "._models",
    "WatchTopicStart": "._models",
    "WriteResult": "._models",
    "CaughtUpEvent": "._sse",
    "RecordsEvent": "._sse",
    "StreamErrorEvent": "._sse",
    "TopicDeletedEvent": "._sse",
    "WatchEvent": "._sse",
    "ReplayBatch": "._replay",
    "ReplayState": "._replay",
    "load_checkpoint": "._checkpoint",
    "save_checkpoint": "._checkpoint",
    "Client": "._client",
    "AsyncClient": "._client",
    "Replay": "._replay",
    "AsyncReplay": "._replay",
    "RawResponse": "._response",
    "WatchStream": ".resources.watch",
    "AsyncWatchStream": ".resources.watch",
    "WorkStream": ".resources.queues",
    "AsyncWorkStream": ".resources.queues",
    "Worker": "._worker",
    "AsyncWorker": "._worker",
    "WorkerStats": "._worker",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'topics_client' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    if isinstance(value, type):
        value.__module__ = __name__
    globals()[name] = value
    return value


__all__ = [
    "BASE_URL_ENV",
    "DEFAULT_BACKOFF_BASE_MS",
    "DEFAULT_BACKOFF_MAX_MS",
    "DEFAULT_BASE_URL",
    "DEFAULT_FOLLOW_WAIT_MS",
    "DEFAULT_REPLAY_LIMIT",
    "NOT_GIVEN",
    "TOPIC_CONFIG_FIELDS",
    "APIConnectionError",
    "APIError",
    "APIResponseError",
    "APITimeoutError",
    "AckResult",
    "AsyncClient",
    "AsyncReplay",
    "AsyncWatchStream",
    "AsyncWorkStream",
    "AsyncWorker",
    "AuthenticationError",
    "BatchTooLargeError",
    "CaughtUpEvent",
    "ClaimResult",
    "Client",
    "ConflictError",
    "DeleteRecordsResult",
    "DiffResult",
    "ExtendResult",
    "Gap",
    "GapError",
    "Health",
    "IncompatibleTopicError",
    "InternalServerError",
    "InvalidRequestError",
    "Job",
    "Metrics",
    "NackResult",
    "NewRecord",
    "NotAQueueError",
    "NotATopicsServerError",
    "NotFoundError",
    "NotGiven",
    "NotReadyError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "QueueCounters",
    "RawResponse",
    "Ready",
    "Record",
    "RecordTooLargeError",
    "RecordsEvent",
    "Replay",
    "ReplayBatch",
    "ReplayState",
    "Router",
    "RouterCycleError",
    "RouterDeleteResult",
    "RouterNotFoundError",
    "RouterPage",
    "RouterSummary",
    "ServiceUnavailableError",
    "ShuttingDownError",
    "StreamError",
    "StreamErrorEvent",
    "ThrottledError",
    "Tombstone",
    "TopicConfig",
    "TopicDeleteResult",
    "TopicDeletedEvent",
    "TopicFullError",
    "TopicNotEmptyError",
    "TopicNotFoundError",
    "TopicPage",
    "TopicPutResult",
    "TopicState",
    "TopicSummary",
    "TopicsError",
    "WatchEvent",
    "WatchSession",
    "WatchStream",
    "WatchTopicStart",
    "WorkStream",
    "Worker",
    "WorkerStats",
    "WriteResult",
    "backoff_ms",
    "load_checkpoint",
    "normalize_base_url",
    "resolve_api_key",
    "resolve_base_url",
    "save_checkpoint",
]

# Public classes report the package, not the private module (``topics_client.Record``).
for _name in __all__:
    _obj = globals().get(_name)
    if isinstance(_obj, type):
        _obj.__module__ = __name__
del _name, _obj
