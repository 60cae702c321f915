"""Records as the engine holds them, and their wire form (SPEC §0.5).

A record is a plain tuple, indexed by the constants below. Plain tuples of
atoms (ints, strings, bytes, None) are untracked by Python's cyclic garbage
collector, so a log holding a million records costs collections nothing; a
class instance per record measured 2-3x slower on the write path.

``data`` and ``meta`` are kept as their compact JSON text (``size`` holds their
UTF-8 byte length, SPEC §3.6); reads splice them into responses as
:class:`orjson.Fragment` instead of re-encoding them.
"""

from __future__ import annotations

from typing import Any, Final

from orjson import Fragment

__all__ = [
    "DATA",
    "HOPS",
    "META",
    "NODE",
    "SEQ",
    "SIZE",
    "TAG",
    "TS",
    "Pending",
    "Record",
    "pending",
    "record_key",
    "to_wire",
]

# (seq, ts, node, tag, data, meta, size, hops)
Record = tuple[int, int, str | None, str | None, str, str | None, int, int]
# a validated record before it has a seq: (node, tag, data, meta, size, hops)
Pending = tuple[str | None, str | None, str, str | None, int, int]

SEQ: Final = 0
TS: Final = 1
NODE: Final = 2
TAG: Final = 3
DATA: Final = 4
META: Final = 5
SIZE: Final = 6
HOPS: Final = 7


def pending(
    data: str,
    meta: str | None = None,
    node: str | None = None,
    tag: str | None = None,
    hops: int = 0,
) -> Pending:
    size = len(data.encode()) + (len(meta.encode()) if meta is not None else 0)
    return (node, tag, data, meta, size, hops)


def record_key(record: Record) -> int:
    return record[0]


def to_wire(
    record: Record, include_tags: bool = True, include_meta: bool = True, include_data: bool = True
) -> dict[str, Any]:
    seq, ts, node, tag, data, meta, _, _ = record
    out: dict[str, Any] = {"$seq": seq, "$ts": ts}
    if node is not None:
        out["$node"] = node
    if include_tags and tag is not None:
        out["$tag"] = tag
    if include_data:
        out["data"] = Fragment(data)
    if include_meta and meta is not None:
        out["meta"] = Fragment(meta)
    return out
