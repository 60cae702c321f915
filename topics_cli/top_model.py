"""The model behind ``topics top``: samples in, rows out. Pure: no I/O, no rich, no clock.

Each refresh feeds :class:`TopModel` what the server said (one topic listing, the metrics
text, the router listing, and whatever per-topic/per-router details the budget allowed) with
the monotonic time it was taken. The model keeps, per topic, the heads seen over the last
minute and derives from them:

* the write rate: records/s over the last :data:`RATE_WINDOW_S` seconds (at least two
  samples; ``None`` until then);
* a sparkline series: the rate between consecutive samples over the last minute, averaged
  into a fixed number of bins;
* for queues, jobs leaving the queue per second (acked, dead-lettered, expired or deleted):
  the change of ``head_seq - count``;
* for routers, records forwarded per second (change of ``forwarded_total``).

Figures the server did not give (an upstream listing has no config; a router GET may carry no
cursor) stay ``None`` and are shown as "–". :meth:`TopModel.wanted_details` says which extra
GETs are worth spending the per-refresh budget on (visible rows first); that is the only
per-topic traffic ``top`` makes, never a diff per topic per tick.
"""

from __future__ import annotations

import contextlib
import heapq
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

__all__ = [
    "RATE_WINDOW_S",
    "SORT_KEYS",
    "SPARK_WINDOW_S",
    "AtRisk",
    "Detail",
    "Header",
    "Listed",
    "ListedLike",
    "QueueRow",
    "RiskProbe",
    "RouterInfo",
    "RouterRow",
    "ServerMetrics",
    "Snapshot",
    "TopModel",
    "TopicRow",
    "fill_ratio",
    "parse_metrics",
    "sort_rows",
    "sparkline_bins",
]

SORT_KEYS = ("rate", "head", "name", "fill")
RATE_WINDOW_S = 5.0
"""The write rate is measured over (about) the last this many seconds."""
SPARK_WINDOW_S = 60.0
"""The sparkline covers the last minute."""
CONFIG_MAX_AGE_S = 30.0
QUEUE_MAX_AGE_S = 5.0
ROUTER_MAX_AGE_S = 5.0
OLDEST_MAX_AGE_S = 10.0


# -- inputs -----------------------------------------------------------------------------


class ListedLike(Protocol):
    """A topic listing entry: :class:`Listed`, or the client's ``TopicSummary``."""

    @property
    def topic(self) -> str: ...
    @property
    def head_seq(self) -> int: ...
    @property
    def earliest_seq(self) -> int: ...
    @property
    def count(self) -> int: ...
    @property
    def bytes(self) -> int: ...
    @property
    def durable(self) -> bool: ...
    @property
    def extra(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Listed:
    """One topic listing entry (SPEC §2.3); ``extra`` holds fields a server added."""

    topic: str
    head_seq: int
    earliest_seq: int
    count: int
    bytes: int
    durable: bool
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Detail:
    """What a topic's state GET said (SPEC §2.2), kept until it is refreshed."""

    type: str
    durability: str | None
    cap_records: int
    cap_bytes: int
    ttl_ms: int
    ready: int | None = None
    in_flight: int | None = None
    dead_lettered: int | None = None
    fetched_at: float = 0.0


@dataclass(frozen=True, slots=True)
class RouterInfo:
    """A router listing entry plus, when fetched, its GET's ``state``/``reason``/cursor."""

    router: str
    source: str
    dest: str
    forwarded_total: int | None
    state: str | None = None
    reason: str | None = None
    cursor: int | None = None
    cursor_forwarded: int | None = None  # forwarded_total in the same GET as ``cursor``
    fetched_at: float | None = None


@dataclass(frozen=True, slots=True)
class ServerMetrics:
    """The few series ``top`` reads from ``GET /v0/metrics`` (Prometheus text)."""

    gauges: Mapping[str, float]
    queue_ready: Mapping[str, int]
    queue_in_flight: Mapping[str, int]


def _unescape(label: str) -> str:
    out: list[str] = []
    chars = iter(label)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, "")
            out.append("\n" if nxt == "n" else nxt)
        else:
            out.append(ch)
    return "".join(out)


