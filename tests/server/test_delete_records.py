"""Record deletion (SPEC §7)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.server._helpers import assert_error, compact, diff, ok, state, write, write_n

DELETE_FIELDS = {"topic", "deleted", "earliest_seq", "head_seq", "count", "bytes", "performance"}


def _delete(http: httpx.Client, topic: str, body: Any) -> httpx.Response:
    return http.post(f"/v0/topics/{topic}/delete", json=body)


def _seed(http: httpx.Client, topic: str) -> list[str | None]:
    tags: list[str | None] = [
        "cart:1",
        "cart:2",
        "order:1",
        None,
        "cart:1",
        "cart",
        "Cart:1",
        "order:*",
        "",
        "cart:10",
    ]
    records = [{"data": i} if t is None else {"data": i, "tag": t} for i, t in enumerate(tags)]
    write(http, topic, records)
    return tags


def _live_tags(http: httpx.Client, topic: str) -> list[Any]:
    return [r.get("$tag") for r in diff(http, topic, include_tags=True)["records"]]


def test_before_seq(http: httpx.Client, topic: str) -> None:
    write(http, topic, [{"data": "x" * i} for i in range(1, 15)])
    body = ok(_delete(http, topic, {"before_seq": 4}))
    assert set(body) == DELETE_FIELDS
    assert body["topic"] == topic
    assert body["deleted"] == 3
    assert body["earliest_seq"] == 4
    assert body["head_seq"] == 14
    assert body["count"] == 11
    expected_bytes = sum(len(compact("x" * i)) for i in range(4, 15))
    assert body["bytes"] == expected_bytes
    got = state(http, topic)
    assert (got["count"], got["bytes"], got["earliest_seq"]) == (11, expected_bytes, 4)
    again = ok(_delete(http, topic, {"before_seq": 4}))
    assert again["deleted"] == 0
    assert again["count"] == 11


def test_before_seq_edges(http: httpx.Client, topic: str) -> None:
    write_n(http, topic, 5)
    assert ok(_delete(http, topic, {"before_seq": 0}))["deleted"] == 0
    assert ok(_delete(http, topic, {"before_seq": 1}))["deleted"] == 0
    body = ok(_delete(http, topic, {"before_seq": 2**64 - 1}))
    assert body["deleted"] == 5
    assert (body["count"], body["bytes"], body["earliest_seq"], body["head_seq"]) == (0, 0, 6, 5)
    # deletes are permanent and seqs continue
    assert write_n(http, topic, 1)["seqs"] == [6]
    got = state(http, topic)
    assert (got["count"], got["earliest_seq"], got["head_seq"]) == (1, 6, 6)
    assert [r["$seq"] for r in diff(http, topic)["records"]] == [6]


def test_match_eq_tuple(http: httpx.Client, topic: str) -> None:
    tags = _seed(http, topic)
    body = ok(_delete(http, topic, {"match": ["tag", "Eq", "cart:1"]}))
    assert body["deleted"] == 2
    assert body["count"] == 8
    assert _live_tags(http, topic) == [t for t in tags if t != "cart:1"]


def test_match_eq_is_exact_and_literal(http: httpx.Client, topic: str) -> None:
    tags = _seed(http, topic)
    assert ok(_delete(http, topic, {"match": ["tag", "Eq", "order:*"]}))["deleted"] == 1
    assert ok(_delete(http, topic, {"match": ["tag", "Eq", ""]}))["deleted"] == 1
    assert ok(_delete(http, topic, {"match": ["tag", "Eq", "nope"]}))["deleted"] == 0
    assert _live_tags(http, topic) == [t for t in tags if t not in ("order:*", "")]


def test_match_glob_tuple(http: httpx.Client, topic: str) -> None:
    tags = _seed(http, topic)
    body = ok(_delete(http, topic, {"match": ["tag", "Glob", "cart:*"]}))
    assert body["deleted"] == 4  # cart:1, cart:2, cart:1, cart:10
    assert _live_tags(http, topic) == [t for t in tags if not (t or "").startswith("cart:")]


def test_match_glob_star_matches_every_tagged_record(http: httpx.Client, topic: str) -> None:
    tags = _seed(http, topic)
    body = ok(_delete(http, topic, {"match": ["tag", "Glob", "*"]}))
    assert body["deleted"] == sum(1 for t in tags if t is not None)
    # untagged records never match
    assert _live_tags(http, topic) == [None]


@pytest.mark.parametrize(
    ("match", "removed"),
    [
        ("cart:1", {"cart:1"}),
        ("cart", {"cart"}),
        ("cart*", {"cart:1", "cart:2", "cart", "cart:10"}),
        ("order:*", {"order:1", "order:*"}),
        ("*", {"cart:1", "cart:2", "order:1", "cart", "Cart:1", "order:*", "", "cart:10"}),
        ("", {""}),
    ],
)
def test_bare_string_predicate(
    http: httpx.Client, topic: str, match: str, removed: set[str]
) -> None:
    tags = _seed(http, topic)
    body = ok(_delete(http, topic, {"match": match}))
    assert body["deleted"] == sum(1 for t in tags if t in removed)
    assert _live_tags(http, topic) == [t for t in tags if t not in removed]


def test_before_seq_and_match_are_anded(http: httpx.Client, topic: str) -> None:
    tags = _seed(http, topic)
    body = ok(_delete(http, topic, {"match": ["tag", "Glob", "cart:*"], "before_seq": 5}))
    assert body["deleted"] == 2  # seqs 1, 2; seq 5 is not < 5
    live = diff(http, topic, include_tags=True)["records"]
    assert [r["$seq"] for r in live] == [3, 4, 5, 6, 7, 8, 9, 10]
    assert [r.get("$tag") for r in live] == tags[2:]


def test_match_is_point_in_time(http: httpx.Client, topic: str) -> None:
    write(http, topic, [{"data": 1, "tag": "x"}, {"data": 2, "tag": "x"}])
    assert ok(_delete(http, topic, {"match": "x"}))["deleted"] == 2
    write(http, topic, [{"data": 3, "tag": "x"}])
    body = diff(http, topic, include_tags=True)
    assert [(r["$seq"], r["$tag"]) for r in body["records"]] == [(3, "x")]
    before = ok(_delete(http, topic, {"before_seq": 3}))
    assert before["deleted"] == 0
    write(http, topic, [{"data": 4}])
    assert [r["$seq"] for r in diff(http, topic)["records"]] == [3, 4]


def test_deletion_is_immediate_for_readers(http: httpx.Client, topic: str) -> None:
    write(http, topic, [{"data": "aa", "tag": "a"}, {"data": "b", "tag": "b"}, {"data": 1}])
    body = ok(_delete(http, topic, {"match": ["tag", "Eq", "b"]}))
    assert (body["deleted"], body["count"], body["bytes"], body["earliest_seq"]) == (1, 2, 5, 1)
    got = state(http, topic)
    assert (got["count"], got["bytes"]) == (2, 5)
    read = diff(http, topic)
    assert [r["$seq"] for r in read["records"]] == [1, 3]
    assert read["tombstone"] is None


def test_delete_spec_example_shape(http: httpx.Client, topic: str) -> None:
    """§7: 14 records, deleting 3 leaves earliest 4, head 14, count 11."""
    write(http, topic, [{"data": i, "tag": "old" if i < 3 else "new"} for i in range(14)])
    body = ok(_delete(http, topic, {"match": ["tag", "Eq", "old"]}))
    assert {k: v for k, v in body.items() if k not in ("performance", "bytes")} == {
        "topic": topic,
        "deleted": 3,
        "earliest_seq": 4,
        "head_seq": 14,
        "count": 11,
    }
    assert body["bytes"] == sum(len(compact(i)) for i in range(3, 14))


BAD_PREDICATES: list[Any] = [
    ["tag", "Eq"],
    ["tag", "Eq", "x", "y"],
    ["tag", "Eq", 1],
    [1, "Eq", "x"],
    ["tag", None, "x"],
    ["name", "Eq", "x"],
    ["Tag", "Eq", "x"],
    ["tag", "eq", "x"],
    ["tag", "Prefix", "x"],
    ["tag", "Regex", "x.*"],
    ["tag", "Glob", "cart"],
    ["tag", "Glob", ""],
    ["tag", "Glob", "ca*rt"],
    ["tag", "Glob", "*cart"],
    ["tag", "Glob", "cart**"],
    "ca*rt*",
    "**",
    [],
    {"tag": "x"},
    5,
    True,
]


@pytest.mark.parametrize("match", BAD_PREDICATES)
def test_bad_predicates_are_400(http: httpx.Client, topic: str, match: Any) -> None:
    _seed(http, topic)
    assert_error(_delete(http, topic, {"match": match}), 400, "invalid_request")
    assert state(http, topic)["count"] == 10


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"before_seq": None},
        {"match": None},
        {"before_seq": -1},
        {"before_seq": "5"},
        {"before_seq": 1.5},
        {"before_seq": True},
        {"unrelated": 1},
        [],
        "before_seq",
    ],
)
def test_bad_delete_bodies_are_400(http: httpx.Client, topic: str, body: Any) -> None:
    write_n(http, topic, 3)
    assert_error(_delete(http, topic, body), 400, "invalid_request")
    assert state(http, topic)["count"] == 3


def test_delete_needs_json(http: httpx.Client, topic: str) -> None:
    write_n(http, topic, 2)
    resp = http.post(f"/v0/topics/{topic}/delete", content=b'{"before_seq":5}')
    assert_error(resp, 415, "unsupported_media_type")
    # no empty-body exemption on record delete
    assert_error(
        http.post(f"/v0/topics/{topic}/delete", content=b""), 415, "unsupported_media_type"
    )
    resp = http.post(
        f"/v0/topics/{topic}/delete", content=b"", headers={"content-type": "application/json"}
    )
    assert_error(resp, 400, "invalid_request")
    resp = http.post(
        f"/v0/topics/{topic}/delete", content=b"{", headers={"content-type": "application/json"}
    )
    assert_error(resp, 400, "invalid_request")
    assert state(http, topic)["count"] == 2


@pytest.mark.parametrize("name", ["absent", "-invalid"])
def test_delete_records_on_absent_topic_is_404(http: httpx.Client, topic: str, name: str) -> None:
    path = topic if name == "absent" else name
    err = assert_error(_delete(http, path, {"before_seq": 5}), 404, "topic_not_found")
    assert err["detail"]["topic"] == path
    assert_error(http.get(f"/v0/topics/{path}"), 404, "topic_not_found")


def test_delete_does_not_affect_other_topics(http: httpx.Client, topic: str) -> None:
    other = topic + "-other"
    write(http, topic, [{"data": 1, "tag": "x"}])
    write(http, other, [{"data": 1, "tag": "x"}])
    ok(_delete(http, topic, {"match": "x"}))
    assert state(http, other)["count"] == 1
