"""``topics lag`` against the real server: healthy, lagging, already-lost and about-to-lose
consumers on a capped and a TTL topic, every exit code, and the Prometheus text parsed by
``prometheus_client``'s own parser."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.cli.conftest import Run

Topics = Callable[..., Run]


def _create(http: httpx.Client, topic: str, **config: object) -> None:
    r = http.put(f"/v0/topics/{topic}", json=config)
    assert r.status_code in (200, 201), r.text


def _write(http: httpx.Client, topic: str, n: int) -> None:
    r = http.post(f"/v0/topics/{topic}", json={"records": [{"data": i} for i in range(n)]})
    assert r.status_code in (200, 201), r.text


def _checkpoint(tmp_path: Path, name: str, cursors: dict[str, int]) -> Path:
    path = tmp_path / "workers" / f"{name}.cp"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(cursors))
    return path


def _rows(r: Run) -> dict[tuple[str, str], dict]:
    return {(row["consumer"], row["topic"]): row for row in r.jsonl()}


def test_healthy_and_lagging_consumers_exit_0(
    topics: Topics, http: httpx.Client, topic: str, tmp_path: Path
) -> None:
    capped = topic + "-capped"
    _create(http, capped, cap_records=1000)
    _write(http, capped, 100)
    _checkpoint(tmp_path, "billing", {capped: 100})  # caught up
    _checkpoint(tmp_path, "audit", {capped: 40})  # 60 behind, 900 writes from loss
    r = topics("lag", str(tmp_path / "workers" / "*.cp"), "--sample", "0")
    assert r.code == 0, r.err
    rows = _rows(r)  # jsonl in a pipe, one object per consumer and topic
    billing, audit = rows["billing", capped], rows["audit", capped]
    assert billing["status"] == "ok" and billing["lag_records"] == 0 and billing["lag_ms"] == 0
    assert billing["falloff_ms"] is None and billing["lost"] is None
    assert audit["status"] == "lagging"
    assert audit["cursor"] == 40 and audit["head_seq"] == 100 and audit["lag_records"] == 60
    assert audit["oldest_unread_seq"] == 41 and 0 <= audit["lag_ms"] < 60_000
    assert audit["writes_until_eviction"] == 1000 - 60 + 1
    assert audit["falloff_ms"] is None  # not sampled: no rate, so no time
    assert audit["source"] == str(tmp_path / "workers" / "audit.cp")
    # a warning horizon the consumers are far from changes nothing
    warned = topics(
        "lag", str(tmp_path / "workers" / "*.cp"), "--sample", "0", "--warn-before", "1h"
    )
    assert warned.code == 0, warned.out


def test_lag_counts_live_records_only(topics: Topics, http: httpx.Client, topic: str) -> None:
    _create(http, topic)
    _write(http, topic, 20)
    r = http.post(f"/v0/topics/{topic}/delete", json={"before_seq": 16})
    assert r.status_code == 200
    # cursor 5: seqs 6..15 were deleted on purpose, 16..20 are unread
    row = topics("lag", f"{topic}=5", "--sample", "0", "-o", "json")
    assert row.code == 0, row.err
    (value,) = json.loads(row.out)
    assert value["lag_records"] == 5 and value["oldest_unread_seq"] == 16
    assert value["status"] == "lagging" and value["lost"] is None
    assert value["falloff_ms"] is None and value["writes_until_eviction"] is None


def test_already_lost_on_a_capped_topic_exits_3(
    topics: Topics, http: httpx.Client, topic: str
) -> None:
    _create(http, topic, cap_records=5)
    _write(http, topic, 20)  # 1..15 evicted
    r = topics("lag", f"ops/{topic}=3", f"{topic}=17", "--sample", "0", "-o", "json")
    assert r.code == 3, r.err
    lost, fine = json.loads(r.out)
    assert lost["consumer"] == "ops" and lost["status"] == "lost"
    assert lost["lost"] == {"gap_from": 4, "gap_to": 15, "reason": "cap", "missed_estimate": 12}
    assert lost["falloff_ms"] == 0 and lost["falloff_by"] == "cap"
    assert lost["lag_records"] == 5 and lost["oldest_unread_seq"] == 16
    assert fine["consumer"] == "inline" and fine["status"] == "lagging"
    assert fine["lag_records"] == 3 and fine["writes_until_eviction"] == 5 - 3 + 1
    pretty = topics("lag", f"ops/{topic}=3", "--sample", "0", "-o", "pretty")
    assert pretty.code == 3
    assert "LOST 12 (seqs 4..15, cap)" in pretty.out
    assert re.search(rf"ops\s+{topic}\s+3\s+20\s+5\s", pretty.out), pretty.out


def test_about_to_lose_on_a_capped_topic_exits_3(
    topics: Topics, http: httpx.Client, topic: str, base_url: str
) -> None:
    _create(http, topic, cap_records=1000)
    _write(http, topic, 950)
    stop = threading.Event()

    def writer() -> None:  # ~20 records/s: a measurable rate, far from the 451 writes left
        with httpx.Client(base_url=base_url, timeout=30.0) as c:
            while not stop.is_set():
                c.post(f"/v0/topics/{topic}", json={"records": [{"data": "w"}]})
                stop.wait(0.05)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        r = topics(
            "lag", f"slow/{topic}=400", "--sample", "2s", "--warn-before", "1h", "-o", "json"
        )
    finally:
        stop.set()
        thread.join(10)
    assert r.code == 3, r.out + r.err
    (row,) = json.loads(r.out)
    assert row["status"] == "at_risk" and row["lost"] is None
    assert row["write_rate"] > 0 and row["falloff_by"] == "cap"
    writes_left = row["writes_until_eviction"]
    assert 0 < writes_left <= 451
    # the same arithmetic as tombstone check: writes left over the measured rate
    assert row["falloff_ms"] == pytest.approx(writes_left / row["write_rate"] * 1000, rel=0.01)
    assert row["falloff_ms"] < 3_600_000


def test_ttl_topic_about_to_lose_and_lost(
    topics: Topics, http: httpx.Client, topic: str, tmp_path: Path
) -> None:
    hour = topic + "-hour"
    _create(http, hour, ttl_ms=3_600_000)
    _write(http, hour, 5)
    r = topics("lag", f"{hour}=2", "--sample", "0", "--warn-before", "2h", "-o", "json")
    assert r.code == 3, r.err
    (row,) = json.loads(r.out)
    assert row["status"] == "at_risk" and row["falloff_by"] == "ttl"
    assert 3_500_000 < row["falloff_ms"] <= 3_600_000
    # shared code: tombstone check gives the same estimate for the same cursor
    check = topics("tombstone", "check", hour, "--from", "2", "--sample", "0", "-o", "json")
    evicted_in = json.loads(check.out)["cursors"][0]["evicted_in_ms"]
    assert abs(evicted_in - row["falloff_ms"]) < 30_000
    ok = topics("lag", f"{hour}=2", "--sample", "0", "--warn-before", "30m", "-o", "json")
    assert ok.code == 0 and json.loads(ok.out)[0]["status"] == "lagging"

    short = topic + "-short"
    _create(http, short, ttl_ms=200)
    _write(http, short, 3)
    deadline = time.monotonic() + 20
    while http.get(f"/v0/topics/{short}").json()["earliest_seq"] < 4:
        assert time.monotonic() < deadline, "the TTL never expired the records"
        time.sleep(0.05)
    lost = topics("lag", f"{short}=1", "--sample", "0", "-o", "json")
    assert lost.code == 3
    (row,) = json.loads(lost.out)
    assert row["status"] == "lost" and row["lost"]["reason"] == "ttl"
    assert (row["lost"]["gap_from"], row["lost"]["gap_to"]) == (2, 3)
    assert row["lag_records"] == 0


def test_missing_topic_exits_4_over_3(topics: Topics, http: httpx.Client, topic: str) -> None:
    _create(http, topic, cap_records=5)
    _write(http, topic, 20)
    r = topics("lag", f"{topic}=1", f"{topic}-nope=3", "--sample", "0", "-o", "json")
    assert r.code == 4, r.err
    lost, missing = json.loads(r.out)
    assert lost["status"] == "lost" and missing["status"] == "missing"
    assert missing["head_seq"] is None and missing["lag_records"] is None
    only = topics("lag", f"{topic}-nope=3", "--sample", "0", "-o", "pretty")
    assert only.code == 4 and "topic missing" in only.out


def test_prometheus_text_parses(
    topics: Topics, http: httpx.Client, topic: str, tmp_path: Path
) -> None:
    capped, plain = topic + "-c", topic + "-p"
    _create(http, capped, cap_records=5)
    _write(http, capped, 20)
    _create(http, plain)
    _write(http, plain, 10)
    _checkpoint(tmp_path, "billing", {capped: 17, plain: 4})
    r = topics(
        "lag",
        str(tmp_path / "workers" / "billing.cp"),
        f'we"ird\\name/{capped}=2',
        "--sample",
        "0",
        "-o",
        "prom",
    )
    assert r.code == 3, r.err  # the second consumer lost records
    families = {f.name: f for f in text_string_to_metric_families(r.out)}
    assert set(families) == {
        "topics_consumer_lag_records",
        "topics_consumer_lag_seconds",
        "topics_consumer_falloff_seconds",
        "topics_consumer_lost_records",
    }
    assert all(f.type == "gauge" and f.documentation for f in families.values())

    def value(name: str, consumer: str, t: str) -> float:
        (sample,) = [
            s for s in families[name].samples if s.labels == {"consumer": consumer, "topic": t}
        ]
        return sample.value

    assert value("topics_consumer_lag_records", "billing", capped) == 3
    assert value("topics_consumer_lag_records", "billing", plain) == 6
    assert value("topics_consumer_falloff_seconds", "billing", plain) == float("inf")
    assert value("topics_consumer_lost_records", "billing", capped) == 0
    weird = 'we"ird\\name'
    assert value("topics_consumer_lost_records", weird, capped) == 13
    assert value("topics_consumer_falloff_seconds", weird, capped) == 0
    assert value("topics_consumer_lag_records", weird, capped) == 5
    assert value("topics_consumer_lag_seconds", weird, capped) >= 0
    assert r.out.count("# TYPE topics_consumer_lag_records gauge") == 1


def test_map_for_one_consumer(topics: Topics, http: httpx.Client, topic: str) -> None:
    _create(http, topic, cap_records=10)
    _write(http, topic, 25)  # 1..15 evicted
    assert http.post(f"/v0/topics/{topic}/delete", json={"before_seq": 19}).status_code == 200
    r = topics("lag", f"{topic}=3", "--map", "--sample", "0", "-o", "pretty")
    assert r.code == 3
    assert "4 |xxxxxxxxxxxx...#######| 25" in r.out, r.out
    assert "4..15: evicted (cap), 12 seq(s)" in r.out
    assert "16..18: deleted on purpose, 3 seq(s)" in r.out
    j = topics("lag", f"{topic}=3", "--map", "--sample", "0", "-o", "json")
    coverage = json.loads(j.out)[0]["coverage"]
    assert (coverage["from_seq"], coverage["to_seq"]) == (4, 25)
    assert (coverage["evicted"], coverage["deleted"], coverage["present"]) == (12, 3, 7)
    two = topics("lag", f"{topic}=3", f"{topic}=5", "--map", "--sample", "0")
    assert two.code == 2 and "one" in two.err


def test_usage_errors_exit_2(topics: Topics, tmp_path: Path) -> None:
    assert topics("lag", "not a cursor").code == 2
    nothing = topics("lag", str(tmp_path / "none" / "*.cp"))
    assert nothing.code == 2 and "matches no checkpoint file" in nothing.err
    bad = tmp_path / "bad.cp"
    bad.write_text("[1, 2]")
    broken = topics("lag", str(bad))
    assert broken.code == 2 and "not a checkpoint" in broken.err
    assert topics("lag", "t=1", "-o", "xml").code == 2
    assert topics("lag", "t=1", "--warn-before", "soon").code == 2
    for r in (nothing, broken):
        assert "Traceback" not in r.err and len(r.err.strip().splitlines()) <= 2


def test_eviction_estimate_is_defined_once() -> None:
    package = Path(__file__).resolve().parents[2] / "topics_cli"
    defs = [
        p.relative_to(package).as_posix()
        for p in package.rglob("*.py")
        if re.search(r"^def eviction_estimate\(", p.read_text(), re.M)
    ]
    assert defs == ["consumers.py"]
    tombstone = (package / "commands" / "tombstone.py").read_text()
    assert "from topics_cli.consumers import eviction_estimate" in tombstone


def test_help_has_quoted_examples_and_exit_codes() -> None:
    from typer.testing import CliRunner

    from topics_cli.app import app

    r = CliRunner().invoke(app, ["lag", "--help"])
    assert r.exit_code == 0, r.output
    assert "topics lag 'workers/*.cp' --warn-before 30m" in r.output
    assert "topics lag 'workers/*.cp' -o prom > lag.prom" in r.output
    assert "topics lag orders=41 audit=7 -o json" in r.output
    assert "4 a topic is missing" in r.output
    assert "topics lag workers/*.cp" not in r.output  # every glob quoted: copy-paste safe


def test_load_cursors_forms(tmp_path: Path) -> None:
    from topics_cli.consumers import Cursor, load_cursors
    from topics_cli.errors import CliError

    a = _checkpoint(tmp_path, "alpha", {"orders": 41, "audit": 7})
    b = _checkpoint(tmp_path, "beta", {"orders": 3})
    glob = str(tmp_path / "workers" / "*.cp")
    assert load_cursors([glob, "orders=9", "ops/a:b.c-d=12"]) == [
        Cursor("alpha", "audit", 7, str(a)),
        Cursor("alpha", "orders", 41, str(a)),
        Cursor("beta", "orders", 3, str(b)),
        Cursor("inline", "orders", 9, "orders=9"),
        Cursor("ops", "a:b.c-d", 12, "ops/a:b.c-d=12"),
    ]
    odd = tmp_path / "x=5"  # a file wins over the inline reading
    odd.write_text('{"t": 1}')
    assert load_cursors([str(odd)]) == [Cursor("x=5", "t", 1, str(odd))]
    for bad in ("orders", "orders=-1", "=4", "a/b/c=1"):
        with pytest.raises(CliError):
            load_cursors([bad])


def test_prometheus_text_exports_a_pair_once() -> None:
    from topics_cli.commands.lag import prometheus_text
    from topics_cli.consumers import ConsumerRisk, Cursor

    first = ConsumerRisk(Cursor("c", "t", 1, "a/c.cp"), "lagging", lag_records=5, lag_ms=1500)
    second = ConsumerRisk(Cursor("c", "t", 2, "b/c.cp"), "lagging", lag_records=4, lag_ms=10)
    text = prometheus_text([first, second])
    families = {f.name: f for f in text_string_to_metric_families(text)}
    (sample,) = families["topics_consumer_lag_records"].samples
    assert sample.value == 5
    (age,) = families["topics_consumer_lag_seconds"].samples
    assert age.value == 1.5
    # no retention at all: nothing ever evicts the unread records
    (falloff,) = families["topics_consumer_falloff_seconds"].samples
    assert falloff.value == float("inf")