_PER_TOPIC = {"topics_topic_queue_ready": "ready", "topics_topic_queue_in_flight": "in_flight"}


def parse_metrics(text: str) -> ServerMetrics:
    """Unlabelled gauges and the per-topic queue series of a Prometheus text body.

    Everything else (other labelled series, histograms, comments) is skipped; a line that
    does not parse is ignored, so a server with more or fewer series never breaks ``top``.
    """
    gauges: dict[str, float] = {}
    per: dict[str, dict[str, int]] = {"ready": {}, "in_flight": {}}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        name, brace, rest = line.partition("{")
        if not brace:
            parts = line.split()
            if len(parts) >= 2:
                with contextlib.suppress(ValueError):
                    gauges[parts[0]] = float(parts[1])
            continue
        kind = _PER_TOPIC.get(name)
        if kind is None or not rest.startswith('topic="'):
            continue
        labels, sep, value = rest.rpartition("}")
        if not sep or not labels.endswith('"') or "," in labels.replace('\\"', ""):
            continue
        try:
            per[kind][_unescape(labels[7:-1])] = int(float(value.split()[0]))
        except (ValueError, IndexError):
            continue
    return ServerMetrics(gauges, per["ready"], per["in_flight"])


# -- outputs ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AtRisk:
    """What a consumer-risk model says about one topic (the ``--checkpoints`` column).

    ``label`` is the column's text ("2 readers, loses in 4m"); ``danger`` highlights the row
    (a known consumer has lost, or is about to lose, records to eviction).
    """

    label: str
    danger: bool = False


RiskProbe = Callable[[Mapping[str, "float | None"]], Mapping[str, AtRisk]]
"""The ``--checkpoints`` seam: given every listed topic's write rate (records/s, ``None``
before two samples), the at-risk info per topic name (absent: nothing known about it).
``topics top``'s refresher calls it once per refresh, after the listing, off the drawing
path (it may make requests, e.g. ``topics_cli.consumers.assess(client, cursors,
rates=rates)``); the view shows its latest answer (:meth:`TopModel.set_risk`)."""


@dataclass(frozen=True, slots=True)
class TopicRow:
    topic: str
    type: str | None
    durability: str | None
    head_seq: int
    records: int
    bytes: int
    earliest_seq: int
    rate: float | None
    spark: tuple[float, ...]
    fill: float | None
    cap_records: int | None
    cap_bytes: int | None
    ttl_ms: int | None
    oldest_age_ms: int | None
    at_risk: AtRisk | None = None

    def to_json(self, with_risk: bool = False) -> dict[str, Any]:
        """``at_risk`` is there when known, or ``null`` with ``with_risk`` (a probe ran)."""
        out: dict[str, Any] = {
            "topic": self.topic,
            "type": self.type,
            "durability": self.durability,
            "head_seq": self.head_seq,
            "records": self.records,
            "bytes": self.bytes,
            "earliest_seq": self.earliest_seq,
            "rate": _round(self.rate),
            "fill": _round(self.fill, 4),
            "cap_records": self.cap_records,
            "cap_bytes": self.cap_bytes,
            "ttl_ms": self.ttl_ms,
            "oldest_age_ms": self.oldest_age_ms,
        }
        if self.at_risk is not None:
            out["at_risk"] = {"label": self.at_risk.label, "danger": self.at_risk.danger}
        elif with_risk:
            out["at_risk"] = None
        return out


@dataclass(frozen=True, slots=True)
class RouterRow:
    router: str
    source: str
    dest: str
    forwarded_total: int | None
    forward_rate: float | None
    lag: int | None
    state: str | None
    reason: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "router": self.router,
            "source": self.source,
            "dest": self.dest,
            "forwarded_total": self.forwarded_total,
            "forward_rate": _round(self.forward_rate),
            "lag": self.lag,
            "state": self.state,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class QueueRow:
    topic: str
    ready: int | None
    in_flight: int | None
    delayed: int | None
    dead_lettered: int | None
    done_rate: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "ready": self.ready,
            "in_flight": self.in_flight,
            "delayed": self.delayed,
            "dead_lettered": self.dead_lettered,
            "done_rate": _round(self.done_rate),
        }


