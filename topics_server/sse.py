"""Server-sent event frames (pure): records, tombstones, heartbeats, composite cursors."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = ["RETRY", "comment", "decode_cursor", "encode_cursor", "frame", "raw_frame"]

RETRY = b"retry: 2000\n\n"


def frame(event: str, data: Any, event_id: str | None = None) -> bytes:
    """One event: optional ``id:``, ``event:``, one line of compact JSON, blank line."""
    head = f"id: {event_id}\nevent: {event}\ndata: " if event_id else f"event: {event}\ndata: "
    return head.encode() + orjson.dumps(data) + b"\n\n"


def raw_frame(event: str, data: bytes, event_id: str) -> bytes:
    """A frame whose ``data`` is already compact JSON (shared between watchers)."""
    return b"".join((f"id: {event_id}\nevent: {event}\ndata: ".encode(), data, b"\n\n"))


def comment(text: str) -> bytes:
    return f": {text}\n\n".encode()


def encode_cursor(cursors: Mapping[str, int]) -> str:
    """Unpadded base64url of the compact JSON map, keys sorted (SPEC §9.5)."""
    raw = orjson.dumps(dict(cursors), option=orjson.OPT_SORT_KEYS)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(text: str) -> dict[str, int] | None:
    """The map inside a composite id, or None when it is not one (padding optional)."""
    text = text.strip()
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        value = orjson.loads(raw)
    except (binascii.Error, ValueError):
        return None
    if not isinstance(value, dict):
        return None
    out: dict[str, int] = {}
    for topic, seq in value.items():
        if type(seq) is int and seq >= 0:
            out[topic] = seq
    return out
