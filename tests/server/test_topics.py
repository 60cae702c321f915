"""Topic lifecycle (SPEC §1, §2): PUT, GET, list, DELETE, recreate."""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx
import pytest

from tests.server._helpers import (
    DEFAULT_CONFIG,
    assert_error,
    create_many,
    diff,
    ok,
    poll,
    put_topic,
    state,
    unique,
    write,
    write_n,
)

# -- PUT /v0/topics/{topic} (§2.1) ---------------------------------------------


def test_put_creates_with_every_default(http: httpx.Client, topic: str) -> None:
    resp = http.put(f"/v0/topics/{topic}", json={})
    body = ok(resp, 201)
    assert body["topic"] == topic
    assert body["created"] is True
    assert body["config"] == DEFAULT_CONFIG
    assert set(body) == {"topic", "created", "config", "performance"}


def test_put_spec_example_billing(http: httpx.Client, topic: str) -> None:
    """The §2.1 example: cap_records 50000 + durable:true echoes the full object."""
    body = put_topic(http, topic, {"cap_records": 50000, "durable": True}, status=201)
    assert body["created"] is True
    assert body["config"] == {
        "type": "log",
        "ttl_ms": 0,
        "cap_records": 50000,
        "cap_bytes": 0,
        "discard": "old",
        "durable": True,
        "durability": "fsync",
        "priority": None,
        "auto_priority": True,
        "auto_create": True,
        "idempotency_window_ms": 120000,
        "dedupe_node": True,
        "lease_ms": 30000,
        "claim_jitter_ms": 0,
        "max_deliveries": 0,
        "dead_letter": None,
        "leases_durable": False,
    }


def test_put_existing_is_200_created_false_even_unchanged(http: httpx.Client, topic: str) -> None:
    put_topic(http, topic, {"cap_records": 7}, status=201)
    again = put_topic(http, topic, {"cap_records": 7}, status=200)
    assert again["created"] is False
    assert again["config"] == {**DEFAULT_CONFIG, "cap_records": 7}


def test_put_replaces_the_whole_config_over_defaults(http: httpx.Client, topic: str) -> None:
    full = {
        "cap_records": 10,
        "cap_bytes": 9999,
        "discard": "reject",
        "durability": "memory",
        "priority": 3,
        "auto_priority": False,
        "auto_create": False,
        "idempotency_window_ms": 5000,
        "dedupe_node": False,
        "lease_ms": 2000,
        "claim_jitter_ms": 10,
        "max_deliveries": 4,
        "dead_letter": "dlq",
        "leases_durable": True,
        "ttl_ms": 3_600_000,
    }
    first = put_topic(http, topic, full, status=201)
    assert first["config"] == {**DEFAULT_CONFIG, **full}
    second = put_topic(http, topic, {"cap_bytes": 100}, status=200)
    assert second["config"] == {**DEFAULT_CONFIG, "cap_bytes": 100}
    assert state(http, topic)["config"] == {**DEFAULT_CONFIG, "cap_bytes": 100}


def test_put_empty_object_resets_to_defaults(http: httpx.Client, topic: str) -> None:
    put_topic(http, topic, {"ttl_ms": 60000, "durable": True}, status=201)
    assert put_topic(http, topic, {}, status=200)["config"] == DEFAULT_CONFIG


@pytest.mark.parametrize(
    ("body", "durable", "durability"),
    [
        ({}, False, "disk"),
        ({"durable": True}, True, "fsync"),
        ({"durable": False}, False, "disk"),
        ({"durability": "ephemeral"}, False, "ephemeral"),
        ({"durability": "memory"}, False, "memory"),
        ({"durability": "disk"}, False, "disk"),
        ({"durability": "fsync"}, True, "fsync"),
        ({"durable": True, "durability": "memory"}, False, "memory"),
        ({"durable": True, "durability": "disk"}, False, "disk"),
        ({"durable": False, "durability": "fsync"}, True, "fsync"),
        ({"durable": None, "durability": None}, False, "disk"),
    ],
)
def test_put_durability_resolution(
    http: httpx.Client, topic: str, body: dict[str, Any], durable: bool, durability: str
) -> None:
    config = put_topic(http, topic, body, status=201)["config"]
    assert config["durable"] is durable
    assert config["durability"] == durability
    got = state(http, topic)["config"]
    assert (got["durable"], got["durability"]) == (durable, durability)


