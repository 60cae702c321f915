"""Rendering for ``topics top``: a :class:`~topics_cli.top_model.Snapshot` → rich renderables.

Only rendering lives here (imported when a pretty view is drawn); the numbers come from
:mod:`topics_cli.top_model`. Figures a server did not give print as "–".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from topics_cli.positions import format_duration
from topics_cli.top_model import QueueRow, RouterRow, Snapshot, TopicRow

__all__ = ["DASH", "Layout", "fit", "render", "sparkline", "topic_columns"]

DASH = "–"
_BLOCKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float]) -> str:
    """One block character per value, scaled to the largest; all zero → all lowest."""
    top = max(values, default=0.0)
    if top <= 0:
        return _BLOCKS[0] * len(values)
    last = len(_BLOCKS) - 1
    return "".join(_BLOCKS[min(last, round(v / top * last))] for v in values)


def _int(value: int | None) -> str:
    return DASH if value is None else f"{value:,}"


def _rate(value: float | None) -> str:
    if value is None:
        return DASH
    if value >= 10_000:
        return f"{value / 1000:,.0f}k"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}"


def _bytes(value: int | None) -> str:
    if value is None:
        return DASH
    size = float(value)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"  # pragma: no cover - loop always returns


def _fill(row: TopicRow) -> Text:
    if row.fill is None:
        return Text(DASH if row.cap_records is None else "no cap", style="dim")
    pct = row.fill * 100
    style = "red bold" if pct >= 95 else "yellow" if pct >= 80 else ""
    return Text(f"{pct:.0f}%", style=style)


def _oldest(row: TopicRow) -> Text:
    if row.ttl_ms is None:
        return Text(DASH, style="dim")
    if row.ttl_ms == 0:
        return Text("no ttl", style="dim")
    if row.oldest_age_ms is None:
        return Text(f"{DASH} / {format_duration(row.ttl_ms)}", style="dim")
    share = row.oldest_age_ms / row.ttl_ms
    style = "red bold" if share >= 0.95 else "yellow" if share >= 0.8 else ""
    return Text(
        f"{format_duration(row.oldest_age_ms)} / {format_duration(row.ttl_ms)}", style=style
    )


@dataclass(frozen=True, slots=True)
class Layout:
    """How many rows of each table fit a screen of ``height`` lines."""

    topics: int
    routers: int
    queues: int


HEADER_LINES = 2
FOOTER_LINES = 1


def fit(height: int, n_routers: int, n_queues: int) -> Layout:
    """Routers and queues get up to a fifth of the screen each (when there are any), topics
    the rest, at least one row."""
    share = max(1, height // 5)
    routers = min(n_routers, share)
    queues = min(n_queues, share)
    used = HEADER_LINES + FOOTER_LINES + 2  # blank line + topic table header
    used += (routers + 2) if routers else 0
    used += (queues + 2) if queues else 0
    return Layout(max(1, height - used), routers, queues)


def _header(snap: Snapshot, url: str, status: str) -> list[Text]:
    h = snap.header
    ready = (
        Text(DASH, style="dim")
        if h.ready is None
        else Text("ready", style="green")
        if h.ready
        else Text("NOT READY", style="red bold")
    )
    line1 = Text.assemble(
        ("topics top ", "bold"),
        (url, "bold cyan"),
        "  ",
        f"v{h.version}" if h.version else DASH,
        "  up ",
        format_duration(h.uptime_ms) if h.uptime_ms is not None else DASH,
        "  ",
        ready,
        f"  sort {snap.sort}",
        f"  prefix {snap.prefix!r}" if snap.prefix else "",
    )
    if status:
        line1.append(f"  {status}", style="yellow bold")
    line2 = Text(
        f"{_int(h.topics)} topics ({snap.topics_matching:,} match the prefix)"
        if snap.prefix
        else f"{_int(h.topics)} topics",
    )
    line2.append(f"  {_int(h.routers)} routers")
    if h.routers_stalled:
        line2.append(f" ({h.routers_stalled} stalled)", style="red bold")
    line2.append(
        f"  {_int(h.records_live)} records "
        f"({_bytes(h.bytes_live)})  {_rate(h.write_rate)} rec/s  "
        f"{_int(h.sse_connections)} SSE  {_int(h.watch_sessions)} watch sessions  "
        f"{_int(h.leases_in_flight)} leases"
    )
    for line in (line1, line2):  # one screen line each, whatever the width
        line.no_wrap = True
        line.overflow = "ellipsis"
    return [line1, line2]


# (header, justify, min width, priority: narrow screens drop the highest numbers first)
_TOPIC_COLUMNS: tuple[tuple[str, str, int, int], ...] = (
    ("TOPIC", "left", 12, 0),
    ("TYPE", "left", 5, 4),
    ("DUR", "left", 6, 6),
    ("HEAD", "right", 6, 0),
    ("RECORDS", "right", 7, 2),
    ("BYTES", "right", 8, 5),
    ("REC/S", "right", 6, 0),
    ("LAST 60s", "left", 12, 7),
    ("EARLIEST", "right", 8, 3),
    ("FILL", "right", 6, 1),
    ("OLDEST / TTL", "left", 12, 1),
    ("AT RISK", "left", 12, 0),
)


def topic_columns(width: int | None, *, with_risk: bool, spark: bool) -> list[str]:
    """The topic table's columns that fit ``width`` (``None``: all of them)."""
    cols = [
        c
        for c in _TOPIC_COLUMNS
        if (with_risk or c[0] != "AT RISK") and (spark or c[0] != "LAST 60s")
    ]
    if width is not None:
        while len(cols) > 1 and sum(c[2] + 2 for c in cols) > width:
            drop = max(cols, key=lambda c: c[3])
            if drop[3] == 0:
                break
            cols.remove(drop)
    return [c[0] for c in cols]


