"""Queue operations (SPEC §10): claim, ack, nack, extend and the ``/work`` SSE stream."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from topics_server.api.common import check_accept, engine_of, read_json, settings_of
from topics_server.api.eventstream import EventStream, from_chunks
from topics_server.engine.engine import Engine
from topics_server.engine.log import TopicLog
from topics_server.engine.queues import (
    MAX_DELAY_MS,
    MAX_SETTLE_SEQS,
    clamp_lease_ms,
    not_a_queue,
)
from topics_server.errors import ApiError, invalid_request, throttled, topic_not_found
from topics_server.settings import Settings
from topics_server.wire import U32_MAX, as_object, as_str, as_u64, json_response, now_ms

__all__ = ["ack", "claim", "extend", "nack", "work"]

LEASE_TOKEN = re.compile(r"lease_([0-9a-fA-F]{1,16})")
HEARTBEAT_S = 15.0  # /work heartbeats are fixed (SPEC §10.9)
TICK_S = 0.25  # fallback re-check: lease expiry needs no timer (SPEC §10.9)


# -- request parsing ---------------------------------------------------------------


async def _body(request: Request) -> dict[str, Any]:
    headers = request.headers
    if headers.get("content-length") == "0" or (
        "content-length" not in headers and "transfer-encoding" not in headers
    ):
        raise invalid_request("the body is required (at least node)", field="node")
    return as_object(await read_json(request), "body")


def _node(value: Any, settings: Settings) -> str:
    if value is None:
        raise invalid_request("node is required", field="node")
    node = as_str(value, "node", settings.max_node_bytes)
    if not node:
        raise invalid_request("node must not be empty", field="node")
    return node


def _seqs(value: Any) -> list[int]:
    if value is None:
        raise invalid_request("seqs is required", field="seqs")
    if type(value) is not list:
        raise invalid_request("seqs must be an array of seqs", field="seqs")
    if len(value) > MAX_SETTLE_SEQS:
        raise ApiError(
            400,
            "batch_too_large",
            f"{len(value)} seqs in one request; the limit is {MAX_SETTLE_SEQS}",
            {"seqs": len(value), "max": MAX_SETTLE_SEQS},
        )
    return [as_u64(seq, "seqs") for seq in value]


def _fences(value: Any, count: int) -> list[int | None] | None:
    """``lease_ids``: one per seq; ``""`` is no fence, else a ``lease_<hex>`` token."""
    if value is None:
        return None
    if type(value) is not list:
        raise invalid_request("lease_ids must be an array of strings", field="lease_ids")
    if len(value) != count:
        raise invalid_request(
            f"lease_ids has {len(value)} entries for {count} seqs",
            field="lease_ids",
            lease_ids=len(value),
            seqs=count,
        )
    fences: list[int | None] = []
    for token in value:
        if type(token) is not str:
            raise invalid_request("lease_ids must be an array of strings", field="lease_ids")
        if not token:
            fences.append(None)
            continue
        match = LEASE_TOKEN.fullmatch(token)
        if match is None:
            raise invalid_request(f"malformed lease id {token!r}", field="lease_ids")
        fences.append(int(match.group(1), 16))
    return fences


def _settle_args(body: dict[str, Any], settings: Settings) -> tuple[str, list[int], Any]:
    node = _node(body.get("node"), settings)
    seqs = _seqs(body.get("seqs"))
    return node, seqs, _fences(body.get("lease_ids"), len(seqs))


# -- POST handlers --------------------------------------------------------------------


async def claim(request: Request) -> Response:
    started = time.perf_counter()
    name: str = request.path_params["topic"]
    settings = settings_of(request)
    body = await _body(request)
    node = _node(body.get("node"), settings)
    want = 1
    if (v := body.get("max")) is not None:
        want = min(as_u64(v, "max", U32_MAX) or 1, settings.max_claim)
    lease_ms = None
    if (v := body.get("lease_ms")) is not None:
        lease_ms = clamp_lease_ms(as_u64(v, "lease_ms"))
    engine = engine_of(request)
    log, jobs = await engine.queues.claim(name, node, want, lease_ms)
    counters = engine.queues.counters(log, now_ms())
    return json_response(
        {
            "topic": name,
            "count": len(jobs),
            "ready": counters["ready"],
            "claimed": [job.to_wire() for job in jobs],
        },
        started,
    )


async def ack(request: Request) -> Response:
    started = time.perf_counter()
    name: str = request.path_params["topic"]
    node, seqs, fences = _settle_args(await _body(request), settings_of(request))
    engine = engine_of(request)
    log, settled = await engine.queues.ack(name, node, seqs, fences)
    counters = engine.queues.counters(log, now_ms())
    performance: dict[str, Any] = {}
    if settled.fsync_ms > 0:
        performance["fsync_ms"] = round(settled.fsync_ms, 3)
    return json_response(
        {
            "topic": name,
            "acked": len(settled.done),
            "skipped": settled.skipped,
            "ready": counters["ready"],
            "in_flight": counters["in_flight"],
        },
        started,
        **performance,
    )


async def nack(request: Request) -> Response:
    started = time.perf_counter()
    name: str = request.path_params["topic"]
    body = await _body(request)
    node, seqs, fences = _settle_args(body, settings_of(request))
    delay_ms = 0
    if (v := body.get("delay_ms")) is not None:
        delay_ms = min(as_u64(v, "delay_ms"), MAX_DELAY_MS)
    engine = engine_of(request)
    log, settled = await engine.queues.nack(name, node, seqs, fences, delay_ms)
    counters = engine.queues.counters(log, now_ms())
    return json_response(
        {
            "topic": name,
            "nacked": len(settled.done),
            "skipped": settled.skipped,
            "ready": counters["ready"],
            "in_flight": counters["in_flight"],
        },
        started,
    )


async def extend(request: Request) -> Response:
    started = time.perf_counter()
    name: str = request.path_params["topic"]
    body = await _body(request)
    node, seqs, fences = _settle_args(body, settings_of(request))
    raw = body.get("lease_ms")
    if raw is None:
        raise invalid_request("lease_ms is required", field="lease_ms")
    lease_ms = clamp_lease_ms(as_u64(raw, "lease_ms"))
    _, settled = await engine_of(request).queues.extend(name, node, seqs, fences, lease_ms)
    return json_response(
        {
            "topic": name,
            "extended": len(settled.done),
            "skipped": settled.skipped,
            "deadlines": {str(seq): deadline for seq, deadline in settled.deadlines.items()},
        },
        started,
    )


# -- GET /v0/topics/{q}/work ------------------------------------------------------------


def _frame(event: str, data: dict[str, Any], event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


def _query_int(params: Any, name: str) -> int | None:
    text = params.get(name)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


class _SseResponse(EventStream):
    """A job stream that runs ``on_close`` however it ends."""

    def __init__(self, content: AsyncGenerator[bytes, None], on_close: Callable[[], None]) -> None:
        super().__init__(
            from_chunks(content), headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


async def work(request: Request) -> Response:
    """Push jobs leased to ``node`` over SSE; its leases are released when it ends."""
    check_accept(request)
    settings = settings_of(request)
    params = request.query_params
    node = params.get("node")
    if not node:
        raise invalid_request("node is required", field="node")
    as_str(node, "node", settings.max_node_bytes)
    want = _query_int(params, "max")
    want = 1 if want is None else min(max(want, 1), settings.max_claim)
    lease_ms = _query_int(params, "lease_ms")
    lease_ms = None if lease_ms is None or lease_ms < 0 else clamp_lease_ms(lease_ms)
    engine = engine_of(request)
    name: str = request.path_params["topic"]
    log = engine.get(name)
    if log is None:
        raise topic_not_found(name)
    if not log.config.is_queue:
        raise not_a_queue(name)
    limit = settings.max_sse_connections
    if limit and engine.sse_connections >= limit:
        raise throttled(
            "max_sse_connections", limit, f"the server holds its maximum of {limit} SSE streams"
        )
    engine.sse_connections += 1
    conn = engine.queues.open_conn()
    closed = False

    def close() -> None:
        nonlocal closed
        if not closed:
            closed = True
            engine.sse_connections -= 1
            engine.queues.release_conn(log, conn)

    return _SseResponse(_work_stream(engine, log, node, want, lease_ms, conn, close), close)


async def _work_stream(
    engine: Engine,
    log: TopicLog,
    node: str,
    want: int,
    lease_ms: int | None,
    conn: int,
    close: Callable[[], None],
) -> AsyncGenerator[bytes, None]:
    name = log.name
    queues = engine.queues
    gone = {"code": 409, "error": "topic is no longer a queue", "topic": name}
    try:
        yield b"retry: 2000\n\n"
        quiet_since = time.monotonic()
        while True:
            if engine.shutting_down:
                yield _frame(
                    "error",
                    {"code": "server_shutting_down", "error": "the server is shutting down"},
                )
                return
            current = engine.get(name)
            if current is not log or log.removed or not log.config.is_queue:
                yield _frame("error", gone)
                return
            deficit = want - queues.held(log, conn)
            if deficit > 0:
                try:
                    _, jobs = await queues.claim(name, node, deficit, lease_ms, conn)
                except ApiError:
                    yield _frame("error", gone)
                    return
                if jobs:
                    yield b"".join(_frame("job", job.to_wire(name), str(job.seq)) for job in jobs)
                    quiet_since = time.monotonic()
                    continue
            silent = time.monotonic() - quiet_since
            if silent >= HEARTBEAT_S:
                yield f": hb {now_ms()}\n\n".encode()
                quiet_since = time.monotonic()
                silent = 0.0
            await queues.wait_change(log, min(TICK_S, HEARTBEAT_S - silent))
    finally:
        close()
