"""Helpers shared by the benchmarks: a server process, percentiles, payloads."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.serverproc import ServerProcess

__all__ = ["PAYLOAD", "ServerProcess", "percentile", "report"]

# compact JSON of this is exactly 100 bytes
PAYLOAD = {"payload": "x" * 86}


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[k]


def report(name: str, value: float, unit: str, target: str = "") -> None:
    suffix = f"   (target {target})" if target else ""
    print(f"{name:<46} {value:>12,.2f} {unit}{suffix}", flush=True)


def mean(samples: list[float]) -> float:
    return statistics.fmean(samples) if samples else float("nan")
