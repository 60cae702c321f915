"""The storage seam: what the engine tells a store, and when.

The engine owns all in-memory state and calls these hooks at its commit points.
A store decides what each durability class (SPEC §14) makes of them; the
engine awaits :meth:`Store.append` before it acknowledges a write, so a store
that returns only after its commit keeps the promise of the class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from topics_server.engine.log import TopicLog

__all__ = ["Store"]


class Store(Protocol):
    def topic_saved(self, log: TopicLog) -> None:
        """A topic was created or its config replaced."""

    def topic_dropped(self, log: TopicLog) -> None:
        """A topic instance was deleted with all its records."""

    async def append(self, log: TopicLog, first: int, last: int) -> tuple[float, float]:
        """Persist the just-appended records ``first..last``; returns (append_ms, fsync_ms)."""
        ...

    async def records_deleted(self, log: TopicLog) -> None:
        """Records of ``log`` were deleted (their seqs are in ``log.deleted`` or gone)."""

    async def close(self) -> None:
        """Flush and release everything."""
