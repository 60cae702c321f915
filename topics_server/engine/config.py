"""The topic config object (SPEC §1): defaults, validation and durability resolution."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

from topics_server.engine.names import is_topic_name
from topics_server.errors import invalid_request
from topics_server.wire import as_bool, as_object, as_u64

__all__ = ["DURABILITIES", "FOREVER_MS", "TopicConfig", "parse_config"]

DURABILITIES = ("ephemeral", "memory", "disk", "fsync")
Durability = Literal["ephemeral", "memory", "disk", "fsync"]
I32_MIN, I32_MAX = -(2**31), 2**31 - 1
# Durations are u64 on the wire (SPEC §0.4) and saturate: from 2^62 ms (146 million
# years) on they mean "forever", so `now + duration` stays inside a signed 64-bit
# integer wherever it is stored. The value as sent is still what the config echoes.
FOREVER_MS: Final = 2**62
_SATURATING = ("ttl_ms", "idempotency_window_ms")


@dataclass(frozen=True, slots=True)
class TopicConfig:
    type: Literal["log", "queue"] = "log"
    ttl_ms: int = 0
    cap_records: int = 0
    cap_bytes: int = 0
    discard: Literal["old", "reject"] = "old"
    durability: Durability = "disk"
    priority: int | None = None
    auto_priority: bool = True
    auto_create: bool = True
    idempotency_window_ms: int = 120_000
    dedupe_node: bool = True
    lease_ms: int = 30_000
    claim_jitter_ms: int = 0
    max_deliveries: int = 0
    dead_letter: str | None = None
    leases_durable: bool = False
    # (field, value as sent) for saturated durations: echoed, never computed with
    sent: tuple[tuple[str, int], ...] = field(default=(), compare=False, repr=False)

    @property
    def durable(self) -> bool:
        return self.durability == "fsync"

    @property
    def is_queue(self) -> bool:
        return self.type == "queue"

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type,
            "ttl_ms": self.ttl_ms,
            "cap_records": self.cap_records,
            "cap_bytes": self.cap_bytes,
            "discard": self.discard,
            "durable": self.durable,
            "durability": self.durability,
            "priority": self.priority,
            "auto_priority": self.auto_priority,
            "auto_create": self.auto_create,
            "idempotency_window_ms": self.idempotency_window_ms,
            "dedupe_node": self.dedupe_node,
            "lease_ms": self.lease_ms,
            "claim_jitter_ms": self.claim_jitter_ms,
            "max_deliveries": self.max_deliveries,
            "dead_letter": self.dead_letter,
            "leases_durable": self.leases_durable,
        }
        body.update(self.sent)
        return body


def _enum(value: Any, name: str, allowed: tuple[str, ...]) -> Any:
    if value not in allowed or type(value) is not str:
        raise invalid_request(f"{name} must be one of {', '.join(allowed)}", field=name)
    return value


def parse_config(raw: Any, topic: str, field: str = "config") -> TopicConfig:
    """Validate a config body merged over defaults (never over the current config)."""
    body = as_object(raw, field)
    out: dict[str, Any] = {}
    get = body.get
    if (v := get("type")) is not None:
        out["type"] = _enum(v, "type", ("log", "queue"))
    sent: list[tuple[str, int]] = []
    for name in ("ttl_ms", "cap_records", "cap_bytes", "idempotency_window_ms", "max_deliveries"):
        if (v := get(name)) is not None:
            out[name] = as_u64(v, name)
            if name in _SATURATING and out[name] > FOREVER_MS:
                sent.append((name, out[name]))
                out[name] = FOREVER_MS
    if (v := get("discard")) is not None:
        out["discard"] = _enum(v, "discard", ("old", "reject"))
    for name in ("auto_priority", "auto_create", "dedupe_node", "leases_durable"):
        if (v := get(name)) is not None:
            out[name] = as_bool(v, name)
    if (v := get("lease_ms")) is not None:
        out["lease_ms"] = min(max(as_u64(v, "lease_ms"), 100), 86_400_000)
    if (v := get("claim_jitter_ms")) is not None:
        out["claim_jitter_ms"] = min(as_u64(v, "claim_jitter_ms"), 5000)
    if (v := get("priority")) is not None:
        if type(v) is not int or not I32_MIN <= v <= I32_MAX:
            raise invalid_request("priority must be a 32-bit integer or null", field="priority")
        out["priority"] = v
    durable = get("durable")
    if durable is not None:
        as_bool(durable, "durable")
    if (v := get("durability")) is not None:
        out["durability"] = _enum(v, "durability", DURABILITIES)
    elif durable:
        out["durability"] = "fsync"
    if (v := get("dead_letter")) is not None:
        if type(v) is not str or not is_topic_name(v):
            raise invalid_request(
                "dead_letter must be a valid topic name", field="dead_letter", dead_letter=v
            )
        if v == topic and out.get("type") == "queue":
            raise invalid_request(
                "a queue cannot dead-letter into itself", field="dead_letter", dead_letter=v
            )
        out["dead_letter"] = v
    return TopicConfig(**out, sent=tuple(sent))
