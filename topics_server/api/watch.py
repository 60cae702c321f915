"""``POST /v0/watch`` and ``GET /v0/watch/{wid}`` (SPEC §9)."""

from __future__ import annotations

import functools
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from topics_server.api.common import (
    check_accept,
    engine_of,
    key_of,
    parse_nodes,
    read_json,
    require_names,
    settings_of,
)
from topics_server.api.eventstream import EventStream
from topics_server.api.render import reads_of, render
from topics_server.engine.watch import SESSION_TTL_MS, WatchOptions
from topics_server.errors import ApiError, invalid_request, throttled, topic_not_found
from topics_server.middleware import BACKLOG
from topics_server.sse import decode_cursor
from topics_server.wire import U32_MAX, as_bool, as_object, as_u64, json_response, query_bool

__all__ = ["SSE_HEADERS", "create_watch", "sse_slot", "stream_watch"]

SSE_HEADERS = {
    "cache-control": "no-store",
    "x-accel-buffering": "no",
    "connection": "keep-alive",
}


def parse_options(body: dict[str, Any], max_limit: int) -> WatchOptions:
    get = body.get
    options = WatchOptions(nodes=parse_nodes(get("node")))
    if (v := get("limit")) is not None:
        options.limit = min(as_u64(v, "limit", U32_MAX) or 256, max_limit)
    if (v := get("max_batch_bytes")) is not None:
        options.max_batch_bytes = min(as_u64(v, "max_batch_bytes") or 1_048_576, 8_388_608)
    if (v := get("heartbeat_ms")) is not None:
        options.heartbeat_ms = min(max(as_u64(v, "heartbeat_ms"), 1000), 60_000)
    for name in ("include_meta", "include_tags", "include_data"):
        if (v := get(name)) is not None:
            setattr(options, name, as_bool(v, name))
    if (v := get("consistency")) is not None:
        if v not in ("eventual", "strong"):
            raise invalid_request("consistency must be eventual or strong", field="consistency")
        options.consistency = v
    return options


async def create_watch(request: Request) -> Response:
    started = time.perf_counter()
    engine = engine_of(request)
    settings = settings_of(request)
    body = as_object(await read_json(request), "body")
    if "topics" not in body:
        raise invalid_request("topics is required", field="topics")
    topics = as_object(body["topics"], "topics")
    if not 1 <= len(topics) <= settings.max_watch_topics:
        raise invalid_request(
            f"watch 1 to {settings.max_watch_topics} topics, not {len(topics)}",
            field="topics",
            max=settings.max_watch_topics,
        )
    require_names(request, *topics)
    starts: dict[str, tuple[int, bool]] = {}
    for topic, raw in topics.items():
        spec = as_object(raw, f"topics.{topic}")
        from_seq = spec.get("from_seq")
        tail = spec.get("tail")
        starts[topic] = (
            0 if from_seq is None else as_u64(from_seq, f"topics.{topic}.from_seq"),
            False if tail is None else as_bool(tail, f"topics.{topic}.tail"),
        )
    options = parse_options(body, settings.max_limit)
    lenient = query_bool(request.query_params, "lenient", False)
    watches = engine.watches
    watches.gc()
    resolved: dict[str, int] = {}
    described: dict[str, dict[str, int]] = {}
    for topic, (from_seq, tail) in starts.items():
        log = engine.get(topic)
        if log is None:
            if lenient:
                continue
            raise topic_not_found(topic)
        resolved[topic] = log.head if tail else from_seq
        described[topic] = {
            "from_seq": resolved[topic],
            "head_seq": log.head,
            "earliest_seq": log.earliest_seq,
        }
    limit = settings.max_watch_sessions
    if limit and len(watches) >= limit:
        raise throttled("max_watch_sessions", limit, f"the server holds {limit} watch sessions")
    key = key_of(request)
    session = watches.create(options, resolved, None if key is None else key.index)
    return json_response(
        {
            "wid": session.wid,
            "stream_url": f"/v0/watch/{session.wid}",
            "session_ttl_ms": SESSION_TTL_MS,
            "topics": described,
        },
        started,
    )


def sse_slot(request: Request) -> None:
    limit = settings_of(request).max_sse_connections
    if limit and engine_of(request).sse_connections >= limit:
        raise throttled("max_sse_connections", limit, f"{limit} SSE streams are open already")


async def stream_watch(request: Request) -> Response:
    check_accept(request)
    engine = engine_of(request)
    engine.watches.gc()
    session = engine.watches.sessions.get(request.path_params["wid"])
    if session is None:
        raise ApiError(404, "not_found", "unknown or expired watch session")
    key = key_of(request)
    if session.key_index is not None and (key is None or key.index != session.key_index):
        raise ApiError(401, "unauthorized", "open the stream with the key that created it")
    sse_slot(request)
    # resume: the stored cursors rule; Last-Event-ID (or ?cursor=) may only rewind
    for given in (request.headers.get("last-event-id"), request.query_params.get("cursor")):
        rewind = decode_cursor(given) if given else None
        for topic, seq in (rewind or {}).items():
            if topic in session.cursors:
                session.cursors[topic] = min(session.cursors[topic], seq)
    backlog = request.scope.get(BACKLOG)  # our server's connections tell it
    return EventStream(
        functools.partial(render, session, engine, reads_of(request), backlog=backlog),
        headers=SSE_HEADERS,
    )