@pytest.mark.parametrize(
    ("field", "sent", "stored"),
    [
        ("lease_ms", 0, 100),
        ("lease_ms", 5, 100),
        ("lease_ms", 100, 100),
        ("lease_ms", 86_400_000, 86_400_000),
        ("lease_ms", 86_400_001, 86_400_000),
        ("lease_ms", 10**15, 86_400_000),
        ("claim_jitter_ms", 0, 0),
        ("claim_jitter_ms", 5000, 5000),
        ("claim_jitter_ms", 5001, 5000),
        ("claim_jitter_ms", 10**12, 5000),
    ],
)
def test_put_clamps(http: httpx.Client, topic: str, field: str, sent: int, stored: int) -> None:
    config = put_topic(http, topic, {field: sent}, status=201)["config"]
    assert config[field] == stored
    assert state(http, topic)["config"][field] == stored


@pytest.mark.parametrize(("priority", "effective"), [(5000, 1000), (-5000, -1000), (7, 7)])
def test_priority_echoed_as_sent_clamped_only_in_effective(
    http: httpx.Client, topic: str, priority: int, effective: int
) -> None:
    assert put_topic(http, topic, {"priority": priority}, status=201)["config"]["priority"] == (
        priority
    )
    got = state(http, topic)
    assert got["config"]["priority"] == priority
    assert got["effective_priority"] == effective


BAD_CONFIGS: list[Any] = [
    {"type": "stream"},
    {"type": 1},
    {"type": "Log"},
    {"discard": "new"},
    {"discard": True},
    {"durability": "ram"},
    {"durability": 3},
    {"durable": "yes"},
    {"durable": 1},
    {"ttl_ms": -1},
    {"ttl_ms": "5"},
    {"ttl_ms": 1.5},
    {"cap_records": True},
    {"cap_bytes": [1]},
    {"idempotency_window_ms": -10},
    {"priority": "high"},
    {"priority": 1.5},
    {"priority": True},
    {"priority": 2**31},
    {"priority": -(2**31) - 1},
    {"auto_priority": "true"},
    {"auto_create": 1},
    {"dedupe_node": "false"},
    {"lease_ms": -5},
    {"claim_jitter_ms": "0"},
    {"max_deliveries": -1},
    {"leases_durable": 0},
    {"dead_letter": 5},
    {"dead_letter": ["dlq"]},
    [],
    "config",
    5,
]


@pytest.mark.parametrize("body", BAD_CONFIGS)
def test_put_bad_field_is_400_and_creates_nothing(
    http: httpx.Client, topic: str, body: Any
) -> None:
    assert_error(http.put(f"/v0/topics/{topic}", json=body), 400, "invalid_request")
    assert_error(http.get(f"/v0/topics/{topic}"), 404, "topic_not_found")


def test_put_bad_field_on_existing_topic_keeps_config(http: httpx.Client, topic: str) -> None:
    put_topic(http, topic, {"cap_records": 3}, status=201)
    assert_error(http.put(f"/v0/topics/{topic}", json={"discard": "x"}), 400, "invalid_request")
    assert state(http, topic)["config"] == {**DEFAULT_CONFIG, "cap_records": 3}


def test_put_bad_json_and_null_body(http: httpx.Client, topic: str) -> None:
    headers = {"content-type": "application/json"}
    for raw in (b"{", b"{'a':1}", b"null", b"nul", b"\xff\xfe"):
        resp = http.put(f"/v0/topics/{topic}", content=raw, headers=headers)
        assert_error(resp, 400, "invalid_request")
    assert_error(http.get(f"/v0/topics/{topic}"), 404, "topic_not_found")


def test_put_empty_body_is_an_empty_object(http: httpx.Client) -> None:
    a, b = unique(), unique()
    resp = http.put(f"/v0/topics/{a}", content=b"")
    assert ok(resp, 201)["config"] == DEFAULT_CONFIG
    # no content-type check for an empty body
    resp = http.put(f"/v0/topics/{b}", content=b"", headers={"content-type": "text/plain"})
    assert ok(resp, 201)["config"] == DEFAULT_CONFIG
    # and on an existing topic it resets to defaults
    put_topic(http, a, {"cap_records": 5}, status=200)
    assert ok(http.put(f"/v0/topics/{a}", content=b""), 200)["config"] == DEFAULT_CONFIG


