"""Health, readiness and metrics (SPEC §11)."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest

from tests.server._helpers import create_many, ok, put_topic, unique, write
from tests.serverproc import ServerProcess

SAMPLE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? (\S+)$'
)


def _probe_json(resp: httpx.Response) -> dict[str, object]:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert isinstance(body, dict)
    return body


@pytest.mark.parametrize("path", ["/v0/health", "/healthz"])
def test_health(http: httpx.Client, path: str) -> None:
    body = _probe_json(http.get(path))
    assert body["status"] == "ok"
    assert isinstance(body["version"], str)
    assert body["version"]
    assert isinstance(body["uptime_ms"], int)
    assert body["uptime_ms"] >= 0
    assert set(body) <= {"status", "version", "uptime_ms", "performance"}


def test_uptime_grows(http: httpx.Client) -> None:
    first = _probe_json(http.get("/v0/health"))["uptime_ms"]
    later = _probe_json(http.get("/healthz"))["uptime_ms"]
    assert isinstance(first, int)
    assert isinstance(later, int)
    assert later >= first


@pytest.mark.parametrize("path", ["/v0/ready", "/readyz"])
def test_ready(http: httpx.Client, path: str) -> None:
    body = _probe_json(http.get(path))
    assert body["status"] == "ready"
    assert body["wal_replay_complete"] is True
    assert isinstance(body["topics"], int)
    assert body["storage"] == "ok"  # "full" while the store is out of space (SPEC §14)
    assert set(body) <= {"status", "wal_replay_complete", "topics", "storage", "performance"}


def _parse(text: str) -> dict[str, float]:
    """Prometheus text → {"name{labels}": value}; asserts the exposition format."""
    samples: dict[str, float] = {}
    typed: set[str] = set()
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# TYPE "):
            parts = line.split()
            assert len(parts) == 4, line
            assert parts[3] in {"gauge", "counter", "histogram", "summary", "untyped"}, line
            typed.add(parts[2])
            continue
        if line.startswith("#"):
            assert line.startswith("# HELP "), line
            continue
        match = SAMPLE.match(line)
        assert match, f"not a Prometheus sample: {line!r}"
        name = match.group(1)
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in typed or base in typed, f"sample before its TYPE line: {line!r}"
        key = line.rsplit(" ", 1)[0]
        assert key not in samples, f"duplicate series {key}"
        samples[key] = float(match.group(4))
    return samples


AGGREGATES = [
    "topics_topics",
    "topics_routers",
    "topics_records_live",
    "topics_bytes_live",
    "topics_queue_topics",
    "topics_queue_leases_in_flight",
    "topics_sse_connections",
    "topics_watch_sessions",
    "topics_ready",
    "topics_recovery_progress",
    "topics_uptime_ms",
]


def test_metrics_prometheus_on_shared_server(http: httpx.Client) -> None:
    resp = http.get("/v0/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = _parse(resp.text)
    for name in AGGREGATES:
        assert name in samples, name
    for cls in ("ephemeral", "memory", "disk", "fsync"):
        assert f'topics_topics_by_class{{class="{cls}"}}' in samples
    assert samples["topics_ready"] == 1
    assert samples["topics_recovery_progress"] == 1


def test_metrics_values(server_factory: Callable[..., ServerProcess]) -> None:
    proc = server_factory()
    with httpx.Client(base_url=proc.url, timeout=30.0) as http:
        log = "orders.eu:1-a"
        queue = "jobs"
        eph = unique()
        write(http, log, [{"data": "abc"}, {"data": 12}, {"data": None}])  # 5 + 2 + 4
        ok(http.post(f"/v0/topics/{log}/delete", json={"before_seq": 2}))
        put_topic(http, queue, {"type": "queue", "durable": True}, status=201)
        write(http, queue, [{"data": 1}, {"data": 2}])
        put_topic(http, eph, {"durability": "ephemeral"}, status=201)

        ready = http.get("/v0/ready").json()
        assert ready["topics"] == 3

        resp = http.get("/v0/metrics")
        assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
        samples = _parse(resp.text)
        assert samples["topics_topics"] == 3
        assert samples['topics_topics_by_class{class="disk"}'] == 1
        assert samples['topics_topics_by_class{class="fsync"}'] == 1
        assert samples['topics_topics_by_class{class="ephemeral"}'] == 1
        assert samples['topics_topics_by_class{class="memory"}'] == 0
        assert samples["topics_records_live"] == 4
        assert samples["topics_bytes_live"] == 2 + 4 + 1 + 1
        assert samples["topics_queue_topics"] == 1
        assert samples["topics_routers"] == 0
        assert samples["topics_topic_metrics_truncated"] == 0

        def series(name: str, topic: str) -> float:
            return samples[f'{name}{{topic="{topic}"}}']

        assert series("topics_topic_head_seq", log) == 3
        assert series("topics_topic_earliest_seq", log) == 2
        assert series("topics_topic_records_live", log) == 2
        assert series("topics_topic_bytes_live", log) == 6
        assert series("topics_topic_head_seq", queue) == 2
        assert series("topics_topic_records_live", queue) == 2
        assert series("topics_topic_queue_ready", queue) == 2
        assert series("topics_topic_queue_in_flight", queue) == 0
        assert series("topics_topic_head_seq", eph) == 0
        assert series("topics_topic_earliest_seq", eph) == 1
        assert f'topics_topic_queue_ready{{topic="{log}"}}' not in samples

        body = ok(http.get("/v0/metrics", headers={"Accept": "application/json"}))
        for key in (
            "topics",
            "topics_ephemeral",
            "topics_memory",
            "topics_disk",
            "topics_fsync",
            "routers",
            "records_live",
            "bytes_live",
            "queue_topics",
            "queue_leases_in_flight",
            "sse_connections",
            "watch_sessions",
            "ready",
            "replay_progress",
            "uptime_ms",
        ):
            assert key in body, key
        assert body["topics"] == 3
        assert (body["topics_ephemeral"], body["topics_memory"]) == (1, 0)
        assert (body["topics_disk"], body["topics_fsync"]) == (1, 1)
        assert body["records_live"] == 4
        assert body["bytes_live"] == 8
        assert body["queue_topics"] == 1
        assert body["routers"] == 0
        assert body["ready"] in (True, 1)
        assert body["replay_progress"] == 1
        assert isinstance(body["uptime_ms"], int)

        mixed = http.get("/v0/metrics", headers={"Accept": "text/html, application/json;q=0.9"})
        assert mixed.headers["content-type"].startswith("application/json")
        text = http.get("/v0/metrics", headers={"Accept": "text/plain"})
        assert text.headers["content-type"].startswith("text/plain; version=0.0.4")


def test_metrics_label_values_are_verbatim_names(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """Valid names never need escaping (§0.3 excludes `\\`, `"`, newline): they appear as-is."""
    proc = server_factory()
    with httpx.Client(base_url=proc.url, timeout=30.0) as http:
        names = ["a.b:c-d_e", "Z9", "x" * 255]
        for name in names:
            write(http, name, [{"data": 1}])
        samples = _parse(http.get("/v0/metrics").text)
        for name in names:
            assert samples[f'topics_topic_head_seq{{topic="{name}"}}'] == 1


def test_metrics_per_topic_series_truncated_at_1000(
    server_factory: Callable[..., ServerProcess],
) -> None:
    proc = server_factory()
    with httpx.Client(base_url=proc.url, timeout=30.0) as http:
        create_many(proc.url, [f"m{i:04d}" for i in range(1001)])
        samples = _parse(http.get("/v0/metrics").text)
        assert samples["topics_topics"] == 1001
        assert samples["topics_topic_metrics_truncated"] == 1
        for name in (
            "topics_topic_head_seq",
            "topics_topic_earliest_seq",
            "topics_topic_records_live",
            "topics_topic_bytes_live",
        ):
            count = sum(1 for key in samples if key.startswith(name + "{"))
            assert count == 1000, (name, count)
