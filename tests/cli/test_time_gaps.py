"""``--from @TIME`` on a capped topic (issue 11, bug 5): records from that time on that were
already evicted are a gap, reported like any tombstone, never a silent start at the
earliest live record. Against the real server."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from tests.cli.conftest import Run

Topics = Callable[..., Run]


def _iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat(timespec="milliseconds")


def _records(base_url: str, topic: str) -> list[dict[str, object]]:
    page = httpx.post(f"{base_url}/v0/topics/{topic}/diff", json={}).json()
    records: list[dict[str, object]] = page["records"]
    return records


def _write(base_url: str, topic: str, data: int) -> None:
    r = httpx.post(f"{base_url}/v0/topics/{topic}", json={"records": [{"data": data}]})
    assert r.status_code == 200, r.text


@pytest.fixture
def evicted_window(topics: Topics, topic: str, base_url: str) -> tuple[str, int]:
    """A topic capped at 2 records: 1 and 2 written, then 3 and 4, so 1 and 2 are
    evicted. Returns ``(@TIME of record 2, record 3's $ts)``: everything since record 2's
    time includes record 2, which is gone."""
    assert topics("create", topic, "--cap-records", "2").code == 0
    _write(base_url, topic, 1)
    _write(base_url, topic, 2)
    since = _records(base_url, topic)[-1]["$ts"]
    assert isinstance(since, int)
    _write(base_url, topic, 3)
    _write(base_url, topic, 4)
    live = _records(base_url, topic)
    assert [r["data"] for r in live] == [3, 4]
    third = live[0]["$ts"]
    assert isinstance(third, int)
    return "@" + _iso(since), third


def test_diff_from_time_reports_the_evicted_window(
    topics: Topics, topic: str, evicted_window: tuple[str, int]
) -> None:
    at, _ = evicted_window
    r = topics("diff", topic, "--from", at, "-o", "jsonl")
    assert r.code == 0, r.err
    assert [x["data"] for x in r.jsonl()] == [3, 4]
    gaps = [e["$gap"] for e in r.err_jsonl() if "$gap" in e]
    assert [(g["topic"], g["gap_from"], g["gap_to"]) for g in gaps] == [(topic, 1, 2)], r.err
    summary = next(e["$summary"] for e in r.err_jsonl() if "$summary" in e)
    assert (summary["gaps"], summary["missed"]) == (1, 2)

    r = topics("diff", topic, "--from", at, "-o", "jsonl", "--on-gap", "inline")
    assert r.code == 0, r.err
    lines = r.jsonl()
    assert (lines[0]["$gap"]["gap_from"], lines[0]["$gap"]["gap_to"]) == (1, 2)
    assert [x["data"] for x in lines[1:]] == [3, 4]

    r = topics("diff", topic, "--from", at, "-o", "jsonl", "--fail-on-gap")
    assert r.code == 3, r.err
    assert r.jsonl() == []  # the gap comes first: nothing is delivered past it
    assert any("$gap" in e for e in r.err_jsonl())


def test_scan_check_and_watch_from_time_see_the_same_gap(
    topics: Topics, topic: str, evicted_window: tuple[str, int]
) -> None:
    at, _ = evicted_window
    r = topics("tombstone", "scan", topic, "--from", at, "-o", "jsonl")
    assert r.code == 3, r.err
    scanned = r.jsonl()[0]
    assert (scanned["complete"], scanned["records"], scanned["missed"]) == (False, 2, 2)
    r = topics("tombstone", "check", topic, "--from", at, "--sample", "0", "-o", "jsonl")
    assert r.code == 3, r.err
    assert r.jsonl()[0]["cursors"][0]["status"] == "gap"
    r = topics("watch", topic, "--from", at, "--until-caught-up", "--fail-on-gap")
    assert r.code == 3, r.err


def test_a_live_record_older_than_time_proves_no_gap(
    topics: Topics, topic: str, evicted_window: tuple[str, int]
) -> None:
    """Just after record 3 (live): every evicted record is older, so nothing is missing."""
    _, third = evicted_window
    at = "@" + _iso(third + 1)
    r = topics("diff", topic, "--from", at, "-o", "jsonl", "--fail-on-gap")
    assert r.code == 0, r.err
    assert [x["data"] for x in r.jsonl()] in ([4], [])  # 4 unless written in the same ms
    assert not any("$gap" in e for e in r.err_jsonl())
    r = topics("tombstone", "scan", topic, "--from", at)
    assert r.code == 0, r.err