def test_put_nonempty_body_without_json_content_type_is_415(http: httpx.Client, topic: str) -> None:
    resp = http.put(f"/v0/topics/{topic}", content=b"{}")
    assert_error(resp, 415, "unsupported_media_type")
    resp = http.put(f"/v0/topics/{topic}", content=b"{}", headers={"content-type": "text/json"})
    assert_error(resp, 415, "unsupported_media_type")
    assert_error(http.get(f"/v0/topics/{topic}"), 404, "topic_not_found")
    resp = http.put(
        f"/v0/topics/{topic}",
        content=b"{}",
        headers={"content-type": "application/json; charset=utf-8"},
    )
    ok(resp, 201)


def test_put_ignores_unknown_fields(http: httpx.Client, topic: str) -> None:
    body = put_topic(http, topic, {"bogus": 1, "consistency": "strong"}, status=201)
    assert body["config"] == DEFAULT_CONFIG


def test_type_change_is_409_with_detail(http: httpx.Client, topic: str) -> None:
    put_topic(http, topic, {"type": "queue"}, status=201)
    err = assert_error(http.put(f"/v0/topics/{topic}", json={}), 409, "topic_exists_incompatible")
    assert err["detail"] == {"topic": topic, "existing_type": "queue", "requested_type": "log"}
    # reconfiguring a queue must resend "type":"queue"
    body = put_topic(http, topic, {"type": "queue", "lease_ms": 500}, status=200)
    assert body["config"]["type"] == "queue"
    assert body["config"]["lease_ms"] == 500

    other = unique()
    put_topic(http, other, {}, status=201)
    err = assert_error(
        http.put(f"/v0/topics/{other}", json={"type": "queue", "cap_records": 1}),
        409,
        "topic_exists_incompatible",
    )
    assert err["detail"] == {"topic": other, "existing_type": "log", "requested_type": "queue"}
    assert state(http, other)["config"] == DEFAULT_CONFIG


@pytest.mark.parametrize("bad", ["-dlq", "has space", "a/b", "", "ü", "x" * 256, "_x"])
def test_dead_letter_must_be_a_valid_name(http: httpx.Client, topic: str, bad: str) -> None:
    err = assert_error(
        http.put(f"/v0/topics/{topic}", json={"type": "queue", "dead_letter": bad}),
        400,
        "invalid_request",
    )
    assert err["detail"]["dead_letter"] == bad


def test_dead_letter_rules(http: httpx.Client, topic: str) -> None:
    err = assert_error(
        http.put(f"/v0/topics/{topic}", json={"type": "queue", "dead_letter": topic}),
        400,
        "invalid_request",
    )
    assert err["detail"]["dead_letter"] == topic
    dlq = unique("dlq")
    body = put_topic(http, topic, {"type": "queue", "dead_letter": dlq}, status=201)
    assert body["config"]["dead_letter"] == dlq
    # naming a dead-letter topic does not create it
    assert_error(http.get(f"/v0/topics/{dlq}"), 404, "topic_not_found")
    # the own-name rule applies to queues only
    log = unique()
    assert put_topic(http, log, {"dead_letter": log}, status=201)["config"]["dead_letter"] == log
    assert put_topic(http, log, {"dead_letter": None}, status=200)["config"]["dead_letter"] is None


@pytest.mark.parametrize(
    "path_name",
    [
        "-abc",
        ".abc",
        "_abc",
        ":abc",
        "a%20b",
        "a@b",
        "a+b",
        "%C3%A9",
        "x" * 256,
        "a%3Eb",
    ],
)
def test_put_invalid_name_is_400(http: httpx.Client, path_name: str) -> None:
    assert_error(http.put(f"/v0/topics/{path_name}", json={}), 400, "invalid_request")
    assert_error(http.get(f"/v0/topics/{path_name}"), 404, "topic_not_found")


def test_put_name_with_encoded_slash_is_400(http: httpx.Client) -> None:
    """§0.3: servers percent-decode path segments; `a/b` is an invalid name, not a route."""
    base = unique()
    name = f"{base}%2Fb"
    assert_error(http.put(f"/v0/topics/{name}", json={}), 400, "invalid_request")
    err = assert_error(http.get(f"/v0/topics/{name}"), 404, "topic_not_found")
    assert err["detail"]["topic"] == f"{base}/b"
    resp = http.post(f"/v0/topics/{name}", json={"records": [{"data": 1}]})
    assert_error(resp, 400, "invalid_request")
    assert_error(http.post(f"/v0/topics/{name}/diff", json={}), 404, "topic_not_found")
    resp = http.post(f"/v0/topics/{name}/delete", json={"before_seq": 1})
    assert_error(resp, 404, "topic_not_found")
    assert_error(http.get(f"/v0/topics/{base}"), 404, "topic_not_found")


