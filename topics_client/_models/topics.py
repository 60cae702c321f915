"""Topic lifecycle: config, state, listings, put/delete results."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ._common import Extra, _extra, _perf

__all__ = [
    "TOPIC_CONFIG_FIELDS",
    "QueueCounters",
    "TopicConfig",
    "TopicDeleteResult",
    "TopicPage",
    "TopicPutResult",
    "TopicState",
    "TopicSummary",
]


@dataclass(frozen=True, slots=True)
class TopicConfig:
    """SPEC §1. Every field is echoed by the server; ``durable == (durability == "fsync")``."""

    type: Literal["log", "queue"] | str = "log"
    ttl_ms: int = 0
    cap_records: int = 0
    cap_bytes: int = 0
    discard: Literal["old", "reject"] | str = "old"
    durable: bool = False
    durability: str = "disk"
    priority: int | None = None
    auto_priority: bool = True
    auto_create: bool = True
    idempotency_window_ms: int = 120_000
    dedupe_node: bool = True
    lease_ms: int = 30_000
    claim_jitter_ms: int = 0
    max_deliveries: int = 0
    dead_letter: str | None = None
    leases_durable: bool = False
    extra: Extra = field(default_factory=dict, repr=False)

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> TopicConfig:
        known = {k: d[k] for k in _CONFIG_FIELDS if k in d}
        return cls(**known, extra=_extra(d, _CONFIG_FIELDS))

    def to_wire(self) -> dict[str, Any]:
        """The full object for a PUT. ``durable`` is left out: ``durability`` wins anyway."""
        out = {k: getattr(self, k) for k in _CONFIG_FIELDS if k != "durable"}
        out.update(self.extra)
        return out


TOPIC_CONFIG_FIELDS: tuple[str, ...] = tuple(
    name for name in TopicConfig.__dataclass_fields__ if name != "extra"
)
"""The topic config field names in SPEC §1 order; :class:`TopicConfig` is their one
definition (types and defaults), this is it for code that needs only the names."""
_CONFIG_FIELDS = frozenset(TOPIC_CONFIG_FIELDS)


@dataclass(frozen=True, slots=True)
class TopicPutResult:
    topic: str
    created: bool
    config: TopicConfig
    performance: Extra = field(default_factory=dict, repr=False)
    extra: Extra = field(default_factory=dict, repr=False)

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> TopicPutResult:
        return cls(
            d["topic"],
            d["created"],
            TopicConfig.from_wire(d["config"]),
            _perf(d),
            _extra(d, frozenset({"topic", "created", "config", "performance"})),
        )


@dataclass(frozen=True, slots=True)
class QueueCounters:
    ready: int
    in_flight: int
    dead_lettered: int


@dataclass(frozen=True, slots=True)
class TopicState:
    topic: str
    type: str
    head_seq: int
    earliest_seq: int
    next_seq: int
    count: int
    bytes: int
    config: TopicConfig
    effective_priority: int
    last_write_ts: int | None
    last_read_ts: int | None
    queue: QueueCounters | None = None
    performance: Extra = field(default_factory=dict, repr=False)
    extra: Extra = field(default_factory=dict, repr=False)

    _KEYS = frozenset(
        [
            "topic",
            "type",
            "head_seq",
            "earliest_seq",
            "next_seq",
            "count",
            "bytes",
            "config",
            "effective_priority",
            "last_write_ts",
            "last_read_ts",
            "queue",
            "performance",
        ]
    )

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> TopicState:
        q = d.get("queue")
        head = d["head_seq"]
        return cls(
            d["topic"],
            d.get("type", "log"),
            head,
            d["earliest_seq"],
            d.get("next_seq", head + 1),
            d["count"],
            d["bytes"],
            TopicConfig.from_wire(d.get("config") or {}),
            d.get("effective_priority", 0),
            d.get("last_write_ts"),
            d.get("last_read_ts"),
            QueueCounters(q["ready"], q["in_flight"], q["dead_lettered"]) if q else None,
            _perf(d),
            _extra(d, cls._KEYS),
        )


@dataclass(frozen=True, slots=True)
class TopicSummary:
    topic: str
    head_seq: int
    earliest_seq: int
    count: int
    bytes: int
    durable: bool
    effective_priority: int
    extra: Extra = field(default_factory=dict, repr=False)

    _KEYS = frozenset(
        ["topic", "head_seq", "earliest_seq", "count", "bytes", "durable", "effective_priority"]
    )

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> TopicSummary:
        return cls(
            d["topic"],
            d["head_seq"],
            d["earliest_seq"],
            d["count"],
            d["bytes"],
            d.get("durable", False),
            d.get("effective_priority", 0),
            _extra(d, cls._KEYS),
        )


@dataclass(frozen=True, slots=True)
class TopicPage:
    items: tuple[TopicSummary, ...]
    next_cursor: str | None
    performance: Extra = field(default_factory=dict, repr=False)

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> TopicPage:
        items = tuple(TopicSummary.from_wire(t) for t in d.get("topics", ()))
        return cls(items, d.get("next_cursor"), _perf(d))


@dataclass(frozen=True, slots=True)
class TopicDeleteResult:
    topic: str
    deleted: bool
    routers_removed: tuple[str, ...]
    performance: Extra = field(default_factory=dict, repr=False)

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> TopicDeleteResult:
        return cls(d["topic"], d["deleted"], tuple(d.get("routers_removed", ())), _perf(d))
