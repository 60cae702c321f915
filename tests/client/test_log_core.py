"""Every log-core endpoint against the real server, through both clients."""

from __future__ import annotations

import pytest

from tests.client.conftest import Facade
from topics_client import (
    DeleteRecordsResult,
    DiffResult,
    Gap,
    Health,
    IncompatibleTopicError,
    InvalidRequestError,
    Metrics,
    NewRecord,
    Ready,
    Record,
    TopicNotEmptyError,
    TopicNotFoundError,
    TopicState,
    WriteResult,
)


def test_probes(api: Facade) -> None:
    health = api.health()
    assert isinstance(health, Health) and health.status == "ok"
    ready = api.ready()
    assert isinstance(ready, Ready) and ready.status == "ready"
    assert "topics_topics" in api.metrics()
    metrics = api.metrics_json()
    assert isinstance(metrics, Metrics) and metrics.ready


def test_put_get_reconfigure(api: Facade, topic: str) -> None:
    created = api.topics.put(topic, cap_records=50, durable=True)
    assert created.created and created.topic == topic
    assert created.config.cap_records == 50 and created.config.durability == "fsync"
    state = api.topics.get(topic)
    assert isinstance(state, TopicState)
    assert (state.head_seq, state.earliest_seq, state.next_seq, state.count) == (0, 1, 1, 0)
    # GET, edit, PUT the full object (SPEC §2.1 replaces the whole config).
    again = api.topics.put(topic, state.config, ttl_ms=60_000)
    assert not again.created
    assert again.config.ttl_ms == 60_000 and again.config.cap_records == 50
    with pytest.raises(IncompatibleTopicError) as info:
        api.topics.put(topic, type="queue")
    assert info.value.status == 409 and info.value.detail["topic"] == topic


def test_get_missing_and_invalid(api: Facade, topic: str) -> None:
    with pytest.raises(TopicNotFoundError) as info:
        api.topics.get(topic)
    assert info.value.code == "topic_not_found" and info.value.detail.get("topic") == topic
    with pytest.raises(InvalidRequestError):
        api.topics.put("-bad name")
    with pytest.raises(ValueError):
        api.topics.get("")


def test_write_and_diff(api: Facade, topic: str) -> None:
    result = api.topics.write(
        topic,
        [
            {"data": {"n": 1}},
            NewRecord({"n": 2}, tag="t:2", node="edge-a", meta={"trace": "x"}),
            NewRecord(None),
        ],
    )
    assert isinstance(result, WriteResult)
    assert result.created and result.seqs == (1, 2, 3) and result.count == 3
    assert result.first_seq == 1 and result.last_seq == 3 and result.idempotency_key
    one = api.topics.append(topic, "hé ✓", tag="solo")
    assert one.seqs == (4,) and not one.created

    diff = api.topics.diff(topic, include_tags=True)
    assert isinstance(diff, DiffResult)
    assert [r.seq for r in diff.records] == [1, 2, 3, 4]
    assert diff.caught_up and diff.lag == 0 and diff.tombstone is None
    second = diff.records[1]
    assert isinstance(second, Record)
    assert (second.data, second.tag, second.node, second.meta) == (
        {"n": 2},
        "t:2",
        "edge-a",
        {"trace": "x"},
    )
    assert diff.records[2].data is None and diff.records[3].data == "hé ✓"
    assert diff.records[1].ts >= diff.records[0].ts

    page = api.topics.diff(topic, from_seq=1, limit=2, include_meta=False, node="edge-a")
    assert [r.seq for r in page.records] == [3, 4]  # seq 2 node-filtered, cursor moves on
    assert page.records[0].tag is None  # tags only on request
    assert page.caught_up and page.next_from_seq == 4


def test_idempotent_write(api: Facade, topic: str) -> None:
    first = api.topics.write(topic, [{"data": 1}, {"data": 2}], idempotency_key="k-1")
    again = api.topics.write(topic, [{"data": 1}, {"data": 2}], idempotency_key="k-1")
    assert again.deduped and again.seqs == first.seqs
    assert api.topics.get(topic).count == 2


def test_write_return_seqs_false(api: Facade, topic: str) -> None:
    result = api.topics.write(topic, [{"data": i} for i in range(3)], return_seqs=False)
    assert result.seqs == () and result.last_seq == 3


def test_long_poll_diff_returns_when_idle(api: Facade, topic: str) -> None:
    api.topics.append(topic, 1)
    diff = api.topics.diff(topic, from_seq=1, wait_ms=50)
    assert diff.records == () and diff.caught_up


def test_list_pages(api: Facade, topic: str) -> None:
    names = [f"{topic}-{i:02d}" for i in range(5)]
    for name in names:
        api.topics.put(name)
    listed = api.topics.list(prefix=topic, page_size=2)
    assert [t.topic for t in listed] == names
    page = api.topics.list_page(prefix=topic, page_size=2)
    assert len(page.items) == 2 and page.next_cursor
    last = api.topics.list_page(prefix=topic, page_size=10)
    assert last.next_cursor is None


def test_delete_records(api: Facade, topic: str) -> None:
    api.topics.write(
        topic,
        [NewRecord(i, tag="keep" if i % 2 else "drop:x") for i in range(1, 9)],
    )
    by_tag = api.topics.delete_records(topic, match=("tag", "Glob", "drop:*"))
    assert isinstance(by_tag, DeleteRecordsResult) and by_tag.deleted == 4
    before = api.topics.delete_records(topic, before_seq=4)
    assert before.deleted == 2 and before.count == 2
    left = api.topics.diff(topic)
    assert [r.seq for r in left.records] == [5, 7]
    with pytest.raises(InvalidRequestError):
        api.topics.delete_records(topic, match=("tag", "Regex", "x"))
    with pytest.raises(ValueError):
        api.topics.delete_records(topic)


def test_delete_topic(api: Facade, topic: str) -> None:
    api.topics.append(topic, 1)
    with pytest.raises(TopicNotEmptyError):
        api.topics.delete(topic, if_empty=True)
    gone = api.topics.delete(topic)
    assert gone.deleted and gone.routers_removed == ()
    assert not api.topics.delete(topic).deleted


def test_cap_tombstone_in_diff_and_replay(api: Facade, topic: str) -> None:
    api.topics.put(topic, cap_records=10)
    api.topics.write(topic, [{"data": i} for i in range(30)])
    diff = api.topics.diff(topic, from_seq=0)
    assert diff.tombstone is not None
    assert (diff.tombstone.gap_from, diff.tombstone.gap_to, diff.tombstone.reason) == (1, 20, "cap")
    items = api.topics.replay(topic, limit=4)
    gap, *records = items
    assert isinstance(gap, Gap) and (gap.gap_from, gap.gap_to, gap.cursor) == (1, 20, 0)
    assert [r.seq for r in records] == list(range(21, 31))


def test_raw_response(api: Facade, topic: str) -> None:
    raw = api.with_raw_response.topics.append(topic, {"a": 1})
    assert raw.status_code == 201 and raw.retries_taken == 0
    assert raw.headers["content-type"].startswith("application/json")
    assert raw.parse().seqs == (1,)
    state = api.with_raw_response.topics.get(topic).parse()
    assert state.head_seq == 1
    assert api.with_raw_response.health().parse().status == "ok"


def test_unknown_fields_are_kept(api: Facade, topic: str) -> None:
    api.topics.append(topic, 1)
    state = api.topics.get(topic)
    assert "performance" not in state.extra  # known blocks are not "extra"
    assert isinstance(state.performance, dict)
