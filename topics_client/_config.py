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
    "BASE_URL_ENV",
    "DEFAULT_BACKOFF_BASE_MS",
    "DEFAULT_BACKOFF_MAX_MS",
    "DEFAULT_BASE_URL",
    "DEFAULT_FOLLOW_WAIT_MS",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_REPLAY_LIMIT",
    "MAX_WAIT_MS",
    "NOT_GIVEN",
    "NotGiven",
    "backoff_ms",
    "normalize_base_url",
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
# Replay paging: records per diff page (the server's maximum) and a follow's long-poll.
DEFAULT_REPLAY_LIMIT: Final = 1000
DEFAULT_FOLLOW_WAIT_MS: Final = 30_000
# Nack delay after a failed delivery: base × 2^(deliveries-1), at most max (SPEC §10.1).
DEFAULT_BACKOFF_BASE_MS: Final = 1000
DEFAULT_BACKOFF_MAX_MS: Final = 60_000
# Every API path starts with it; a base URL given with it is taken without it.
API_PREFIX: Final = "/v0"
# Environment variables naming the server, first set wins (after an explicit argument).
BASE_URL_ENV: Final = ("TOPICS_URL", "TOPICS")


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


def normalize_base_url(url: str) -> str:
    """``host:port`` → ``http://host:port``; surrounding blanks and trailing ``/`` dropped,
    and a trailing ``/v0`` too: the client adds the API version to every path itself, so
    the URL a server announces with its ``/v0`` works as well as the bare one::

        normalize_base_url("127.0.0.1:4000")              # 'http://127.0.0.1:4000'
        normalize_base_url("http://127.0.0.1:4000/v0/")   # 'http://127.0.0.1:4000'
        normalize_base_url("https://gw.example/topics/v0")  # 'https://gw.example/topics'
    """
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    url = url.rstrip("/")
    scheme, _, rest = url.partition("://")
    if rest.endswith(API_PREFIX) and "/" in rest:
        url = f"{scheme}://{rest.removesuffix(API_PREFIX)}".rstrip("/")
    return url


def resolve_base_url(
    base_url: str | None = None,
    env: Mapping[str, str] | None = None,
    *,
    fallback: str | None = None,
) -> str:
    """The server URL: the argument, else ``TOPICS_URL``, else ``TOPICS``, else
    ``fallback`` (e.g. a CLI profile's url), else ``http://127.0.0.1:4000``.

    Blank values count as unset; a value without a scheme (``host:port``) is plain HTTP;
    a trailing ``/v0`` is dropped (:func:`normalize_base_url`).
    ``env`` defaults to ``os.environ``. The one rule the client and the CLI share::

        resolve_base_url()                                 # what Client() connects to
        resolve_base_url(flag, fallback=profile.get("url"))
    """
    env = os.environ if env is None else env
    for candidate in (base_url, *(env.get(name) for name in BASE_URL_ENV), fallback):
        if candidate and candidate.strip():
            return normalize_base_url(candidate)
    return DEFAULT_BASE_URL


def resolve_api_key(api_key: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """Argument, else ``TOPICS_API_KEY``, else ``None`` (no ``Authorization`` header)."""
    env = os.environ if env is None else env
    key = api_key if api_key is not None else env.get("TOPICS_API_KEY")
    key = key.strip() if key else None
    return key or None


def backoff_ms(
    deliveries: int,
    base_ms: int = DEFAULT_BACKOFF_BASE_MS,
    max_ms: int = DEFAULT_BACKOFF_MAX_MS,
) -> int:
    """Nack delay after a failed delivery: ``base × 2^(deliveries-1)``, at most ``max``."""
    exponent = min(max(deliveries - 1, 0), 32)  # 2^32 × any base is past any sane max
    return int(min(max_ms, base_ms * (2**exponent)))


def clamp_heartbeat_ms(heartbeat_ms: int) -> int:
    return max(MIN_HEARTBEAT_MS, min(MAX_HEARTBEAT_MS, heartbeat_ms))
