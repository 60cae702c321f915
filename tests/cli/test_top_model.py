"""``topics top``'s pure model and its layout helpers: rates, sparklines, sorting, fill,
metrics parsing, the per-refresh request budget (no server needed)."""

from __future__ import annotations

import re

import pytest

from topics_cli.top_model import (
    SORT_KEYS,
    AtRisk,
    Detail,
    Listed,
    RouterInfo,
    TopicRow,
    TopModel,
    fill_ratio,
    parse_metrics,
    sort_rows,
    sparkline_bins,
)


def listed(name: str, head: int, count: int | None = None, nbytes: int = 0) -> Listed:
    return Listed(name, head, 1, head if count is None else count, nbytes, False)


def detail(kind: str = "log", **kw: int) -> Detail:
    return Detail(
        type=kind,
        durability="disk",
        cap_records=kw.get("cap_records", 0),
        cap_bytes=kw.get("cap_bytes", 0),
        ttl_ms=kw.get("ttl_ms", 0),
        ready=kw.get("ready"),
        in_flight=kw.get("in_flight"),
        dead_lettered=kw.get("dead_lettered"),
        fetched_at=kw.get("at", 0),
    )


def row(name: str, **kw: object) -> TopicRow:
    base: dict[str, object] = {
        "topic": name,
        "type": "log",
        "durability": "disk",
        "head_seq": 0,
        "records": 0,
        "bytes": 0,
        "earliest_seq": 1,
        "rate": None,
        "spark": (),
        "fill": None,
        "cap_records": 0,
        "cap_bytes": 0,
        "ttl_ms": 0,
        "oldest_age_ms": None,
    }
    base.update(kw)
    return TopicRow(**base)  # type: ignore[arg-type]


def test_rate_needs_two_samples_and_uses_the_recent_window() -> None:
    model = TopModel()
    model.add_listing([listed("a", 100)], now=10.0)
    assert model.rows(0)[0].rate is None
    model.add_listing([listed("a", 150)], now=11.0)
    assert model.rows(0)[0].rate == pytest.approx(50.0)
    # a burst long ago no longer counts once it leaves the 5 s window
    for i in range(2, 12):
        model.add_listing([listed("a", 150)], now=10.0 + i)
    assert model.rows(0)[0].rate == 0.0


def test_a_recreated_topic_starts_its_history_over() -> None:
    model = TopModel()
    model.add_listing([listed("a", 1000)], now=0.0)
    model.add_listing([listed("a", 1100)], now=1.0)
    model.add_listing([listed("a", 5)], now=2.0)  # head went back: a new instance
    assert model.rows(0)[0].rate is None
    model.add_listing([listed("a", 15)], now=3.0)
    assert model.rows(0)[0].rate == pytest.approx(10.0)


def test_topics_missing_from_a_listing_are_dropped() -> None:
    model = TopModel()
    model.add_listing([listed("a", 1), listed("b", 1)], now=0.0)
    model.add_listing([listed("b", 2)], now=1.0)
    assert [r.topic for r in model.rows(0)] == ["b"]


def test_sparkline_bins_average_the_last_minute() -> None:
    points = [(1.0, 10.0), (2.0, 20.0), (31.0, 5.0), (59.0, 8.0), (-5.0, 99.0)]
    bins = sparkline_bins(points, now=60.0, bins=2)  # [0,30) and [30,60)
    assert bins == [15.0, 6.5]
    # an empty slot repeats the one before it; the first ones are 0
    assert sparkline_bins([(50.0, 4.0)], now=60.0, bins=3) == [0.0, 0.0, 4.0]


def test_the_model_fills_sparklines_only_for_shown_rows() -> None:
    model = TopModel(spark_bins=6)
    for i in range(20):
        model.add_listing([listed("busy", i * 10), listed("idle", 3)], now=float(i))
    snap = model.snapshot(rows=1, wall_ms=0)
    assert [r.topic for r in snap.topics] == ["busy"]
    assert len(snap.topics[0].spark) == 6 and snap.topics[0].spark[-1] == pytest.approx(10.0)


def test_fill_is_the_fuller_cap() -> None:
    assert fill_ratio(50, 10, 100, 0) == 0.5
    assert fill_ratio(50, 900, 100, 1000) == 0.9
    assert fill_ratio(50, 900, 0, 0) is None


@pytest.mark.parametrize("sort", SORT_KEYS)
def test_sort_orders(sort: str) -> None:
    rows = [
        row("b", head_seq=10, rate=5.0, fill=0.2),
        row("a", head_seq=30, rate=1.0, fill=None),
        row("c", head_seq=20, rate=None, fill=0.9),
    ]
    expected = {
        "rate": ["b", "a", "c"],
        "head": ["a", "c", "b"],
        "name": ["a", "b", "c"],
        "fill": ["c", "b", "a"],  # unknown fill last
    }[sort]
    assert [r.topic for r in sort_rows(rows, sort)] == expected


def test_sort_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError):
        sort_rows([], "size")
    with pytest.raises(ValueError):
        TopModel(sort="size")


