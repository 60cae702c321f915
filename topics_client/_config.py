"""Defaults, environment look-ups and the ``NOT_GIVEN`` sentinel.

``NOT_GIVEN`` separates "use the default" from ``None`` (which means "off" or "absent"
where an option allows it)::

    client.with_options(timeout=None)       # no timeout at all
    client.with_options(timeout=NOT_GIVEN)  # keep the client's timeout

This module imports nothing heavy: the CLI reads it at start-up.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final, Literal, TypeVar

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_RETRIES",
    "NOT_GIVEN",
    "NotGiven",
    "resolve_api_key",
    "resolve_base_url",
]

T = TypeVar("T")

DEFAULT_BASE_URL: Final = "http://127.0.0.1:4000"
DEFAULT_MAX_RETRIES: Final = 2
# Seconds. Connect and pool waits are short; reads are generous (large diffs, fsync).
DEFAULT_CONNECT_TIMEOUT: Final = 5.0
DEFAULT_READ_TIMEOUT: Final = 30.0
DEFAULT_WRITE_TIMEOUT: Final = 30.0
DEFAULT_POOL_TIMEOUT: Final = 10.0
# Backoff: min(MAX, INITIAL * 2**attempt) scaled by a jitter in [1 - JITTER, 1].
INITIAL_RETRY_DELAY: Final = 0.25
MAX_RETRY_DELAY: Final = 8.0
RETRY_JITTER: Final = 0.25
# A server's Retry-After is honoured up to this many seconds.
MAX_RETRY_AFTER: Final = 60.0
# Extra read time on top of a long-poll's wait_ms before the read timeout may fire.
LONG_POLL_SLACK: Final = 10.0
MAX_WAIT_MS: Final = 30_000
# Watch streams: heartbeat bounds (SPEC §9.1) and the watchdog's slack.
DEFAULT_HEARTBEAT_MS: Final = 15_000
MIN_HEARTBEAT_MS: Final = 1_000
MAX_HEARTBEAT_MS: Final = 60_000
WATCHDOG_SLACK: Final = 5.0
# Consecutive failed reconnects before a stream gives up with the client's own error.
DEFAULT_MAX_RECONNECTS: Final = 8
WORK_HEARTBEAT_MS: Final = 15_000


class NotGiven:
    """Type of :data:`NOT_GIVEN`; falsy, a singleton, with a readable repr."""

    _instance: NotGiven | None = None

    def __new__(cls) -> NotGiven:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> Literal[False]:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Final = NotGiven()


def given(value: T | NotGiven, default: T) -> T:
    return default if isinstance(value, NotGiven) else value


def _with_scheme(url: str) -> str:
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    return url.rstrip("/")


def resolve_base_url(base_url: str | None, env: Mapping[str, str] | None = None) -> str:
    """Argument, else ``TOPICS_URL``, else ``TOPICS``, else ``http://127.0.0.1:4000``.

    A value without a scheme (``host:port``) is taken as plain HTTP.
    """
    env = os.environ if env is None else env
    for candidate in (base_url, env.get("TOPICS_URL"), env.get("TOPICS")):
        if candidate and candidate.strip():
            return _with_scheme(candidate)
    return DEFAULT_BASE_URL


def resolve_api_key(api_key: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """Argument, else ``TOPICS_API_KEY``, else ``None`` (no ``Authorization`` header)."""
    env = os.environ if env is None else env
    key = api_key if api_key is not None else env.get("TOPICS_API_KEY")
    key = key.strip() if key else None
    return key or None


def clamp_heartbeat_ms(heartbeat_ms: int) -> int:
    return max(MIN_HEARTBEAT_MS, min(MAX_HEARTBEAT_MS, heartbeat_ms))
