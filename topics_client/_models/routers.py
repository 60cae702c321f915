"""Routers: ``Router``, ``RouterSummary``, ``RouterPage``, ``RouterDeleteResult``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._common import Extra, _extra, _perf

__all__ = ["Router", "RouterDeleteResult", "RouterPage", "RouterSummary"]


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