@pytest.mark.parametrize("suffix", ["", ".b", ":c", "-d", "_e", "A.b:c-D_9", "x" * (255 - 14)])
def test_put_valid_names(http: httpx.Client, suffix: str) -> None:
    name = unique("Z")[:14] + suffix
    assert len(name) <= 255
    body = put_topic(http, name, {}, status=201)
    assert body["topic"] == name
    assert state(http, name)["topic"] == name


def test_put_percent_encoded_valid_name(http: httpx.Client) -> None:
    base = unique()
    body = put_topic(http, f"{base}%3Ax", {}, status=201)
    assert body["topic"] == f"{base}:x"
    assert state(http, f"{base}:x")["topic"] == f"{base}:x"


def test_names_are_case_sensitive(http: httpx.Client) -> None:
    name = unique("Case")
    put_topic(http, name, {}, status=201)
    put_topic(http, name.lower(), {}, status=201)
    write(http, name, [{"data": 1}])
    assert state(http, name)["head_seq"] == 1
    assert state(http, name.lower())["head_seq"] == 0


def test_put_tighter_cap_evicts_at_once(http: httpx.Client, topic: str) -> None:
    write_n(http, topic, 10)
    put_topic(http, topic, {"cap_records": 3}, status=200)
    got = state(http, topic)
    assert (got["count"], got["earliest_seq"], got["head_seq"]) == (3, 8, 10)


# -- GET /v0/topics/{topic} (§2.2) ---------------------------------------------

STATE_FIELDS = {
    "topic",
    "type",
    "head_seq",
    "earliest_seq",
    "next_seq",
    "count",
    "bytes",
    "config",
    "effective_priority",
    "last_write_ts",
    "last_read_ts",
    "performance",
}


def test_state_of_fresh_topic(http: httpx.Client, topic: str) -> None:
    put_topic(http, topic, {}, status=201)
    got = state(http, topic, touch=False)
    assert set(got) == STATE_FIELDS
    assert got["topic"] == topic
    assert got["type"] == "log"
    assert got["head_seq"] == 0
    assert got["earliest_seq"] == 1
    assert got["next_seq"] == 1
    assert got["count"] == 0
    assert got["bytes"] == 0
    assert got["config"] == DEFAULT_CONFIG
    assert got["effective_priority"] == 0
    assert got["last_write_ts"] is None
    assert got["last_read_ts"] is None


def test_state_after_writes(http: httpx.Client, topic: str) -> None:
    before = int(time.time() * 1000)
    write(http, topic, [{"data": "ab"}, {"data": 12}])
    after = int(time.time() * 1000)
    got = state(http, topic, touch=False)
    assert set(got) == STATE_FIELDS
    assert got["head_seq"] == 2
    assert got["next_seq"] == 3
    assert got["earliest_seq"] == 1
    assert got["count"] == 2
    assert got["bytes"] == len(b'"ab"') + len(b"12")
    assert isinstance(got["last_write_ts"], int)
    assert before - 5 <= got["last_write_ts"] <= after + 5
    assert got["last_read_ts"] is None


def test_touch_false_leaves_last_read_ts_and_touch_sets_it(http: httpx.Client, topic: str) -> None:
    put_topic(http, topic, {}, status=201)
    for value in ("false", "0"):
        got = ok(http.get(f"/v0/topics/{topic}", params={"touch": value}))
        assert got["last_read_ts"] is None, value
    before = int(time.time() * 1000)
    http.get(f"/v0/topics/{topic}")  # default touch=true
    got = state(http, topic, touch=False)
    assert isinstance(got["last_read_ts"], int)
    assert got["last_read_ts"] >= before - 5
    assert got["last_write_ts"] is None
    # §1: round(500 × 2^(−idle/30000)) for a topic consumed moments ago
    assert 480 <= got["effective_priority"] <= 500


def test_unparsable_touch_means_default_true(http: httpx.Client, topic: str) -> None:
    put_topic(http, topic, {}, status=201)
    ok(http.get(f"/v0/topics/{topic}", params={"touch": "maybe"}))
    assert state(http, topic, touch=False)["last_read_ts"] is not None


