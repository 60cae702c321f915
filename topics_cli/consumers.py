"""The consumer-risk model: where each known cursor stands, and when retention reaches it.

Used by ``topics lag`` and ``topics tombstone check`` (and meant for ``topics top
--checkpoints``). Only public ``/v0`` reads: a topic's state (``GET /v0/topics/{t}``) and a
one-record ``POST …/diff`` probe per cursor; unknown response fields are ignored, so it
works against upstream's server unchanged.

API::

    cursors = load_cursors(["workers/*.cp", "orders=41", "billing/audit=7"])
    risks = assess(client, cursors, sample_s=1.0, warn_before_ms=30 * 60_000)
    for risk in risks:
        print(risk.consumer, risk.topic, risk.status, risk.falloff_ms)

* :func:`load_cursors` turns specs into :class:`Cursor` s (an existing file wins over the
  inline reading of the same text): a checkpoint file (the
  ``{topic: seq}`` JSON that ``topics diff/watch --checkpoint`` and the client's
  ``save_checkpoint`` write; one cursor per topic in it, the consumer named after the file's
  stem), a glob of such files, or an inline ``TOPIC=SEQ`` (consumer ``inline``) or
  ``CONSUMER/TOPIC=SEQ`` (a topic name never holds ``/``).
* :func:`assess` measures each topic's write rate (two state reads ``sample_s`` apart, or
  the ``rates`` a caller already has) and gives one :class:`ConsumerRisk` per cursor.
* :func:`eviction_estimate` is the "falls off in" arithmetic on its own (cap: writes left
  over the write rate; TTL: the oldest unread record's age against the TTL).
* :func:`write_rates` is the rate sampling on its own.
"""

from __future__ import annotations

import glob
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from topics_cli.errors import CliError

if TYPE_CHECKING:
    from topics_client import Client, TopicState

__all__ = [
    "ConsumerRisk",
    "Cursor",
    "Eviction",
    "Lost",
    "Status",
    "assess",
    "eviction_estimate",
    "load_cursors",
    "write_rates",
]

Status = Literal["ok", "lagging", "at_risk", "lost", "missing"]
"""``ok`` caught up; ``lagging`` behind but safe (no loss within ``--warn-before``);
``at_risk`` its oldest unread record falls off within ``--warn-before``; ``lost`` records
after the cursor were already evicted (a tombstone); ``missing`` the topic does not exist."""

_INLINE = re.compile(
    r"^(?:(?P<consumer>[^/=]+)/)?(?P<topic>[A-Za-z0-9][A-Za-z0-9._:-]{0,254})=(?P<seq>\d+)$"
)
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class Cursor:
    """One consumer's position in one topic: records after ``seq`` are unread."""

    consumer: str
    topic: str
    seq: int
    source: str
    """Where it came from: the checkpoint file's path, or the inline spec."""


def load_cursors(specs: Sequence[str]) -> list[Cursor]:
    """Every cursor the specs name, in order (see the module doc for the forms).

    Raises :class:`~topics_cli.errors.CliError` (exit 2) for a file that does not exist or
    is not a checkpoint, a glob that matches nothing, or a spec that is none of the forms.
    """
    cursors: list[Cursor] = []
    for spec in specs:
        path = Path(spec)
        if path.is_file():
            cursors.extend(_from_file(path))
            continue
        if _GLOB_CHARS & set(spec):
            matches = sorted(glob.glob(spec))
            files = [Path(m) for m in matches if Path(m).is_file()]
            if not files:
                raise CliError(f"{spec!r} matches no checkpoint file")
            for file in files:
                cursors.extend(_from_file(file))
            continue
        inline = _INLINE.match(spec)
        if inline is not None:
            consumer = inline["consumer"] or "inline"
            cursors.append(Cursor(consumer, inline["topic"], int(inline["seq"]), spec))
            continue
        raise CliError(
            f"{spec!r} is neither a checkpoint file nor TOPIC=SEQ",
            hint="give checkpoint files (workers/*.cp) or cursors like orders=41",
        )
    return cursors


def _from_file(path: Path) -> list[Cursor]:
    from topics_client import load_checkpoint

    try:
        saved = load_checkpoint(path)
    except (ValueError, OSError) as exc:
        raise CliError(f"checkpoint {path}: {exc}") from None
    return [Cursor(path.stem, topic, seq, str(path)) for topic, seq in sorted(saved.items())]


class Eviction(TypedDict):
    """When the record after a cursor falls off (:func:`eviction_estimate`)."""

    writes_until_eviction: int | None
    """Writes the topic can take before its cap evicts that record (None: no cap)."""
    evicted_in_ms: int | None
    """Milliseconds until it is evicted, the sooner of cap and TTL (None: not foreseeable,
    e.g. a cap with no writes, or no cap and no TTL)."""
    evicted_by: str | None
    """``cap`` or ``ttl``: which one evicts it first."""


