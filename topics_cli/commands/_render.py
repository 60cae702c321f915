"""Client models → plain JSON-able dicts, and small human formats (no rich here)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from topics_client import TopicConfig, TopicState

__all__ = ["ago", "config_dict", "seq_range", "state_dict"]


def config_dict(config: TopicConfig) -> dict[str, Any]:
    from topics_client import TOPIC_CONFIG_FIELDS

    out = {k: getattr(config, k) for k in TOPIC_CONFIG_FIELDS}
    out.update(config.extra)
    return out


def state_dict(state: TopicState) -> dict[str, Any]:
    out: dict[str, Any] = {
        "topic": state.topic,
        "type": state.type,
        "head_seq": state.head_seq,
        "earliest_seq": state.earliest_seq,
        "next_seq": state.next_seq,
        "count": state.count,
        "bytes": state.bytes,
        "config": config_dict(state.config),
        "effective_priority": state.effective_priority,
        "last_write_ts": state.last_write_ts,
        "last_read_ts": state.last_read_ts,
    }
    if state.queue is not None:
        out["queue"] = {
            "ready": state.queue.ready,
            "in_flight": state.queue.in_flight,
            "dead_lettered": state.queue.dead_lettered,
        }
    out.update(state.extra)
    return out


def ago(ts_ms: int | None) -> str:
    if ts_ms is None:
        return "never"
    from topics_cli.positions import format_duration

    delta = max(0, time.time() * 1000 - ts_ms)
    return f"{format_duration(delta)} ago"


def seq_range(earliest: int, head: int, prefix: str = "") -> str:
    """``PREFIX3..10``, or ``empty (next seq 11)`` when nothing is retained: a drained queue
    or a new topic has ``earliest_seq = head_seq + 1``, never shown as an inverted range."""
    if earliest > head:
        return f"empty (next seq {head + 1})"
    return f"{prefix}{earliest}..{head}"