def test_diff_records_the_read(http: httpx.Client, topic: str) -> None:
    put_topic(http, topic, {}, status=201)
    assert state(http, topic, touch=False)["last_read_ts"] is None
    diff(http, topic)
    assert state(http, topic, touch=False)["last_read_ts"] is not None


def test_effective_priority_zero_without_auto_priority(http: httpx.Client, topic: str) -> None:
    put_topic(http, topic, {"auto_priority": False}, status=201)
    diff(http, topic)
    assert state(http, topic)["effective_priority"] == 0


@pytest.mark.parametrize("name", ["missing-topic-xyz", "-invalid", "a%20b", "x" * 300])
def test_state_of_absent_topic_is_404(http: httpx.Client, name: str) -> None:
    if name == "missing-topic-xyz":
        name = unique("missing")
    err = assert_error(http.get(f"/v0/topics/{name}"), 404, "topic_not_found")
    assert err["detail"]["topic"] == name.replace("%20", " ")


def test_state_never_creates(http: httpx.Client, topic: str) -> None:
    assert_error(http.get(f"/v0/topics/{topic}"), 404, "topic_not_found")
    assert_error(http.get(f"/v0/topics/{topic}"), 404, "topic_not_found")


def test_queue_state_carries_counters(http: httpx.Client, topic: str) -> None:
    put_topic(http, topic, {"type": "queue"}, status=201)
    write_n(http, topic, 3)
    got = state(http, topic)
    assert got["type"] == "queue"
    assert set(got) == STATE_FIELDS | {"queue"}
    assert got["queue"] == {"ready": 3, "in_flight": 0, "dead_lettered": 0}
    assert got["config"] == {**DEFAULT_CONFIG, "type": "queue"}


def test_log_state_has_no_queue_key(http: httpx.Client, topic: str) -> None:
    write_n(http, topic, 2)
    assert "queue" not in state(http, topic)


# -- GET /v0/topics (§2.3) -------------------------------------------------------

ENTRY_FIELDS = {
    "topic",
    "head_seq",
    "earliest_seq",
    "count",
    "bytes",
    "durable",
    "effective_priority",
}


def _list(http: httpx.Client, **params: Any) -> dict[str, Any]:
    return ok(http.get("/v0/topics", params=params))


def test_list_with_prefix_sorted(http: httpx.Client) -> None:
    prefix = unique("lp") + "."
    names = [f"{prefix}{s}" for s in ("c", "a", "B", "b:1", "b")]
    for name in names:
        put_topic(http, name, {"durable": name.endswith("a")}, status=201)
    write(http, f"{prefix}c", [{"data": "xyz"}, {"data": 1}])
    put_topic(http, prefix[:-1] + "-other", {}, status=201)
    body = _list(http, prefix=prefix)
    assert set(body) == {"topics", "performance"}
    got = [e["topic"] for e in body["topics"]]
    assert got == sorted(names)
    for entry in body["topics"]:
        assert set(entry) == ENTRY_FIELDS
        assert entry["durable"] is entry["topic"].endswith("a")
        assert isinstance(entry["effective_priority"], int)
    c = next(e for e in body["topics"] if e["topic"] == f"{prefix}c")
    assert (c["head_seq"], c["earliest_seq"], c["count"], c["bytes"]) == (2, 1, 2, 6)
    b = next(e for e in body["topics"] if e["topic"] == f"{prefix}b")
    assert (b["head_seq"], b["earliest_seq"], b["count"], b["bytes"]) == (0, 1, 0, 0)


def test_list_prefix_matching_nothing(http: httpx.Client) -> None:
    body = _list(http, prefix=unique("nothing"))
    assert body["topics"] == []
    assert "next_cursor" not in body


def test_list_without_prefix_is_sorted(http: httpx.Client) -> None:
    put_topic(http, unique(), {}, status=201)
    body = _list(http, page_size="1000")
    names = [e["topic"] for e in body["topics"]]
    assert names == sorted(names)
    assert names


def _pages(http: httpx.Client, prefix: str, page_size: Any) -> list[list[str]]:
    pages: list[list[str]] = []
    params: dict[str, Any] = {"prefix": prefix, "page_size": page_size}
    for _ in range(100):
        body = _list(http, **params)
        pages.append([e["topic"] for e in body["topics"]])
        if "next_cursor" not in body:
            return pages
        cursor = body["next_cursor"]
        assert isinstance(cursor, str)
        assert cursor
        params = {**params, "cursor": cursor}
    raise AssertionError("pagination did not end")


