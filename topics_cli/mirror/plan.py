"""What the relay decides, without I/O: endpoints, idempotency keys, the mirror's meta entry,
which records travel, and the backoff between attempts.

The meta entry (:data:`META_KEY`) on every copy the relay writes::

    "_topics_mirror": {"hops": 2, "path": ["fra", "iad"], "topic": "orders", "seq": 41}

``path`` lists the servers the record was copied out of, in order (its origin first);
``hops`` is its length. A record is never copied into a server already on its path (so a
two-way mirror never echoes) nor past :data:`MAX_HOPS` copies (so any mesh terminates, as
an ``allow_cycle`` router mesh does). ``topic``/``seq`` say where the copy was read.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "MAX_FRAME_RECORDS",
    "MAX_HOPS",
    "META_KEY",
    "Copy",
    "Endpoint",
    "Plan",
    "backoff",
    "batch_key",
    "checkpoint_key",
    "gap_key",
    "gap_marker",
    "hop_info",
    "literal_prefix",
    "matches",
    "parse_endpoint",
    "plan_batch",
]

META_KEY = "_topics_mirror"
"""The ``meta`` key carrying a copy's hop count and path."""

ORIGINAL_META_KEY = "_topics_original_meta"
"""Holds the original ``meta`` when it cannot take one more key (not an object, or full)."""

MAX_FRAME_RECORDS = 1000
"""The most records a server puts in one watch frame (SPEC §9.1, ``limit`` clamp)."""

MAX_HOPS = 8
"""A record already copied this many times is not copied again (the routers' cap)."""

MAX_META_KEYS = 64
MAX_KEY_BYTES = 256


class EndpointError(ValueError):
    """A NAME=URL or URL/TOPIC argument that does not parse."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One side of the mirror: ``name`` identifies the server in keys, paths and metrics."""

    name: str
    url: str
    topic: str | None = None


def parse_endpoint(text: str, *, with_topic: bool) -> Endpoint:
    """``[NAME=]URL`` (``with_topic``: ``[NAME=]URL[/TOPIC]``); NAME defaults to the URL's
    ``host:port``, so relays that spell a server's URL the same agree on its name."""
    name: str | None = None
    url = text.strip()
    head, sep, tail = url.partition("=")
    if sep and "://" not in head and head:
        name, url = head, tail
    if "://" not in url:
        raise EndpointError(f"{text!r}: expected [NAME=]http://HOST:PORT")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise EndpointError(f"{text!r}: expected an http(s) URL")
    topic: str | None = None
    path = parts.path.rstrip("/")
    if with_topic and path:
        path, _, last = path.rpartition("/")
        topic = last or None
    elif path:
        raise EndpointError(f"{text!r}: a server URL has no path (the topic goes in --topic)")
    base = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
    if name is None:
        name = parts.netloc
    if not name or any(c in name for c in "/ \t\n"):
        raise EndpointError(f"{text!r}: a server name has no '/' or spaces")
    return Endpoint(name, base, topic)


def literal_prefix(pattern: str) -> str:
    """The part of a glob before its first wildcard (a listing prefix)."""
    for i, c in enumerate(pattern):
        if c in "*?[":
            return pattern[:i]
    return pattern


def matches(topic: str, patterns: Sequence[str]) -> bool:
    return any(fnmatchcase(topic, p) for p in patterns)


def checkpoint_key(source: str, topic: str) -> str:
    """The checkpoint entry of one source topic: ``SOURCE/TOPIC`` (``/`` never appears in
    a server name or a topic name)."""
    return f"{source}/{topic}"


def _bounded(prefix: str, source: str, topic: str, suffix: str) -> str:
    key = f"{prefix}:{source}:{topic}:{suffix}"
    if len(key.encode()) <= MAX_KEY_BYTES:
        return key
    digest = hashlib.sha256(f"{source}\n{topic}".encode()).hexdigest()[:32]
    return f"{prefix}:{digest}:{suffix}"


