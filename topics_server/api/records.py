"""Records: append (SPEC §3), diff (§4) and record deletes (§7)."""

from __future__ import annotations

import time
from array import array
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from topics_server.api.common import (
    engine_of,
    header,
    key_of,
    parse_nodes,
    query_flag,
    read_json,
    require_dead_letter,
    settings_of,
)
from topics_server.api.pages import render_records
from topics_server.engine.config import TopicConfig, parse_config
from topics_server.engine.engine import Batch, DiffRequest
from topics_server.engine.predicates import parse_predicate
from topics_server.errors import ApiError, invalid_request
from topics_server.settings import Settings
from topics_server.storage.records import Payload
from topics_server.wire import (
    U32_MAX,
    as_bool,
    as_object,
    as_str,
    as_u64,
    json_response,
)

__all__ = ["delete_records", "diff", "parse_batch", "write"]


def parse_batch(raw: Any, settings: Settings, batch_node: str | None) -> Batch:
    """Validate ``records`` into a batch (sizes + payload columns).

    The first offence is the answer; nothing of a rejected batch is kept.
    """
    if type(raw) is not list:
        raise invalid_request("records must be an array", field="records")
    n = len(raw)
    if n == 0:
        raise invalid_request("records must hold at least one record", field="records")
    if n > settings.max_batch_records:
        raise ApiError(
            400,
            "batch_too_large",
            f"{n} records in one write; the limit is {settings.max_batch_records}",
            {"records": n, "max": settings.max_batch_records},
        )
    dumps = orjson.dumps
    max_record = settings.max_record_bytes
    max_tag, max_node = settings.max_tag_bytes, settings.max_node_bytes
    sizes: list[int] = []
    datas: list[str] = []
    metas: list[str | None] | None = None
    tags: list[str | None] | None = None
    nodes: list[str | None] | None = None if batch_node is None else [batch_node] * n
    for i, item in enumerate(raw):
        if type(item) is not dict:
            raise invalid_request(f"records[{i}] must be an object", index=i)
        if "data" not in item:
            raise invalid_request(f"records[{i}].data is required", index=i)
        # keep the str, not orjson's bytes: a retained orjson bytes object costs
        # a fresh large allocation each, a str comes from the small-object pool
        encoded = dumps(item["data"])
        size = len(encoded)
        datas.append(encoded.decode())
        if (meta := item.get("meta")) is not None:
            encoded = _meta(meta, i, settings)
            size += len(encoded)
            if metas is None:
                metas = [None] * i
            metas.append(encoded.decode())
        elif metas is not None:
            metas.append(None)
        if (tag := item.get("tag")) is not None:
            as_str(tag, f"records[{i}].tag", max_tag)
            if tags is None:
                tags = [None] * n
            tags[i] = tag
        if (node := item.get("node")) is not None:
            as_str(node, f"records[{i}].node", max_node)
            if nodes is None:
                nodes = [None] * n
            nodes[i] = node
        if size > max_record:
            raise ApiError(
                400,
                "record_too_large",
                f"records[{i}] is {size} bytes; the limit is {max_record}",
                {"index": i, "bytes": size, "max": max_record},
            )
        sizes.append(size)
    return array("I", sizes), Payload(datas, metas, nodes, tags, None)


def _meta(meta: Any, i: int, settings: Settings) -> bytes:
    if type(meta) is not dict:
        raise invalid_request(f"records[{i}].meta must be an object", index=i)
    if len(meta) > settings.max_meta_keys:
        raise invalid_request(
            f"records[{i}].meta has {len(meta)} keys; the limit is {settings.max_meta_keys}",
            index=i,
        )
    encoded = orjson.dumps(meta)
    if len(encoded) > settings.max_meta_bytes:
        raise invalid_request(
            f"records[{i}].meta is {len(encoded)} bytes; the limit is {settings.max_meta_bytes}",
            index=i,
        )
    return encoded