@dataclass(frozen=True, slots=True)
class Header:
    version: str | None
    uptime_ms: int | None
    ready: bool | None
    topics: int | None
    routers: int | None
    routers_stalled: int | None
    records_live: int | None
    bytes_live: int | None
    write_rate: float | None
    sse_connections: int | None
    watch_sessions: int | None
    leases_in_flight: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "uptime_ms": self.uptime_ms,
            "ready": self.ready,
            "topics": self.topics,
            "routers": self.routers,
            "routers_stalled": self.routers_stalled,
            "records_live": self.records_live,
            "bytes_live": self.bytes_live,
            "write_rate": _round(self.write_rate),
            "sse_connections": self.sse_connections,
            "watch_sessions": self.watch_sessions,
            "queue_leases_in_flight": self.leases_in_flight,
        }


@dataclass(frozen=True, slots=True)
class Snapshot:
    header: Header
    sort: str
    prefix: str
    topics_matching: int
    topics: tuple[TopicRow, ...]
    routers: tuple[RouterRow, ...]
    queues: tuple[QueueRow, ...]
    samples: int
    with_risk: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "server": self.header.to_json(),
            "sort": self.sort,
            "prefix": self.prefix,
            "samples": self.samples,
            "topics_matching": self.topics_matching,
            "topics": [r.to_json(self.with_risk) for r in self.topics],
            "routers": [r.to_json() for r in self.routers],
            "queues": [q.to_json() for q in self.queues],
        }


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


# -- pure helpers -----------------------------------------------------------------------


def fill_ratio(count: int, nbytes: int, cap_records: int, cap_bytes: int) -> float | None:
    """How full the fuller cap is (0.0–1.0+), ``None`` for an uncapped topic."""
    ratios = []
    if cap_records > 0:
        ratios.append(count / cap_records)
    if cap_bytes > 0:
        ratios.append(nbytes / cap_bytes)
    return max(ratios) if ratios else None


def sparkline_bins(points: Sequence[tuple[float, float]], now: float, bins: int) -> list[float]:
    """Average ``(time, rate)`` points of the last minute into ``bins`` equal time slots
    (oldest first); a slot with no point repeats the previous slot (0 at the start)."""
    width = SPARK_WINDOW_S / bins
    sums = [0.0] * bins
    counts = [0] * bins
    start = now - SPARK_WINDOW_S
    for t, rate in points:
        if t <= start:
            continue
        k = min(bins - 1, int((t - start) / width))
        sums[k] += rate
        counts[k] += 1
    out: list[float] = []
    last = 0.0
    for s, c in zip(sums, counts, strict=True):
        if c:
            last = s / c
        out.append(last)
    return out


def _sort_key(sort: str) -> Callable[[TopicRow], Any]:
    if sort == "name":
        return lambda r: r.topic
    if sort == "head":
        return lambda r: (-r.head_seq, r.topic)
    if sort == "fill":
        return lambda r: (r.fill is None, -(r.fill or 0.0), -(r.rate or 0.0), r.topic)
    return lambda r: (-(r.rate or 0.0), -r.head_seq, r.topic)


def sort_rows(rows: Iterable[TopicRow], sort: str) -> list[TopicRow]:
    """Rows by ``sort`` (``rate``/``head``/``fill`` descending, ``name`` ascending); unknown
    fill sorts last; ties by name."""
    if sort not in SORT_KEYS:
        raise ValueError(f"sort must be one of {', '.join(SORT_KEYS)}")
    return sorted(rows, key=_sort_key(sort))


# -- the model --------------------------------------------------------------------------


