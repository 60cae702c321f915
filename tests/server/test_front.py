"""The HTTP-facing fast paths (issue 13): the front's own route table, one write per
answer, per-connection deadlines moved lazily, forwarded headers only from named proxies.

Each behaves exactly as the plain Starlette/uvicorn path did; these pin the edges
where a shortcut could differ from it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import orjson
import pytest

from tests.server._helpers import (
    assert_error,
    closed_by_server,
    ok,
    poll,
    put_topic,
    unique,
    write,
)
from tests.serverproc import ServerProcess

# -- routes: what the front's table does not own still gets Starlette's answers ----------


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v0/topics/{t}/", 404, "not_found"),
        ("POST", "/v0/topics/{t}/diff/", 404, "not_found"),
        ("POST", "/v0/topics/{t}/diff/more", 404, "not_found"),
        ("POST", "/v0/topics/{t}/unknown", 404, "not_found"),
        ("POST", "/v0/topics//diff", 404, "not_found"),
        ("GET", "/v0/topics/", 404, "not_found"),
        ("GET", "/v0/health/", 404, "not_found"),
        ("GET", "/v1/topics/{t}", 404, "not_found"),
        ("GET", "/v0/nothing/{t}", 404, "not_found"),
        ("GET", "/v0/routers/{t}/diff", 404, "not_found"),
        ("GET", "/v0/topics/{t}/diff", 405, "method_not_allowed"),
        ("PATCH", "/v0/topics/{t}", 405, "method_not_allowed"),
        ("POST", "/v0/topics", 405, "method_not_allowed"),
        ("POST", "/v0/health", 405, "method_not_allowed"),
        ("POST", "/v0/routers/{t}", 405, "method_not_allowed"),
    ],
)
def test_paths_off_the_table_get_the_routers_answer(
    http: httpx.Client, method: str, path: str, status: int, code: str
) -> None:
    name = unique("front")
    put_topic(http, name)
    assert_error(http.request(method, path.replace("{t}", name)), status, code)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/v0/topics/{t}/diff", {"POST"}),
        ("PATCH", "/v0/topics/{t}", {"GET", "HEAD", "PUT", "POST", "DELETE"}),
        ("DELETE", "/v0/topics", {"GET", "HEAD"}),
        ("POST", "/v0/routers/{t}", {"GET", "HEAD", "PUT", "DELETE"}),
    ],
)
def test_405_lists_every_method_of_the_route(
    http: httpx.Client, method: str, path: str, allowed: set[str]
) -> None:
    resp = http.request(method, path.replace("{t}", unique("front")))
    assert_error(resp, 405, "method_not_allowed")
    assert {m.strip() for m in resp.headers["allow"].split(",")} == allowed


def test_every_verb_reaches_its_own_handler(http: httpx.Client) -> None:
    """Each ``/v0/topics/{t}/verb`` answers with its own shape (a mix-up is a 400 or 404)."""
    name = unique("verbs")
    put_topic(http, name, {"type": "queue"}, 201)
    write(http, name, [{"data": 1}, {"data": 2}])
    assert ok(http.get(f"/v0/topics/{name}"))["topic"] == name
    page = ok(http.post(f"/v0/topics/{name}/diff", json={"from_seq": 0, "limit": 1}))
    assert [r["$seq"] for r in page["records"]] == [1]
    claimed = ok(http.post(f"/v0/topics/{name}/claim", json={"node": "n", "max": 1}))
    assert claimed["count"] == 1 and len(claimed["claimed"]) == 1
    deleted = ok(http.post(f"/v0/topics/{name}/delete", json={"before_seq": 2}))
    assert deleted["earliest_seq"] == 2
    assert ok(http.delete(f"/v0/topics/{name}"))["topic"] == name
    assert_error(http.get(f"/v0/topics/{name}"), 404, "topic_not_found")


def test_a_name_is_decoded_from_the_path(http: httpx.Client) -> None:
    name = unique("co:lon")
    put_topic(http, name, None, 201)
    encoded = name.replace(":", "%3A")
    assert ok(http.get(f"/v0/topics/{encoded}"))["topic"] == name
    page = ok(http.post(f"/v0/topics/{encoded}/diff", json={}))
    assert page["topic"] == name


# -- one write per answer ----------------------------------------------------------------


@contextmanager
def connection(port: int) -> Iterator[socket.socket]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        yield sock
    finally:
        sock.close()


def read_answer(sock: socket.socket, head_only: bool = False) -> tuple[bytes, bytes]:
    """One answer: (head, body), the body as long as its content-length says."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if head_only:
        assert body == b"", body
        return head, body
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed mid-body"
        body += chunk
    return head, body


