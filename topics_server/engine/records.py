"""The wire form of a record (SPEC §0.5)."""

from __future__ import annotations

from typing import Any

from orjson import Fragment

from topics_server.engine.log import WireRecord

__all__ = ["to_wire"]


def to_wire(
    record: WireRecord,
    include_tags: bool = True,
    include_meta: bool = True,
    include_data: bool = True,
) -> dict[str, Any]:
    """``$``-prefixed server fields, ``data``/``meta`` spliced in as stored JSON text."""
    seq, ts, node, tag, data, meta, _ = record
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