class _History:
    """``(time, value)`` samples of one counter over the last minute."""

    __slots__ = ("points",)

    def __init__(self) -> None:
        self.points: deque[tuple[float, int]] = deque()

    def add(self, t: float, value: int) -> None:
        points = self.points
        if points and value < points[-1][1]:
            points.clear()  # recreated topic / restarted counter: start over
        points.append((t, value))
        horizon = t - SPARK_WINDOW_S - 1.0
        while len(points) > 2 and points[1][0] < horizon:
            points.popleft()

    def rate(self, window: float) -> float | None:
        points = self.points
        if len(points) < 2:
            return None
        t1, v1 = points[-1]
        first = points[-2]
        for p in reversed(points):
            if t1 - p[0] > window:
                break
            first = p
        t0, v0 = first
        return (v1 - v0) / (t1 - t0) if t1 > t0 else None

    def deltas(self) -> list[tuple[float, float]]:
        pts = self.points
        return [
            (b[0], (b[1] - a[1]) / (b[0] - a[0]))
            for a, b in zip(pts, list(pts)[1:], strict=False)
            if b[0] > a[0]
        ]


@dataclass(slots=True)
class _Topic:
    listed: ListedLike
    heads: _History = field(default_factory=_History)
    removed: _History = field(default_factory=_History)  # head - count (queues)
    detail: Detail | None = None
    oldest: tuple[int, int, float] | None = None  # (earliest_seq, $ts, fetched_at)
    seen: int = 0


