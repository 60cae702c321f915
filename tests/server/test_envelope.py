"""Routing, the error envelope and the performance block (SPEC §0.2, §0.4, §0.6, §0.7)."""

from __future__ import annotations

import httpx
import pytest

from tests.server._helpers import assert_error, check_envelope, ok, put_topic, write


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/v0",
        "/v0/",
        "/v0/nope",
        "/v1/topics",
        "/v0/topic",
        "/v0/topics/x/unknown",
        "/v0/topics/x/diff/more",
        "/v0/topics/x/y/z",
        "/v0/ws",
        "/V0/topics",
    ],
)
def test_unknown_path_is_404_not_found(http: httpx.Client, path: str) -> None:
    for method in ("GET", "POST"):
        resp = http.request(method, path, follow_redirects=False)
        assert_error(resp, 404, "not_found")


@pytest.mark.parametrize(
    "path", ["/v0/health/", "/v0/topics/", "/v0/metrics/", "/v0/topics/some-topic/diff/"]
)
def test_trailing_slash_is_an_unknown_path(http: httpx.Client, path: str) -> None:
    """§0.6: an unknown path is `404 not_found` in the envelope, never a bodiless redirect."""
    assert_error(http.get(path, follow_redirects=False), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v0/health"),
        ("DELETE", "/v0/health"),
        ("PUT", "/healthz"),
        ("POST", "/v0/ready"),
        ("POST", "/readyz"),
        ("POST", "/v0/metrics"),
        ("PUT", "/v0/topics"),
        ("POST", "/v0/topics"),
        ("DELETE", "/v0/topics"),
        ("PATCH", "/v0/topics/some-topic"),
        ("GET", "/v0/topics/some-topic/diff"),
        ("PUT", "/v0/topics/some-topic/diff"),
        ("DELETE", "/v0/topics/some-topic/diff"),
        ("GET", "/v0/topics/some-topic/delete"),
        ("DELETE", "/v0/topics/some-topic/delete"),
    ],
)
def test_wrong_method_is_405(http: httpx.Client, method: str, path: str) -> None:
    assert_error(http.request(method, path), 405, "method_not_allowed")


def test_error_bodies_are_exactly_the_envelope(http: httpx.Client, topic: str) -> None:
    cases = [
        http.get(f"/v0/topics/{topic}"),
        http.put(f"/v0/topics/{topic}", json={"type": 3}),
        http.post(f"/v0/topics/{topic}", content=b"{}"),
        http.post(f"/v0/topics/{topic}/diff", json={}),
        http.get("/v0/nothing-here"),
        http.post("/v0/health"),
    ]
    for resp in cases:
        error = check_envelope(resp)
        assert resp.json() == {"error": error} or set(resp.json()) == {"error", "performance"}


def test_topic_not_found_detail(http: httpx.Client, topic: str) -> None:
    err = assert_error(http.get(f"/v0/topics/{topic}"), 404, "topic_not_found")
    assert err["detail"] == {"topic": topic}


def test_success_bodies_are_bare_objects_with_performance(http: httpx.Client, topic: str) -> None:
    bodies = [
        ok(http.put(f"/v0/topics/{topic}", json={}), 201),
        ok(http.post(f"/v0/topics/{topic}", json={"records": [{"data": 1}]})),
        ok(http.get(f"/v0/topics/{topic}")),
        ok(http.get("/v0/topics", params={"prefix": topic})),
        ok(http.post(f"/v0/topics/{topic}/diff", json={})),
        ok(http.post(f"/v0/topics/{topic}/delete", json={"before_seq": 1})),
        ok(http.delete(f"/v0/topics/{topic}")),
    ]
    for body in bodies:
        assert "error" not in body
        assert isinstance(body["performance"]["server_total_ms"], float)


def test_write_performance_fields(http: httpx.Client, topic: str) -> None:
    perf = write(http, topic)["performance"]
    assert isinstance(perf["wal_append_ms"], float)
    assert isinstance(perf["fsync_ms"], float)
    assert perf["fsync_ms"] == 0.0
    assert "records_scanned" not in perf
    diff_perf = ok(http.post(f"/v0/topics/{topic}/diff", json={}))["performance"]
    assert isinstance(diff_perf["records_scanned"], int)
    assert "wal_append_ms" not in diff_perf
    assert "throttle_wait_ms" not in diff_perf
    assert "cold_segments_read" not in diff_perf
    put_perf = put_topic(http, topic, {}, status=200)["performance"]
    assert set(put_perf) == {"server_total_ms"}


@pytest.mark.parametrize("durability", ["ephemeral", "memory", "disk"])
def test_fsync_ms_is_zero_unless_fsync(http: httpx.Client, topic: str, durability: str) -> None:
    put_topic(http, topic, {"durability": durability}, status=201)
    assert write(http, topic)["performance"]["fsync_ms"] == 0.0


def test_success_content_type_is_json(http: httpx.Client, topic: str) -> None:
    resp = http.put(f"/v0/topics/{topic}", json={})
    assert resp.headers["content-type"].startswith("application/json")


def test_unknown_request_fields_are_ignored(http: httpx.Client, topic: str) -> None:
    body = ok(
        http.post(
            f"/v0/topics/{topic}",
            json={"records": [{"data": 1, "extra": True}], "whatever": [1, 2]},
        ),
        201,
    )
    assert body["seqs"] == [1]
    body = ok(http.post(f"/v0/topics/{topic}/diff", json={"surprise": {"a": 1}}))
    assert [r["$seq"] for r in body["records"]] == [1]
    assert "extra" not in body["records"][0]
