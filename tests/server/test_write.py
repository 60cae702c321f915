"""Appends (SPEC §3): seqs, creation, idempotency, validation, caps, byte accounting."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from tests.server._helpers import (
    DEFAULT_CONFIG,
    assert_error,
    compact,
    diff,
    ok,
    poll,
    put_topic,
    state,
    unique,
    write,
    write_n,
)

WRITE_FIELDS = {
    "topic",
    "first_seq",
    "last_seq",
    "seqs",
    "head_seq",
    "count",
    "created",
    "deduped",
    "performance",
}


def _post(
    http: httpx.Client, topic: str, body: Any, headers: dict[str, str] | None = None
) -> httpx.Response:
    return http.post(
        f"/v0/topics/{topic}",
        content=json.dumps(body).encode(),
        headers={"content-type": "application/json", **(headers or {})},
    )


def _unchanged(http: httpx.Client, topic: str, head: int, count: int) -> None:
    got = state(http, topic, touch=False)
    assert (got["head_seq"], got["count"]) == (head, count), got


def test_write_response_shape_and_contiguous_seqs(http: httpx.Client, topic: str) -> None:
    first = write(http, topic, [{"data": {"qty": 1}}, {"data": {"qty": 2}}], status=201)
    assert set(first) == WRITE_FIELDS
    assert first["topic"] == topic
    assert (first["first_seq"], first["last_seq"], first["seqs"]) == (1, 2, [1, 2])
    assert (first["head_seq"], first["count"]) == (2, 2)
    assert first["created"] is True
    assert first["deduped"] is False
    perf = first["performance"]
    assert isinstance(perf["wal_append_ms"], float)
    assert isinstance(perf["fsync_ms"], float)
    assert perf["fsync_ms"] == 0.0  # the default class is disk

    second = write(http, topic, [{"data": 3}, {"data": 4}, {"data": 5}], status=200)
    assert (second["first_seq"], second["last_seq"], second["seqs"]) == (3, 5, [3, 4, 5])
    assert (second["head_seq"], second["count"]) == (5, 3)
    assert second["created"] is False
    assert second["deduped"] is False
    assert {"wal_append_ms", "fsync_ms"} <= set(second["performance"])

    single = write(http, topic, [{"data": None}])
    assert single["seqs"] == [6]
    body = diff(http, topic)
    assert [r["$seq"] for r in body["records"]] == [1, 2, 3, 4, 5, 6]
    ts = [r["$ts"] for r in body["records"]]
    assert ts == sorted(ts)
    assert all(isinstance(t, int) for t in ts)


def test_spec_example_write_response(http: httpx.Client, topic: str) -> None:
    """§3.7: twelve records already, a two-record write gets seqs 13 and 14."""
    write_n(http, topic, 12)
    body = write(http, topic, [{"data": 1}, {"data": 2}], status=200)
    expected = {
        "topic": topic,
        "first_seq": 13,
        "last_seq": 14,
        "seqs": [13, 14],
        "head_seq": 14,
        "count": 2,
        "created": False,
        "deduped": False,
    }
    assert {k: v for k, v in body.items() if k != "performance"} == expected


def test_fsync_class_reports_fsync_ms(http: httpx.Client, topic: str) -> None:
    put_topic(http, topic, {"durable": True}, status=201)
    perf = write(http, topic)["performance"]
    assert isinstance(perf["fsync_ms"], float)
    assert perf["fsync_ms"] >= 0.0
    assert isinstance(perf["wal_append_ms"], float)


PAYLOADS: list[Any] = [
    None,
    0,
    -1,
    2**63 - 1,
    1.5,
    True,
    "",
    'text with "quotes" and \\ and \n',
    "ünïcödé ✓ 😀",
    [],
    [1, "two", None, {"three": 3}],
    {},
    {"nested": {"deep": [1, {"x": None}]}, "é": "ü"},
]


def test_data_and_meta_round_trip_verbatim(http: httpx.Client, topic: str) -> None:
    records = [{"data": p} for p in PAYLOADS]
    records.append({"data": 1, "meta": {"trace": "t9", "n": [1, 2], "ü": {"x": None}}})
    records.append({"data": 2, "meta": {}})
    write(http, topic, records)
    body = diff(http, topic)
    assert [r["data"] for r in body["records"]] == [r["data"] for r in records]
    metas = [r.get("meta") for r in body["records"]]
    assert metas[-2] == {"trace": "t9", "n": [1, 2], "ü": {"x": None}}
    assert metas[-1] == {}
    assert all("meta" not in r for r in body["records"][:-2])


def test_create_false_on_absent_topic_is_404(http: httpx.Client, topic: str) -> None:
    err = assert_error(
        _post(http, topic, {"records": [{"data": 1}], "create": False}), 404, "topic_not_found"
    )
    assert err["detail"]["topic"] == topic
    assert_error(http.get(f"/v0/topics/{topic}"), 404, "topic_not_found")


def test_create_false_on_existing_topic_is_ignored(http: httpx.Client, topic: str) -> None:
    put_topic(http, topic, {}, status=201)
    body = write(http, topic, [{"data": 1}], status=200, create=False)
    assert body["seqs"] == [1]


def test_auto_create_false_config_without_create_is_404(http: httpx.Client, topic: str) -> None:
    body = {"records": [{"data": 1}], "config": {"auto_create": False}}
    assert_error(_post(http, topic, body), 404, "topic_not_found")
    assert_error(http.get(f"/v0/topics/{topic}"), 404, "topic_not_found")
    created = write(
        http, topic, [{"data": 1}], status=201, create=True, config={"auto_create": False}
    )
    assert created["created"] is True
    assert state(http, topic)["config"]["auto_create"] is False


def test_existing_topic_with_auto_create_false_still_accepts_writes(
    http: httpx.Client, topic: str
) -> None:
    put_topic(http, topic, {"auto_create": False}, status=201)
    assert write(http, topic, status=200)["seqs"] == [1]


def test_config_applies_on_create_only(http: httpx.Client, topic: str) -> None:
    config = {"cap_records": 2, "durability": "memory", "idempotency_window_ms": 5000}
    body = write(http, topic, [{"data": 1}], status=201, config=config)
    assert body["created"] is True
    assert state(http, topic)["config"] == {**DEFAULT_CONFIG, **config}
    write(http, topic, [{"data": 2}], status=200, config={"cap_records": 99, "durable": True})
    assert state(http, topic)["config"] == {**DEFAULT_CONFIG, **config}


def test_lazy_create_uses_defaults(http: httpx.Client, topic: str) -> None:
    write(http, topic, status=201)
    assert state(http, topic)["config"] == DEFAULT_CONFIG


def test_create_on_write_validates_name(http: httpx.Client) -> None:
    for name in ("-bad", "a%20b", "x" * 256):
        assert_error(_post(http, name, {"records": [{"data": 1}]}), 400, "invalid_request")
        assert_error(
            _post(http, name, {"records": [{"data": 1}], "create": True}), 400, "invalid_request"
        )
        # creation forbidden: not found, whatever the name
        assert_error(
            _post(http, name, {"records": [{"data": 1}], "create": False}),
            404,
            "topic_not_found",
        )


# -- idempotency (§3.5) ---------------------------------------------------------


def test_idempotency_key_in_body(http: httpx.Client, topic: str) -> None:
    original = write(http, topic, [{"data": 1}, {"data": 2}], status=201, idempotency_key="k")
    assert original["deduped"] is False
    write(http, topic, [{"data": 3}])
    repeat = write(http, topic, [{"data": "different"}], status=200, idempotency_key="k")
    assert repeat["deduped"] is True
    assert repeat["created"] is False
    assert (repeat["first_seq"], repeat["last_seq"], repeat["seqs"]) == (1, 2, [1, 2])
    assert repeat["count"] == 2
    assert repeat["head_seq"] == 2  # as of the original write
    assert repeat["topic"] == topic
    assert "wal_append_ms" not in repeat["performance"]
    assert "fsync_ms" not in repeat["performance"]
    got = state(http, topic)
    assert (got["head_seq"], got["count"]) == (3, 3)
    assert [r["data"] for r in diff(http, topic)["records"]] == [1, 2, 3]


def test_idempotency_key_header(http: httpx.Client, topic: str) -> None:
    headers = {"Idempotency-Key": "hdr-1"}
    original = write(http, topic, [{"data": "a"}], status=201, headers=headers)
    repeat = write(http, topic, [{"data": "b"}], status=200, headers=headers)
    assert repeat["deduped"] is True
    assert repeat["seqs"] == original["seqs"] == [1]
    assert state(http, topic)["head_seq"] == 1
    # the body key is used when both are present
    both = write(http, topic, [{"data": "c"}], headers=headers, idempotency_key="body-1")
    assert both["deduped"] is False
    assert both["seqs"] == [2]
    again = write(
        http, topic, [{"data": "d"}], headers={"Idempotency-Key": "x"}, idempotency_key="body-1"
    )
    assert again["deduped"] is True
    assert again["seqs"] == [2]
    # the header key maps to the same table as a body key
    same = write(http, topic, [{"data": "e"}], idempotency_key="hdr-1")
    assert same["deduped"] is True
    assert same["seqs"] == [1]
    assert state(http, topic)["head_seq"] == 2


def test_idempotent_repeat_honours_return_seqs(http: httpx.Client, topic: str) -> None:
    write(http, topic, idempotency_key="k")
    repeat = write(http, topic, idempotency_key="k", params={"return_seqs": "false"})
    assert repeat["deduped"] is True
    assert "seqs" not in repeat
    assert (repeat["first_seq"], repeat["last_seq"]) == (1, 1)


def test_idempotency_keys_are_per_topic(http: httpx.Client) -> None:
    a, b = unique(), unique()
    write(http, a, idempotency_key="shared")
    write_n(http, b, 2)
    other = write(http, b, idempotency_key="shared")
    assert other["deduped"] is False
    assert other["seqs"] == [3]


def test_idempotency_window_expires(http: httpx.Client, topic: str) -> None:
    put_topic(http, topic, {"idempotency_window_ms": 300}, status=201)
    write(http, topic, idempotency_key="w")
    started = time.monotonic()
    repeat = write(http, topic, idempotency_key="w")
    if time.monotonic() - started < 0.25:
        assert repeat["deduped"] is True
    fresh = poll(
        lambda: write(http, topic, [{"data": "late"}], idempotency_key="w"),
        lambda body: body["deduped"] is False,
        timeout=5.0,
    )
    head = state(http, topic)["head_seq"]
    assert fresh["seqs"] == [head]
    assert state(http, topic)["count"] == head


def test_idempotent_repeat_on_full_reject_topic_is_deduped(http: httpx.Client, topic: str) -> None:
    """Check order §3.4: idempotent replay comes before the full-topic check."""
    put_topic(http, topic, {"cap_records": 1, "discard": "reject"}, status=201)
    write(http, topic, idempotency_key="once")
    repeat = write(http, topic, idempotency_key="once", status=200)
    assert repeat["deduped"] is True
    assert repeat["seqs"] == [1]


@pytest.mark.parametrize("key", ["k" * 256, "é" * 128, ""])
def test_idempotency_key_length_ok(http: httpx.Client, topic: str, key: str) -> None:
    write(http, topic, idempotency_key=key)
    assert write(http, topic, idempotency_key=key)["deduped"] is True


@pytest.mark.parametrize("key", ["k" * 257, "é" * 129, "€" * 86])
def test_idempotency_key_too_long(http: httpx.Client, topic: str, key: str) -> None:
    body = {"records": [{"data": 1}], "idempotency_key": key}
    assert_error(_post(http, topic, body), 400, "invalid_request")
    assert_error(http.get(f"/v0/topics/{topic}"), 404, "topic_not_found")


def test_idempotency_key_header_too_long(http: httpx.Client, topic: str) -> None:
    resp = _post(http, topic, {"records": [{"data": 1}]}, headers={"Idempotency-Key": "h" * 257})
    assert_error(resp, 400, "invalid_request")
    resp = _post(http, topic, {"records": [{"data": 1}]}, headers={"Idempotency-Key": "h" * 256})
    assert ok(resp, 201)["seqs"] == [1]


@pytest.mark.parametrize("key", [1, True, ["k"], {"k": 1}])
def test_idempotency_key_must_be_a_string(http: httpx.Client, topic: str, key: Any) -> None:
    body = {"records": [{"data": 1}], "idempotency_key": key}
    assert_error(_post(http, topic, body), 400, "invalid_request")


# -- return_seqs, nodes -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "present"),
    [("false", False), ("0", False), ("true", True), ("1", True), ("junk", True)],
)
def test_return_seqs(http: httpx.Client, topic: str, value: str, present: bool) -> None:
    body = write(http, topic, [{"data": 1}, {"data": 2}], params={"return_seqs": value})
    assert ("seqs" in body) is present
    assert (body["first_seq"], body["last_seq"], body["count"]) == (1, 2, 2)
    if present:
        assert body["seqs"] == [1, 2]


def test_batch_node_and_record_override(http: httpx.Client, topic: str) -> None:
    write(
        http,
        topic,
        [{"data": 1}, {"data": 2, "node": "edge-b"}, {"data": 3}],
        node="edge-a",
    )
    write(http, topic, [{"data": 4}, {"data": 5, "node": "solo"}])
    records = diff(http, topic)["records"]
    assert [r.get("$node") for r in records] == ["edge-a", "edge-b", "edge-a", None, "solo"]
    assert "$node" not in records[3]


@pytest.mark.parametrize(
    "body",
    [
        {"records": [{"data": 1, "meta": "m"}]},
        {"records": [{"data": 1, "meta": [1]}]},
        {"records": [{"data": 1, "meta": 3}]},
        {"records": [{"data": 1, "meta": True}]},
        {"records": [{"data": 1}, {"data": 2, "meta": "late"}]},
    ],
)
def test_meta_must_be_an_object(http: httpx.Client, topic: str, body: Any) -> None:
    write_n(http, topic, 1)
    assert_error(_post(http, topic, body), 400, "invalid_request")
    _unchanged(http, topic, 1, 1)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"records": None},
        {"records": {"data": 1}},
        {"records": "x"},
        {"records": []},
        {"records": [1]},
        {"records": [None]},
        {"records": [[{"data": 1}]]},
        {"records": [{"tag": "x"}]},
        {"records": [{"data": 1}, {}]},
        {"records": [{"data": 1, "tag": 5}]},
        {"records": [{"data": 1, "tag": ["a"]}]},
        {"records": [{"data": 1, "node": 5}]},
        {"records": [{"data": 1}], "node": 7},
        {"records": [{"data": 1}], "node": ["a"]},
        {"records": [{"data": 1}], "create": "yes"},
        {"records": [{"data": 1}], "create": 1},
        {"records": [{"data": 1}], "config": "x"},
        {"records": [{"data": 1}], "config": {"discard": "nope"}},
        {"records": [{"data": 1}], "disable_backpressure": "no"},
        [{"data": 1}],
        "records",
        None,
    ],
)
def test_bad_write_bodies_are_400(http: httpx.Client, topic: str, body: Any) -> None:
    write_n(http, topic, 2)
    assert_error(_post(http, topic, body), 400, "invalid_request")
    _unchanged(http, topic, 2, 2)


def test_bad_json_is_400(http: httpx.Client, topic: str) -> None:
    write_n(http, topic, 1)
    headers = {"content-type": "application/json"}
    for raw in (b"", b"{", b'{"records":[{"data":}]}', b'{"records":[{"data":NaN}]}'):
        resp = http.post(f"/v0/topics/{topic}", content=raw, headers=headers)
        assert_error(resp, 400, "invalid_request")
    _unchanged(http, topic, 1, 1)


def test_write_without_json_content_type_is_415(http: httpx.Client, topic: str) -> None:
    raw = b'{"records":[{"data":1}]}'
    assert_error(http.post(f"/v0/topics/{topic}", content=raw), 415, "unsupported_media_type")
    resp = http.post(f"/v0/topics/{topic}", content=raw, headers={"content-type": "text/plain"})
    assert_error(resp, 415, "unsupported_media_type")
    # an empty body is not exempt on writes
    assert_error(http.post(f"/v0/topics/{topic}", content=b""), 415, "unsupported_media_type")
    assert_error(http.get(f"/v0/topics/{topic}"), 404, "topic_not_found")
    resp = http.post(
        f"/v0/topics/{topic}",
        content=raw,
        headers={"content-type": "application/json;charset=UTF-8"},
    )
    assert ok(resp, 201)["seqs"] == [1]


def test_write_is_atomic(http: httpx.Client, topic: str) -> None:
    write_n(http, topic, 3)
    records: list[dict[str, Any]] = [{"data": i} for i in range(5)]
    records[3]["tag"] = "x" * 257
    assert_error(_post(http, topic, {"records": records}), 400, "invalid_request")
    _unchanged(http, topic, 3, 3)
    assert write_n(http, topic, 1)["seqs"] == [4]


# -- default limits on the shared server (§3.2) ------------------------------------


def test_default_meta_key_limit(http: httpx.Client, topic: str) -> None:
    ok_meta = {f"k{i}": i for i in range(64)}
    write(http, topic, [{"data": 1, "meta": ok_meta}])
    bad_meta = {f"k{i}": i for i in range(65)}
    assert_error(
        _post(http, topic, {"records": [{"data": 1, "meta": bad_meta}]}), 400, "invalid_request"
    )
    _unchanged(http, topic, 1, 1)


def test_default_meta_byte_limit(http: httpx.Client, topic: str) -> None:
    filler = "x" * (16384 - len(compact({"k": ""})))
    assert len(compact({"k": filler})) == 16384
    write(http, topic, [{"data": 1, "meta": {"k": filler}}])
    resp = _post(http, topic, {"records": [{"data": 1, "meta": {"k": filler + "x"}}]})
    assert_error(resp, 400, "invalid_request")
    _unchanged(http, topic, 1, 1)


def test_default_tag_and_node_limits(http: httpx.Client, topic: str) -> None:
    write(http, topic, [{"data": 1, "tag": "t" * 256, "node": "n" * 128}])
    write(http, topic, [{"data": 1}], node="é" * 64)
    for body in (
        {"records": [{"data": 1, "tag": "t" * 257}]},
        {"records": [{"data": 1, "tag": "é" * 129}]},
        {"records": [{"data": 1, "node": "n" * 129}]},
        {"records": [{"data": 1}], "node": "n" * 129},
        {"records": [{"data": 1}], "node": "é" * 65},
    ):
        assert_error(_post(http, topic, body), 400, "invalid_request")
    _unchanged(http, topic, 2, 2)


def test_default_record_size_limit(http: httpx.Client, topic: str) -> None:
    limit = 1_048_576
    exact = "x" * (limit - 2)
    write(http, topic, [{"data": exact}])
    assert_error(_post(http, topic, {"records": [{"data": exact + "x"}]}), 400, "record_too_large")
    # data and meta count together
    resp = _post(http, topic, {"records": [{"data": exact, "meta": {}}]})
    assert_error(resp, 400, "record_too_large")
    _unchanged(http, topic, 1, 1)


def test_default_batch_limit(http: httpx.Client, topic: str) -> None:
    write(http, topic, [{"data": 0}] * 10000)
    resp = _post(http, topic, {"records": [{"data": 0}] * 10001})
    assert_error(resp, 400, "batch_too_large")
    _unchanged(http, topic, 10000, 10000)


# -- discard: reject / old (§3.4, §5.3) ------------------------------------------


def test_reject_topic_full_by_records(http: httpx.Client, topic: str) -> None:
    put_topic(http, topic, {"cap_records": 3, "discard": "reject"}, status=201)
    write_n(http, topic, 2)
    err = assert_error(
        _post(http, topic, {"records": [{"data": 1}, {"data": 2}]}), 422, "topic_full"
    )
    assert err["detail"] == {
        "topic": topic,
        "cap_records": 3,
        "cap_bytes": 0,
        "head_seq": 2,
        "earliest_seq": 1,
    }
    _unchanged(http, topic, 2, 2)
    assert write_n(http, topic, 1)["seqs"] == [3]
    err = assert_error(_post(http, topic, {"records": [{"data": 1}]}), 422, "topic_full")
    assert err["detail"]["head_seq"] == 3
    # deleted records free capacity
    ok(http.post(f"/v0/topics/{topic}/delete", json={"before_seq": 2}))
    assert write_n(http, topic, 1)["seqs"] == [4]
    err = assert_error(_post(http, topic, {"records": [{"data": 1}]}), 422, "topic_full")
    assert err["detail"] == {
        "topic": topic,
        "cap_records": 3,
        "cap_bytes": 0,
        "head_seq": 4,
        "earliest_seq": 2,
    }


def test_reject_topic_full_by_bytes(http: httpx.Client, topic: str) -> None:
    put_topic(http, topic, {"cap_bytes": 10, "discard": "reject"}, status=201)
    write(http, topic, [{"data": "abcd"}])  # 6 bytes
    err = assert_error(_post(http, topic, {"records": [{"data": "abcd"}]}), 422, "topic_full")
    assert err["detail"] == {
        "topic": topic,
        "cap_records": 0,
        "cap_bytes": 10,
        "head_seq": 1,
        "earliest_seq": 1,
    }
    write(http, topic, [{"data": "ab"}])  # 4 bytes: exactly 10
    assert state(http, topic)["bytes"] == 10
    _unchanged(http, topic, 2, 2)


def test_reject_batch_larger_than_whole_cap(http: httpx.Client) -> None:
    by_records = unique()
    put_topic(http, by_records, {"cap_records": 3, "discard": "reject"}, status=201)
    resp = _post(http, by_records, {"records": [{"data": i} for i in range(4)]})
    assert_error(resp, 400, "record_too_large")
    _unchanged(http, by_records, 0, 0)
    by_bytes = unique()
    put_topic(http, by_bytes, {"cap_bytes": 10, "discard": "reject"}, status=201)
    resp = _post(http, by_bytes, {"records": [{"data": "123456789"}]})  # 11 bytes
    assert_error(resp, 400, "record_too_large")
    resp = _post(http, by_bytes, {"records": [{"data": "1234"}, {"data": "1234"}]})  # 12 bytes
    assert_error(resp, 400, "record_too_large")
    _unchanged(http, by_bytes, 0, 0)
    write(http, by_bytes, [{"data": "12345678"}])  # exactly 10
    _unchanged(http, by_bytes, 1, 1)


def test_discard_old_evicts_by_records(http: httpx.Client, topic: str) -> None:
    put_topic(http, topic, {"cap_records": 3}, status=201)
    body = write(http, topic, [{"data": i} for i in range(5)])
    assert body["seqs"] == [1, 2, 3, 4, 5]
    got = state(http, topic)
    assert (got["count"], got["earliest_seq"], got["head_seq"]) == (3, 3, 5)
    assert got["bytes"] == 3  # "2", "3", "4"
    write_n(http, topic, 1)
    got = state(http, topic)
    assert (got["count"], got["earliest_seq"], got["head_seq"]) == (3, 4, 6)


def test_discard_old_evicts_by_bytes(http: httpx.Client, topic: str) -> None:
    put_topic(http, topic, {"cap_bytes": 10}, status=201)
    write(http, topic, [{"data": "abcd"}, {"data": "ef"}])  # 6 + 4
    got = state(http, topic)
    assert (got["count"], got["bytes"], got["earliest_seq"]) == (2, 10, 1)
    write(http, topic, [{"data": 7}])  # 1 byte: evict seq 1
    got = state(http, topic)
    assert (got["count"], got["bytes"], got["earliest_seq"]) == (2, 5, 2)
    write(http, topic, [{"data": "0123456789"}])  # 12 bytes: evicts everything
    got = state(http, topic)
    assert got["bytes"] <= 10
    assert got["count"] == 0
    assert got["earliest_seq"] == 5


def test_discard_old_whichever_cap_first(http: httpx.Client, topic: str) -> None:
    put_topic(http, topic, {"cap_records": 4, "cap_bytes": 6}, status=201)
    write(http, topic, [{"data": i} for i in range(8)])  # 1 byte each
    got = state(http, topic)
    assert (got["count"], got["bytes"], got["earliest_seq"]) == (4, 4, 5)
    write(http, topic, [{"data": "ab"}, {"data": "cd"}])  # 4 bytes each
    got = state(http, topic)
    assert (got["count"], got["bytes"], got["earliest_seq"]) == (1, 4, 10)


# -- byte accounting (§3.6) -------------------------------------------------------


def test_byte_accounting_is_compact_utf8(http: httpx.Client, topic: str) -> None:
    raw = (
        b'{"records": [ {"data" : { "a" : "\\u00e9" , "b" : [ 1 , 2 ] } ,'
        b' "meta" : { "k" : "\\u00fc\\ud83d\\ude00" } , "tag": "t", "node": "n" } ,'
        b' {"data": "plain"} ]}'
    )
    resp = http.post(
        f"/v0/topics/{topic}", content=raw, headers={"content-type": "application/json"}
    )
    ok(resp, 201)
    first = len(compact({"a": "é", "b": [1, 2]})) + len(compact({"k": "ü😀"}))
    assert first == len('{"a":"é","b":[1,2]}'.encode()) + len('{"k":"ü😀"}'.encode())
    second = len(b'"plain"')
    got = state(http, topic)
    assert got["bytes"] == first + second
    records = diff(http, topic)["records"]
    assert records[0]["data"] == {"a": "é", "b": [1, 2]}
    assert records[0]["meta"] == {"k": "ü😀"}
    ok(http.post(f"/v0/topics/{topic}/delete", json={"before_seq": 2}))
    assert state(http, topic)["bytes"] == second


@pytest.mark.parametrize(
    "data",
    [
        None,
        True,
        12345,
        "ascii",
        "日本語",
        {"x": [1, {"y": "z"}]},
        [[], {}],
        -0,
        'q"b\\c\u0001\n\t/é😀',
        {"ü": ["ß", {"€": None}]},
    ],
)
def test_byte_accounting_per_value(http: httpx.Client, topic: str, data: Any) -> None:
    write(http, topic, [{"data": data}])
    assert state(http, topic)["bytes"] == len(compact(data))


def test_bytes_count_meta_only_when_present(http: httpx.Client, topic: str) -> None:
    write(http, topic, [{"data": 1}, {"data": 1, "meta": {}}, {"data": 1, "meta": {"a": "é"}}])
    assert state(http, topic)["bytes"] == 1 + (1 + 2) + (1 + len('{"a":"é"}'.encode()))


def test_deleted_records_use_no_capacity(http: httpx.Client, topic: str) -> None:
    """§5.3: under discard:"old", deleted records use no capacity."""
    put_topic(http, topic, {"cap_records": 3}, status=201)
    write(http, topic, [{"data": 1, "tag": "a"}, {"data": 2, "tag": "b"}, {"data": 3, "tag": "c"}])
    ok(http.post(f"/v0/topics/{topic}/delete", json={"match": "b"}))
    write(http, topic, [{"data": 4}])
    got = state(http, topic)
    assert (got["count"], got["earliest_seq"], got["head_seq"]) == (3, 1, 4)
    assert [r["data"] for r in diff(http, topic)["records"]] == [1, 3, 4]


def test_failed_write_does_not_remember_its_idempotency_key(http: httpx.Client, topic: str) -> None:
    """Failed writes publish nothing (§14), so a retry with the same key appends."""
    put_topic(http, topic, {"cap_records": 1, "discard": "reject"}, status=201)
    write(http, topic, [{"data": "first"}])
    resp = _post(http, topic, {"records": [{"data": "second"}], "idempotency_key": "retry"})
    assert_error(resp, 422, "topic_full")
    ok(http.post(f"/v0/topics/{topic}/delete", json={"before_seq": 2}))
    retried = write(http, topic, [{"data": "second"}], idempotency_key="retry")
    assert retried["deduped"] is False
    assert retried["seqs"] == [2]
    assert write(http, topic, [{"data": "x"}], idempotency_key="retry")["deduped"] is True


def test_per_record_limits_come_before_idempotent_replay(http: httpx.Client, topic: str) -> None:
    """Check order (§3.4): batch/per-record checks precede the idempotent replay."""
    write(http, topic, [{"data": 1}], idempotency_key="k")
    resp = _post(http, topic, {"records": [{"data": 1, "tag": "t" * 257}], "idempotency_key": "k"})
    assert_error(resp, 400, "invalid_request")
    resp = _post(http, topic, {"records": [], "idempotency_key": "k"})
    assert_error(resp, 400, "invalid_request")
    resp = _post(http, topic, {"records": [{"data": 1, "meta": 5}], "idempotency_key": "k"})
    assert_error(resp, 400, "invalid_request")
    assert write(http, topic, [{"data": 2}], idempotency_key="k")["deduped"] is True


def test_dollar_fields_in_requests_are_not_trusted(http: httpx.Client, topic: str) -> None:
    before = int(time.time() * 1000)
    write(
        http,
        topic,
        [{"data": {"$seq": 7, "$node": "x"}, "$seq": 99, "$ts": 1, "$node": "fake", "$tag": "t"}],
    )
    after = int(time.time() * 1000)
    record = diff(http, topic, include_tags=True)["records"][0]
    assert record["$seq"] == 1
    assert before - 5 <= record["$ts"] <= after + 5
    assert "$node" not in record
    assert "$tag" not in record
    assert record["data"] == {"$seq": 7, "$node": "x"}


def test_absent_optional_record_fields_are_never_null(http: httpx.Client, topic: str) -> None:
    write(http, topic, [{"data": None}])
    record = diff(http, topic, include_tags=True, include_meta=True)["records"][0]
    assert set(record) == {"$seq", "$ts", "data"}
    assert record["data"] is None


def test_create_queue_on_write(http: httpx.Client, topic: str) -> None:
    body = write(http, topic, [{"data": 1}], status=201, config={"type": "queue"})
    assert body["created"] is True
    got = state(http, topic)
    assert got["type"] == "queue"
    assert got["queue"] == {"ready": 1, "in_flight": 0, "dead_lettered": 0}