class TopModel:
    """Accumulates refreshes; :meth:`snapshot` turns the latest into rows."""

    def __init__(self, *, sort: str = "rate", prefix: str = "", spark_bins: int = 12) -> None:
        if sort not in SORT_KEYS:
            raise ValueError(f"sort must be one of {', '.join(SORT_KEYS)}")
        self.sort = sort
        self.prefix = prefix
        self.spark_bins = spark_bins
        self.version: str | None = None
        self.metrics: ServerMetrics | None = None
        self.samples = 0
        self.now = 0.0
        self._topics: dict[str, _Topic] = {}
        self._routers: dict[str, RouterInfo] = {}
        self._forwarded: dict[str, _History] = {}
        self.risk: dict[str, AtRisk] | None = None
        """The latest :data:`RiskProbe` answer; ``None``: no probe, no AT RISK column."""

    # -- feeding

    def add_listing(self, entries: Iterable[ListedLike], now: float) -> None:
        """A complete listing taken at monotonic time ``now``; topics not in it are gone.

        Entries are :class:`Listed` or anything with the same attributes (the client's
        ``TopicSummary``: no copy per topic)."""
        self.now = now
        self.samples += 1
        seen = self.samples
        topics = self._topics
        for entry in entries:
            t = topics.get(entry.topic)
            if t is None or entry.head_seq < t.listed.head_seq:
                t = topics[entry.topic] = _Topic(entry)
            t.listed = entry
            t.seen = seen
            t.heads.add(now, entry.head_seq)
            if entry.extra:
                inline = _detail_from_listing(entry, now)
                if inline is not None:
                    t.detail = inline
            if self._is_queue(t):  # jobs done per second: queues only
                t.removed.add(now, entry.head_seq - entry.count)
        for name in [n for n, t in topics.items() if t.seen != seen]:
            del topics[name]

    def add_metrics(self, metrics: ServerMetrics) -> None:
        self.metrics = metrics

    def add_routers(self, routers: Iterable[RouterInfo], now: float) -> None:
        fresh: dict[str, RouterInfo] = {}
        for info in routers:
            old = self._routers.get(info.router)
            if old is not None and old.fetched_at is not None and info.fetched_at is None:
                info = replace(
                    info,
                    state=old.state,
                    reason=old.reason,
                    cursor=old.cursor,
                    cursor_forwarded=old.cursor_forwarded,
                    fetched_at=old.fetched_at,
                )
            fresh[info.router] = info
            if info.forwarded_total is not None:
                self._forwarded.setdefault(info.router, _History()).add(now, info.forwarded_total)
        self._routers = fresh
        for name in [n for n in self._forwarded if n not in fresh]:
            del self._forwarded[name]

    def add_detail(self, topic: str, detail: Detail) -> None:
        t = self._topics.get(topic)
        if t is not None:
            t.detail = detail

    def add_router_state(
        self,
        router: str,
        state: str | None,
        reason: str | None,
        cursor: int | None,
        now: float,
        forwarded_total: int | None = None,
    ) -> None:
        """A router GET: its state and cursor, and the ``forwarded_total`` it reported with
        them (between GETs the cursor is moved on by what the listing says was forwarded
        since)."""
        info = self._routers.get(router)
        if info is not None:
            self._routers[router] = replace(
                info,
                state=state,
                reason=reason,
                cursor=cursor,
                cursor_forwarded=forwarded_total,
                fetched_at=now,
            )

    def add_oldest(self, topic: str, earliest_seq: int, ts: int | None, now: float) -> None:
        """The ``$ts`` of the record at ``earliest_seq`` (``None``: the topic is empty)."""
        t = self._topics.get(topic)
        if t is not None:
            t.oldest = None if ts is None else (earliest_seq, ts, now)

    def forget_topic(self, topic: str) -> None:
        self._topics.pop(topic, None)

    # -- reading

    def _is_queue(self, t: _Topic) -> bool:
        if t.detail is not None:
            return t.detail.type == "queue"
        m = self.metrics
        return m is not None and t.listed.topic in m.queue_ready

    def _row(self, t: _Topic, wall_ms: int, rate: float | None) -> TopicRow:
        e, d = t.listed, t.detail
        oldest_age = None
        if d is not None and t.oldest is not None and e.count > 0:
            oldest_age = max(0, wall_ms - t.oldest[1])
        return TopicRow(
            topic=e.topic,
            type=d.type if d else ("queue" if self._is_queue(t) else None),
            durability=d.durability if d else ("fsync" if e.durable else None),
            head_seq=e.head_seq,
            records=e.count,
            bytes=e.bytes,
            earliest_seq=e.earliest_seq,
            rate=rate,
            spark=(),
            fill=fill_ratio(e.count, e.bytes, d.cap_records, d.cap_bytes) if d else None,
            cap_records=d.cap_records if d else None,
            cap_bytes=d.cap_bytes if d else None,
            ttl_ms=d.ttl_ms if d else None,
            oldest_age_ms=oldest_age,
        )

    def rows(self, wall_ms: int) -> list[TopicRow]:
        """Every topic's row, unsorted; ``wall_ms`` (epoch ms) ages the oldest records."""
        return [self._row(t, wall_ms, t.heads.rate(RATE_WINDOW_S)) for t in self._topics.values()]

    def _order(self, topics: list[_Topic], rates: list[float | None]) -> Callable[[int], Any]:
        """The sort key of :func:`sort_rows`, on indexes (no row objects for the unshown)."""
        sort = self.sort
        if sort == "name":
            return lambda i: topics[i].listed.topic
        if sort == "head":
            return lambda i: (-topics[i].listed.head_seq, topics[i].listed.topic)
        if sort == "fill":
            fills = []
            for t in topics:
                e, d = t.listed, t.detail
                fills.append(
                    fill_ratio(e.count, e.bytes, d.cap_records, d.cap_bytes) if d else None
                )
            return lambda i: (
                fills[i] is None,
                -(fills[i] or 0.0),
                -(rates[i] or 0.0),
                topics[i].listed.topic,
            )
        return lambda i: (-(rates[i] or 0.0), -topics[i].listed.head_seq, topics[i].listed.topic)

    def snapshot(
        self,
        *,
        rows: int | None,
        wall_ms: int,
        max_routers: int | None = None,
        max_queues: int | None = None,
    ) -> Snapshot:
        """The top ``rows`` topics by the sort key (``None``: all), the routers touching
        them (all routers when no prefix is set), the queues among all matching topics.

        Only the rows shown are built (and given a sparkline): with 10,000 topics a redraw
        computes each rate and a sort key, nothing more.
        """
        topics = list(self._topics.values())
        rates = [t.heads.rate(RATE_WINDOW_S) for t in topics]
        key = self._order(topics, rates)
        if rows is None:
            chosen = sorted(range(len(topics)), key=key)
        else:
            chosen = heapq.nsmallest(max(0, rows), range(len(topics)), key=key)
        shown = [self._row(topics[i], wall_ms, rates[i]) for i in chosen]
        if self.spark_bins:  # a minute of samples each
            shown = [replace(r, spark=self.spark(r.topic)) for r in shown]
        if self.risk is not None:
            found = self.risk
            shown = [replace(r, at_risk=found.get(r.topic)) for r in shown]
        known = [r for r in rates if r is not None]
        return Snapshot(
            header=self._header(sum(known) if known else None),
            sort=self.sort,
            prefix=self.prefix,
            topics_matching=len(topics),
            topics=tuple(shown),
            routers=tuple(self._router_rows()[:max_routers]),
            queues=tuple(self._queue_rows()[:max_queues]),
            samples=self.samples,
            with_risk=self.risk is not None,
        )

    def rates(self) -> dict[str, float | None]:
        """Every listed topic's write rate (what a :data:`RiskProbe` is given)."""
        return {name: t.heads.rate(RATE_WINDOW_S) for name, t in self._topics.items()}

    def set_risk(self, risk: Mapping[str, AtRisk]) -> None:
        """The latest :data:`RiskProbe` answer (turns the AT RISK column on)."""
        self.risk = dict(risk)

    def spark(self, topic: str) -> tuple[float, ...]:
        """The sparkline series of one topic's write rate over the last minute."""
        t = self._topics.get(topic)
        if t is None:
            return ()
        return tuple(sparkline_bins(t.heads.deltas(), self.now, self.spark_bins))

    def counts(self) -> tuple[int, int]:
        """(routers, queues) a snapshot would list."""
        routers = sum(self._matches(i.source, i.dest) for i in self._routers.values())
        return routers, sum(self._is_queue(t) for t in self._topics.values())

    def _header(self, write_rate: float | None) -> Header:
        g = self.metrics.gauges if self.metrics is not None else {}

        def gauge(name: str) -> int | None:
            value = g.get(name)
            return None if value is None or math.isnan(value) else int(value)

        ready = g.get("topics_ready")
        return Header(
            version=self.version,
            uptime_ms=gauge("topics_uptime_ms"),
            ready=None if ready is None else ready >= 1,
            topics=gauge("topics_topics"),
            routers=gauge("topics_routers"),
            routers_stalled=gauge("topics_routers_stalled"),
            records_live=gauge("topics_records_live"),
            bytes_live=gauge("topics_bytes_live"),
            write_rate=write_rate,
            sse_connections=gauge("topics_sse_connections"),
            watch_sessions=gauge("topics_watch_sessions"),
            leases_in_flight=gauge("topics_queue_leases_in_flight"),
        )

    def _matches(self, *names: str) -> bool:
        return not self.prefix or any(n.startswith(self.prefix) for n in names)

    def _router_rows(self) -> list[RouterRow]:
        out = []
        for info in self._routers.values():
            if not self._matches(info.source, info.dest):
                continue
            source = self._topics.get(info.source)
            head = source.listed.head_seq if source is not None else None
            lag = None
            if head is not None and info.cursor is not None:
                cursor = info.cursor
                if info.cursor_forwarded is not None and info.forwarded_total is not None:
                    cursor += max(0, info.forwarded_total - info.cursor_forwarded)
                lag = max(0, head - cursor)
            history = self._forwarded.get(info.router)
            out.append(
                RouterRow(
                    router=info.router,
                    source=info.source,
                    dest=info.dest,
                    forwarded_total=info.forwarded_total,
                    forward_rate=history.rate(RATE_WINDOW_S) if history else None,
                    lag=lag,
                    state=info.state,
                    reason=info.reason,
                )
            )
        # the ones needing attention first: stalled, paused, lagging; then by name
        order = {"stalled": 0, "paused": 1}
        out.sort(key=lambda r: (order.get(r.state or "", 2), -(r.lag or 0), r.router))
        return out

    def _queue_rows(self) -> list[QueueRow]:
        m = self.metrics
        out = []
        for t in self._topics.values():
            if not self._is_queue(t):
                continue
            name, d = t.listed.topic, t.detail
            ready = in_flight = None
            if m is not None and name in m.queue_ready:
                ready, in_flight = m.queue_ready[name], m.queue_in_flight.get(name)
            elif d is not None:
                ready, in_flight = d.ready, d.in_flight
            delayed = None
            if ready is not None and in_flight is not None:
                delayed = max(0, t.listed.count - ready - in_flight)
            out.append(
                QueueRow(
                    topic=name,
                    ready=ready,
                    in_flight=in_flight,
                    delayed=delayed,
                    dead_lettered=d.dead_lettered if d else None,
                    done_rate=t.removed.rate(RATE_WINDOW_S),
                )
            )
        out.sort(key=lambda q: (-(q.ready or 0) - (q.in_flight or 0), q.topic))
        return out

    # -- what to fetch next

    def wanted_details(
        self,
        visible: Sequence[str],
        budget: int,
        *,
        learn_all: bool = False,
        cap: int | None = None,
    ) -> list[tuple[str, str]]:
        """Up to ``budget`` extra requests worth making now, most useful first, as
        ``("topic", name)`` (state GET), ``("oldest", name)`` (one-record diff at the
        earliest seq of a TTL topic) or ``("router", name)`` (router GET).

        Visible topics without a config come first, then queues and routers due for a
        refresh, then stale configs and TTL ages; ``learn_all`` (``--sort fill``) then
        spends what is left on topics never looked at, so the order settles over time.
        ``cap`` bounds the queues and the routers looked at beyond the visible rows (each).
        """
        now = self.now
        want: list[tuple[str, str]] = []
        topics = self._topics
        shown = [topics[n] for n in visible if n in topics]
        seen: set[tuple[str, str]] = set()

        def add(kind: str, name: str) -> bool:
            item = (kind, name)
            if item not in seen:
                seen.add(item)
                want.append(item)
            return len(want) >= budget

        if budget <= 0:
            return []
        for t in shown:
            if t.detail is None and add("topic", t.listed.topic):
                return want
        left = cap
        for t in topics.values():
            if left is not None and left <= 0:
                break
            d = t.detail
            stale = d is None or now - d.fetched_at >= QUEUE_MAX_AGE_S
            if self._is_queue(t) and stale:
                if add("topic", t.listed.topic):
                    return want
                left = None if left is None else left - 1
        left = cap
        by_age = sorted(  # the stalest first: with many routers, each gets its turn
            self._routers.values(),
            key=lambda i: -1.0 if i.fetched_at is None else i.fetched_at,
        )
        for info in by_age:
            if left is not None and left <= 0:
                break
            if not self._matches(info.source, info.dest):
                continue
            stale = info.fetched_at is None or now - info.fetched_at >= ROUTER_MAX_AGE_S
            if stale:
                if add("router", info.router):
                    return want
                left = None if left is None else left - 1
        for t in shown:
            d = t.detail
            if d is None:
                continue
            if d.ttl_ms > 0 and t.listed.count > 0:
                o = t.oldest
                due = o is None or (
                    o[0] != t.listed.earliest_seq and now - o[2] >= OLDEST_MAX_AGE_S
                )
                if due and add("oldest", t.listed.topic):
                    return want
            if now - d.fetched_at >= CONFIG_MAX_AGE_S and add("topic", t.listed.topic):
                return want
        if learn_all:
            for t in topics.values():
                if t.detail is None and add("topic", t.listed.topic):
                    return want
        return want

    def earliest_of(self, topic: str) -> int | None:
        t = self._topics.get(topic)
        return None if t is None else t.listed.earliest_seq


def _detail_from_listing(entry: ListedLike, now: float) -> Detail | None:
    """A listing entry that carries ``type`` and ``config`` (an additive server extension)
    needs no state GET."""
    extra = entry.extra
    config = extra.get("config")
    kind = extra.get("type")
    if not isinstance(config, Mapping) or not isinstance(kind, str):
        return None
    queue = extra.get("queue") if isinstance(extra.get("queue"), Mapping) else None
    return Detail(
        type=kind,
        durability=config.get("durability"),
        cap_records=int(config.get("cap_records") or 0),
        cap_bytes=int(config.get("cap_bytes") or 0),
        ttl_ms=int(config.get("ttl_ms") or 0),
        ready=queue.get("ready") if queue else None,
        in_flight=queue.get("in_flight") if queue else None,
        dead_lettered=queue.get("dead_lettered") if queue else None,
        fetched_at=now,
    )
