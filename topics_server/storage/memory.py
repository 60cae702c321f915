"""A store that keeps nothing beyond the engine's memory: every topic is ephemeral."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from topics_server.engine.log import TopicLog

__all__ = ["MemoryStore"]


class MemoryStore:
    def topic_saved(self, log: TopicLog) -> None:
        return None

    def topic_dropped(self, log: TopicLog) -> None:
        return None

    async def append(self, log: TopicLog, first: int, last: int) -> tuple[float, float]:
        return 0.0, 0.0

    async def records_deleted(self, log: TopicLog) -> None:
        return None

    async def close(self) -> None:
        return None
