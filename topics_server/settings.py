"""Server settings, read once from flags and the upstream ``TOPICS_*`` environment."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Settings", "SettingsError"]


class SettingsError(ValueError):
    """An invalid setting: start-up stops with this one-line message."""


# name of the Settings field -> (environment variable, default)
_INT_ENV: dict[str, tuple[str, int]] = {
    "max_batch_records": ("TOPICS_MAX_BATCH_RECORDS", 10_000),
    "max_record_bytes": ("TOPICS_MAX_RECORD_BYTES", 1_048_576),
    "max_body_bytes": ("TOPICS_MAX_BODY_BYTES", 67_108_864),
    "max_meta_bytes": ("TOPICS_MAX_META_BYTES", 16_384),
    "max_tag_bytes": ("TOPICS_MAX_TAG_BYTES", 256),
    "max_node_bytes": ("TOPICS_MAX_NODE_BYTES", 128),
    "max_limit": ("TOPICS_MAX_LIMIT", 1000),
    "max_claim": ("TOPICS_MAX_CLAIM", 1000),
    "max_watch_topics": ("TOPICS_MAX_WATCH_TOPICS", 256),
    "max_topics": ("TOPICS_MAX_TOPICS", 100_000),
    "max_routers": ("TOPICS_MAX_ROUTERS", 10_000),
    "max_watch_sessions": ("TOPICS_MAX_WATCH_SESSIONS", 10_000),
    "max_sse_connections": ("TOPICS_MAX_SSE_CONNECTIONS", 10_000),
    "max_sse_connections_per_key": ("TOPICS_MAX_SSE_CONNECTIONS_PER_KEY", 1000),
    "max_inflight_per_key": ("TOPICS_MAX_INFLIGHT_PER_KEY", 1000),
    "max_total_bytes": ("TOPICS_MAX_TOTAL_BYTES", 0),
    "header_timeout_ms": ("TOPICS_HEADER_TIMEOUT_MS", 10_000),
    "body_timeout_ms": ("TOPICS_BODY_TIMEOUT_MS", 30_000),
}
U64_MAX = 2**64 - 1
# Limits that must stay positive: 0 would make every request fail.
_POSITIVE = {
    "max_batch_records",
    "max_record_bytes",
    "max_body_bytes",
    "max_meta_bytes",
    "max_limit",
    "max_claim",
    "max_watch_topics",
}
# SPEC §13: resource caps read an unparsable value as the default (with a warning);
# every other setting refuses to start on a bad value.
_LENIENT = {
    "max_topics",
    "max_routers",
    "max_watch_sessions",
    "max_sse_connections",
    "max_sse_connections_per_key",
    "max_inflight_per_key",
    "max_total_bytes",
    "max_connections",
}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 4000
    port_file: Path | None = None
    data_dir: Path = Path("topics-data")
    api_keys: str = ""
    allow_insecure_no_auth: bool = False
    probe_auth: bool = False
    log_level: str = "warning"
    access_log: bool = False
    shutdown_grace_s: float = 10.0

    max_batch_records: int = 10_000
    max_record_bytes: int = 1_048_576
    max_body_bytes: int = 67_108_864
    max_meta_bytes: int = 16_384
    max_meta_keys: int = 64
    max_tag_bytes: int = 256
    max_node_bytes: int = 128
    max_idempotency_key_bytes: int = 256
    max_limit: int = 1000
    max_claim: int = 1000
    max_watch_topics: int = 256
    max_topics: int = 100_000
    max_routers: int = 10_000
    max_watch_sessions: int = 10_000
    max_sse_connections: int = 10_000
    max_sse_connections_per_key: int = 1000
    max_inflight_per_key: int = 1000
    max_total_bytes: int = 0
    # a request's line and headers must arrive within this, its body must not idle longer
    header_timeout_ms: int = 10_000
    body_timeout_ms: int = 30_000
    # open connections; None: derived from the open-file limit, 0: no cap
    max_connections: int | None = None
    warnings: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``env`` (default ``os.environ``); ``overrides`` (flags) win.

        Raises :class:`SettingsError` with a message naming the variable at fault.
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}

        host = env.get("TOPICS_HOST", "").strip() or "127.0.0.1"
        port_text = env.get("TOPICS_PORT", "").strip() or "4000"
        if ":" in host:  # full host:port (IPv6 as [addr]:port); TOPICS_PORT is ignored
            host, sep, port_text = host.rpartition(":")
            host = host.removeprefix("[").removesuffix("]")
            if not host or not sep or not port_text:
                raise SettingsError(
                    f"TOPICS_HOST={env.get('TOPICS_HOST')!r}: expected host:port or [addr]:port"
                )
        values["host"] = host
        values["port"] = _parse_port(port_text, "TOPICS_PORT")

        port_file = env.get("TOPICS_PORT_FILE", "").strip()
        values["port_file"] = Path(port_file) if port_file else None
        values["data_dir"] = Path(env.get("TOPICS_DATA_DIR", "").strip() or "topics-data")
        values["api_keys"] = env.get("TOPICS_API_KEYS", "")
        values["allow_insecure_no_auth"] = _parse_flag(env, "TOPICS_ALLOW_INSECURE_NO_AUTH")
        values["probe_auth"] = _parse_flag(env, "TOPICS_PROBE_AUTH")
        warnings: list[str] = []
        for name, (var, default) in _INT_ENV.items():
            text = env.get(var, "").strip()
            if not text:
                values[name] = default
            elif name in _LENIENT:
                try:
                    values[name] = _parse_uint(text, var)
                except SettingsError as exc:
                    warnings.append(f"{exc}; using the default {default}")
                    values[name] = default
            else:
                values[name] = _parse_uint(text, var)
        if text := env.get("TOPICS_MAX_CONNECTIONS", "").strip():
            try:
                values["max_connections"] = _parse_uint(text, "TOPICS_MAX_CONNECTIONS")
            except SettingsError as exc:
                warnings.append(f"{exc}; using the default (from the open-file limit)")
        values["warnings"] = tuple(warnings)

        for key, value in overrides.items():
            if value is not None:
                values[key] = value
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"port {self.port} is outside 0-65535")
        for name in _POSITIVE:
            if getattr(self, name) <= 0:
                raise SettingsError(f"{_INT_ENV[name][0]} must be at least 1")

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _parse_uint(text: str, var: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise SettingsError(f"{var}={text!r} is not a whole number") from None
    if value < 0:
        raise SettingsError(f"{var}={text!r} must not be negative")
    return min(value, U64_MAX)  # u64, saturating (SPEC §0.4)


def _parse_port(text: str, var: str) -> int:
    value = _parse_uint(text.strip(), var)
    if value > 65535:
        raise SettingsError(f"{var}={text!r} is outside 0-65535")
    return value


def _parse_flag(env: Mapping[str, str], var: str) -> bool:
    text = env.get(var, "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise SettingsError(f"{var}={env.get(var)!r} must be true/1 or false/0")