def _topic_cells(r: TopicRow) -> dict[str, RenderableType]:
    risk = r.at_risk
    return {
        "TOPIC": r.topic,
        "TYPE": r.type or DASH,
        "DUR": r.durability or DASH,
        "HEAD": _int(r.head_seq),
        "RECORDS": _int(r.records),
        "BYTES": _bytes(r.bytes),
        "REC/S": _rate(r.rate),
        "LAST 60s": Text(sparkline(r.spark), style="cyan"),
        "EARLIEST": _int(r.earliest_seq),
        "FILL": _fill(r),
        "OLDEST / TTL": _oldest(r),
        "AT RISK": (
            Text(risk.label, style="red bold" if risk.danger else "")
            if risk
            else Text(DASH, style="dim")
        ),
    }


def _topic_table(
    rows: Sequence[TopicRow], width: int | None, with_risk: bool, spark: bool
) -> Table:
    table = Table(box=None, show_edge=False, pad_edge=False, header_style="bold reverse")
    names = topic_columns(width, with_risk=with_risk, spark=spark)
    spec = {c[0]: c for c in _TOPIC_COLUMNS}
    for name in names:
        _, justify, min_width, _ = spec[name]
        table.add_column(
            name,
            justify="right" if justify == "right" else "left",
            no_wrap=True,
            overflow="ellipsis",
            min_width=min_width,
            max_width=40 if name == "TOPIC" else None,
        )
    for r in rows:
        cells = _topic_cells(r)
        danger = r.at_risk is not None and r.at_risk.danger
        table.add_row(*(cells[n] for n in names), style="reverse red" if danger else None)
    return table


def _router_table(rows: Sequence[RouterRow]) -> Table:
    table = Table(box=None, show_edge=False, pad_edge=False, header_style="bold reverse")
    table.add_column("ROUTER", overflow="ellipsis", no_wrap=True, max_width=40)
    table.add_column("SOURCE → DEST", overflow="ellipsis", no_wrap=True, max_width=60)
    table.add_column("LAG", justify="right", no_wrap=True)
    table.add_column("FWD/S", justify="right", no_wrap=True)
    table.add_column("FORWARDED", justify="right", no_wrap=True)
    table.add_column("STATE", no_wrap=True, overflow="ellipsis")
    for r in rows:
        state = r.state or DASH
        style = {"stalled": "red bold", "paused": "yellow"}.get(r.state or "", "")
        text = Text(state, style=style)
        if r.reason and r.state != "running":
            text.append(f" ({r.reason})", style="dim")
        table.add_row(
            r.router,
            f"{r.source} → {r.dest}",
            _int(r.lag),
            _rate(r.forward_rate),
            _int(r.forwarded_total),
            text,
        )
    return table


def _queue_table(rows: Sequence[QueueRow]) -> Table:
    table = Table(box=None, show_edge=False, pad_edge=False, header_style="bold reverse")
    table.add_column("QUEUE", overflow="ellipsis", no_wrap=True, max_width=40)
    for name in ("READY", "IN FLIGHT", "DELAYED", "DEAD", "DONE/S"):
        table.add_column(name, justify="right", no_wrap=True)
    for q in rows:
        dead = Text(_int(q.dead_lettered), style="red" if q.dead_lettered else "")
        table.add_row(
            q.topic, _int(q.ready), _int(q.in_flight), _int(q.delayed), dead, _rate(q.done_rate)
        )
    return table


FOOTER = "q quit  s next sort  r rate  h head  n name  f fill  p pause"


def render(
    snap: Snapshot,
    *,
    url: str,
    status: str = "",
    footer: bool = True,
    spark: bool = True,
    width: int | None = None,
) -> Group:
    """The whole screen (``footer=False`` for a one-off snapshot)."""
    parts: list[RenderableType] = [*_header(snap, url, status), Text("")]
    parts.append(_topic_table(snap.topics, width, snap.with_risk, spark))
    if snap.routers:
        parts += [Text(""), _router_table(snap.routers)]
    if snap.queues:
        parts += [Text(""), _queue_table(snap.queues)]
    if footer:
        parts.append(Text(FOOTER, style="dim", no_wrap=True, overflow="ellipsis"))
    return Group(*parts)
