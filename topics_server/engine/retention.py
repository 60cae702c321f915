"""TTL expiry on a timer, so reads never change state (SPEC §5.2, issue 16.4).

Caps are enforced where they can be crossed: on append and on a config change.
TTL moves with the clock, so each topic with ``ttl_ms`` holds one timer, due the
millisecond its oldest live record expires (``now − $ts > ttl_ms``). When it
fires the topic drops its expired prefix (raising ``evict_floor``, so readers
below get their tombstone), hands the new front to the store, and arms the timer
for the next oldest record.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from topics_server.engine.log import TopicLog
from topics_server.wire import now_ms

__all__ = ["Retention"]


class Retention:
    def __init__(self, on_expire: Callable[[TopicLog], None]) -> None:
        self._on_expire = on_expire
        self._timers: dict[int, tuple[int, asyncio.TimerHandle]] = {}  # instance -> (due, timer)

    def __len__(self) -> int:
        return len(self._timers)

    def schedule(self, log: TopicLog) -> None:
        """Arm (or re-arm) ``log``'s timer for its oldest live record; cheap when armed."""
        ttl = log.config.ttl_ms
        oldest = log.oldest_ts()
        if not ttl or oldest is None or log.removed:
            self.cancel(log)
            return
        due = oldest + ttl + 1
        armed = self._timers.get(log.instance_id)
        if armed is not None:
            if armed[0] == due:
                return
            armed[1].cancel()
        delay = max(due - now_ms(), 0) / 1000
        handle = asyncio.get_running_loop().call_later(delay, self._fire, log)
        self._timers[log.instance_id] = (due, handle)

    def cancel(self, log: TopicLog) -> None:
        armed = self._timers.pop(log.instance_id, None)
        if armed is not None:
            armed[1].cancel()

    def _fire(self, log: TopicLog) -> None:
        self._timers.pop(log.instance_id, None)
        if log.removed:
            return
        self._on_expire(log)
        self.schedule(log)

    def stop(self) -> None:
        for _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
