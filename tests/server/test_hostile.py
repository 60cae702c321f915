"""Hostile clients (issue 10): deep JSON, u64 extremes, and connections that never finish.

Nesting and u64 run on the shared server; connection behaviour needs private
servers with short deadlines (``TOPICS_HEADER_TIMEOUT_MS``/``_BODY_TIMEOUT_MS``),
a small connection cap, or a small open-file limit set on the running process.
"""

from __future__ import annotations

import resource
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import httpx
import orjson
import pytest

from tests.server._helpers import (
    assert_error,
    closed_by_server,
    diff,
    ok,
    poll,
    put_topic,
    unique,
    write,
)
from tests.serverproc import ServerProcess

U64_MAX = 2**64 - 1


def nest(depth: int, leaf: Any = 1) -> Any:
    """``leaf`` inside ``depth`` arrays."""
    for _ in range(depth):
        leaf = [leaf]
    return leaf


class Deep:
    """A placeholder for nesting too deep for any encoder: spliced in as raw text."""

    def __init__(self, depth: int, objects: bool = False) -> None:
        self.text = (
            '{"k":' * depth + "1" + "}" * depth if objects else "[" * depth + "1" + "]" * depth
        )


def encode(body: Any) -> bytes:
    """JSON of ``body``, each :class:`Deep` spliced in as its raw text."""
    spliced: list[Deep] = []

    def mark(value: Any) -> Any:
        if isinstance(value, Deep):
            spliced.append(value)
            return f"@@deep{len(spliced) - 1}@@"
        raise TypeError(value)

    text = orjson.dumps(body, default=mark)
    for i, deep in enumerate(spliced):
        text = text.replace(f'"@@deep{i}@@"'.encode(), deep.text.encode())
    return text


def post_raw(http: httpx.Client, path: str, body: Any, method: str = "POST") -> httpx.Response:
    return http.request(
        method, path, content=encode(body), headers={"content-type": "application/json"}
    )


# -- nesting (SPEC §0.4) ---------------------------------------------------------------


def test_nesting_up_to_128_levels_is_stored_and_returned(http: httpx.Client, topic: str) -> None:
    # body object, records array, record object: data's own levels start at the 4th
    data = nest(125)
    meta = {"m": nest(124)}
    write(http, topic, [{"data": data, "meta": meta}], status=201)
    got = diff(http, topic)["records"][0]
    assert got["data"] == data
    assert got["meta"] == meta


@pytest.mark.parametrize("depth", [126, 200, 252, 253, 255, 600, 1021])
def test_data_nested_too_deep_is_400(http: httpx.Client, topic: str, depth: int) -> None:
    resp = post_raw(http, f"/v0/topics/{topic}", {"records": [{"data": Deep(depth)}]})
    assert_error(resp, 400, "invalid_request")
    assert_error(http.get(f"/v0/topics/{topic}"), 404, "topic_not_found")


@pytest.mark.parametrize("depth", [125, 300, 1000])
def test_meta_nested_too_deep_is_400(http: httpx.Client, topic: str, depth: int) -> None:
    record = {"data": 1, "meta": {"m": Deep(depth, objects=True)}}
    assert_error(
        post_raw(http, f"/v0/topics/{topic}", {"records": [record]}), 400, "invalid_request"
    )


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("PUT", "", {"x": Deep(200)}),
        ("POST", "/diff", {"from_seq": 0, "x": Deep(300, objects=True)}),
        ("POST", "/delete", {"before_seq": 1, "x": Deep(129)}),
        ("POST", "", {"records": [{"data": 1}], "x": Deep(128)}),
        ("POST", "/claim", {"node": "n", "x": Deep(500)}),
    ],
)
def test_deep_body_anywhere_is_400(
    http: httpx.Client, topic: str, method: str, suffix: str, body: Any
) -> None:
    write(http, topic)
    resp = post_raw(http, f"/v0/topics/{topic}{suffix}", body, method)
    assert_error(resp, 400, "invalid_request")


def test_deep_router_and_watch_bodies_are_400(http: httpx.Client, topic: str) -> None:
    write(http, topic)
    body = {"source": topic, "dest": f"{topic}-d", "filter": Deep(300)}
    assert_error(post_raw(http, f"/v0/routers/{topic}-r", body, "PUT"), 400, "invalid_request")
    body = {"topics": {topic: {"from_seq": 0, "x": Deep(129, objects=True)}}}
    assert_error(post_raw(http, "/v0/watch", body), 400, "invalid_request")


# -- u64 config integers saturate (SPEC §0.4) -----------------------------------------------


@pytest.mark.parametrize("window", [2**62, 2**63 - 1, 2**63, U64_MAX])
def test_huge_idempotency_window_keeps_keyed_writes_working(
    http: httpx.Client, topic: str, window: int
) -> None:
    body = put_topic(http, topic, {"idempotency_window_ms": window, "ttl_ms": U64_MAX}, 201)
    assert body["config"]["idempotency_window_ms"] == window  # echoed as sent
    assert body["config"]["ttl_ms"] == U64_MAX
    first = write(http, topic, [{"data": 1}], idempotency_key="k1")
    assert first["deduped"] is False
    again = write(http, topic, [{"data": 1}], idempotency_key="k1")
    assert again["deduped"] is True and again["first_seq"] == first["first_seq"]
    assert ok(http.get(f"/v0/topics/{topic}"))["count"] == 1  # nothing expired by a huge TTL


