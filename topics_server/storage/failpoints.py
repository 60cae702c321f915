"""Failpoints: make a named store change fail on purpose, inside the real commit.

Armed from ``TOPICS_FAILPOINTS`` at start, and re-read whenever the file named by
``TOPICS_FAILPOINTS_FILE`` changes (tests arm a fault right before the call
they aim at). Unset, they cost one attribute check per commit group.

Grammar: ``kind=action`` terms separated by ``;``. ``kind`` is a change kind
(``append``, ``save_topic``, ``drop_topic``, … see :mod:`topics_server.storage.base`)
or ``*`` for any. ``action`` is ``[S+][N*]error|full|stall``: skip ``S``
matching changes, then hit the next ``N`` (default 1; ``N`` may be ``inf``).
``error`` fails like an I/O error (500), ``full`` like a full disk (``ENOSPC``,
507); ``stall`` holds the commit for :data:`STALL_S` and then lets it succeed,
like a disk that stops answering for a moment.

    TOPICS_FAILPOINTS="append=full"            # the next append fails, disk full
    TOPICS_FAILPOINTS="save_topic=2+1*error"   # the third topic save fails
    TOPICS_FAILPOINTS="append=3*stall"         # the next three appends stall
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

__all__ = ["STALL", "STALL_S", "FailpointError", "Failpoints", "parse_failpoints"]

STALL_S = 0.3  # how long a ``stall`` holds its commit
STALL = "stall"  # what :meth:`Failpoints.hit` answers for a stall


class FailpointError(ValueError):
    """A failpoint spec that does not parse."""


@dataclass(slots=True)
class _Point:
    kind: str
    skip: int
    count: float
    action: str  # error | full | stall


def parse_failpoints(spec: str) -> list[_Point]:
    points: list[_Point] = []
    for term in filter(None, (t.strip() for t in spec.replace(",", ";").split(";"))):
        kind, sep, action = term.partition("=")
        if not sep or not kind.strip():
            raise FailpointError(f"failpoint {term!r}: expected kind=action")
        skip = 0
        count: float = 1
        if "+" in action:
            head, action = action.split("+", 1)
            skip = _int(head, term)
        if "*" in action:
            head, action = action.split("*", 1)
            count = float("inf") if head.strip() == "inf" else _int(head, term)
        action = action.strip()
        if action not in ("error", "full", STALL):
            raise FailpointError(f"failpoint {term!r}: action must be error, full or stall")
        points.append(_Point(kind.strip(), skip, count, action))
    return points


def _int(text: str, term: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise FailpointError(f"failpoint {term!r}: {text!r} is not a count") from None
    if value < 0:
        raise FailpointError(f"failpoint {term!r}: counts are never negative")
    return value


class Failpoints:
    """The armed failpoints; :meth:`hit` answers whether a change must fail now."""

    def __init__(self, spec: str = "", path: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._points = parse_failpoints(spec)
        self._path = path
        self._stamp: tuple[int, int] | None = None
        self.fired = 0  # failures injected so far

    @classmethod
    def from_env(cls) -> Failpoints:
        path = os.environ.get("TOPICS_FAILPOINTS_FILE")
        return cls(os.environ.get("TOPICS_FAILPOINTS", ""), Path(path) if path else None)

    @property
    def armed(self) -> bool:
        return bool(self._points) or self._path is not None

    def hit(self, kind: str) -> str | None:
        """None: no fault. Otherwise the action for this change: error, full or stall."""
        if not self.armed:
            return None
        with self._lock:
            self._reload()
            for point in self._points:
                if point.count <= 0 or (point.kind != "*" and point.kind != kind):
                    continue
                if point.skip > 0:
                    point.skip -= 1
                    continue
                point.count -= 1
                self.fired += 1
                return point.action
        return None

    def _reload(self) -> None:
        if self._path is None:
            return
        try:
            st = self._path.stat()
        except OSError:
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self._points = parse_failpoints(self._path.read_text())
        except (OSError, FailpointError):
            self._points = []
