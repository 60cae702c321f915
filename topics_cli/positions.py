"""The one position grammar of ``diff``, ``watch`` and ``tombstone`` (pure, no I/O).

``--from POS``::

    start        every retained record (cursor 0)
    end          only what is written after the command starts (cursor = head)
    N            a cursor: records after seq N (the API's ``from_seq``; what checkpoints hold)
    -N           the last N seqs (cursor = head - N, clamped to the earliest retained)
    @TIME        records written at or after TIME: ISO-8601 (``@2026-01-31T10:00:00Z``,
                 ``@2026-01-31``) or relative to now (``@-15m``, ``@-2h30m``, ``@-1d``)

``--until POS``::

    head         the head captured when the command starts (a busy topic still ends)
    N            up to and including seq N
    @TIME        up to the last record written at or before TIME

Durations (``--idle-timeout``, ``--ttl``, ``--warn-before``) are ``500ms``, ``15s``,
``15m``, ``2h``, ``1d`` or combinations (``1h30m``); a bare number means seconds.

Parsing gives a :class:`FromPos` / :class:`UntilPos`; :func:`resolve_from` and
:func:`resolve_until` turn one into a cursor once the topic's watermarks are known.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

__all__ = [
    "MAX_DURATION_MS",
    "FromPos",
    "PositionError",
    "UntilPos",
    "format_duration",
    "parse_duration_ms",
    "parse_from",
    "parse_time_ms",
    "parse_until",
    "resolve_from",
    "resolve_until",
]


class PositionError(ValueError):
    """A position or duration that does not parse; the message says what is accepted."""


_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
MAX_DURATION_MS = 100 * 365 * 86_400_000
"""The longest duration any flag accepts (100 years): beyond it a value is a typo."""


def parse_duration_ms(text: str) -> int:
    """``"15m"`` → 900000. Bare numbers are seconds; parts add up (``"1h30m"``).

    Only finite durations up to :data:`MAX_DURATION_MS` parse: ``inf``, ``nan`` or
    ``1e400`` raise :class:`PositionError` like any other bad duration.
    """
    s = text.strip().lower()
    if not s:
        raise PositionError("empty duration")
    try:
        total = float(s) * 1000
    except ValueError:
        total = _sum_parts(s, text)
    else:
        if total < 0:
            raise PositionError(f"negative duration {text!r}")
    if not math.isfinite(total) or total > MAX_DURATION_MS:
        raise PositionError(f"bad duration {text!r}: must be finite and at most 100 years")
    return round(total)


def _sum_parts(s: str, text: str) -> float:
    pos = 0
    total = 0.0
    for match in _DURATION_RE.finditer(s):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS_MS[match.group(2)]
        pos = match.end()
    if pos != len(s) or pos == 0:
        raise PositionError(
            f"bad duration {text!r}: expected e.g. 500ms, 15s, 15m, 2h, 1d or 1h30m"
        )
    return total


def format_duration(ms: float) -> str:
    """Short human form: ``"12 min"``, ``"3.5 h"``, ``"40 s"``."""
    seconds = ms / 1000
    if seconds < 1:
        return f"{ms:.0f} ms"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def parse_time_ms(text: str, now_ms: int) -> int:
    """``@`` times without the ``@``: relative (``-15m``) or ISO-8601 (naive = UTC)."""
    s = text.strip()
    if s.startswith("-"):
        return now_ms - parse_duration_ms(s[1:])
    if s.lower() == "now":
        return now_ms
    iso = s[:-1] + "+00:00" if s.endswith(("Z", "z")) else s
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        raise PositionError(
            f"bad time {text!r}: expected ISO-8601 (2026-01-31T10:00:00Z) or relative (-15m)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class FromPos:
    """A parsed ``--from``: ``kind`` plus ``value`` (a seq, a count or a time in ms)."""

    kind: Literal["start", "end", "seq", "last", "time"]
    value: int = 0

    def __str__(self) -> str:
        if self.kind in ("start", "end"):
            return self.kind
        if self.kind == "seq":
            return str(self.value)
        if self.kind == "last":
            return f"-{self.value}"
        return "@" + datetime.fromtimestamp(self.value / 1000, UTC).isoformat()


@dataclass(frozen=True, slots=True)
class UntilPos:
    kind: Literal["head", "seq", "time"]
    value: int = 0


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def parse_from(text: str, now_ms: int) -> FromPos:
    s = text.strip()
    low = s.lower()
    if low in ("start", "beginning", "oldest"):
        return FromPos("start")
    if low in ("end", "newest", "tail"):
        return FromPos("end")
    if s.startswith("@"):
        return FromPos("time", parse_time_ms(s[1:], now_ms))
    if s.startswith("-") and _int(s[1:]) is not None:
        return FromPos("last", int(s[1:]))
    if _int(s) is not None:
        return FromPos("seq", int(s))
    raise PositionError(
        f"bad position {text!r}: expected start, end, N (cursor), -N (last N) or @TIME"
    )


def parse_until(text: str, now_ms: int) -> UntilPos:
    s = text.strip()
    if s.lower() in ("head", "end"):
        return UntilPos("head")
    if s.startswith("@"):
        return UntilPos("time", parse_time_ms(s[1:], now_ms))
    if _int(s) is not None:
        return UntilPos("seq", int(s))
    raise PositionError(f"bad --until {text!r}: expected head, N (last seq) or @TIME")


def resolve_from(pos: FromPos, head_seq: int, earliest_seq: int) -> int | None:
    """The ``from_seq`` cursor for ``pos``; ``None`` for ``@TIME`` (needs a time seek).

    ``-N`` never reaches below the earliest retained record, so it is not reported as a gap.
    """
    if pos.kind == "start":
        return 0
    if pos.kind == "end":
        return head_seq
    if pos.kind == "seq":
        return pos.value
    if pos.kind == "last":
        return max(head_seq - pos.value, earliest_seq - 1, 0)
    return None


def resolve_until(pos: UntilPos | None, head_seq: int) -> tuple[int | None, int | None]:
    """``(until_seq, until_ms)``: at most one is set; both ``None`` means unbounded."""
    if pos is None:
        return None, None
    if pos.kind == "head":
        return head_seq, None
    if pos.kind == "seq":
        return pos.value, None
    return None, pos.value
