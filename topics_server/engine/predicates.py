"""Tag predicates (SPEC §7): ``["tag","Eq",X]``, ``["tag","Glob","P*"]`` or a bare string."""

from __future__ import annotations

from typing import Any

from topics_server.errors import invalid_request
from topics_server.storage.records import TagPredicate

__all__ = ["TagPredicate", "parse_predicate"]


def parse_predicate(raw: Any, field: str = "match") -> TagPredicate:
    if isinstance(raw, str):
        if raw.endswith("*"):
            return _glob(raw, field)
        return TagPredicate("Eq", raw)
    if (
        not isinstance(raw, list)
        or len(raw) != 3
        or not all(isinstance(part, str) for part in raw)
        or raw[0] != "tag"
    ):
        raise invalid_request(
            f'{field} must be ["tag","Eq",X], ["tag","Glob","P*"] or a string', field=field
        )
    _, op, value = raw
    if op == "Eq":
        return TagPredicate("Eq", value)
    if op == "Glob":
        return _glob(value, field)
    raise invalid_request(f"{field}: unknown operator {op!r} (Eq or Glob)", field=field)


def _glob(value: str, field: str) -> TagPredicate:
    prefix = value[:-1]
    if not value.endswith("*") or "*" in prefix:
        raise invalid_request(
            f"{field}: a Glob pattern takes exactly one trailing '*'", field=field
        )
    return TagPredicate("Glob", prefix)
