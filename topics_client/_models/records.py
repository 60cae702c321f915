"""Stored records and what a replay reads: ``Record``, ``Tombstone``, ``Gap``, ``DiffResult``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._common import _NO_EXTRA, JSON, Extra, _extra, _perf

__all__ = ["DiffResult", "Gap", "Record", "Tombstone", "parse_record", "parse_records"]


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