def test_snapshot_top_n_fill_and_the_risk_column() -> None:
    model = TopModel(sort="fill")
    model.add_listing([listed("a", 90), listed("b", 10), listed("c", 50)], now=0.0)
    model.add_detail("a", detail(cap_records=100))
    model.add_detail("b", detail(cap_records=10))
    plain = model.snapshot(rows=2, wall_ms=0)
    assert [(r.topic, r.fill) for r in plain.topics] == [("b", 1.0), ("a", 0.9)]
    assert plain.topics_matching == 3
    assert not plain.with_risk and "at_risk" not in plain.to_json()["topics"][0]
    assert model.rates() == {"a": None, "b": None, "c": None}

    model.set_risk({"b": AtRisk("1 reader, loses in 4 min", danger=True)})
    snap = model.snapshot(rows=2, wall_ms=0)
    assert snap.with_risk
    assert snap.topics[0].at_risk == AtRisk("1 reader, loses in 4 min", danger=True)
    assert snap.topics[1].at_risk is None
    rows = snap.to_json()["topics"]
    assert rows[0]["at_risk"] == {"label": "1 reader, loses in 4 min", "danger": True}
    assert rows[1]["at_risk"] is None  # the column is on: null, not absent


def test_parse_metrics_reads_gauges_and_queue_series() -> None:
    text = (
        "# HELP topics_topics Topics.\n# TYPE topics_topics gauge\ntopics_topics 3\n"
        "topics_uptime_ms 1234\ntopics_ready 1\n"
        'topics_topics_by_class{class="disk"} 3\n'
        'topics_topic_head_seq{topic="jobs"} 9\n'
        'topics_topic_queue_ready{topic="jobs"} 4\n'
        'topics_topic_queue_in_flight{topic="jobs"} 2\n'
        'topics_topic_queue_ready{topic="we\\"ird\\\\na\\nme"} 1\n'
        "garbage line here\n"
        'topics_wal_fsync_latency_us_bucket{le="+Inf"} 5\n'
    )
    m = parse_metrics(text)
    assert m.gauges["topics_topics"] == 3 and m.gauges["topics_uptime_ms"] == 1234
    assert m.queue_ready == {"jobs": 4, 'we"ird\\na\nme': 1}
    assert m.queue_in_flight == {"jobs": 2}


def test_queue_rows_from_metrics_and_state() -> None:
    model = TopModel()
    model.add_metrics(  # before the listing, as a refresh feeds them: queues known at once
        parse_metrics(
            'topics_topic_queue_ready{topic="jobs"} 5\n'
            'topics_topic_queue_in_flight{topic="jobs"} 2\n'
        )
    )
    model.add_listing([listed("jobs", 10, count=8), listed("plain", 3)], now=0.0)
    model.add_detail("jobs", detail("queue", ready=1, in_flight=1, dead_lettered=3))
    # 2 more jobs done (head - count grows by 2) over 2 s
    model.add_listing([listed("jobs", 10, count=6), listed("plain", 3)], now=2.0)
    (q,) = model.snapshot(rows=None, wall_ms=0).queues
    assert (q.topic, q.ready, q.in_flight, q.delayed, q.dead_lettered) == ("jobs", 5, 2, 0, 3)
    assert q.done_rate == pytest.approx(1.0)
    rows = {r.topic: r for r in model.rows(0)}
    assert rows["jobs"].type == "queue" and rows["plain"].type is None


def test_router_rows_lag_rate_and_order() -> None:
    model = TopModel()
    model.add_listing([listed("src", 100), listed("dst", 40), listed("o", 5)], now=0.0)
    model.add_routers([RouterInfo("a", "src", "dst", 40), RouterInfo("b", "o", "dst2", 5)], now=0.0)
    model.add_router_state("a", "running", None, 60, now=0.0)
    model.add_router_state("b", "stalled", "disk full", None, now=0.0)
    model.add_routers([RouterInfo("a", "src", "dst", 60), RouterInfo("b", "o", "dst2", 5)], now=2.0)
    a, b = model.snapshot(rows=None, wall_ms=0).routers[::-1]
    assert (b.router, b.state, b.reason, b.lag) == ("b", "stalled", "disk full", None)
    # the state fetched earlier survives the listing; lag = source head - cursor
    assert (a.router, a.state, a.lag, a.forward_rate) == ("a", "running", 40, 10.0)
    # a GET that also reported forwarded_total: the cursor moves on with the listing's
    model.add_router_state("a", "running", None, 60, now=2.0, forwarded_total=60)
    model.add_listing([listed("src", 130), listed("dst", 40), listed("o", 5)], now=3.0)
    model.add_routers([RouterInfo("a", "src", "dst", 85), RouterInfo("b", "o", "dst2", 5)], 3.0)
    lagging = model.snapshot(rows=None, wall_ms=0).routers[1]
    assert (lagging.router, lagging.lag) == ("a", 130 - (60 + 25))
    # both due again later: the stalest router is looked at first
    model.add_listing([listed("src", 130), listed("dst", 40), listed("o", 5)], now=10.0)
    assert model.wanted_details([], budget=1) == [("router", "b")]