def test_huge_durations_survive_a_restart(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory()
    name = unique("u64")
    with httpx.Client(base_url=server.url, timeout=10) as http:
        put_topic(http, name, {"idempotency_window_ms": U64_MAX, "ttl_ms": 2**63}, 201)
        first = write(http, name, [{"data": 1}], idempotency_key="k")
    server.restart()
    with httpx.Client(base_url=server.url, timeout=10) as http:
        config = ok(http.get(f"/v0/topics/{name}"))["config"]
        assert (config["idempotency_window_ms"], config["ttl_ms"]) == (U64_MAX, 2**63)
        again = write(http, name, [{"data": 1}], idempotency_key="k")
        assert again["deduped"] is True and again["first_seq"] == first["first_seq"]


# -- connections that never finish a request -------------------------------------------------


@contextmanager
def sockets(port: int, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections that send nothing (some may be refused under an fd limit)."""
    opened: list[socket.socket] = []
    try:
        for _ in range(count):
            with suppress(OSError):
                opened.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        yield opened
    finally:
        for sock in opened:
            sock.close()


def request_head(path: str = "/v0/health", method: str = "GET", extra: str = "") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nhost: test\r\n{extra}".encode()


def test_silent_connection_is_closed_after_the_header_timeout(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(env={"TOPICS_HEADER_TIMEOUT_MS": "300"})
    with sockets(server.port, 2) as (silent, partial):
        partial.sendall(request_head())  # headers never finished
        started = time.monotonic()
        assert closed_by_server(silent, 10)
        assert closed_by_server(partial, 10)
        assert time.monotonic() - started < 10


def test_trickled_headers_are_cut_at_the_deadline(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """The header deadline is absolute: a byte now and then does not extend it."""
    server = server_factory(env={"TOPICS_HEADER_TIMEOUT_MS": "500"})
    with sockets(server.port, 1) as (sock,):
        head = request_head() + b"x-slow: " + b"a" * 200
        started = time.monotonic()
        closed = False
        for i in range(len(head)):
            try:
                sock.sendall(head[i : i + 1])
            except OSError:
                closed = True
                break
            time.sleep(0.05)
            if time.monotonic() - started > 8:
                break
        assert closed or closed_by_server(sock, 5)
        assert time.monotonic() - started < 8


def test_idle_body_is_closed_but_a_slow_steady_one_is_served(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(env={"TOPICS_BODY_TIMEOUT_MS": "600"})
    name = unique("slow")
    body = orjson.dumps({"records": [{"data": "x" * 20}]})
    head = request_head(
        f"/v0/topics/{name}",
        "POST",
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n",
    )
    with sockets(server.port, 2) as (idle, steady):
        idle.sendall(head + body[:5])
        # a byte every 100 ms: well over the 600 ms in total, never idle that long
        steady.sendall(head)
        for i in range(len(body)):
            steady.sendall(body[i : i + 1])
            time.sleep(0.1)
        steady.settimeout(10)
        answer = steady.recv(65536)
        assert answer.startswith(b"HTTP/1.1 201"), answer
        assert closed_by_server(idle, 10)
    line = poll(
        server.log, lambda text: "went away before sending its whole request" in text, timeout=10
    )
    assert "Traceback" not in line and "internal" not in line


def test_client_leaving_mid_body_is_one_log_line(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory()
    name = unique("gone")
    head = request_head(
        f"/v0/topics/{name}",
        "POST",
        "content-type: application/json\r\ncontent-length: 100\r\n\r\n",
    )
    with sockets(server.port, 1) as (sock,):
        sock.sendall(head + b'{"records":')
        time.sleep(0.2)  # let the handler start reading the body
    text = poll(server.log, lambda t: "went away" in t, timeout=10)
    lines = [line for line in text.splitlines() if "went away" in line]
    assert len(lines) == 1, text
    assert f"POST /v0/topics/{name}" in lines[0]
    assert "Traceback" not in text and "internal error" not in text, text
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert_error(http.get(f"/v0/topics/{name}"), 404, "topic_not_found")


def test_connections_past_the_cap_get_429_with_retry_after(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(env={"TOPICS_MAX_CONNECTIONS": "8"})

    def probe() -> httpx.Response:
        with httpx.Client(base_url=server.url, timeout=10) as fresh:
            return fresh.get("/v0/health")

    with sockets(server.port, 8):
        resp = poll(probe, lambda r: r.status_code == 429, timeout=10)
        assert resp.headers["retry-after"] == "1"
        assert resp.headers["connection"] == "close"
        assert resp.headers["content-type"].startswith("application/json")
        assert resp.json() == {
            "error": {
                "code": "throttled",
                "message": "the server holds its maximum of 8 connections; retry shortly",
                "detail": {"limit": "max_connections", "max": 8},
            }
        }
    assert poll(probe, lambda r: r.status_code == 200, timeout=10).json()["status"] == "ok"


def test_silent_connections_do_not_starve_a_normal_client(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """400 silent sockets against 256 descriptors: others are still served."""
    server = server_factory(env={"TOPICS_HEADER_TIMEOUT_MS": "1000"})
    assert server.proc is not None
    resource.prlimit(server.proc.pid, resource.RLIMIT_NOFILE, (256, 256))
    with sockets(server.port, 400), httpx.Client(base_url=server.url, timeout=3) as http:
        deadline = time.monotonic() + 20
        served = 0
        while served < 20 and time.monotonic() < deadline:
            try:
                if http.get("/v0/health").status_code == 200:
                    served += 1
            except httpx.TransportError:
                time.sleep(0.05)
        assert served == 20, server.log()[-2000:]


def test_start_raises_the_soft_fd_limit_to_the_hard_one(
    server_factory: Callable[..., ServerProcess],
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 512:
        pytest.skip(f"the hard open-file limit ({hard}) leaves no room to test a raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))
    try:
        server = server_factory()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert server.proc is not None
    raised, _ = resource.prlimit(server.proc.pid, resource.RLIMIT_NOFILE)
    assert raised > 512