def test_list_pagination(http: httpx.Client) -> None:
    prefix = unique("pg") + "-"
    names = sorted(f"{prefix}{i:02d}" for i in range(7))
    for name in reversed(names):
        put_topic(http, name, {}, status=201)
    assert _pages(http, prefix, 3) == [names[0:3], names[3:6], names[6:7]]
    # an exact multiple: the last full page has no next_cursor only if nothing follows
    pages = _pages(http, prefix, 7)
    assert pages == [names]
    assert _pages(http, prefix, 1) == [[n] for n in names]


@pytest.mark.parametrize(("page_size", "expected"), [("0", 1), ("1", 1), ("2", 2)])
def test_list_page_size_clamped_low(http: httpx.Client, page_size: str, expected: int) -> None:
    prefix = unique("ps") + "-"
    for i in range(3):
        put_topic(http, f"{prefix}{i}", {}, status=201)
    body = _list(http, prefix=prefix, page_size=page_size)
    assert len(body["topics"]) == expected
    assert "next_cursor" in body


@pytest.mark.parametrize("page_size", ["abc", "", "1.5", "1e3"])
def test_list_unparsable_page_size_means_100(http: httpx.Client, page_size: str) -> None:
    prefix = unique("pu") + "-"
    for i in range(3):
        put_topic(http, f"{prefix}{i}", {}, status=201)
    body = _list(http, prefix=prefix, page_size=page_size)
    assert len(body["topics"]) == 3
    assert "next_cursor" not in body


def test_list_default_page_size_100_and_clamp_1000(http: httpx.Client, base_url: str) -> None:
    prefix = unique("big") + "-"
    create_many(base_url, [f"{prefix}{i:04d}" for i in range(1001)])
    body = _list(http, prefix=prefix)
    assert len(body["topics"]) == 100
    assert "next_cursor" in body
    body = _list(http, prefix=prefix, page_size="5000")
    assert len(body["topics"]) == 1000
    assert "next_cursor" in body
    rest = _list(http, prefix=prefix, page_size="5000", cursor=body["next_cursor"])
    assert [e["topic"] for e in rest["topics"]] == [f"{prefix}1000"]
    assert "next_cursor" not in rest


@pytest.mark.parametrize(
    "cursor",
    [
        "!!!not-base64!!!",
        base64.b64encode(b"not json").decode(),
        base64.b64encode(b"[1,2]").decode(),
        base64.b64encode(b'{"after":1}').decode(),
        base64.b64encode(b'{"before":"x"}').decode(),
        base64.b64encode(b'"after"').decode(),
    ],
)
def test_list_corrupt_cursor_is_400(http: httpx.Client, cursor: str) -> None:
    assert_error(http.get("/v0/topics", params={"cursor": cursor}), 400, "invalid_request")


def test_list_touch(http: httpx.Client) -> None:
    prefix = unique("lt") + "-"
    name = f"{prefix}x"
    put_topic(http, name, {}, status=201)
    _list(http, prefix=prefix)
    assert state(http, name, touch=False)["last_read_ts"] is None
    _list(http, prefix=prefix, touch="false")
    assert state(http, name, touch=False)["last_read_ts"] is None
    _list(http, prefix=prefix, touch="true")
    assert state(http, name, touch=False)["last_read_ts"] is not None


# -- DELETE /v0/topics/{topic} (§2.4) --------------------------------------------


def test_delete_absent_topic(http: httpx.Client, topic: str) -> None:
    body = ok(http.delete(f"/v0/topics/{topic}"))
    assert body["topic"] == topic
    assert body["deleted"] is False
    assert body["routers_removed"] == []


def test_delete_topic(http: httpx.Client, topic: str) -> None:
    write_n(http, topic, 3)
    body = ok(http.delete(f"/v0/topics/{topic}"))
    assert body["topic"] == topic
    assert body["deleted"] is True
    assert body["routers_removed"] == []
    assert set(body) == {"topic", "deleted", "routers_removed", "performance"}
    assert_error(http.get(f"/v0/topics/{topic}"), 404, "topic_not_found")
    assert_error(http.post(f"/v0/topics/{topic}/diff", json={}), 404, "topic_not_found")
    again = ok(http.delete(f"/v0/topics/{topic}"))
    assert again["deleted"] is False


