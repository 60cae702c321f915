"""The client's structure: one reconnect loop, one definition of each shared constant.

Checked on the source text, so a second copy (the way the twin loops and constants of
the past drifted apart) fails here before it can drift."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "topics_client"


def _where(pattern: str) -> list[str]:
    regex = re.compile(pattern, re.M)
    return sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        for _ in regex.finditer(path.read_text())
    )


def test_one_sse_reconnect_loop() -> None:
    # The only SSE readers are the sync and async halves of the one loop.
    assert _where(r"EventSource\(") == ["resources/_streaming.py"] * 2
    assert _where(r"_http\.send\(") == ["_client.py"] * 2 + ["resources/_streaming.py"] * 2


def test_shared_definitions_are_defined_once() -> None:
    for name in (
        "DEFAULT_REPLAY_LIMIT",
        "DEFAULT_FOLLOW_WAIT_MS",
        "DEFAULT_BACKOFF_BASE_MS",
        "DEFAULT_BACKOFF_MAX_MS",
        "DEFAULT_BASE_URL",
        "BASE_URL_ENV",
    ):
        assert _where(rf"^{name}\b.*=") == ["_config.py"], name
    for fn in ("backoff_ms", "resolve_base_url", "resolve_api_key", "with_options"):
        assert len(_where(rf"^\s*def {fn}\(")) == 1, fn
    assert _where(r'"TOPICS_URL"') == ["_config.py"]
