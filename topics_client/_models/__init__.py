"""Typed results: frozen, slotted dataclasses decoded from the `/v0` JSON.

Wire ``$``-fields get Python names (``$seq`` → ``seq``, ``$ts`` → ``ts``, ``$node`` →
``node``, ``$tag`` → ``tag``). Keys a model does not know are kept in ``extra`` (the SPEC
only grows additively), and ``performance`` blocks are kept verbatim. Decoding is plain
attribute access on dicts from orjson, no validation library: replay decodes hundreds of
thousands of records per second through :func:`parse_record`.

The models live in one module per area (``records``, ``writes``, ``topics``, ``routers``,
``queues``, ``watch``, ``probes``) and each area loads on first use: building a frozen
slotted dataclass costs about a millisecond, and a ``topics put`` needs two of the 28.
``from topics_client._models import X`` still works for every model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .probes import Health, Metrics, Ready
    from .queues import AckResult, ClaimResult, ExtendResult, Job, NackResult
    from .records import DiffResult, Gap, Record, Tombstone, parse_record, parse_records
    from .routers import Router, RouterDeleteResult, RouterPage, RouterSummary
    from .topics import (
        TOPIC_CONFIG_FIELDS,
        QueueCounters,
        TopicConfig,
        TopicDeleteResult,
        TopicPage,
        TopicPutResult,
        TopicState,
        TopicSummary,
    )
    from .watch import WatchSession, WatchTopicStart
    from .writes import DeleteRecordsResult, NewRecord, WriteResult

_AREAS = {
    "records": ("DiffResult", "Gap", "Record", "Tombstone", "parse_record", "parse_records"),
    "writes": ("DeleteRecordsResult", "NewRecord", "WriteResult"),
    "topics": (
        "TOPIC_CONFIG_FIELDS",
        "QueueCounters",
        "TopicConfig",
        "TopicDeleteResult",
        "TopicPage",
        "TopicPutResult",
        "TopicState",
        "TopicSummary",
    ),
    "routers": ("Router", "RouterDeleteResult", "RouterPage", "RouterSummary"),
    "queues": ("AckResult", "ClaimResult", "ExtendResult", "Job", "NackResult"),
    "watch": ("WatchSession", "WatchTopicStart"),
    "probes": ("Health", "Metrics", "Ready"),
}
MODULE_OF = {name: area for area, names in _AREAS.items() for name in names}
"""Model name → the area module (under ``topics_client._models``) that defines it."""


def __getattr__(name: str) -> Any:
    area = MODULE_OF.get(name)
    if area is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{area}"), name)
    globals()[name] = value
    return value


__all__ = [
    "TOPIC_CONFIG_FIELDS",
    "AckResult",
    "ClaimResult",
    "DeleteRecordsResult",
    "DiffResult",
    "ExtendResult",
    "Gap",
    "Health",
    "Job",
    "Metrics",
    "NackResult",
    "NewRecord",
    "QueueCounters",
    "Ready",
    "Record",
    "Router",
    "RouterDeleteResult",
    "RouterPage",
    "RouterSummary",
    "Tombstone",
    "TopicConfig",
    "TopicDeleteResult",
    "TopicPage",
    "TopicPutResult",
    "TopicState",
    "TopicSummary",
    "WatchSession",
    "WatchTopicStart",
    "WriteResult",
    "parse_record",
    "parse_records",
]
