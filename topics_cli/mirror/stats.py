"""The relay's counters, their Prometheus text, and the status it reports."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DirectionStats", "TopicStats", "prometheus_text"]


@dataclass
class TopicStats:
    copied: int = 0
    skipped_loop: int = 0
    skipped_hops: int = 0
    gaps: int = 0
    gap_records: int = 0
    markers: int = 0
    deduped: int = 0
    cursor: int = 0
    head: int = 0

    @property
    def lag(self) -> int:
        return max(0, self.head - self.cursor)


@dataclass
class DirectionStats:
    source: str
    dest: str
    topics: dict[str, TopicStats] = field(default_factory=dict)
    retries_source: int = 0
    retries_dest: int = 0
    batches: int = 0
    last_checkpoint: float | None = None  # unix seconds
    _window: list[tuple[float, int]] = field(default_factory=list)

    def topic(self, name: str) -> TopicStats:
        stats = self.topics.get(name)
        if stats is None:
            stats = self.topics[name] = TopicStats()
        return stats

    @property
    def copied(self) -> int:
        return sum(t.copied for t in self.topics.values())

    def rate(self, now: float | None = None, span: float = 5.0) -> float:
        """Records copied per second over the last ``span`` seconds."""
        now = time.monotonic() if now is None else now
        total = self.copied
        self._window.append((now, total))
        while len(self._window) > 2 and self._window[1][0] <= now - span:
            self._window.pop(0)
        t0, c0 = self._window[0]
        return (total - c0) / (now - t0) if now > t0 else 0.0

    def summary(self) -> dict[str, Any]:
        age = None if self.last_checkpoint is None else time.time() - self.last_checkpoint
        return {
            "source": self.source,
            "dest": self.dest,
            "copied": self.copied,
            "rate": round(self.rate(), 1),
            "lag": {t: s.lag for t, s in sorted(self.topics.items())},
            "gaps": sum(t.gaps for t in self.topics.values()),
            "retries": {"source": self.retries_source, "dest": self.retries_dest},
            "checkpoint_age_s": None if age is None else round(age, 3),
        }

    def line(self) -> str:
        s = self.summary()
        lags = " ".join(f"{t}={n}" for t, n in s["lag"].items()) or "-"
        age = s["checkpoint_age_s"]
        cp = "none" if age is None else f"{age:.1f}s ago"
        return (
            f"{self.source}->{self.dest} {s['copied']} copied {s['rate']:.0f} rec/s "
            f"lag {lags} gaps {s['gaps']} checkpoint {cp}"
        )


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


_TOPIC_SERIES = (
    (
        "topics_mirror_copied_records_total",
        "counter",
        "Records written to the destination.",
        "copied",
    ),
    ("topics_mirror_lag_records", "gauge", "Source head minus the relay's cursor.", "lag"),
    ("topics_mirror_gaps_total", "counter", "Source gaps (tombstones) the relay met.", "gaps"),
    (
        "topics_mirror_gap_records_total",
        "counter",
        "Source records lost before the relay read them (estimate).",
        "gap_records",
    ),
    ("topics_mirror_gap_markers_total", "counter", "Gap marker records written.", "markers"),
    (
        "topics_mirror_deduped_batches_total",
        "counter",
        "Batches the destination had already (a re-send after a crash).",
        "deduped",
    ),
)


def prometheus_text(directions: list[DirectionStats]) -> str:
    """Text exposition format 0.0.4: per topic series labelled ``source``, ``dest``,
    ``topic``; per direction retries (``side``), skips (``reason``) and checkpoint time."""
    out: list[str] = []
    for name, kind, text, attr in _TOPIC_SERIES:
        out += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        for d in directions:
            for topic, stats in sorted(d.topics.items()):
                labels = (
                    f'source="{_label(d.source)}",dest="{_label(d.dest)}",topic="{_label(topic)}"'
                )
                out.append(f"{name}{{{labels}}} {getattr(stats, attr)}")
    name = "topics_mirror_skipped_records_total"
    out += [
        f"# HELP {name} Records not copied: already on the destination's path (loop) or "
        "at the hop cap (hops).",
        f"# TYPE {name} counter",
    ]
    for d in directions:
        for topic, stats in sorted(d.topics.items()):
            base = f'source="{_label(d.source)}",dest="{_label(d.dest)}",topic="{_label(topic)}"'
            out.append(f'{name}{{{base},reason="loop"}} {stats.skipped_loop}')
            out.append(f'{name}{{{base},reason="hops"}} {stats.skipped_hops}')
    name = "topics_mirror_retries_total"
    out += [
        f"# HELP {name} Failed attempts retried after a backoff (reconnects and writes).",
        f"# TYPE {name} counter",
    ]
    for d in directions:
        base = f'source="{_label(d.source)}",dest="{_label(d.dest)}"'
        out.append(f'{name}{{{base},side="source"}} {d.retries_source}')
        out.append(f'{name}{{{base},side="dest"}} {d.retries_dest}')
    name = "topics_mirror_last_checkpoint_timestamp_seconds"
    out += [f"# HELP {name} When the checkpoint was last saved.", f"# TYPE {name} gauge"]
    for d in directions:
        if d.last_checkpoint is not None:
            base = f'source="{_label(d.source)}",dest="{_label(d.dest)}"'
            out.append(f"{name}{{{base}}} {d.last_checkpoint:.3f}")
    return "\n".join(out) + "\n"
