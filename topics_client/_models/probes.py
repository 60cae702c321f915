"""Probes: ``Health``, ``Ready``, ``Metrics``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._common import Extra, _extra

__all__ = ["Health", "Metrics", "Ready"]


@dataclass(frozen=True, slots=True)
class Health:
    status: str
    version: str
    uptime_ms: int
    extra: Extra = field(default_factory=dict, repr=False)

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Health:
        keys = frozenset({"status", "version", "uptime_ms"})
        return cls(d["status"], d.get("version", ""), d.get("uptime_ms", 0), _extra(d, keys))


@dataclass(frozen=True, slots=True)
class Ready:
    status: str
    wal_replay_complete: bool
    topics: int
    extra: Extra = field(default_factory=dict, repr=False)

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Ready:
        keys = frozenset({"status", "wal_replay_complete", "topics"})
        return cls(
            d["status"], d.get("wal_replay_complete", True), d.get("topics", 0), _extra(d, keys)
        )


@dataclass(frozen=True, slots=True)
class Metrics:
    """JSON metrics (SPEC §11): the common gauges, everything else in ``extra``."""

    topics: int
    routers: int
    records_live: int
    bytes_live: int
    watch_sessions: int
    sse_connections: int
    ready: bool
    uptime_ms: int
    extra: Extra = field(default_factory=dict, repr=False)

    _KEYS = frozenset(
        [
            "topics",
            "routers",
            "records_live",
            "bytes_live",
            "watch_sessions",
            "sse_connections",
            "ready",
            "uptime_ms",
        ]
    )

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Metrics:
        return cls(
            d.get("topics", 0),
            d.get("routers", 0),
            d.get("records_live", 0),
            d.get("bytes_live", 0),
            d.get("watch_sessions", 0),
            d.get("sse_connections", 0),
            bool(d.get("ready", True)),
            d.get("uptime_ms", 0),
            _extra(d, cls._KEYS),
        )
