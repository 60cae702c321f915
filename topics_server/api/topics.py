"""Topic lifecycle: PUT/GET/DELETE ``/v0/topics/{topic}`` and ``GET /v0/topics``."""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from topics_server.api.common import (
    engine_of,
    key_of,
    query_flag,
    read_json,
    require_dead_letter,
)
from topics_server.engine.config import parse_config
from topics_server.engine.engine import Engine
from topics_server.engine.log import TopicLog
from topics_server.errors import invalid_request
from topics_server.wire import json_response, now_ms, query_bool

__all__ = ["delete_topic", "get_topic", "list_topics", "put_topic", "topic_state"]


async def put_topic(request: Request) -> Response:
    started = time.perf_counter()
    name: str = request.path_params["topic"]
    body = await read_json(request, empty_as_object=True)
    config = parse_config(body, name, field="body")
    require_dead_letter(request, config)
    log, created = await engine_of(request).put_topic(name, config)
    return json_response(
        {"topic": name, "created": created, "config": log.config.to_json()},
        started,
        status=201 if created else 200,
    )


def topic_state(engine: Engine, log: TopicLog, now: int) -> dict[str, Any]:
    state: dict[str, Any] = {
        "topic": log.name,
        "type": log.config.type,
        "head_seq": log.head,
        "earliest_seq": log.earliest_seq,
        "next_seq": log.head + 1,
        "count": log.count,
        "bytes": log.bytes,
        "config": log.config.to_json(),
        "effective_priority": engine.effective_priority(log, now),
        "last_write_ts": log.last_write_ts,
        "last_read_ts": log.last_read_ts,
    }
    queue = engine.queue_counters(log, now) if log.config.is_queue else None
    if queue is not None:
        state["queue"] = queue
    return state


async def get_topic(request: Request) -> Response:
    started = time.perf_counter()
    engine = engine_of(request)
    now = now_ms()
    name: str = request.path_params["topic"]
    await engine.routers.catch_up(name)
    log = engine.require(name)
    if query_flag(request, "touch", True):
        engine.mark_read(log, now)
    return json_response(topic_state(engine, log, now), started)


def decode_cursor(cursor: str) -> str:
    try:
        after = orjson.loads(base64.b64decode(cursor, validate=True))["after"]
    except (binascii.Error, ValueError, TypeError, KeyError):
        raise invalid_request("cursor is not one this server issued", field="cursor") from None
    if not isinstance(after, str):
        raise invalid_request("cursor is not one this server issued", field="cursor")
    return after


def encode_cursor(after: str) -> str:
    return base64.b64encode(orjson.dumps({"after": after})).decode()


def page_size(params: Any) -> int:
    try:
        size = int(params.get("page_size", "100"))
    except ValueError:
        return 100
    return min(max(size, 1), 1000)


async def list_topics(request: Request) -> Response:
    started = time.perf_counter()
    engine = engine_of(request)
    params = request.query_params
    prefix = params.get("prefix", "")
    size = page_size(params)
    touch = query_bool(params, "touch", False)
    cursor = params.get("cursor")
    after = decode_cursor(cursor) if cursor else None
    now = now_ms()
    entries: list[dict[str, Any]] = []
    more = False
    if after is not None and after >= prefix:
        names = engine.topics.irange(minimum=after, inclusive=(False, True))
    else:
        names = engine.topics.irange(minimum=prefix or None)
    key = key_of(request)
    for name in names:
        if not name.startswith(prefix):
            if name > prefix:
                break
            continue
        if key is not None and not key.allows(name):
            continue
        if len(entries) == size:
            more = True
            break
        log = engine.require(name)
        if touch:
            engine.mark_read(log, now)
        entries.append(
            {
                "topic": name,
                "head_seq": log.head,
                "earliest_seq": log.earliest_seq,
                "count": log.count,
                "bytes": log.bytes,
                "durable": log.config.durable,
                "effective_priority": engine.effective_priority(log, now),
            }
        )
    body: dict[str, Any] = {"topics": entries}
    if more:
        body["next_cursor"] = encode_cursor(entries[-1]["topic"])
    return json_response(body, started)


async def delete_topic(request: Request) -> Response:
    started = time.perf_counter()
    name: str = request.path_params["topic"]
    if_empty = query_bool(request.query_params, "if_empty", False)
    deleted, routers = await engine_of(request).delete_topic(name, if_empty)
    return json_response({"topic": name, "deleted": deleted, "routers_removed": routers}, started)
