"""Shared assertions and request shorthands for the server suite."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import orjson

T = TypeVar("T")

DEFAULT_CONFIG: dict[str, Any] = {
    "type": "log",
    "ttl_ms": 0,
    "cap_records": 0,
    "cap_bytes": 0,
    "discard": "old",
    "durable": False,
    "durability": "disk",
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

ERROR_STATUS: dict[str, set[int]] = {
    "invalid_request": {400},
    "batch_too_large": {400},
    "record_too_large": {400},
    "unauthorized": {401},
    "forbidden": {403},
    "topic_not_found": {404},
    "router_not_found": {404},
    "not_found": {404},
    "method_not_allowed": {405},
    "not_acceptable": {406},
    "router_cycle": {409},
    "topic_exists_incompatible": {409},
    "topic_not_empty": {409},
    "not_a_queue": {409},
    "payload_too_large": {413},
    "unsupported_media_type": {415},
    "topic_full": {422},
    "throttled": {429},
    "internal": {500},
    "not_ready": {503},
    "shutting_down": {503},
}


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def check_envelope(resp: httpx.Response) -> dict[str, Any]:
    """Assert ``resp`` is a canonical error envelope (SPEC §0.6); return ``error``."""
    assert resp.status_code >= 300, resp.status_code
    assert resp.headers.get("content-type", "").startswith("application/json"), resp.headers
    body = orjson.loads(resp.content)
    assert isinstance(body, dict), body
    assert set(body) <= {"error", "performance"}, body
    assert "error" in body, body
    error = body["error"]
    assert isinstance(error, dict), body
    assert set(error) <= {"code", "message", "detail"}, body
    assert {"code", "message"} <= set(error), body
    assert isinstance(error["code"], str), body
    assert error["code"] in ERROR_STATUS, body
    assert resp.status_code in ERROR_STATUS[error["code"]], (resp.status_code, body)
    assert isinstance(error["message"], str), body
    if "detail" in error:
        assert isinstance(error["detail"], dict), body
        assert error["detail"], "an empty detail must be omitted (SPEC §0.5)"
    if resp.status_code in (429, 503):
        retry_after = resp.headers.get("retry-after")
        assert retry_after is not None, "429/503 must carry Retry-After (SPEC §0.6)"
        assert retry_after.strip().isdigit(), retry_after
    return error


def assert_error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert status and ``error.code``; return the ``error`` object."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    error = check_envelope(resp)
    assert error["code"] == code, (code, resp.text)
    return error


def ok(resp: httpx.Response, status: int = 200) -> dict[str, Any]:
    """Assert a success status with a JSON object body carrying ``performance``."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers.get("content-type", "").startswith("application/json"), resp.headers
    body = resp.json()
    assert isinstance(body, dict), body
    assert "error" not in body, body
    perf = body.get("performance")
    assert isinstance(perf, dict), body
    assert isinstance(perf.get("server_total_ms"), float), perf
    assert perf["server_total_ms"] >= 0.0
    return body


def put_topic(
    http: httpx.Client, topic: str, config: dict[str, Any] | None = None, status: int | None = None
) -> dict[str, Any]:
    resp = http.put(f"/v0/topics/{topic}", json=config or {})
    if status is None:
        assert resp.status_code in (200, 201), resp.text
        return ok(resp, resp.status_code)
    return ok(resp, status)


def write(
    http: httpx.Client,
    topic: str,
    records: list[dict[str, Any]] | None = None,
    status: int | None = None,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"records": records if records is not None else [{"data": 1}]}
    body.update(fields)
    resp = http.post(f"/v0/topics/{topic}", json=body, params=params, headers=headers)
    if status is None:
        assert resp.status_code in (200, 201), resp.text
        return ok(resp, resp.status_code)
    return ok(resp, status)


def write_n(http: httpx.Client, topic: str, n: int, **record: Any) -> dict[str, Any]:
    return write(http, topic, [{"data": i, **record} for i in range(n)])


def diff(http: httpx.Client, topic: str, **body: Any) -> dict[str, Any]:
    return ok(http.post(f"/v0/topics/{topic}/diff", json=body))


def state(http: httpx.Client, topic: str, touch: bool | None = None) -> dict[str, Any]:
    params = None if touch is None else {"touch": "true" if touch else "false"}
    return ok(http.get(f"/v0/topics/{topic}", params=params))


def delete_records(http: httpx.Client, topic: str, **body: Any) -> dict[str, Any]:
    return ok(http.post(f"/v0/topics/{topic}/delete", json=body))


def seqs_of(body: dict[str, Any]) -> list[int]:
    return [r["$seq"] for r in body["records"]]


def compact(value: Any) -> bytes:
    """Compact UTF-8 JSON, non-ASCII unescaped (SPEC §3.6)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def poll(fn: Callable[[], T], until: Callable[[T], bool], timeout: float = 5.0) -> T:
    """Call ``fn`` until ``until(result)`` holds or the deadline passes (then fail)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if until(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout}s; last value: {value!r}")
        time.sleep(0.02)


def create_many(base_url: str, names: list[str], workers: int = 4) -> None:
    """PUT every name (each must be created), spread over a few connections."""
    from concurrent.futures import ThreadPoolExecutor

    def run(part: list[str]) -> None:
        with httpx.Client(base_url=base_url, timeout=30.0) as client:
            for name in part:
                resp = client.put(f"/v0/topics/{name}", content=b"")
                assert resp.status_code == 201, resp.text

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(run, [names[i::workers] for i in range(workers)]))


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes ``sock`` within ``within`` seconds (EOF or reset)."""
    sock.settimeout(within)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True
