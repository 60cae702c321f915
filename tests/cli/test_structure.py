"""The CLI keeps no second copy of what the client defines (issue 11, "one definition each")
and reaches the client through its public surface only. Checked on the source text."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "topics_cli"


def _where(pattern: str) -> list[str]:
    regex = re.compile(pattern, re.M)
    return sorted(
        f"{path.relative_to(PACKAGE)}:{text[: m.start()].count(chr(10)) + 1}"
        for path in PACKAGE.rglob("*.py")
        for text in [path.read_text()]
        for m in regex.finditer(text)
    )


def test_the_client_is_used_through_its_public_names_only() -> None:
    assert _where(r"^\s*(from|import) topics_client\._") == []
    assert _where(r"^\s*(from|import) topics_client\.\w") == []


def test_no_copies_of_the_clients_definitions() -> None:
    # URL rule, backoff, time seek: the client's resolve_base_url, backoff_ms, topics.seek
    for name in ("resolve_base_url", "normalize_base_url", "_with_scheme", "backoff_ms"):
        assert _where(rf"^\s*def {name}\(") == [], name
    assert _where(r"^\s*def seek\w*\(") == []
    # replay paging defaults and the backoff defaults are imported, never spelled out
    defaults = (
        r"^\s*(wait_ms|limit|backoff_base_ms|backoff_max_ms)\b[^=\n]*= *(30_?000|1000|60_?000)\b"
    )
    assert _where(defaults) == []
    assert _where(r"^\s*\] = (30_?000|1000|60_?000),") == []  # a multi-line option's default
    # the topic config field list: TOPIC_CONFIG_FIELDS (one Annotated flag per field aside)
    assert _where(r'"leases_durable"') == []


def test_create_has_a_flag_for_every_config_field() -> None:
    import typer.main

    from topics_cli.commands import topic
    from topics_client import TOPIC_CONFIG_FIELDS

    command = typer.main.get_command(topic.app).commands["create"]  # type: ignore[attr-defined]
    names = {p.name for p in command.params}
    assert {"type" if n == "type_" else n for n in names} >= set(TOPIC_CONFIG_FIELDS)
