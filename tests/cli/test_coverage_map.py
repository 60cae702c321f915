"""The coverage map of ``topics tombstone scan`` (and ``lag --map``): present, deleted on
purpose and evicted seqs told apart, the seq numbers at the edges; block characters on a
terminal (a pseudo-terminal here), plain ASCII elsewhere."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.cli.conftest import Run, cli_env, run_in_pty
from topics_cli.coverage import Coverage, map_cells, render_text

Topics = Callable[..., Run]


def test_runs_partition_the_range() -> None:
    cov = Coverage(1, 30)
    cov.add_evicted(1, 10, "cap")
    cov.add_seqs([14, 15, 16])
    cov.add_seqs([17, 19, 20])  # 18 deleted
    cov.add_seqs(list(range(21, 29)))
    runs = [(r.first, r.last, r.state) for r in cov.runs()]
    assert runs == [
        (1, 10, "evicted"),
        (11, 13, "deleted"),
        (14, 17, "present"),
        (18, 18, "deleted"),
        (19, 28, "present"),
        (29, 30, "deleted"),
    ]
    assert cov.totals() == {"present": 14, "deleted": 6, "evicted": 10}
    # one cell per seq when the range fits
    assert render_text(cov, 80) == "1 |xxxxxxxxxx...####.##########..| 30"


def test_loss_is_never_rounded_away() -> None:
    cov = Coverage(1, 100_000)
    cov.add_seqs(list(range(1, 50_000)))
    cov.add_evicted(50_000, 50_000, "ttl")  # one seq among 100,000
    cov.add_seqs(list(range(50_001, 100_001)))
    cells = map_cells(cov, 40)
    assert len(cells) == 40 and cells.count("evicted") == 1
    assert set(cells) == {"present", "evicted"}
    text = render_text(cov, 60)
    assert text.startswith("1 |") and text.endswith("| 100000") and len(text) <= 60
    assert text.count("x") == 1


def test_mixed_cells_and_empty_range() -> None:
    cov = Coverage(1, 1000)
    cov.add_seqs(list(range(1, 1001, 2)))  # every other seq deleted
    assert set(map_cells(cov, 10)) == {"mixed"}
    assert "+" in render_text(cov, 30)
    assert render_text(Coverage(5, 4)) == "(empty range)"
    assert map_cells(Coverage(5, 4), 10) == []


def _setup(http: httpx.Client, topic: str) -> None:
    """Seqs 1..15 evicted by the cap, 16..18 deleted on purpose, 19..25 present."""
    assert http.put(f"/v0/topics/{topic}", json={"cap_records": 10}).status_code == 201
    r = http.post(f"/v0/topics/{topic}", json={"records": [{"data": i} for i in range(25)]})
    assert r.status_code == 200
    assert http.post(f"/v0/topics/{topic}/delete", json={"before_seq": 19}).status_code == 200


def test_scan_map_plain_text_outside_a_terminal(
    topics: Topics, http: httpx.Client, topic: str
) -> None:
    _setup(http, topic)
    r = topics("tombstone", "scan", topic, "--from", "0", "-o", "pretty")
    assert r.code == 3, r.err
    lines = r.out.splitlines()
    assert lines[0].startswith("INCOMPLETE")
    assert lines[1] == "  1 |xxxxxxxxxxxxxxx...#######| 25"
    assert lines[2] == "  # present  . deleted on purpose  x evicted (cap/ttl)"
    assert lines[3:] == [
        "  1..15: evicted (cap), 15 seq(s)",
        "  16..18: deleted on purpose, 3 seq(s)",
        "  19..25: present, 7 seq(s)",
    ]
    assert "\x1b[" not in r.out and "█" not in r.out
    # from a cursor: the map starts after it
    r = topics("tombstone", "scan", topic, "--from", "16", "-o", "pretty")
    assert r.code == 0, r.err
    assert "  17 |..#######| 25" in r.out.splitlines()


def test_scan_coverage_in_json(topics: Topics, http: httpx.Client, topic: str) -> None:
    _setup(http, topic)
    r = topics("tombstone", "scan", topic, "--from", "0", "--until", "22")
    assert r.code == 3
    (value,) = r.jsonl()
    cov = value["coverage"]
    assert (cov["from_seq"], cov["to_seq"]) == (1, 22)
    assert (cov["present"], cov["deleted"], cov["evicted"]) == (4, 3, 15)
    assert cov["runs"] == [
        {"from_seq": 1, "to_seq": 15, "state": "evicted", "reason": "cap"},
        {"from_seq": 16, "to_seq": 18, "state": "deleted"},
        {"from_seq": 19, "to_seq": 22, "state": "present"},
    ]
    assert cov["runs_truncated"] is False
    assert cov["map"] == "1 |xxxxxxxxxxxxxxx...####| 22"
    # a complete range: no evicted seqs, exit 0
    whole = topic + "-whole"
    r2 = http.post(f"/v0/topics/{whole}", json={"records": [{"data": 1}] * 5})
    assert r2.status_code == 201
    done = topics("tombstone", "scan", whole, "-o", "json")
    assert done.code == 0
    assert json.loads(done.out)["coverage"]["map"] == "1 |#####| 5"


def test_scan_map_on_a_terminal(
    http: httpx.Client, topic: str, base_url: str, tmp_path: Path
) -> None:
    _setup(http, topic)
    env = cli_env(base_url, tmp_path, COLUMNS="100")
    env.pop("NO_COLOR")
    code, text = run_in_pty(["tombstone", "scan", topic, "--from", "0"], env)
    assert code == 3, text
    assert "✗" in text and "·" in text and "█" in text  # evicted, deleted, present
    assert "▕" in text and "▏" in text
    assert "1 ▕" in text and "▏ 25" in text  # seq numbers at the edges
    assert "\x1b[" in text  # coloured
    assert "x evicted" not in text  # the ASCII fallback is for non-terminals only
    # NO_COLOR: no colour, the characters alone tell the states apart
    env["NO_COLOR"] = "1"
    code, plain = run_in_pty(["tombstone", "scan", topic, "--from", "0"], env)
    assert code == 3
    assert "✗" in plain and "█" in plain and "\x1b[3" not in plain and "\x1b[1;31" not in plain
