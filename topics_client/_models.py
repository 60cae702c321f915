"""Typed results: frozen, slotted dataclasses decoded from the `/v0` JSON.

Wire ``$``-fields get Python names (``$seq`` → ``seq``, ``$ts`` → ``ts``, ``$node`` →
``node``, ``$tag`` → ``tag``). Keys a model does not know are kept in ``extra`` (the SPEC
only grows additively), and ``performance`` blocks are kept verbatim. Decoding is plain
attribute access on dicts from orjson, no validation library: replay decodes hundreds of
thousands of records per second through :func:`parse_record`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
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
]

JSON = Any
Extra = Mapping[str, Any]


def _extra(d: Mapping[str, Any], known: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in known}


def _perf(d: Mapping[str, Any]) -> dict[str, Any]:
    perf = d.get("performance")
    return perf if isinstance(perf, dict) else {}


# ---------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class NewRecord:
    """A record to append. ``meta`` must be a JSON object (SPEC §3.1)."""

    data: JSON
    tag: str | None = None
    node: str | None = None
    meta: Mapping[str, Any] | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"data": self.data}
        if self.tag is not None:
            out["tag"] = self.tag
        if self.node is not None:
            out["node"] = self.node
        if self.meta is not None:
            out["meta"] = dict(self.meta)
        return out


@dataclass(frozen=True, slots=True)
class Record:
    """A stored record. ``data`` is ``None`` both for JSON null and for watches with
    ``include_data=False``; ``node``/``tag``/``meta`` are ``None`` when absent."""

    seq: int
    ts: int
    data: JSON = None
    node: str | None = None
    tag: str | None = None
    meta: Mapping[str, Any] | None = None
    extra: Extra = field(default_factory=dict, repr=False)


_RECORD_KEYS = frozenset({"$seq", "$ts", "$node", "$tag", "data", "meta"})
_NO_EXTRA: Mapping[str, Any] = {}


def parse_record(d: dict[str, Any]) -> Record:
    node = d.get("$node")
    tag = d.get("$tag")
    meta = d.get("meta")
    # Count the keys we know are present; only a record with more pays for the extra scan.
    known = 3 + (node is not None) + (tag is not None) + (meta is not None)
    extra = _extra(d, _RECORD_KEYS) if len(d) > known else _NO_EXTRA
    return Record(d["$seq"], d["$ts"], d.get("data"), node, tag, meta, extra)


def parse_records(items: list[dict[str, Any]]) -> tuple[Record, ...]:
    return tuple(map(parse_record, items))


@dataclass(frozen=True, slots=True)
class Tombstone:
    """Records lost involuntarily before the cursor (SPEC §5.4); ``gap_to`` is inclusive."""

    gap_from: int
    gap_to: int
    reason: str
    missed_estimate: int
    earliest_seq: int
    head_seq: int
    extra: Extra = field(default_factory=dict, repr=False)

    _KEYS = frozenset(
        {"gap_from", "gap_to", "reason", "missed_estimate", "earliest_seq", "head_seq"}
    )

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Tombstone:
        gap_from, gap_to = d["gap_from"], d["gap_to"]
        missed = d.get("missed_estimate")
        if missed is None:
            missed = max(0, gap_to - gap_from + 1)
        return cls(
            gap_from,
            gap_to,
            d.get("reason", "cap"),
            missed,
            d.get("earliest_seq", gap_to + 1),
            d.get("head_seq", 0),
            _extra(d, cls._KEYS),
        )


@dataclass(frozen=True, slots=True)
class Gap:
    """A gap a replay or watch passed: the consumer must know it never saw these seqs.

    ``cursor`` is the position the reader was at when it hit the gap; ``resume_from`` is the
    cursor from which reading continues.
    """

    topic: str
    gap_from: int
    gap_to: int
    reason: str
    missed_estimate: int
    earliest_seq: int
    head_seq: int
    cursor: int

    @property
    def resume_from(self) -> int:
        return max(self.cursor, self.earliest_seq - 1)

    @classmethod
    def from_tombstone(cls, topic: str, tomb: Tombstone, cursor: int) -> Gap:
        return cls(
            topic,
            tomb.gap_from,
            tomb.gap_to,
            tomb.reason,
            tomb.missed_estimate,
            tomb.earliest_seq,
            tomb.head_seq,
            cursor,
        )


# ---------------------------------------------------------------------------- topics


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


_CONFIG_FIELDS = frozenset(f for f in TopicConfig.__dataclass_fields__ if f != "extra")


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


@dataclass(frozen=True, slots=True)
class WriteResult:
    """``seqs`` is empty when the write asked for ``return_seqs=False``."""

    topic: str
    first_seq: int
    last_seq: int
    seqs: tuple[int, ...]
    head_seq: int
    count: int
    created: bool
    deduped: bool
    idempotency_key: str | None = None
    performance: Extra = field(default_factory=dict, repr=False)
    extra: Extra = field(default_factory=dict, repr=False)

    _KEYS = frozenset(
        [
            "topic",
            "first_seq",
            "last_seq",
            "seqs",
            "head_seq",
            "count",
            "created",
            "deduped",
            "performance",
        ]
    )

    @classmethod
    def from_wire(cls, d: Mapping[str, Any], idempotency_key: str | None = None) -> WriteResult:
        return cls(
            d["topic"],
            d["first_seq"],
            d["last_seq"],
            tuple(d.get("seqs", ())),
            d["head_seq"],
            d["count"],
            d.get("created", False),
            d.get("deduped", False),
            idempotency_key,
            _perf(d),
            _extra(d, cls._KEYS),
        )


@dataclass(frozen=True, slots=True)
class DiffResult:
    """One diff page. Use ``caught_up``, never the batch size, to decide you are done."""

    topic: str
    records: tuple[Record, ...]
    next_from_seq: int
    head_seq: int
    earliest_seq: int
    caught_up: bool
    tombstone: Tombstone | None
    lag: int
    performance: Extra = field(default_factory=dict, repr=False)
    extra: Extra = field(default_factory=dict, repr=False)

    _KEYS = frozenset(
        [
            "topic",
            "records",
            "next_from_seq",
            "head_seq",
            "earliest_seq",
            "caught_up",
            "tombstone",
            "lag",
            "performance",
        ]
    )

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> DiffResult:
        tomb = d.get("tombstone")
        head, nxt = d["head_seq"], d["next_from_seq"]
        return cls(
            d["topic"],
            tuple(map(parse_record, d["records"])),
            nxt,
            head,
            d["earliest_seq"],
            d.get("caught_up", nxt >= head),
            Tombstone.from_wire(tomb) if tomb else None,
            d.get("lag", head - nxt),
            _perf(d),
            _extra(d, cls._KEYS) if len(d) > 9 else _NO_EXTRA,
        )


@dataclass(frozen=True, slots=True)
class DeleteRecordsResult:
    topic: str
    deleted: int
    earliest_seq: int
    head_seq: int
    count: int
    bytes: int
    performance: Extra = field(default_factory=dict, repr=False)

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> DeleteRecordsResult:
        return cls(
            d["topic"],
            d["deleted"],
            d["earliest_seq"],
            d["head_seq"],
            d["count"],
            d["bytes"],
            _perf(d),
        )


# ---------------------------------------------------------------------------- routers


@dataclass(frozen=True, slots=True)
class Router:
    """A router as PUT/GET return it; ``created`` only on PUT, ``forwarded_total`` on GET."""

    router: str
    source: str
    dest: str
    preserve_node: bool
    preserve_tag: bool
    filter: Any
    allow_cycle: bool
    guarantee: str
    created: bool | None = None
    forwarded_total: int | None = None
    performance: Extra = field(default_factory=dict, repr=False)
    extra: Extra = field(default_factory=dict, repr=False)

    _KEYS = frozenset(
        [
            "router",
            "source",
            "dest",
            "preserve_node",
            "preserve_tag",
            "filter",
            "allow_cycle",
            "guarantee",
            "created",
            "forwarded_total",
            "performance",
        ]
    )

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Router:
        return cls(
            d["router"],
            d["source"],
            d["dest"],
            d.get("preserve_node", True),
            d.get("preserve_tag", True),
            d.get("filter"),
            d.get("allow_cycle", False),
            d.get("guarantee", "at_least_once"),
            d.get("created"),
            d.get("forwarded_total"),
            _perf(d),
            _extra(d, cls._KEYS),
        )


@dataclass(frozen=True, slots=True)
class RouterSummary:
    router: str
    source: str
    dest: str
    guarantee: str
    forwarded_total: int

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> RouterSummary:
        return cls(
            d["router"],
            d["source"],
            d["dest"],
            d.get("guarantee", "at_least_once"),
            d.get("forwarded_total", 0),
        )


@dataclass(frozen=True, slots=True)
class RouterPage:
    items: tuple[RouterSummary, ...]
    next_cursor: str | None
    performance: Extra = field(default_factory=dict, repr=False)

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> RouterPage:
        items = tuple(RouterSummary.from_wire(r) for r in d.get("routers", ()))
        return cls(items, d.get("next_cursor"), _perf(d))


@dataclass(frozen=True, slots=True)
class RouterDeleteResult:
    router: str
    deleted: bool
    performance: Extra = field(default_factory=dict, repr=False)

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> RouterDeleteResult:
        return cls(d["router"], d["deleted"], _perf(d))


# ---------------------------------------------------------------------------- queues


@dataclass(frozen=True, slots=True)
class Job:
    """A leased job (claim entry or ``/work`` frame). Pass ``seq`` and ``lease_id`` back to
    ack/nack/extend to fence against a lease that has moved on."""

    topic: str
    seq: int
    lease_id: str
    deadline: int
    ts: int
    deliveries: int
    data: JSON = None
    tag: str | None = None
    meta: Mapping[str, Any] | None = None
    extra: Extra = field(default_factory=dict, repr=False)

    _KEYS = frozenset(
        ["topic", "$seq", "lease_id", "deadline", "$ts", "deliveries", "data", "$tag", "meta"]
    )

    @classmethod
    def from_wire(cls, d: Mapping[str, Any], topic: str | None = None) -> Job:
        return cls(
            d.get("topic", topic) or "",
            d["$seq"],
            d["lease_id"],
            d["deadline"],
            d["$ts"],
            d.get("deliveries", 1),
            d.get("data"),
            d.get("$tag"),
            d.get("meta"),
            _extra(d, cls._KEYS),
        )


@dataclass(frozen=True, slots=True)
class ClaimResult:
    topic: str
    count: int
    ready: int
    jobs: tuple[Job, ...]
    performance: Extra = field(default_factory=dict, repr=False)

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> ClaimResult:
        topic = d["topic"]
        jobs = tuple(Job.from_wire(j, topic) for j in d.get("claimed", ()))
        return cls(topic, d.get("count", len(jobs)), d.get("ready", 0), jobs, _perf(d))


@dataclass(frozen=True, slots=True)
class AckResult:
    topic: str
    acked: int
    skipped: tuple[int, ...]
    ready: int
    in_flight: int
    performance: Extra = field(default_factory=dict, repr=False)

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> AckResult:
        return cls(
            d["topic"],
            _count(d.get("acked")),
            _seqs(d.get("skipped")),
            d.get("ready", 0),
            d.get("in_flight", 0),
            _perf(d),
        )


@dataclass(frozen=True, slots=True)
class NackResult:
    topic: str
    nacked: int
    skipped: tuple[int, ...]
    ready: int
    in_flight: int
    performance: Extra = field(default_factory=dict, repr=False)

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> NackResult:
        return cls(
            d["topic"],
            _count(d.get("nacked")),
            _seqs(d.get("skipped")),
            d.get("ready", 0),
            d.get("in_flight", 0),
            _perf(d),
        )


@dataclass(frozen=True, slots=True)
class ExtendResult:
    topic: str
    extended: int
    skipped: tuple[int, ...]
    deadlines: Mapping[int, int]
    performance: Extra = field(default_factory=dict, repr=False)

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> ExtendResult:
        deadlines = {int(k): v for k, v in (d.get("deadlines") or {}).items()}
        return cls(
            d["topic"],
            _count(d.get("extended")),
            _seqs(d.get("skipped")),
            deadlines,
            _perf(d),
        )


def _seqs(value: Any) -> tuple[int, ...]:
    """``skipped`` lists; anything else becomes ``()``."""
    return tuple(value) if isinstance(value, list) else ()


def _count(value: Any) -> int:
    """``acked``/``nacked``/``extended`` are counts (upstream); a list counts its seqs."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    return len(value) if isinstance(value, list) else 0


# ---------------------------------------------------------------------------- watch


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


# ---------------------------------------------------------------------------- probes


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
