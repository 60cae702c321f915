"""Idempotent writes (SPEC §3.5): ``(topic, key) -> original result`` for a window."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field

__all__ = ["IdempotencyEntry", "IdempotencyTable"]


@dataclass(slots=True)
class IdempotencyEntry:
    expires_at: int
    first_seq: int = 0
    last_seq: int = 0
    head_seq: int = 0
    # set while the original write is still committing, so a racing repeat waits for it
    pending: asyncio.Future[None] | None = field(default=None, repr=False)

    @property
    def seqs(self) -> list[int]:
        return list(range(self.first_seq, self.last_seq + 1))


class IdempotencyTable:
    """Entries in creation order, so expiry pops from the front."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: OrderedDict[str, IdempotencyEntry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, now: int) -> IdempotencyEntry | None:
        self.prune(now)
        entry = self._entries.get(key)
        if entry is not None and entry.expires_at < now:
            del self._entries[key]
            return None
        return entry

    def put(self, key: str, entry: IdempotencyEntry) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)

    def discard(self, key: str) -> None:
        self._entries.pop(key, None)

    def prune(self, now: int) -> None:
        entries = self._entries
        while entries:
            key, entry = next(iter(entries.items()))
            if entry.expires_at >= now or entry.pending is not None:
                break
            del entries[key]
