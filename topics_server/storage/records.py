"""Records as the engine and the store share them: chunks, payloads, tag predicates.

Chunks are the unit a topic's log is made of.

One write batch becomes one chunk: a contiguous seq range committed at one
instant, so all its records share ``$ts``. Per record the engine always keeps
only its size (4 bytes); the payload columns (data, meta, node, tag, hops) are
*hot* (in memory) or *cold* (only in the store, fetched on read). This is what
keeps a million-record topic cheap in RAM and a 1,000-record write a single
store row.

Payload columns are stored as text: the compact JSON of every record's
``data`` joined by newlines (compact JSON never contains a raw newline), the
same for ``meta`` with an empty line for "none", and node/tag/hops as JSON
arrays, or NULL when no record of the chunk has one.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["Chunk", "Payload", "TagPredicate", "decode_payload", "encode_payload"]


@dataclass(frozen=True, slots=True)
class TagPredicate:
    """A tag match (SPEC §7): ``Eq`` compares, ``Glob`` is a prefix (``value`` without ``*``)."""

    op: str  # "Eq" or "Glob"
    value: str

    def matches(self, tag: str | None) -> bool:
        if tag is None:
            return False
        return tag == self.value if self.op == "Eq" else tag.startswith(self.value)

    def to_json(self) -> list[str]:
        return ["tag", self.op, self.value + "*" if self.op == "Glob" else self.value]


class Payload:
    """The payload columns of one chunk, index-aligned with its seqs."""

    __slots__ = ("datas", "hops", "metas", "nodes", "tags")

    def __init__(
        self,
        datas: list[str],
        metas: list[str | None] | None,
        nodes: list[str | None] | None,
        tags: list[str | None] | None,
        hops: list[int] | None,
    ) -> None:
        self.datas = datas
        self.metas = metas
        self.nodes = nodes
        self.tags = tags
        self.hops = hops


class Chunk:
    """``first..last`` written together at ``ts``; ``payload`` is None while cold."""

    __slots__ = ("first", "last", "payload", "sizes", "stored", "ts")

    def __init__(
        self, first: int, ts: int, sizes: array[int], payload: Payload | None, stored: bool
    ) -> None:
        self.first = first
        self.last = first + len(sizes) - 1
        self.ts = ts
        self.sizes = sizes
        self.payload = payload
        self.stored = stored

    def __len__(self) -> int:
        return len(self.sizes)

    def __repr__(self) -> str:
        state = "hot" if self.payload is not None else "cold"
        return f"Chunk({self.first}..{self.last}, ts={self.ts}, {state})"


def _column(values: list[Any] | None) -> str | None:
    return None if values is None else orjson.dumps(values).decode()


def encode_payload(payload: Payload) -> tuple[str, str | None, str | None, str | None, str | None]:
    """(datas, metas, nodes, tags, hops) as stored text columns."""
    metas = None
    if payload.metas is not None:
        metas = "\n".join("" if m is None else m for m in payload.metas)
    return (
        "\n".join(payload.datas),
        metas,
        _column(payload.nodes),
        _column(payload.tags),
        _column(payload.hops),
    )


def decode_payload(
    datas: str, metas: str | None, nodes: str | None, tags: str | None, hops: str | None
) -> Payload:
    return Payload(
        datas.split("\n"),
        None if metas is None else [m or None for m in metas.split("\n")],
        None if nodes is None else orjson.loads(nodes),
        None if tags is None else orjson.loads(tags),
        None if hops is None else orjson.loads(hops),
    )