def batch_key(source: str, topic: str, first_seq: int, first_ts: int) -> str:
    """Idempotency key of the batch whose first record is source seq ``first_seq``,
    written at ``first_ts`` (``$ts``, so a re-created topic's seqs never reuse a key).

    The batch's first record names it: after a crash the relay re-reads from its
    checkpoint, and the first record it writes is the first one of the batch in doubt, even
    when the batch it forms now is longer. The destination's dedupe answer says how far
    that earlier write went; the relay sends the rest under the key of their own first
    record.
    """
    return _bounded("mirror", source, topic, f"{first_seq}@{first_ts}")


def gap_key(source: str, topic: str, gap_from: int, gap_to: int) -> str:
    return _bounded("mirror-gap", source, topic, f"{gap_from}-{gap_to}")


def hop_info(meta: Any) -> tuple[int, tuple[str, ...]]:
    """A record's ``(hops, path)``: ``(0, ())`` for one written directly."""
    if not isinstance(meta, Mapping):
        return 0, ()
    entry = meta.get(META_KEY)
    if not isinstance(entry, Mapping):
        return 0, ()
    raw_path = entry.get("path")
    path = tuple(p for p in raw_path if isinstance(p, str)) if isinstance(raw_path, list) else ()
    hops = entry.get("hops")
    if not isinstance(hops, int) or isinstance(hops, bool) or hops < 0:
        hops = len(path)
    return max(hops, len(path)), path


def copy_meta(meta: Any, entry: dict[str, Any]) -> dict[str, Any]:
    """``meta`` plus the mirror entry; wrapped when it is not an object or has no room."""
    if meta is None:
        return {META_KEY: entry}
    if isinstance(meta, Mapping):
        out = dict(meta)
        out[META_KEY] = entry
        if len(out) <= MAX_META_KEYS:
            return out
    return {META_KEY: entry, ORIGINAL_META_KEY: meta}


@dataclass(frozen=True, slots=True)
class Copy:
    """One record to write: its source ``seq`` and ``ts``, and the destination ``record``."""

    seq: int
    ts: int
    record: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Plan:
    """One source batch decided: ``writes`` in source order; the rest were passed over."""

    writes: tuple[Copy, ...]
    skipped_loop: int
    skipped_hops: int


def plan_batch(
    records: Sequence[Any], *, source: str, dest: str, topic: str, max_hops: int = MAX_HOPS
) -> Plan:
    """Which of ``records`` (client :class:`~topics_client.Record`) to copy from server
    ``source`` to server ``dest``, as destination write records (``$node``, ``$tag``,
    ``data`` verbatim; ``meta`` plus the mirror entry)."""
    writes: list[Copy] = []
    loops = hops_capped = 0
    for record in records:
        hops, path = hop_info(record.meta)
        if dest in path:
            loops += 1
            continue
        if hops >= max_hops:
            hops_capped += 1
            continue
        entry = {"hops": hops + 1, "path": [*path, source], "topic": topic, "seq": record.seq}
        wire: dict[str, Any] = {"data": record.data, "meta": copy_meta(record.meta, entry)}
        if record.node is not None:
            wire["node"] = record.node
        if record.tag is not None:
            wire["tag"] = record.tag
        writes.append(Copy(record.seq, record.ts, wire))
    return Plan(tuple(writes), loops, hops_capped)


def gap_marker(*, source: str, topic: str, gap: Any, node: str) -> dict[str, Any]:
    """The record ``--gap-marker`` writes into the destination: readers there learn which
    source range the mirror never saw."""
    entry = {"hops": 1, "path": [source], "topic": topic, "gap": True}
    return {
        "data": {
            "mirror_gap": {
                "source": source,
                "topic": topic,
                "gap_from": gap.gap_from,
                "gap_to": gap.gap_to,
                "reason": gap.reason,
                "missed_estimate": gap.missed_estimate,
            }
        },
        "node": node,
        "tag": "mirror-gap",
        "meta": {META_KEY: entry},
    }


def backoff(attempt: int, *, base_ms: int = 200, max_ms: int = 10_000) -> float:
    """Seconds before retry ``attempt`` (0-based): the client's exponential
    :func:`~topics_client.backoff_ms`, with jitter so relays do not retry in step."""
    from topics_client import backoff_ms

    ceiling = backoff_ms(attempt + 1, base_ms, max_ms) / 1000
    return ceiling / 2 + random.random() * ceiling / 2