async def write(request: Request) -> Response:
    started = time.perf_counter()
    name: str = request.path_params["topic"]
    settings = settings_of(request)
    body = as_object(await read_json(request), "body")
    get = body.get

    config: TopicConfig | None = None
    if (raw_config := get("config")) is not None:
        config = parse_config(raw_config, name)
        api_key = key_of(request)
        if api_key is not None and name not in engine_of(request).topics:
            if not api_key.has("admin"):
                raise ApiError(
                    403,
                    "forbidden",
                    "creating a topic with a config needs the admin scope",
                    {"topic": name},
                )
            require_dead_letter(request, config)
    create = get("create")
    if create is not None:
        as_bool(create, "create")
    if (v := get("disable_backpressure")) is not None:
        as_bool(v, "disable_backpressure")
    key = get("idempotency_key")
    if key is None:
        key = header(request, b"idempotency-key")
    if key is not None:
        as_str(key, "idempotency_key", settings.max_idempotency_key_bytes)
    batch_node = get("node")
    if batch_node is not None:
        as_str(batch_node, "node", settings.max_node_bytes)
    if "records" not in body:
        raise invalid_request("records is required", field="records")
    batch = parse_batch(body["records"], settings, batch_node)

    outcome = await engine_of(request).write(
        name, batch, create=create, config=config, idempotency_key=key
    )
    out: dict[str, Any] = {
        "topic": name,
        "first_seq": outcome.first_seq,
        "last_seq": outcome.last_seq,
    }
    if query_flag(request, "return_seqs", True):
        out["seqs"] = list(range(outcome.first_seq, outcome.last_seq + 1))
    out["head_seq"] = outcome.head_seq
    out["count"] = outcome.count
    out["created"] = outcome.created
    out["deduped"] = outcome.deduped
    if outcome.deduped:
        return json_response(out, started)
    return json_response(
        out,
        started,
        status=201 if outcome.created else 200,
        wal_append_ms=outcome.wal_append_ms,
        fsync_ms=outcome.fsync_ms,
    )


def parse_diff(body: dict[str, Any], settings: Settings) -> DiffRequest:
    get = body.get
    request = DiffRequest(limit=min(256, settings.max_limit))
    if (v := get("from_seq")) is not None:
        request.from_seq = as_u64(v, "from_seq")
    if (v := get("limit")) is not None:
        limit = as_u64(v, "limit", U32_MAX)
        request.limit = min(limit or 256, settings.max_limit)
    request.nodes = parse_nodes(get("node"))
    if (v := get("include_tags")) is not None:
        request.include_tags = as_bool(v, "include_tags")
    if (v := get("include_meta")) is not None:
        request.include_meta = as_bool(v, "include_meta")
    if (v := get("wait_ms")) is not None:
        request.wait_ms = min(as_u64(v, "wait_ms", U32_MAX), 30_000)
    if (v := get("max_batch_bytes")) is not None:
        size = as_u64(v, "max_batch_bytes")
        request.max_batch_bytes = min(size or 1_048_576, 8_388_608)
    return request


async def diff(request: Request) -> Response:
    started = time.perf_counter()
    name: str = request.path_params["topic"]
    body = as_object(await read_json(request, empty_as_object=True), "body")
    params = parse_diff(body, settings_of(request))
    _, result = await engine_of(request).diff(name, params)
    records = render_records(result.records, (params.include_tags, params.include_meta, True))
    return json_response(
        {
            "topic": name,
            "records": records,
            "next_from_seq": result.next_from_seq,
            "head_seq": result.head_seq,
            "earliest_seq": result.earliest_seq,
            "caught_up": result.caught_up,
            "tombstone": result.tombstone,
            "lag": result.head_seq - result.next_from_seq,
        },
        started,
        records_scanned=result.scanned,
    )


async def delete_records(request: Request) -> Response:
    started = time.perf_counter()
    name: str = request.path_params["topic"]
    body = as_object(await read_json(request), "body")
    before_seq = body.get("before_seq")
    if before_seq is not None:
        before_seq = as_u64(before_seq, "before_seq")
    raw_match = body.get("match")
    predicate = None if raw_match is None else parse_predicate(raw_match)
    if before_seq is None and predicate is None:
        raise invalid_request("give before_seq, match, or both", field="before_seq")
    log, deleted = await engine_of(request).delete_records(name, before_seq, predicate)
    return json_response(
        {
            "topic": name,
            "deleted": deleted,
            "earliest_seq": log.earliest_seq,
            "head_seq": log.head,
            "count": log.count,
            "bytes": log.bytes,
        },
        started,
    )
