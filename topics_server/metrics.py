"""``GET /v0/metrics`` bodies: Prometheus text exposition and the JSON variant (SPEC §11)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from topics_server.engine.config import DURABILITIES
from topics_server.engine.engine import Engine

__all__ = ["metrics_json", "metrics_text"]

PER_TOPIC_LIMIT = 1000


def _gauges(engine: Engine, uptime_ms: int) -> dict[str, Any]:
    by_class = dict.fromkeys(DURABILITIES, 0)
    queues = 0
    for log in engine.topics.values():
        by_class[log.config.durability] += 1
        queues += log.config.is_queue
    return {
        "topics": len(engine.topics),
        "by_class": by_class,
        "routers": engine.router_count(),
        "records_live": engine.totals.records,
        "bytes_live": engine.totals.bytes,
        "queue_topics": queues,
        "queue_leases_in_flight": engine.leases_in_flight(),
        "sse_connections": engine.sse_connections,
        "watch_sessions": engine.watch_session_count(),
        "ready": int(engine.ready),
        "replay_progress": engine.recovery_progress,
        "uptime_ms": uptime_ms,
    }


def metrics_json(engine: Engine, uptime_ms: int) -> dict[str, Any]:
    g = _gauges(engine, uptime_ms)
    by_class = g.pop("by_class")
    out: dict[str, Any] = {"topics": g.pop("topics")}
    for cls in DURABILITIES:
        out[f"topics_{cls}"] = by_class[cls]
    out.update(g)
    out["ready"] = engine.ready
    if engine.store is not None:
        out["wal"] = engine.store.stats()
    return out


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def metrics_text(
    engine: Engine, uptime_ms: int, now: int, visible: Callable[[str], bool] | None = None
) -> str:
    """Prometheus text; per-topic series only for the topics ``visible`` allows (SPEC §12.2)."""
    g = _gauges(engine, uptime_ms)
    lines: list[str] = []

    def gauge(name: str, value: float, help_text: str) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} gauge")
        lines.append(f"{name} {value}")

    gauge("topics_topics", g["topics"], "Topics on this server.")
    lines.append("# HELP topics_topics_by_class Topics per durability class.")
    lines.append("# TYPE topics_topics_by_class gauge")
    for cls in DURABILITIES:
        lines.append(f'topics_topics_by_class{{class="{cls}"}} {g["by_class"][cls]}')
    gauge("topics_routers", g["routers"], "Routers on this server.")
    gauge("topics_records_live", g["records_live"], "Live records across all topics.")
    gauge("topics_bytes_live", g["bytes_live"], "Live record bytes across all topics.")
    gauge("topics_queue_topics", g["queue_topics"], "Lease-queue topics.")
    gauge("topics_queue_leases_in_flight", g["queue_leases_in_flight"], "Active leases.")
    gauge("topics_sse_connections", g["sse_connections"], "Open SSE streams.")
    gauge("topics_watch_sessions", g["watch_sessions"], "Watch sessions held.")
    gauge("topics_ready", g["ready"], "1 once recovery is complete.")
    gauge("topics_recovery_progress", g["replay_progress"], "Recovery progress, 0 to 1.")
    gauge("topics_uptime_ms", g["uptime_ms"], "Milliseconds since start.")

    series: dict[str, list[str]] = {
        "topics_topic_head_seq": [],
        "topics_topic_earliest_seq": [],
        "topics_topic_records_live": [],
        "topics_topic_bytes_live": [],
        "topics_topic_queue_ready": [],
        "topics_topic_queue_in_flight": [],
    }
    shown = 0
    truncated = 0
    for name, log in engine.topics.items():
        if visible is not None and not visible(name):
            continue
        if shown == PER_TOPIC_LIMIT:
            truncated = 1
            break
        shown += 1
        label = f'{{topic="{_label(name)}"}}'
        series["topics_topic_head_seq"].append(f"topics_topic_head_seq{label} {log.head}")
        series["topics_topic_earliest_seq"].append(
            f"topics_topic_earliest_seq{label} {log.earliest_seq}"
        )
        series["topics_topic_records_live"].append(f"topics_topic_records_live{label} {log.count}")
        series["topics_topic_bytes_live"].append(f"topics_topic_bytes_live{label} {log.bytes}")
        if log.config.is_queue:
            counters = engine.queue_counters(log, now)
            series["topics_topic_queue_ready"].append(
                f"topics_topic_queue_ready{label} {counters['ready']}"
            )
            series["topics_topic_queue_in_flight"].append(
                f"topics_topic_queue_in_flight{label} {counters['in_flight']}"
            )
    for name, samples in series.items():
        lines.append(f"# TYPE {name} gauge")
        lines.extend(samples)
    if engine.store is not None:
        # the store's writer plays the WAL's part: one commit per group of operations
        wal = engine.store.stats()
        for key, help_text in (
            ("frames_total", "Store operations committed."),
            ("batches_total", "Group commits (transactions)."),
            ("fsyncs_total", "Group commits that were fsynced."),
        ):
            lines.append(f"# HELP topics_wal_{key} {help_text}")
            lines.append(f"# TYPE topics_wal_{key} counter")
            lines.append(f"topics_wal_{key} {wal[key]}")
        gauge("topics_wal_queue_depth", wal["queue_depth"], "Operations waiting for the writer.")
        gauge("topics_storage_full", wal["storage_full"], "1 while the store is out of space.")
        lines.append("# HELP topics_store_failures_total Store operations that failed to commit.")
        lines.append("# TYPE topics_store_failures_total counter")
        lines.append(f"topics_store_failures_total {wal['failures_total']}")
    stalled = sum(r.state == "stalled" for r in engine.routers.routers.values())
    gauge("topics_routers_stalled", stalled, "Routers retrying a record they cannot forward.")
    stalls = sum(r.stalls for r in engine.routers.routers.values())
    lines.append("# HELP topics_router_stalls_total Times a router stalled on a record.")
    lines.append("# TYPE topics_router_stalls_total counter")
    lines.append(f"topics_router_stalls_total {stalls}")
    gauge("topics_topic_metrics_truncated", truncated, "1 when per-topic series were cut.")
    return "\n".join(lines) + "\n"
