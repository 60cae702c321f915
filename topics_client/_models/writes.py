"""Writing and deleting records: ``NewRecord``, ``WriteResult``, ``DeleteRecordsResult``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._common import JSON, Extra, _extra, _perf

__all__ = ["DeleteRecordsResult", "NewRecord", "WriteResult"]


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
