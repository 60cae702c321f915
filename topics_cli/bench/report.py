"""The bench report: the JSON document (``-o json``), its text rendering (a row per step and
a latency histogram drawn with block characters), and ratios against an earlier report.

Pure functions of :class:`~topics_cli.bench.runner.StepResult` values and JSON documents;
nothing here talks to a server or to a terminal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from topics_cli.bench.histogram import Histogram
from topics_cli.bench.runner import StepResult

__all__ = [
    "PERCENTILES",
    "SCHEMA",
    "compare",
    "compare_lines",
    "document",
    "histogram_lines",
    "result_to_wire",
    "summary_lines",
]

SCHEMA = "topics-bench/1"
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9))
LATENCY_KEYS = (*(key for key, _ in PERCENTILES), "max")
_NS_PER_MS = 1_000_000


def _ms(ns: float) -> float:
    return round(ns / _NS_PER_MS, 4)


def latency_ms(hist: Histogram) -> dict[str, float]:
    out = {key: _ms(hist.percentile(pct)) for key, pct in PERCENTILES}
    out["max"] = _ms(hist.max)
    out["min"] = _ms(hist.min)
    out["mean"] = _ms(hist.mean) if hist.total else 0.0
    return out


def result_to_wire(result: StepResult) -> dict[str, Any]:
    step = result.step
    return {
        "name": step.name,
        "workload": step.workload,
        "params": dict(step.params),
        "procs": result.procs,
        "ops": result.ops,
        "records": result.records,
        "expected": result.expected,
        "seconds": round(result.seconds, 4),
        "throughput": round(result.throughput, 1),
        "ops_per_s": round(result.ops / result.seconds, 1) if result.seconds > 0 else 0.0,
        "latency_ms": latency_ms(result.latency),
        "generator": {
            "cpu_seconds": round(result.cpu_seconds, 4),
            "cpu_cores": round(result.cpu_cores, 3),
        },
        "histogram": result.latency.to_wire(),
    }


def document(
    url: str,
    options: Mapping[str, Any],
    results: Sequence[StepResult],
    *,
    started: str,
    seconds: float,
    cpu_count: int | None,
    problems: Sequence[str] = (),
) -> dict[str, Any]:
    cpu = sum(r.cpu_seconds for r in results)
    measured = sum(r.seconds for r in results)
    return {
        "schema": SCHEMA,
        "url": url,
        "started": started,
        "seconds": round(seconds, 3),
        "options": dict(options),
        "generator": {
            "cpu_count": cpu_count,
            "cpu_seconds": round(cpu, 4),
            "cpu_cores": round(cpu / measured, 3) if measured > 0 else 0.0,
        },
        "results": [result_to_wire(r) for r in results],
        "cleanup": {"ok": not problems, "problems": list(problems)},
    }


def _ratio(now: float, then: float) -> float | None:
    if not then or not math.isfinite(then) or not math.isfinite(now):
        return None
    return round(now / then, 3)


def compare(current: Mapping[str, Any], earlier: Mapping[str, Any]) -> dict[str, Any]:
    """Per step present in both reports: this run's figure ÷ the earlier run's, for every
    latency key and the throughput (so < 1 is faster latency, > 1 is more throughput)."""
    before = {r["name"]: r for r in earlier.get("results", [])}
    rows: dict[str, Any] = {}
    for row in current.get("results", []):
        old = before.get(row["name"])
        if old is None:
            continue
        ratios = {
            key: _ratio(row["latency_ms"][key], old["latency_ms"].get(key, 0.0))
            for key in LATENCY_KEYS
        }
        ratios["throughput"] = _ratio(row["throughput"], old.get("throughput", 0.0))
        rows[row["name"]] = ratios
    return {"against": earlier.get("url"), "started": earlier.get("started"), "ratios": rows}


def _fmt_ms(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if value >= 1 else f"{value:.3f}"


def _fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


def summary_lines(doc: Mapping[str, Any]) -> list[str]:
    """The summary table: one row per step, latencies in ms."""
    head = f"{'step':<22} {'p50':>8} {'p90':>8} {'p99':>8} {'p99.9':>8} {'max':>8}"
    head += f" {'records/s':>11} {'count':>9} {'gen CPU':>8}"
    lines = [head]
    for row in doc["results"]:
        lat = row["latency_ms"]
        cells = " ".join(f"{_fmt_ms(lat[k]):>8}" for k in LATENCY_KEYS)
        count = f"{row['records']:,}"
        if row["expected"] and row["records"] != row["expected"]:
            count += f"/{row['expected']:,}"
        cores = f"{row['generator']['cpu_cores'] * 100:.0f}%"
        lines.append(
            f"{row['name']:<22} {cells} {_fmt_rate(row['throughput']):>11} {count:>9} {cores:>8}"
        )
    return lines


def histogram_lines(hist: Histogram, *, rows: int = 10, width: int = 40) -> list[str]:
    """The latency distribution as up to ``rows`` log-spaced bands from min to max, each a
    bar of block characters scaled to the fullest band."""
    if hist.total == 0:
        return ["(no samples)"]
    # the bands start at the 1st percentile (or 1 µs): a few near-zero samples would
    # otherwise stretch the log scale over empty decades; they join the first band
    low = max(1_000, hist.min, hist.percentile(1))
    high = max(hist.max, low + 1)
    edges = sorted({int(low * (high / low) ** (k / rows)) for k in range(rows + 1)})
    edges[-1] = high + 1
    edges[0] = min(edges[0], hist.min)
    counts = [0] * (len(edges) - 1)
    for b_low, b_high, count in hist.buckets():
        middle = min(max((b_low + b_high - 1) // 2, hist.min), hist.max)
        band = 0
        while band < len(counts) - 1 and middle >= edges[band + 1]:
            band += 1
        counts[band] += count
    fullest = max(counts) or 1
    lines = []
    for band, count in enumerate(counts):
        eighths = round(count / fullest * width * 8)
        bar = "█" * (eighths // 8) + ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")[eighths % 8]
        start, end = _fmt_ms(edges[band] / _NS_PER_MS), _fmt_ms(edges[band + 1] / _NS_PER_MS)
        label = f"{start:>8} – {end:<8} ms"
        share = count / hist.total * 100
        lines.append(f"  {label} │{bar:<{width}} {count:>9,} {share:5.1f}%")
    return lines


def compare_lines(comparison: Mapping[str, Any]) -> list[str]:
    head = f"{'ratio (this ÷ earlier)':<22} " + " ".join(f"{k:>8}" for k in LATENCY_KEYS)
    lines = [head + f" {'records/s':>11}"]
    for name, ratios in comparison["ratios"].items():
        cells = [
            f"{ratios[k]:>7.2f}×" if ratios[k] is not None else f"{'–':>8}"
            for k in (*LATENCY_KEYS, "throughput")
        ]
        lines.append(f"{name:<22} " + " ".join(cells[:-1]) + f" {cells[-1]:>11}")
    if len(lines) == 1:
        lines.append("(no step in common with the earlier report)")
    return lines
