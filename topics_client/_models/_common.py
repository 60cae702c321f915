"""What every model module shares: type aliases and the ``extra`` / ``performance``
helpers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["JSON", "_NO_EXTRA", "Extra", "_extra", "_perf"]

JSON = Any


Extra = Mapping[str, Any]


_NO_EXTRA: Mapping[str, Any] = {}


def _extra(d: Mapping[str, Any], known: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in known}


def _perf(d: Mapping[str, Any]) -> dict[str, Any]:
    perf = d.get("performance")
    return perf if isinstance(perf, dict) else {}