def eviction_estimate(
    state: TopicState, cursor: int, rate: float | None, next_ts: int | None, now_ms: int
) -> Eviction:
    """When the record after ``cursor`` falls off: by cap (writes left over ``rate``,
    records/s) or by TTL (``next_ts``, that record's ``$ts``, plus ``ttl_ms``). A
    ``discard: reject`` topic never evicts by cap; a byte cap counts in average records."""
    cfg = state.config
    lag = max(0, state.head_seq - cursor)
    out: Eviction = {"writes_until_eviction": None, "evicted_in_ms": None, "evicted_by": None}
    candidates: list[tuple[float, str]] = []
    if cfg.discard != "reject":
        caps: list[int] = []
        if cfg.cap_records:
            caps.append(cfg.cap_records)
        if cfg.cap_bytes and state.count and state.bytes:
            caps.append(max(1, int(cfg.cap_bytes / (state.bytes / state.count))))
        if caps:
            writes_left = max(0, min(caps) - lag + 1)
            out["writes_until_eviction"] = writes_left
            if rate:
                candidates.append((writes_left / rate * 1000, "cap"))
    if cfg.ttl_ms:
        expires = (next_ts + cfg.ttl_ms - now_ms) if next_ts is not None else cfg.ttl_ms
        candidates.append((max(0, expires), "ttl"))
    if candidates:
        ms, why = min(candidates)
        out["evicted_in_ms"] = int(ms)
        out["evicted_by"] = why
    return out