def test_prefix_filters_routers_by_either_end() -> None:
    model = TopModel(prefix="t1:")
    model.add_listing([listed("t1:a", 1)], now=0.0)
    model.add_routers([RouterInfo("x", "t1:a", "other", 0), RouterInfo("y", "u", "v", 0)], now=0.0)
    assert [r.router for r in model.snapshot(rows=None, wall_ms=0).routers] == ["x"]


def test_wanted_details_respects_the_budget_and_priorities() -> None:
    model = TopModel()
    names = [f"t{i:03}" for i in range(100)]
    model.add_listing([listed(n, 1) for n in names], now=100.0)
    model.add_routers([RouterInfo("r", "t000", "t001", 0)], now=100.0)
    want = model.wanted_details(names[:5], budget=8)
    assert want[:5] == [("topic", n) for n in names[:5]]  # visible configs first
    assert ("router", "r") in want and len(want) == 6
    assert len(model.wanted_details(names, budget=16)) == 16
    assert model.wanted_details(names, budget=0) == []
    # with every visible config known and fresh: nothing but what is due
    for n in names[:5]:
        model.add_detail(n, detail(at=100))
    model.add_router_state("r", "running", None, 1, now=100.0)
    assert model.wanted_details(names[:5], budget=16) == []
    # a snapshot bounds the queues and routers it looks at beyond its rows
    many = TopModel()
    many.add_metrics(
        parse_metrics("".join(f'topics_topic_queue_ready{{topic="q{i}"}} 0\n' for i in range(9)))
    )
    many.add_listing([listed(f"q{i}", 1) for i in range(9)], now=0.0)
    many.add_routers([RouterInfo(f"r{i}", f"q{i}", "x", 0) for i in range(9)], now=0.0)
    capped = many.wanted_details([], budget=1000, cap=2)
    assert capped == [("topic", "q0"), ("topic", "q1"), ("router", "r0"), ("router", "r1")]
    assert len(many.wanted_details([], budget=1000)) == 18
    # --sort fill learns the rest, within the budget
    assert model.wanted_details(names[:5], budget=3, learn_all=True) == [
        ("topic", n) for n in names[5:8]
    ]


def test_ttl_topics_on_screen_get_their_oldest_record_aged() -> None:
    model = TopModel()
    model.add_listing([listed("s", 10)], now=0.0)
    model.add_detail("s", detail(ttl_ms=60_000))
    assert model.wanted_details(["s"], budget=4) == [("oldest", "s")]
    model.add_oldest("s", 1, ts=1_000, now=0.0)
    assert model.rows(wall_ms=31_000)[0].oldest_age_ms == 30_000
    assert model.wanted_details(["s"], budget=4) == []  # earliest has not moved


def test_help_has_examples_and_the_command_is_listed() -> None:
    from typer.testing import CliRunner

    from topics_cli.app import app

    runner = CliRunner()
    out = runner.invoke(app, ["top", "--help"]).output
    assert "topics top --sort fill --prefix 'tenant42:'" in out
    assert "--once" in out and "Exit codes" in out
    listing = runner.invoke(app, ["--help"]).output
    assert re.search(r"\n  top +Live view of every topic, router and queue\.\n", listing)


def test_columns_drop_by_priority_on_narrow_screens() -> None:
    from topics_cli.top_render import fit, sparkline, topic_columns

    wide = topic_columns(None, with_risk=True, spark=True)
    assert wide[0] == "TOPIC" and "AT RISK" in wide and "LAST 60s" in wide
    narrow = topic_columns(60, with_risk=False, spark=True)
    assert narrow[:1] == ["TOPIC"] and "REC/S" in narrow and "LAST 60s" not in narrow
    assert sum(w + 2 for w in (12, 6, 6)) <= 60  # TOPIC HEAD REC/S always fit
    assert sparkline([0, 5, 10]) == "▁▅█" and sparkline([0, 0]) == "▁▁"
    layout = fit(40, n_routers=100, n_queues=1)
    assert (layout.routers, layout.queues) == (8, 1) and layout.topics == 40 - 5 - 10 - 3
    assert fit(5, 3, 3).topics == 1


@pytest.mark.parametrize("sort", SORT_KEYS)
def test_snapshot_order_is_sort_rows_order(sort: str) -> None:
    import random

    rng = random.Random(7)
    model = TopModel(sort=sort)
    names = [f"t{i:03}" for i in range(300)]
    heads = {n: rng.randrange(0, 50) for n in names}
    model.add_listing([listed(n, heads[n]) for n in names], now=0.0)
    model.add_listing([listed(n, heads[n] + rng.randrange(0, 3)) for n in names], now=1.0)
    for n in names[::3]:
        model.add_detail(n, detail(cap_records=rng.choice([0, 10, 100])))
    expected = [r.topic for r in sort_rows(model.rows(0), sort)]
    assert [r.topic for r in model.snapshot(rows=25, wall_ms=0).topics] == expected[:25]
    assert [r.topic for r in model.snapshot(rows=None, wall_ms=0).topics] == expected
