"""Topic and router name rules (SPEC §0.3)."""

from __future__ import annotations

import re

__all__ = ["is_router_name", "is_topic_name"]

_TOPIC = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,254}")
_ROUTER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:>-]{0,254}")


def is_topic_name(name: str) -> bool:
    return _TOPIC.fullmatch(name) is not None


def is_router_name(name: str) -> bool:
    return _ROUTER.fullmatch(name) is not None
