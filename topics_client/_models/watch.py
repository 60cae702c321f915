"""Watch sessions: ``WatchSession`` and each topic's ``WatchTopicStart``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._common import Extra, _perf

__all__ = ["WatchSession", "WatchTopicStart"]


@dataclass(frozen=True, slots=True)
class WatchTopicStart:
    from_seq: int
    head_seq: int
    earliest_seq: int


@dataclass(frozen=True, slots=True)
class WatchSession:
    wid: str
    stream_url: str
    session_ttl_ms: int
    topics: Mapping[str, WatchTopicStart]
    performance: Extra = field(default_factory=dict, repr=False)

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> WatchSession:
        topics = {
            name: WatchTopicStart(
                t.get("from_seq", 0), t.get("head_seq", 0), t.get("earliest_seq", 1)
            )
            for name, t in (d.get("topics") or {}).items()
        }
        wid = d["wid"]
        return cls(
            wid,
            d.get("stream_url", f"/v0/watch/{wid}"),
            d.get("session_ttl_ms", 300_000),
            topics,
            _perf(d),
        )
