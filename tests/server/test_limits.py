"""Configurable limits (SPEC §3.2, §13, §15) on private servers with small caps."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.server._helpers import assert_error, compact, ok, put_topic, state, unique, write
from tests.serverproc import ServerProcess

LIMITS = {
    "TOPICS_MAX_BATCH_RECORDS": "5",
    "TOPICS_MAX_RECORD_BYTES": "50",
    "TOPICS_MAX_META_BYTES": "20",
    "TOPICS_MAX_TAG_BYTES": "8",
    "TOPICS_MAX_NODE_BYTES": "6",
    "TOPICS_MAX_BODY_BYTES": "2000",
    "TOPICS_MAX_LIMIT": "10",
}


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    data_dir = tmp_path_factory.mktemp("limited") / "data"
    with (
        ServerProcess(data_dir=data_dir, env=LIMITS) as proc,
        httpx.Client(base_url=proc.url, timeout=30.0) as client,
    ):
        yield client


def _post(http: httpx.Client, topic: str, body: Any) -> httpx.Response:
    return http.post(
        f"/v0/topics/{topic}",
        content=json.dumps(body, ensure_ascii=False).encode(),
        headers={"content-type": "application/json"},
    )


def _count(http: httpx.Client, topic: str) -> tuple[int, int]:
    got = state(http, topic, touch=False)
    return got["head_seq"], got["count"]


def test_batch_records_limit(limited: httpx.Client) -> None:
    topic = unique()
    write(limited, topic, [{"data": i} for i in range(5)])
    err = assert_error(
        _post(limited, topic, {"records": [{"data": i} for i in range(6)]}), 400, "batch_too_large"
    )
    assert isinstance(err["message"], str)
    assert _count(limited, topic) == (5, 5)
    # an empty batch is invalid_request, not batch_too_large
    assert_error(_post(limited, topic, {"records": []}), 400, "invalid_request")


def test_batch_limit_checked_before_topic_resolution(limited: httpx.Client) -> None:
    topic = unique()
    body = {"records": [{"data": i} for i in range(6)], "create": False}
    assert_error(_post(limited, topic, body), 400, "batch_too_large")
    assert_error(limited.get(f"/v0/topics/{topic}"), 404, "topic_not_found")


def test_record_bytes_limit(limited: httpx.Client) -> None:
    topic = unique()
    exact = "x" * 48  # "x…x" with quotes: 50 bytes
    assert len(compact(exact)) == 50
    write(limited, topic, [{"data": exact}])
    assert_error(
        _post(limited, topic, {"records": [{"data": exact + "x"}]}), 400, "record_too_large"
    )
    # non-ASCII counts in UTF-8 bytes: 25 two-byte chars + quotes = 52
    assert_error(_post(limited, topic, {"records": [{"data": "é" * 25}]}), 400, "record_too_large")
    write(limited, topic, [{"data": "é" * 24}])  # 50 bytes
    # data and meta together: 40 + 11 = 51
    body = {"records": [{"data": "x" * 38, "meta": {"k": "abc"}}]}
    assert len(compact("x" * 38)) + len(compact({"k": "abc"})) == 51
    assert_error(_post(limited, topic, body), 400, "record_too_large")
    # one bad record fails the whole batch
    body = {"records": [{"data": 1}, {"data": exact + "x"}, {"data": 2}]}
    assert_error(_post(limited, topic, body), 400, "record_too_large")
    assert _count(limited, topic) == (2, 2)


def test_per_record_limits_checked_before_topic_resolution(limited: httpx.Client) -> None:
    """Check order (§3.4): per-record limits before topic resolution/creation."""
    topic = unique()
    body = {"records": [{"data": "x" * 60}], "create": False}
    assert_error(_post(limited, topic, body), 400, "record_too_large")
    body = {"records": [{"data": "x" * 60}]}
    assert_error(_post(limited, "-invalid-name", body), 400, "record_too_large")
    assert_error(limited.get(f"/v0/topics/{topic}"), 404, "topic_not_found")


def test_meta_bytes_limit(limited: httpx.Client) -> None:
    topic = unique()
    meta = {"k": "x" * 12}  # {"k":"xxxxxxxxxxxx"} = 20 bytes
    assert len(compact(meta)) == 20
    write(limited, topic, [{"data": 1, "meta": meta}])
    too_big = {"k": "x" * 13}
    assert_error(
        _post(limited, topic, {"records": [{"data": 1, "meta": too_big}]}), 400, "invalid_request"
    )
    multibyte = {"k": "é" * 7}  # 8 + 14 = 22 bytes
    assert_error(
        _post(limited, topic, {"records": [{"data": 1, "meta": multibyte}]}), 400, "invalid_request"
    )
    assert _count(limited, topic) == (1, 1)


def test_tag_bytes_limit(limited: httpx.Client) -> None:
    topic = unique()
    write(limited, topic, [{"data": 1, "tag": "t" * 8}, {"data": 2, "tag": "é" * 4}])
    for tag in ("t" * 9, "é" * 5, "€" * 3):
        assert_error(
            _post(limited, topic, {"records": [{"data": 1, "tag": tag}]}), 400, "invalid_request"
        )
    assert _count(limited, topic) == (2, 2)


def test_node_bytes_limit(limited: httpx.Client) -> None:
    topic = unique()
    write(limited, topic, [{"data": 1, "node": "n" * 6}], node="é" * 3)
    for body in (
        {"records": [{"data": 1, "node": "n" * 7}]},
        {"records": [{"data": 1}], "node": "n" * 7},
        {"records": [{"data": 1}], "node": "é" * 4},
        {"records": [{"data": 1, "node": "ok"}], "node": "n" * 7},
    ):
        assert_error(_post(limited, topic, body), 400, "invalid_request")
    assert _count(limited, topic) == (1, 1)


def test_body_limit_is_413(limited: httpx.Client) -> None:
    topic = unique()
    write(limited, topic, [{"data": "x" * 40}] * 5)  # well under 2000 bytes
    big = json.dumps({"records": [{"data": "x" * 2100}]}).encode()
    resp = limited.post(
        f"/v0/topics/{topic}", content=big, headers={"content-type": "application/json"}
    )
    assert_error(resp, 413, "payload_too_large")
    # refused before parsing: even invalid JSON over the limit is 413
    resp = limited.post(
        f"/v0/topics/{topic}", content=b"{" * 3000, headers={"content-type": "application/json"}
    )
    assert_error(resp, 413, "payload_too_large")
    # PUT and diff too
    resp = limited.put(
        f"/v0/topics/{topic}", content=b" " * 3000, headers={"content-type": "application/json"}
    )
    assert_error(resp, 413, "payload_too_large")
    resp = limited.post(
        f"/v0/topics/{topic}/diff",
        content=b" " * 3000,
        headers={"content-type": "application/json"},
    )
    assert_error(resp, 413, "payload_too_large")
    assert _count(limited, topic) == (5, 5)


def test_chunked_body_over_limit_is_413(limited: httpx.Client) -> None:
    topic = unique()

    def chunks() -> Iterator[bytes]:
        yield b'{"records":[{"data":"'
        for _ in range(30):
            yield b"x" * 100
        yield b'"}]}'

    resp = limited.post(
        f"/v0/topics/{topic}", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_error(resp, 413, "payload_too_large")
    assert_error(limited.get(f"/v0/topics/{topic}"), 404, "topic_not_found")


def test_chunked_body_under_limit_is_accepted(limited: httpx.Client) -> None:
    topic = unique()

    def chunks() -> Iterator[bytes]:
        yield b'{"records":[{"data":'
        yield b'"abc"}'
        yield b"]}"

    resp = limited.post(
        f"/v0/topics/{topic}", content=chunks(), headers={"content-type": "application/json"}
    )
    assert ok(resp, 201)["seqs"] == [1]


# -- resource caps (§13) -------------------------------------------------------------


def test_max_total_bytes(server_factory: Callable[..., ServerProcess]) -> None:
    proc = server_factory(env={"TOPICS_MAX_TOTAL_BYTES": "100"})
    with httpx.Client(base_url=proc.url, timeout=30.0) as http:
        a, b = unique(), unique()
        write(http, a, [{"data": "x" * 58}])  # 60 bytes
        resp = _post(http, b, {"records": [{"data": "x" * 48}]})  # 50 bytes: over 100
        err = assert_error(resp, 429, "throttled")
        assert err["detail"]["limit"] == "max_total_bytes"
        assert err["detail"]["max"] == 100
        assert resp.headers["retry-after"] == "1"
        resp = _post(http, a, {"records": [{"data": "x" * 48}]})
        assert_error(resp, 429, "throttled")
        assert _count(http, a) == (1, 1)
        write(http, a, [{"data": "x" * 38}])  # 40 more: exactly 100
        assert state(http, a)["bytes"] == 100
        assert_error(_post(http, a, {"records": [{"data": 1}]}), 429, "throttled")
        # freeing bytes by deleting records makes room again
        ok(http.post(f"/v0/topics/{a}/delete", json={"before_seq": 2}))
        write(http, b, [{"data": "x" * 48}])
        ok(http.delete(f"/v0/topics/{a}"))
        write(http, b, [{"data": "x" * 38}])


def test_max_total_bytes_comes_after_idempotent_replay(
    server_factory: Callable[..., ServerProcess],
) -> None:
    proc = server_factory(env={"TOPICS_MAX_TOTAL_BYTES": "10"})
    with httpx.Client(base_url=proc.url, timeout=30.0) as http:
        topic = unique()
        write(http, topic, [{"data": "12345678"}], idempotency_key="k")
        repeat = write(http, topic, [{"data": "12345678"}], idempotency_key="k")
        assert repeat["deduped"] is True
        assert_error(_post(http, topic, {"records": [{"data": 1}]}), 429, "throttled")


def test_full_topic_check_comes_before_total_bytes(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """Check order (§3.4): full-topic checks precede the total-bytes quota."""
    proc = server_factory(env={"TOPICS_MAX_TOTAL_BYTES": "10"})
    with httpx.Client(base_url=proc.url, timeout=30.0) as http:
        topic = unique()
        put_topic(http, topic, {"cap_records": 1, "discard": "reject"}, status=201)
        write(http, topic, [{"data": "12345678"}])  # 10 bytes: quota and cap both full
        assert_error(_post(http, topic, {"records": [{"data": 1}]}), 422, "topic_full")
        resp = _post(http, topic, {"records": [{"data": 1}, {"data": 2}]})
        assert_error(resp, 400, "record_too_large")


def test_max_topics(server_factory: Callable[..., ServerProcess]) -> None:
    proc = server_factory(env={"TOPICS_MAX_TOPICS": "3"})
    with httpx.Client(base_url=proc.url, timeout=30.0) as http:
        names = [unique() for _ in range(4)]
        put_topic(http, names[0], {}, status=201)
        write(http, names[1], status=201)
        write(http, names[2], status=201, create=True, config={"cap_records": 5})
        resp = http.put(f"/v0/topics/{names[3]}", json={})
        err = assert_error(resp, 429, "throttled")
        assert err["detail"] == {"limit": "max_topics", "max": 3}
        assert resp.headers["retry-after"] == "1"
        resp = _post(http, names[3], {"records": [{"data": 1}]})
        err = assert_error(resp, 429, "throttled")
        assert err["detail"]["limit"] == "max_topics"
        assert_error(http.get(f"/v0/topics/{names[3]}"), 404, "topic_not_found")
        # re-PUTs of existing topics never count
        put_topic(http, names[0], {"cap_records": 9}, status=200)
        write(http, names[1], status=200)
        ok(http.delete(f"/v0/topics/{names[0]}"))
        put_topic(http, names[3], {}, status=201)
        assert http.get("/v0/ready").json()["topics"] == 3


@pytest.mark.parametrize(
    ("var", "default"), [("TOPICS_MAX_TOPICS", 100_000), ("TOPICS_MAX_TOTAL_BYTES", 0)]
)
def test_unparsable_resource_cap_means_default(
    server_factory: Callable[..., ServerProcess], var: str, default: int
) -> None:
    """§13: env values are unsigned integers; unparsable → the default, with a warning that
    names the variable (start-up goes on)."""
    from topics_server.settings import Settings

    field = var.removeprefix("TOPICS_").lower()
    settings = Settings.from_env(env={var: "lots"})
    assert getattr(settings, field) == default
    assert len(settings.warnings) == 1 and var in settings.warnings[0]
    proc = server_factory(env={var: "lots"})
    with httpx.Client(base_url=proc.url, timeout=30.0) as http:
        write(http, unique(), [{"data": "x" * 200}], status=201)
    assert var in proc.log() and f"default {default}" in proc.log()


def test_zero_disables_resource_caps(server_factory: Callable[..., ServerProcess]) -> None:
    """§13: ``0`` disables a cap. The same writes that a cap of 2 topics / 1500 bytes stops
    all pass with 0 (read as 0, not as the default: no warning)."""
    from topics_server.settings import Settings

    zero = {"TOPICS_MAX_TOPICS": "0", "TOPICS_MAX_TOTAL_BYTES": "0"}
    settings = Settings.from_env(env=zero)
    assert (settings.max_topics, settings.max_total_bytes, settings.warnings) == (0, 0, ())

    def three_writes(http: httpx.Client) -> list[int]:
        return [
            _post(http, unique(), {"records": [{"data": "x" * 1000}]}).status_code for _ in range(3)
        ]

    capped = server_factory(env={"TOPICS_MAX_TOPICS": "2", "TOPICS_MAX_TOTAL_BYTES": "1500"})
    with httpx.Client(base_url=capped.url, timeout=30.0) as http:
        assert three_writes(http)[1:] != [201, 201]  # a cap is enforced...
    proc = server_factory(env=zero)
    with httpx.Client(base_url=proc.url, timeout=30.0) as http:
        assert three_writes(http) == [201, 201, 201]  # ...and 0 turns both off


def test_max_limit_env_clamps_diff(limited: httpx.Client) -> None:
    """§15: TOPICS_MAX_LIMIT bounds a diff's `limit` (and the default 256)."""
    topic = unique()
    write(limited, topic, [{"data": i} for i in range(5)])
    write(limited, topic, [{"data": i} for i in range(5, 10)])
    write(limited, topic, [{"data": i} for i in range(10, 15)])
    for body in ({}, {"limit": 0}, {"limit": 50}, {"limit": 10}):
        got = ok(limited.post(f"/v0/topics/{topic}/diff", json=body))
        assert [r["$seq"] for r in got["records"]] == list(range(1, 11)), body
        assert got["next_from_seq"] == 10
    got = ok(limited.post(f"/v0/topics/{topic}/diff", json={"limit": 3}))
    assert len(got["records"]) == 3
