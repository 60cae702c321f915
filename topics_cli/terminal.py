"""One owner for the terminal while a live status line is shown (``watch``, ``lease run``).

The status line lives on stderr and redraws itself in place (``\\r`` + erase line). Anything
else that reaches the screen while it is up (records on stdout, a job's output, a receipt)
must not land on the status line's row, or the two run into each other. :class:`Screen`
serializes every such write under one lock: erase the status line, write the output (whole
lines), draw the status line again below it. The sink's own diagnostics (``event``,
``warn``, ``info``) already erase it first; the next :meth:`Screen.status` redraws it.

Without a live status line (a pipe, ``-q``, a non-pretty mode) the same calls simply write.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from topics_cli.output import Sink
    from topics_client import Record

__all__ = ["Screen"]


class Screen:
    """Status line plus output above it, for one command run.

    ``live``: whether the status line is drawn at all (pretty output, stderr a terminal,
    not ``--quiet``); callers decide, since only they know their mode.
    """

    def __init__(self, sink: Sink, *, live: bool) -> None:
        self.sink = sink
        self.live = live
        self._lock = threading.RLock()
        self._text: str | None = None

    def status(self, text: str) -> None:
        """Show ``text`` as the status line (kept until the next call or :meth:`close`)."""
        if not self.live:
            return
        with self._lock:
            self._text = text
            self.sink.status(text)

    @contextmanager
    def above(self) -> Iterator[None]:
        """Writes inside this block appear above the status line, never on its row."""
        with self._lock:
            self.sink.clear_status()
            try:
                yield
            finally:
                if self.live and self._text is not None:
                    self.sink.status(self._text)

    def records(
        self, records: Sequence[Record], topic: str, *, with_topic: bool, with_data: bool
    ) -> None:
        """A page of records on stdout, through the sink's renderer."""
        with self.above():
            self.sink.records(records, topic, with_topic=with_topic, with_data=with_data)

    def write(self, to: Literal["out", "err"], data: bytes) -> None:
        """Bytes (whole lines, normally) from a child process, onto stdout or stderr."""
        if not data:
            return
        stream: IO[Any] = self.sink.out if to == "out" else self.sink.err
        with self.above():
            stream.flush()
            buffer = getattr(stream, "buffer", None)
            if buffer is not None:
                buffer.write(data)
                buffer.flush()
            else:
                stream.write(data.decode(errors="replace"))
                stream.flush()

    def is_tty(self, to: Literal["out", "err"]) -> bool:
        stream = self.sink.out if to == "out" else self.sink.err
        try:
            return bool(stream.isatty())
        except (AttributeError, ValueError):
            return False

    def close(self) -> None:
        """Erase the status line for good (before the summary)."""
        with self._lock:
            self._text = None
            self.live = False
            self.sink.clear_status()
