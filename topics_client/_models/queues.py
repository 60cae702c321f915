"""Queues: leased ``Job`` and the claim/ack/nack/extend results."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._common import JSON, Extra, _extra, _perf

__all__ = ["AckResult", "ClaimResult", "ExtendResult", "Job", "NackResult"]


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
