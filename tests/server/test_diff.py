"""Diff (SPEC §4) and node loop-prevention (§6)."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest

from tests.server._helpers import (
    assert_error,
    compact,
    diff,
    ok,
    put_topic,
    seqs_of,
    state,
    write,
    write_n,
)

DIFF_FIELDS = {
    "topic",
    "records",
    "next_from_seq",
    "head_seq",
    "earliest_seq",
    "caught_up",
    "tombstone",
    "lag",
    "performance",
}


def _check_invariants(body: dict[str, Any]) -> None:
    assert set(body) == DIFF_FIELDS, body.keys()
    assert body["caught_up"] is (body["next_from_seq"] == body["head_seq"])
    assert body["lag"] == body["head_seq"] - body["next_from_seq"]
    assert isinstance(body["performance"]["records_scanned"], int)
    seqs = seqs_of(body)
    assert seqs == sorted(set(seqs))
    for record in body["records"]:
        assert set(record) <= {"$seq", "$ts", "$node", "$tag", "data", "meta"}
        assert {"$seq", "$ts", "data"} <= set(record)


def test_empty_body_means_defaults(http: httpx.Client, topic: str) -> None:
    write_n(http, topic, 3)
    for headers in ({}, {"content-type": "text/plain"}, {"content-type": "application/json"}):
        body = ok(http.post(f"/v0/topics/{topic}/diff", content=b"", headers=headers))
        _check_invariants(body)
        assert seqs_of(body) == [1, 2, 3]
    body = ok(http.post(f"/v0/topics/{topic}/diff", json={}))
    assert seqs_of(body) == [1, 2, 3]


def test_nonempty_body_without_json_content_type_is_415(http: httpx.Client, topic: str) -> None:
    write_n(http, topic, 1)
    resp = http.post(f"/v0/topics/{topic}/diff", content=b"{}")
    assert_error(resp, 415, "unsupported_media_type")
    resp = http.post(
        f"/v0/topics/{topic}/diff", content=b"{}", headers={"content-type": "text/plain"}
    )
    assert_error(resp, 415, "unsupported_media_type")


def test_spec_example_response(http: httpx.Client, topic: str) -> None:
    """§4.3: seq 13 delivered, seq 14 examined and node-filtered."""
    write_n(http, topic, 12)
    write(http, topic, [{"data": {"qty": 2}}, {"data": {"qty": 3}, "node": "me"}])
    body = diff(http, topic, from_seq=12, node="me")
    _check_invariants(body)
    ts = body["records"][0]["$ts"]
    assert isinstance(ts, int)
    assert body["records"] == [{"$seq": 13, "$ts": ts, "data": {"qty": 2}}]
    assert body["next_from_seq"] == 14
    assert body["head_seq"] == 14
    assert body["earliest_seq"] == 1
    assert body["caught_up"] is True
    assert body["tombstone"] is None
    assert body["lag"] == 0
    assert body["topic"] == topic
    assert body["performance"]["records_scanned"] == 2


def test_from_seq_is_exclusive(http: httpx.Client, topic: str) -> None:
    write_n(http, topic, 5)
    assert seqs_of(diff(http, topic, from_seq=0)) == [1, 2, 3, 4, 5]
    assert seqs_of(diff(http, topic, from_seq=1)) == [2, 3, 4, 5]
    assert seqs_of(diff(http, topic, from_seq=4)) == [5]
    tail = diff(http, topic, from_seq=5)
    _check_invariants(tail)
    assert tail["records"] == []
    assert tail["next_from_seq"] == 5
    assert tail["caught_up"] is True
    assert tail["tombstone"] is None
    assert tail["lag"] == 0


def test_from_zero_starts_at_earliest_live(http: httpx.Client, topic: str) -> None:
    write_n(http, topic, 6)
    ok(http.post(f"/v0/topics/{topic}/delete", json={"before_seq": 4}))
    body = diff(http, topic, from_seq=0)
    assert seqs_of(body) == [4, 5, 6]
    assert body["earliest_seq"] == 4
    assert body["tombstone"] is None


def test_empty_topic(http: httpx.Client, topic: str) -> None:
    put_topic(http, topic, {}, status=201)
    body = diff(http, topic)
    _check_invariants(body)
    assert body["records"] == []
    assert (body["next_from_seq"], body["head_seq"], body["earliest_seq"]) == (0, 0, 1)
    assert body["caught_up"] is True
    assert body["tombstone"] is None
    assert body["lag"] == 0


def test_limit_default_256(http: httpx.Client, topic: str) -> None:
    write_n(http, topic, 300)
    body = diff(http, topic)
    _check_invariants(body)
    assert seqs_of(body) == list(range(1, 257))
    assert body["next_from_seq"] == 256
    assert body["caught_up"] is False
    assert body["lag"] == 44
    assert seqs_of(diff(http, topic, limit=0)) == list(range(1, 257))
    rest = diff(http, topic, from_seq=256)
    assert seqs_of(rest) == list(range(257, 301))
    assert rest["caught_up"] is True


def test_limit_small_and_clamped(http: httpx.Client, topic: str) -> None:
    write(http, topic, [{"data": 0}] * 1100)
    body = diff(http, topic, limit=3)
    assert seqs_of(body) == [1, 2, 3]
    assert body["next_from_seq"] == 3
    assert body["lag"] == 1097
    body = diff(http, topic, limit=5000)
    assert len(body["records"]) == 1000
    assert body["next_from_seq"] == 1000
    body = diff(http, topic, limit=2**32 - 1)
    assert len(body["records"]) == 1000


def test_paging_with_next_from_seq_reads_everything_once(http: httpx.Client, topic: str) -> None:
    write_n(http, topic, 23)
    seen: list[int] = []
    cursor = 0
    for _ in range(50):
        body = diff(http, topic, from_seq=cursor, limit=5)
        _check_invariants(body)
        seen.extend(seqs_of(body))
        cursor = body["next_from_seq"]
        if body["caught_up"]:
            break
    assert seen == list(range(1, 24))


def test_node_filter_string_and_array(http: httpx.Client, topic: str) -> None:
    write(
        http,
        topic,
        [
            {"data": 1, "node": "a"},
            {"data": 2, "node": "b"},
            {"data": 3},
            {"data": 4, "node": "c"},
            {"data": 5, "node": "a"},
        ],
    )
    body = diff(http, topic, node="a")
    assert seqs_of(body) == [2, 3, 4]
    assert body["next_from_seq"] == 5
    assert body["caught_up"] is True
    assert body["performance"]["records_scanned"] == 5
    assert [r.get("$node") for r in body["records"]] == ["b", None, "c"]
    body = diff(http, topic, node=["a", "c"])
    assert seqs_of(body) == [2, 3]
    assert body["next_from_seq"] == 5
    assert seqs_of(diff(http, topic, node=[])) == [1, 2, 3, 4, 5]
    assert seqs_of(diff(http, topic, node="A")) == [1, 2, 3, 4, 5]  # byte-exact
    assert seqs_of(diff(http, topic, node=None)) == [1, 2, 3, 4, 5]


def test_node_filter_only_filtered_records(http: httpx.Client, topic: str) -> None:
    write(http, topic, [{"data": i} for i in range(4)], node="me")
    body = diff(http, topic, node="me")
    _check_invariants(body)
    assert body["records"] == []
    assert body["next_from_seq"] == 4
    assert body["caught_up"] is True
    assert body["tombstone"] is None


def test_dedupe_node_false_ignores_filter(http: httpx.Client, topic: str) -> None:
    put_topic(http, topic, {"dedupe_node": False}, status=201)
    write(http, topic, [{"data": 1}, {"data": 2, "node": "x"}], node="me")
    body = diff(http, topic, node=["me", "x"])
    assert seqs_of(body) == [1, 2]
    assert [r["$node"] for r in body["records"]] == ["me", "x"]


def test_include_tags_and_meta(http: httpx.Client, topic: str) -> None:
    write(
        http,
        topic,
        [
            {"data": 1, "tag": "cart:77", "meta": {"trace": "t9"}, "node": "edge-a"},
            {"data": 2},
        ],
    )
    default = diff(http, topic)["records"]
    assert default[0] == {
        "$seq": 1,
        "$ts": default[0]["$ts"],
        "$node": "edge-a",
        "data": 1,
        "meta": {"trace": "t9"},
    }
    assert default[1] == {"$seq": 2, "$ts": default[1]["$ts"], "data": 2}
    full = diff(http, topic, include_tags=True, include_meta=True)["records"]
    assert full[0] == {
        "$seq": 1,
        "$ts": full[0]["$ts"],
        "$node": "edge-a",
        "$tag": "cart:77",
        "data": 1,
        "meta": {"trace": "t9"},
    }
    assert "$tag" not in full[1]
    bare = diff(http, topic, include_tags=False, include_meta=False)["records"]
    assert bare[0] == {"$seq": 1, "$ts": bare[0]["$ts"], "$node": "edge-a", "data": 1}


# strings JSON must escape (quote, backslash, control characters) next to ones it must not
ODD = ['q"uote', "back\\slash", "ctl\x01\x1f\n", "é中😀", "\u2028\x7f/"]


def test_page_bytes_are_the_compact_json_of_its_records(http: httpx.Client, topic: str) -> None:
    """Records are spliced from their stored JSON: the page must still be exactly the
    compact JSON of its records, odd node and tag strings escaped, across deleted
    holes and node-filtered records."""
    records: list[dict[str, Any]] = []
    for i, text in enumerate(ODD * 2):
        record: dict[str, Any] = {"data": {"i": i, "s": text}, "tag": text}
        if i % 2:
            record["node"] = text
        if i % 3:
            record["meta"] = {"m": text}
        records.append(record)
    records.append({"data": "plain"})
    write(http, topic, records)
    ok(http.post(f"/v0/topics/{topic}/delete", json={"match": ["tag", "Eq", ODD[2]]}))
    for include_tags in (False, True):
        for include_meta in (False, True):
            resp = http.post(
                f"/v0/topics/{topic}/diff",
                json={"include_tags": include_tags, "include_meta": include_meta, "node": ODD[1]},
            )
            page = ok(resp)
            expected = []
            for seq, record in enumerate(records, 1):
                if record.get("tag") == ODD[2] or record.get("node") == ODD[1]:
                    continue
                wire: dict[str, Any] = {"$seq": seq, "$ts": page["records"][len(expected)]["$ts"]}
                if "node" in record:
                    wire["$node"] = record["node"]
                if include_tags and "tag" in record:
                    wire["$tag"] = record["tag"]
                wire["data"] = record["data"]
                if include_meta and "meta" in record:
                    wire["meta"] = record["meta"]
                expected.append(wire)
            assert seqs_of(page) == [w["$seq"] for w in expected]
            assert b'"records":' + compact(expected) + b',"next_from_seq"' in resp.content


def test_next_from_seq_passes_deleted_records(http: httpx.Client, topic: str) -> None:
    write(http, topic, [{"data": i, "tag": "x" if i >= 3 else "keep"} for i in range(6)])
    ok(http.post(f"/v0/topics/{topic}/delete", json={"match": ["tag", "Eq", "x"]}))
    body = diff(http, topic)
    assert seqs_of(body) == [1, 2, 3]
    assert body["next_from_seq"] == 6
    assert body["caught_up"] is True
    assert body["tombstone"] is None
    assert body["earliest_seq"] == 1
    # a cursor in the middle of the deleted tail
    body = diff(http, topic, from_seq=4)
    assert body["records"] == []
    assert body["next_from_seq"] == 6
    assert body["tombstone"] is None


def test_deleted_holes_are_skipped_silently(http: httpx.Client, topic: str) -> None:
    write(http, topic, [{"data": i, "tag": "odd" if i % 2 else "even"} for i in range(1, 9)])
    ok(http.post(f"/v0/topics/{topic}/delete", json={"match": "odd"}))
    body = diff(http, topic, limit=2)
    assert seqs_of(body) == [2, 4]
    assert body["next_from_seq"] == 4
    body = diff(http, topic, from_seq=4, limit=10)
    assert seqs_of(body) == [6, 8]
    assert body["next_from_seq"] == 8


def test_max_batch_bytes(http: httpx.Client, topic: str) -> None:
    write(http, topic, [{"data": "x" * 8}] * 5)  # 10 bytes each
    body = diff(http, topic, max_batch_bytes=25)
    assert seqs_of(body) == [1, 2]
    assert body["next_from_seq"] == 2  # the unfitting record is not passed
    assert body["caught_up"] is False
    body = diff(http, topic, max_batch_bytes=30)
    assert seqs_of(body) == [1, 2, 3]
    # at least one record is always delivered
    body = diff(http, topic, max_batch_bytes=1)
    assert seqs_of(body) == [1]
    assert body["next_from_seq"] == 1
    body = diff(http, topic, from_seq=3, max_batch_bytes=1)
    assert seqs_of(body) == [4]
    # 0 means the default (1 MiB)
    assert seqs_of(diff(http, topic, max_batch_bytes=0)) == [1, 2, 3, 4, 5]


def test_max_batch_bytes_counts_meta(http: httpx.Client, topic: str) -> None:
    write(http, topic, [{"data": 1, "meta": {"k": "vvvv"}}] * 3)  # 1 + 12 bytes
    assert seqs_of(diff(http, topic, max_batch_bytes=26)) == [1, 2]
    assert seqs_of(diff(http, topic, max_batch_bytes=25)) == [1]


def test_max_batch_bytes_clamped_to_8_mib(http: httpx.Client, topic: str) -> None:
    big = "x" * (1_048_576 - 2)  # exactly 1 MiB per record
    for _ in range(3):
        write(http, topic, [{"data": big}] * 3)
    body = diff(http, topic, max_batch_bytes=10**12, limit=100)
    assert seqs_of(body) == list(range(1, 9))
    assert body["next_from_seq"] == 8
    # default: 1 MiB, i.e. one such record
    assert seqs_of(diff(http, topic)) == [1]


def test_records_scanned_includes_skipped(http: httpx.Client, topic: str) -> None:
    write(http, topic, [{"data": i, "node": "me" if i % 2 else "other"} for i in range(10)])
    body = diff(http, topic, node="me")
    assert len(body["records"]) == 5
    assert body["performance"]["records_scanned"] == 10


def test_lag(http: httpx.Client, topic: str) -> None:
    write_n(http, topic, 10)
    body = diff(http, topic, from_seq=2, limit=3)
    assert body["next_from_seq"] == 5
    assert body["lag"] == 5
    assert body["caught_up"] is False


@pytest.mark.parametrize(
    "body",
    [
        {"from_seq": -1},
        {"from_seq": "1"},
        {"from_seq": 1.5},
        {"from_seq": True},
        {"limit": -1},
        {"limit": "10"},
        {"limit": [1]},
        {"node": 5},
        {"node": [1]},
        {"node": ["a", None]},
        {"node": {"a": 1}},
        {"include_tags": "yes"},
        {"include_tags": 1},
        {"include_meta": "false"},
        {"wait_ms": -1},
        {"wait_ms": "10"},
        {"max_batch_bytes": -5},
        {"max_batch_bytes": "big"},
        [],
        "x",
        7,
    ],
)
def test_bad_diff_bodies_are_400(http: httpx.Client, topic: str, body: Any) -> None:
    write_n(http, topic, 1)
    resp = http.post(f"/v0/topics/{topic}/diff", json=body)
    assert_error(resp, 400, "invalid_request")


def test_bad_json_diff_is_400(http: httpx.Client, topic: str) -> None:
    write_n(http, topic, 1)
    for raw in (b"{", b"null", b"[", b'{"from_seq":}'):
        resp = http.post(
            f"/v0/topics/{topic}/diff", content=raw, headers={"content-type": "application/json"}
        )
        assert_error(resp, 400, "invalid_request")


@pytest.mark.parametrize("name", ["absent", "-invalid", "a%20b"])
def test_diff_absent_topic_is_404(http: httpx.Client, topic: str, name: str) -> None:
    path = topic if name == "absent" else name
    err = assert_error(http.post(f"/v0/topics/{path}/diff", json={}), 404, "topic_not_found")
    assert err["detail"]["topic"] == path.replace("%20", " ")
    if name == "absent":
        assert_error(http.get(f"/v0/topics/{topic}"), 404, "topic_not_found")


# -- long-poll -----------------------------------------------------------------------


class _Background:
    """Run one request on its own connection and time it."""

    def __init__(self, base_url: str, path: str, body: dict[str, Any]) -> None:
        self.result: httpx.Response | None = None
        self.elapsed = 0.0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(base_url, path, body))
        self._thread.start()

    def _run(self, base_url: str, path: str, body: dict[str, Any]) -> None:
        started = time.monotonic()
        try:
            with httpx.Client(base_url=base_url, timeout=40.0) as client:
                self.result = client.post(path, json=body)
        except BaseException as exc:  # surfaced by join()
            self.error = exc
        self.elapsed = time.monotonic() - started

    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: float) -> None:
        self._thread.join(timeout)

    def join(self, timeout: float) -> httpx.Response:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the long-poll did not return"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def test_long_poll_is_woken_by_a_write(http: httpx.Client, base_url: str, topic: str) -> None:
    write_n(http, topic, 2)
    poller = _Background(base_url, f"/v0/topics/{topic}/diff", {"from_seq": 2, "wait_ms": 20000})
    # The poll cannot return before the write (no records, 20 s wait); the pause only
    # makes it likely that it is parked when the write lands.
    time.sleep(0.2)
    assert poller.running()
    written = time.monotonic()
    write(http, topic, [{"data": "wake"}])
    resp = poller.join(15.0)
    body = ok(resp)
    returned_after_write = time.monotonic() - written
    assert returned_after_write < 5.0
    assert 0.2 <= poller.elapsed < 10.0
    assert [r["data"] for r in body["records"]] == ["wake"]
    assert body["next_from_seq"] == 3
    assert body["caught_up"] is True


def test_long_poll_woken_by_filtered_write_returns_empty(
    http: httpx.Client, base_url: str, topic: str
) -> None:
    """§4.3: on an append, evaluate once more and return it, possibly still empty."""
    write_n(http, topic, 1)
    poller = _Background(
        base_url, f"/v0/topics/{topic}/diff", {"from_seq": 1, "wait_ms": 20000, "node": "me"}
    )
    deadline = time.monotonic() + 5.0
    while poller.running() and time.monotonic() < deadline:
        write(http, topic, [{"data": "mine"}], node="me")  # each append wakes the poll
        poller.wait(0.1)
    body = ok(poller.join(15.0))
    assert poller.elapsed < 10.0
    assert body["records"] == []
    assert body["tombstone"] is None
    assert body["next_from_seq"] == body["head_seq"] >= 2
    assert body["caught_up"] is True


def test_long_poll_times_out(http: httpx.Client, topic: str) -> None:
    write_n(http, topic, 1)
    started = time.monotonic()
    body = diff(http, topic, from_seq=1, wait_ms=400)
    elapsed = time.monotonic() - started
    assert 0.35 <= elapsed < 5.0
    assert body["records"] == []
    assert body["caught_up"] is True
    assert body["next_from_seq"] == 1


def test_long_poll_returns_at_once_when_records_exist(http: httpx.Client, topic: str) -> None:
    write_n(http, topic, 3)
    started = time.monotonic()
    body = diff(http, topic, from_seq=1, wait_ms=20000)
    assert time.monotonic() - started < 5.0
    assert seqs_of(body) == [2, 3]
    # a huge wait_ms is clamped, never rejected
    body = diff(http, topic, from_seq=0, wait_ms=2**32 - 1)
    assert seqs_of(body) == [1, 2, 3]


def test_long_poll_does_not_wait_with_a_tombstone(http: httpx.Client, topic: str) -> None:
    write_n(http, topic, 2)
    started = time.monotonic()
    body = diff(http, topic, from_seq=50, wait_ms=20000)
    assert time.monotonic() - started < 5.0
    assert body["tombstone"] is not None
    assert body["tombstone"]["reason"] == "recreated"


def test_diff_never_creates(http: httpx.Client, topic: str) -> None:
    assert_error(http.post(f"/v0/topics/{topic}/diff", content=b""), 404, "topic_not_found")
    assert_error(http.get(f"/v0/topics/{topic}"), 404, "topic_not_found")


def test_state_and_diff_agree(http: httpx.Client, topic: str) -> None:
    write_n(http, topic, 4)
    got = state(http, topic)
    body = diff(http, topic)
    assert (body["head_seq"], body["earliest_seq"]) == (got["head_seq"], got["earliest_seq"])


def test_filtered_scan_examines_at_least_limit_seqs(http: httpx.Client, topic: str) -> None:
    """§4.2: an empty batch only after examining at least `limit` seqs or reaching head."""
    write(http, topic, [{"data": i} for i in range(300)], node="me")
    write(http, topic, [{"data": "other"}])
    cursor, delivered = 0, []
    for _ in range(400):
        body = diff(http, topic, from_seq=cursor, node="me", limit=5)
        _check_invariants(body)
        if not body["records"]:
            assert body["caught_up"] or body["next_from_seq"] - cursor >= 5
        delivered.extend(seqs_of(body))
        assert body["next_from_seq"] > cursor or body["caught_up"]
        cursor = body["next_from_seq"]
        if body["caught_up"]:
            break
    assert delivered == [301]
    assert cursor == 301


def test_one_write_wakes_every_parked_poll(http: httpx.Client, base_url: str, topic: str) -> None:
    write_n(http, topic, 1)
    pollers = [
        _Background(base_url, f"/v0/topics/{topic}/diff", {"from_seq": 1, "wait_ms": 20000})
        for _ in range(3)
    ]
    time.sleep(0.2)  # the pollers cannot return before the write either way
    assert all(p.running() for p in pollers)
    write(http, topic, [{"data": "all"}])
    for p in pollers:
        body = ok(p.join(15.0))
        assert p.elapsed < 10.0
        assert [r["data"] for r in body["records"]] == ["all"]