def test_delete_if_empty_refuses_non_empty(http: httpx.Client, topic: str) -> None:
    write_n(http, topic, 2)
    for value in ("true", "1"):
        err = assert_error(
            http.delete(f"/v0/topics/{topic}", params={"if_empty": value}), 409, "topic_not_empty"
        )
        assert err["detail"] == {"topic": topic, "count": 2}
    got = state(http, topic)
    assert (got["count"], got["head_seq"]) == (2, 2)
    # if_empty=false or unparsable means the default (false): it deletes
    assert ok(http.delete(f"/v0/topics/{topic}", params={"if_empty": "nope"}))["deleted"] is True


def test_delete_if_empty_on_empty_topics(http: httpx.Client) -> None:
    empty = unique()
    put_topic(http, empty, {}, status=201)
    assert ok(http.delete(f"/v0/topics/{empty}", params={"if_empty": "true"}))["deleted"] is True
    drained = unique()
    write_n(http, drained, 3)
    ok(http.post(f"/v0/topics/{drained}/delete", json={"before_seq": 10}))
    body = ok(http.delete(f"/v0/topics/{drained}", params={"if_empty": "true"}))
    assert body["deleted"] is True
    absent = unique()
    body = ok(http.delete(f"/v0/topics/{absent}", params={"if_empty": "true"}))
    assert body["deleted"] is False


def test_delete_if_empty_applies_pending_ttl_first(http: httpx.Client, topic: str) -> None:
    put_topic(http, topic, {"ttl_ms": 150}, status=201)
    write_n(http, topic, 2)

    def attempt() -> httpx.Response:
        return http.delete(f"/v0/topics/{topic}", params={"if_empty": "true"})

    resp = poll(attempt, lambda r: r.status_code != 409, timeout=5.0)
    assert ok(resp)["deleted"] is True


def test_recreate_restarts_seqs_and_config(http: httpx.Client, topic: str) -> None:
    put_topic(http, topic, {"cap_records": 100, "durable": True}, status=201)
    write(http, topic, [{"data": i} for i in range(5)], idempotency_key="k1")
    ok(http.delete(f"/v0/topics/{topic}"))
    first = write(http, topic, [{"data": "new"}], status=201, idempotency_key="k1")
    assert first["created"] is True
    assert first["deduped"] is False
    assert first["first_seq"] == 1
    assert first["seqs"] == [1]
    got = state(http, topic)
    assert got["config"] == DEFAULT_CONFIG
    assert (got["head_seq"], got["count"], got["earliest_seq"]) == (1, 1, 1)


def test_recreated_tombstone_for_stale_cursor(http: httpx.Client, topic: str) -> None:
    write_n(http, topic, 5)
    ok(http.delete(f"/v0/topics/{topic}"))
    write(http, topic, [{"data": "a"}, {"data": "b"}], status=201)
    body = diff(http, topic, from_seq=5)
    assert body["tombstone"] == {
        "gap_from": 1,
        "gap_to": 2,
        "reason": "recreated",
        "missed_estimate": 2,
        "earliest_seq": 1,
        "head_seq": 2,
    }
    assert [r["data"] for r in body["records"]] == ["a", "b"]
    assert body["next_from_seq"] == 2
    assert body["caught_up"] is True
    # a stale cursor not above the new head is indistinguishable from a valid one
    body = diff(http, topic, from_seq=1)
    assert body["tombstone"] is None
    assert [r["data"] for r in body["records"]] == ["b"]


def test_recreate_by_put(http: httpx.Client, topic: str) -> None:
    write_n(http, topic, 4)
    ok(http.delete(f"/v0/topics/{topic}"))
    assert put_topic(http, topic, {}, status=201)["created"] is True
    got = state(http, topic)
    assert (got["head_seq"], got["earliest_seq"], got["count"], got["next_seq"]) == (0, 1, 0, 1)
    body = diff(http, topic, from_seq=4)
    assert body["tombstone"] == {
        "gap_from": 1,
        "gap_to": 0,
        "reason": "recreated",
        "missed_estimate": 0,
        "earliest_seq": 1,
        "head_seq": 0,
    }
    assert body["records"] == []
    assert body["next_from_seq"] == 0
    assert body["caught_up"] is True
    assert body["lag"] == 0
