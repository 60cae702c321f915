"""A log-linear latency histogram (HDR-style): mergeable, with bounded relative error.

Values are non-negative integers (the bench records nanoseconds). Below ``2**precision`` a
value has its own bucket; above, each power of two is split into ``2**(precision-1)``
equal buckets, so a bucket's width is at most ``2**-(precision-1)`` of its lower bound and
its midpoint is within ``2**-precision`` of any value in it (0.4% at the default 8).

Histograms from several generator processes merge bucket-wise (:meth:`Histogram.merge`),
which gives the same percentiles as one histogram fed every sample: percentiles are never
averaged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

__all__ = ["DEFAULT_PRECISION", "Histogram", "bucket_bounds", "bucket_index"]

DEFAULT_PRECISION = 8


def bucket_index(value: int, precision: int = DEFAULT_PRECISION) -> int:
    """The bucket holding ``value`` (``value >= 0``)."""
    if value < 0:
        raise ValueError("histogram values must be >= 0")
    shift = value.bit_length() - precision
    if shift <= 0:
        return value
    return (shift << (precision - 1)) + (value >> shift)


def bucket_bounds(index: int, precision: int = DEFAULT_PRECISION) -> tuple[int, int]:
    """``[low, high)`` of the values in bucket ``index``."""
    if index < (1 << precision):
        return index, index + 1
    half = 1 << (precision - 1)
    shift, mantissa = divmod(index, half)
    mantissa += half
    shift -= 1
    return mantissa << shift, (mantissa + 1) << shift


class Histogram:
    """Counts per bucket plus the exact count, sum, min and max."""

    __slots__ = ("counts", "max", "min", "precision", "sum", "total")

    def __init__(self, precision: int = DEFAULT_PRECISION) -> None:
        if not 2 <= precision <= 20:
            raise ValueError("precision must be between 2 and 20")
        self.precision = precision
        self.counts: dict[int, int] = {}
        self.total = 0
        self.sum = 0
        self.min = 0
        self.max = 0

    def record(self, value: int, count: int = 1) -> None:
        index = bucket_index(value, self.precision)
        self.counts[index] = self.counts.get(index, 0) + count
        if self.total == 0 or value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        self.total += count
        self.sum += value * count

    def record_many(self, values: Iterable[int]) -> None:
        for value in values:
            self.record(value)

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s samples to this histogram (same precision)."""
        if other.precision != self.precision:
            raise ValueError("cannot merge histograms of different precision")
        if other.total == 0:
            return
        for index, count in other.counts.items():
            self.counts[index] = self.counts.get(index, 0) + count
        self.min = other.min if self.total == 0 else min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.total += other.total
        self.sum += other.sum

    @classmethod
    def merged(cls, parts: Iterable[Histogram], precision: int = DEFAULT_PRECISION) -> Histogram:
        result = cls(precision)
        for part in parts:
            result.merge(part)
        return result

    @property
    def mean(self) -> float:
        return self.sum / self.total if self.total else math.nan

    def percentile(self, pct: float) -> int:
        """The value at percentile ``pct`` (0–100): the sample of rank ``ceil(pct% × n)``
        (at least 1) within the bucket's relative error; ``min``/``max`` are exact."""
        if not 0 <= pct <= 100:
            raise ValueError("percentile must be between 0 and 100")
        if self.total == 0:
            return 0
        rank = max(1, math.ceil(pct / 100 * self.total))
        if rank >= self.total:
            return self.max
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                low, high = bucket_bounds(index, self.precision)
                middle = (low + high - 1) // 2 if high - low > 1 else low
                return min(max(middle, self.min), self.max)
        return self.max  # pragma: no cover - counts always sum to total

    def buckets(self) -> Iterator[tuple[int, int, int]]:
        """``(low, high, count)`` per non-empty bucket, ascending."""
        for index in sorted(self.counts):
            low, high = bucket_bounds(index, self.precision)
            yield low, high, self.counts[index]

    def to_wire(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "count": self.total,
            "sum": self.sum,
            "min": self.min,
            "max": self.max,
            "buckets": [[index, self.counts[index]] for index in sorted(self.counts)],
        }

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Histogram:
        hist = cls(int(wire["precision"]))
        hist.counts = {int(index): int(count) for index, count in wire["buckets"]}
        hist.total = int(wire["count"])
        hist.sum = int(wire["sum"])
        hist.min = int(wire["min"])
        hist.max = int(wire["max"])
        if sum(hist.counts.values()) != hist.total:
            raise ValueError("histogram bucket counts do not add up to its count")
        return hist