def test_a_small_answer_arrives_in_one_piece(server: ServerProcess) -> None:
    """Head and body leave in one write: the first read holds the whole answer."""
    request = b"GET /v0/health HTTP/1.1\r\nhost: test\r\n\r\n"
    with connection(server.port) as sock:
        for _ in range(20):
            sock.sendall(request)
            first = sock.recv(65536)
            head, _, body = first.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), first
            assert orjson.loads(body)["status"] == "ok"


def test_head_answers_then_the_connection_goes_on(server: ServerProcess, topic: str) -> None:
    """A HEAD answer has no body to travel with: its head still goes out at once, and
    the next answer on the connection is whole."""
    with connection(server.port) as sock:
        for path in ("/v0/health", f"/v0/topics/{topic}", "/v0/topics/nope-at-all"):
            sock.sendall(f"HEAD {path} HTTP/1.1\r\nhost: test\r\n\r\n".encode())
            head, _ = read_answer(sock, head_only=True)
            assert head.startswith((b"HTTP/1.1 200", b"HTTP/1.1 404")), head
            assert b"content-length: " in head.lower()
            sock.sendall(b"GET /v0/health HTTP/1.1\r\nhost: test\r\n\r\n")
            head, body = read_answer(sock)
            assert head.startswith(b"HTTP/1.1 200") and orjson.loads(body)["status"] == "ok"


# -- deadlines on a kept-alive connection ----------------------------------------------------


def test_header_deadline_holds_after_answered_requests_and_a_slow_body(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """After quick requests and one whose body took longer than the header deadline,
    a request whose headers never finish is still cut at the header deadline (not
    the 30 s body one), and idling between requests is not cut by it."""
    server = server_factory(env={"TOPICS_HEADER_TIMEOUT_MS": "400"})
    name = unique("slowbody")
    body = orjson.dumps({"records": [{"data": 1}], "create": True})
    with connection(server.port) as sock:
        for _ in range(3):
            sock.sendall(b"GET /v0/health HTTP/1.1\r\nhost: test\r\n\r\n")
            assert read_answer(sock)[0].startswith(b"HTTP/1.1 200")
        sock.sendall(
            f"POST /v0/topics/{name} HTTP/1.1\r\nhost: test\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n".encode()
        )
        deadline = time.monotonic() + 1.2  # three header deadlines of trickled body
        for i in range(len(body)):
            sock.sendall(body[i : i + 1])
            time.sleep(max(0.0, (deadline - time.monotonic()) / (len(body) - i)))
        assert read_answer(sock)[0].startswith(b"HTTP/1.1 201")
        time.sleep(0.8)  # idle between requests: twice the header deadline
        sock.sendall(b"GET /v0/health HTTP/1.1\r\nhost: test\r\n\r\n")
        assert read_answer(sock)[0].startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /v0/health HTTP/1.1\r\nhost: te")  # never finished
        started = time.monotonic()
        assert closed_by_server(sock, 10)
        assert time.monotonic() - started < 5


# -- forwarded headers ----------------------------------------------------------------------


@pytest.mark.parametrize("named", [False, True])
def test_forwarded_for_is_believed_only_from_named_proxies(
    server_factory: Callable[..., ServerProcess], named: bool
) -> None:
    """uvicorn rewrites the client address from ``X-Forwarded-For`` only when the
    operator names the proxies in ``FORWARDED_ALLOW_IPS``. Seen in the line logged
    for a request whose body stops coming (cut by the body deadline)."""
    env = {"TOPICS_BODY_TIMEOUT_MS": "300"}
    if named:
        env["FORWARDED_ALLOW_IPS"] = "127.0.0.1"
    server = server_factory(env=env)
    with connection(server.port) as sock:
        sock.sendall(
            f"POST /v0/topics/{unique('fwd')} HTTP/1.1\r\nhost: test\r\n"
            "x-forwarded-for: 203.0.113.7\r\ncontent-type: application/json\r\n"
            'content-length: 100\r\n\r\n{"records":'.encode()
        )
        text = poll(server.log, lambda t: "went away before sending its whole request" in t, 10)
    line = next(x for x in text.splitlines() if "went away" in x)
    if named:
        assert "client 203.0.113.7:" in line, line
    else:
        assert "client 127.0.0.1:" in line and "203.0.113.7" not in line, line
