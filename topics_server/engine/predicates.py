"""Tag predicates (SPEC §7): ``["tag","Eq",X]``, ``["tag","Glob","P*"]`` or a bare string."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from topics_server.errors import invalid_request

__all__ = ["TagPredicate", "parse_predicate"]


@dataclass(frozen=True, slots=True)
class TagPredicate:
    op: str  # "Eq" or "Glob"
    value: str  # for Glob: the prefix, without the trailing "*"

    def matches(self, tag: str | None) -> bool:
        if tag is None:
            return False
        return tag == self.value if self.op == "Eq" else tag.startswith(self.value)

    def to_json(self) -> list[str]:
        return ["tag", self.op, self.value + "*" if self.op == "Glob" else self.value]


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
