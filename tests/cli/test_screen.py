"""What ``topics watch`` and ``topics lease run`` show (issue 14, items 1, 3 and 17).

Item 1: a bare topic name tails from the end even when another topic carries ``@SEQ``.
Item 3: on a terminal, the live status line and records / job output never share a line;
the pseudo-terminal's raw bytes are replayed through a tiny line model (``\\r``, ``\\n``,
erase-line) and every state a line goes through is checked.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from tests.cli.conftest import Run

Topics = Callable[..., Run]


def _seed(topics: Topics, orders: str, audit: str) -> None:
    assert topics("put", orders, input="".join(f"{i}\n" for i in range(1, 8))).code == 0
    assert topics("put", audit, input="".join(f"{i}\n" for i in range(1, 51))).code == 0


def _seqs(run: Run) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for line in run.jsonl():
        out.setdefault(line["topic"], []).append(line["$seq"])
    return out


def test_watch_bare_name_tails_next_to_topic_at_seq(topics: Topics, topic: str) -> None:
    orders, audit = topic + "-orders", topic + "-audit"
    _seed(topics, orders, audit)
    for extra in ([], ["--from", "end"]):
        r = topics("watch", orders, f"{audit}@41", *extra, "--until-caught-up", "-o", "jsonl")
        assert r.code == 0, r.err
        assert _seqs(r) == {audit: list(range(42, 51))}, extra


def test_watch_from_applies_to_the_topics_without_seq(topics: Topics, topic: str) -> None:
    orders, audit = topic + "-orders", topic + "-audit"
    _seed(topics, orders, audit)
    r = topics("watch", orders, f"{audit}@47", "--from", "-2", "--until-caught-up", "-o", "jsonl")
    assert r.code == 0, r.err
    assert _seqs(r) == {orders: [6, 7], audit: [48, 49, 50]}
    r = topics("watch", f"{orders}@5", audit, "--from", "start", "--until-caught-up")
    assert _seqs(r) == {orders: [6, 7], audit: list(range(1, 51))}