def write_rates(
    client: Client,
    first: Mapping[str, TopicState],
    sample_s: float,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[dict[str, TopicState], dict[str, float | None]]:
    """Each topic's write rate (records/s) from its head now and ``sample_s`` after
    ``first`` was read; returns the second states and the rates. ``sample_s <= 0``: no
    sampling, ``first`` as it is and every rate ``None``. A topic deleted meanwhile keeps
    its first state and a ``None`` rate."""
    from topics_client import TopicNotFoundError

    if sample_s <= 0:
        return dict(first), dict.fromkeys(first)
    t0 = time.monotonic()
    sleep(sample_s)
    states: dict[str, TopicState] = {}
    rates: dict[str, float | None] = {}
    for topic, before in first.items():
        try:
            after = client.topics.get(topic, touch=False)
        except TopicNotFoundError:
            states[topic], rates[topic] = before, None
            continue
        elapsed = max(time.monotonic() - t0, 1e-6)
        states[topic] = after
        rates[topic] = max(0, after.head_seq - before.head_seq) / elapsed
    return states, rates


@dataclass(frozen=True, slots=True)
class Lost:
    """Records after the cursor that retention already removed (the server's tombstone)."""

    gap_from: int
    gap_to: int
    reason: str
    missed_estimate: int


@dataclass(frozen=True, slots=True)
class ConsumerRisk:
    """One cursor, assessed (:func:`assess`)."""

    cursor: Cursor
    status: Status
    head_seq: int | None = None
    earliest_seq: int | None = None
    lag_records: int | None = None
    """Live records after the cursor: ``head - cursor``, less what the server reports as
    gone (deleted or evicted records below the oldest unread one; never more than the
    topic's live ``count``)."""
    lag_ms: int | None = None
    """Age of the oldest unread record (0 when caught up)."""
    oldest_unread_seq: int | None = None
    write_rate: float | None = None
    """Records/s measured on the topic (None: not sampled)."""
    writes_until_eviction: int | None = None
    falloff_ms: int | None = None
    """Milliseconds until the oldest unread record is evicted (0 when records are already
    lost; None when nothing foreseeable evicts it)."""
    falloff_by: str | None = None
    """``cap``, ``ttl``, or for ``lost`` the tombstone's reason."""
    lost: Lost | None = None
    retention: bool = False
    """The topic has a cap (with ``discard: old``) or a TTL at all."""

    def to_dict(self) -> dict[str, Any]:
        c = self.cursor
        return {
            "consumer": c.consumer,
            "topic": c.topic,
            "cursor": c.seq,
            "source": c.source,
            "status": self.status,
            "head_seq": self.head_seq,
            "earliest_seq": self.earliest_seq,
            "lag_records": self.lag_records,
            "lag_ms": self.lag_ms,
            "oldest_unread_seq": self.oldest_unread_seq,
            "write_rate": None if self.write_rate is None else round(self.write_rate, 3),
            "writes_until_eviction": self.writes_until_eviction,
            "falloff_ms": self.falloff_ms,
            "falloff_by": self.falloff_by,
            "lost": None
            if self.lost is None
            else {
                "gap_from": self.lost.gap_from,
                "gap_to": self.lost.gap_to,
                "reason": self.lost.reason,
                "missed_estimate": self.lost.missed_estimate,
            },
        }


def assess(
    client: Client,
    cursors: Sequence[Cursor],
    *,
    sample_s: float = 1.0,
    warn_before_ms: int | None = None,
    rates: Mapping[str, float | None] | None = None,
    now_ms: Callable[[], int] | None = None,
) -> list[ConsumerRisk]:
    """One :class:`ConsumerRisk` per cursor, in order.

    Reads each topic's state once, measures write rates over ``sample_s`` seconds (skipped
    when the caller passes ``rates``), then probes each cursor with a one-record diff: the
    tombstone if records were lost, else the oldest unread record (its seq and ``$ts``).
    ``warn_before_ms``: a cursor whose oldest unread record falls off sooner is ``at_risk``.

    Cost: one state read per topic (two when sampling) and one diff of one record per
    cursor (a few more only when deleted records after the cursor make a page come back
    empty). ``top --checkpoints`` passes the ``rates`` it measured itself.
    """
    from topics_client import TopicNotFoundError

    clock = now_ms or _now_ms
    first: dict[str, TopicState] = {}
    missing: set[str] = set()
    for topic in dict.fromkeys(c.topic for c in cursors):
        try:
            first[topic] = client.topics.get(topic, touch=False)
        except TopicNotFoundError:
            missing.add(topic)
    if rates is None:
        states, measured = write_rates(client, first, sample_s)
    else:
        states, measured = first, {t: rates.get(t) for t in first}
    out: list[ConsumerRisk] = []
    for cursor in cursors:
        if cursor.topic in missing:
            out.append(ConsumerRisk(cursor, "missing"))
            continue
        topic = cursor.topic
        try:
            risk = _assess_one(
                client, cursor, states[topic], measured[topic], clock, warn_before_ms
            )
        except TopicNotFoundError:
            risk = ConsumerRisk(cursor, "missing")
        out.append(risk)
    return out


def _now_ms() -> int:
    return int(time.time() * 1000)


_PROBE_ROUNDS = 64
"""Empty probe pages followed before giving up on finding the oldest unread record (a
server may return an empty page after skipping deleted records)."""


def _assess_one(
    client: Client,
    cursor: Cursor,
    state: TopicState,
    rate: float | None,
    clock: Callable[[], int],
    warn_before_ms: int | None,
) -> ConsumerRisk:
    cfg = state.config
    retention = bool(cfg.ttl_ms) or (
        cfg.discard != "reject" and bool(cfg.cap_records or cfg.cap_bytes)
    )
    probe = client.topics.diff(cursor.topic, from_seq=cursor.seq, limit=1, include_meta=False)
    tomb = probe.tombstone
    rounds = 0
    while not probe.records and not probe.caught_up and rounds < _PROBE_ROUNDS:
        rounds += 1
        probe = client.topics.diff(
            cursor.topic, from_seq=probe.next_from_seq, limit=1, include_meta=False
        )
    now = clock()
    head = max(state.head_seq, probe.head_seq)
    oldest = probe.records[0] if probe.records else None
    if oldest is not None:
        lag = min(head - oldest.seq + 1, max(state.count, 1))
        lag_ms = max(0, now - oldest.ts)
    elif probe.caught_up:
        lag, lag_ms = 0, 0
    else:  # gave up looking: the server's own figure
        lag, lag_ms = min(max(0, head - cursor.seq), state.count), None
    common: dict[str, Any] = {
        "head_seq": head,
        "earliest_seq": probe.earliest_seq,
        "lag_records": lag,
        "lag_ms": lag_ms,
        "oldest_unread_seq": None if oldest is None else oldest.seq,
        "write_rate": rate,
        "retention": retention,
    }
    if tomb is not None:
        lost = Lost(tomb.gap_from, tomb.gap_to, tomb.reason, tomb.missed_estimate)
        return ConsumerRisk(
            cursor, "lost", falloff_ms=0, falloff_by=tomb.reason, lost=lost, **common
        )
    # the record that falls off next is the oldest unread one: deleted seqs before it
    # are nobody's loss
    effective = cursor.seq if oldest is None else max(cursor.seq, oldest.seq - 1)
    eviction = eviction_estimate(state, effective, rate, None if oldest is None else oldest.ts, now)
    falloff = eviction["evicted_in_ms"]
    if oldest is None and lag == 0:
        falloff = None  # nothing unread: nothing of this consumer's can fall off
    status: Status = "ok" if lag == 0 else "lagging"
    if warn_before_ms is not None and falloff is not None and falloff < warn_before_ms:
        status = "at_risk"
    return ConsumerRisk(
        cursor,
        status,
        writes_until_eviction=eviction["writes_until_eviction"],
        falloff_ms=falloff,
        falloff_by=eviction["evicted_by"] if falloff is not None else None,
        **common,
    )
