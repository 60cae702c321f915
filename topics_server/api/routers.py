"""Routers: PUT/GET/DELETE ``/v0/routers/{router}`` and ``GET /v0/routers`` (SPEC §8)."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from topics_server.api.common import engine_of, key_of, read_json, require_names
from topics_server.api.topics import decode_cursor, encode_cursor, page_size
from topics_server.engine.names import is_router_name, is_topic_name
from topics_server.engine.predicates import parse_predicate
from topics_server.engine.routers import Router, RouterSpec
from topics_server.errors import ApiError, invalid_request
from topics_server.wire import as_bool, as_object, json_response

__all__ = ["delete_router", "get_router", "list_routers", "put_router"]


def parse_spec(body: dict[str, Any]) -> RouterSpec:
    for field in ("source", "dest"):
        if field not in body:
            raise invalid_request(f"{field} is required", field=field)
        if type(body[field]) is not str:
            raise invalid_request(f"{field} must be a string", field=field)
    spec = RouterSpec(source=body["source"], dest=body["dest"])
    for field in ("preserve_node", "preserve_tag", "create_dest", "allow_cycle"):
        if (value := body.get(field)) is not None:
            setattr(spec, field, as_bool(value, field))
    if (raw := body.get("filter")) is not None:
        spec.filter = parse_predicate(raw, "filter")
    if (guarantee := body.get("guarantee")) is not None:
        if guarantee not in ("at_least_once", "exactly_once"):
            raise invalid_request(
                "guarantee must be at_least_once or exactly_once", field="guarantee"
            )
        spec.guarantee = guarantee
    return spec


def _describe(router: Router) -> dict[str, Any]:
    return router.describe()


async def put_router(request: Request) -> Response:
    started = time.perf_counter()
    name: str = request.path_params["router"]
    body = as_object(await read_json(request), "body")
    spec = parse_spec(body)
    require_names(request, spec.source, spec.dest)
    if not is_router_name(name):
        raise invalid_request(f"invalid router name {name!r}", router=name)
    for field in ("source", "dest"):
        topic = getattr(spec, field)
        if not is_topic_name(topic):
            raise invalid_request(f"invalid {field} topic name {topic!r}", field=field)
    if spec.source == spec.dest:
        raise invalid_request("source and dest must differ", source=spec.source)
    router, created = await engine_of(request).routers.put(name, spec)
    out = {"router": name, "created": created, **router.spec.to_json()}
    out.pop("create_dest")
    return json_response(out, started, status=201 if created else 200)


def _require(request: Request, name: str) -> Router:
    router = engine_of(request).routers.routers.get(name)
    if router is None:
        raise ApiError(404, "router_not_found", f"router {name!r} does not exist", {"router": name})
    require_names(request, router.spec.source, router.spec.dest)
    return router


async def get_router(request: Request) -> Response:
    started = time.perf_counter()
    router = _require(request, request.path_params["router"])
    return json_response({**_describe(router), "forwarded_total": router.forwarded_total}, started)


async def delete_router(request: Request) -> Response:
    started = time.perf_counter()
    name: str = request.path_params["router"]
    router = engine_of(request).routers.routers.get(name)
    if router is not None:
        require_names(request, router.spec.source, router.spec.dest)
    deleted = await engine_of(request).routers.delete(name)
    return json_response({"router": name, "deleted": deleted}, started)


async def list_routers(request: Request) -> Response:
    started = time.perf_counter()
    params = request.query_params
    prefix = params.get("prefix", "")
    source, dest = params.get("source"), params.get("dest")
    size = page_size(params)
    cursor = params.get("cursor")
    after = decode_cursor(cursor) if cursor else None
    routers = engine_of(request).routers.routers
    if after is not None and after >= prefix:
        names = routers.irange(minimum=after, inclusive=(False, True))
    else:
        names = routers.irange(minimum=prefix or None)
    entries: list[dict[str, Any]] = []
    more = False
    key = key_of(request)
    for name in names:
        if not name.startswith(prefix):
            break
        router = routers[name]
        if (source is not None and router.spec.source != source) or (
            dest is not None and router.spec.dest != dest
        ):
            continue
        if key is not None and not all(
            key.allows(n) for n in (name, router.spec.source, router.spec.dest)
        ):
            continue
        if len(entries) == size:
            more = True
            break
        entries.append(
            {
                "router": name,
                "source": router.spec.source,
                "dest": router.spec.dest,
                "guarantee": router.spec.guarantee,
                "forwarded_total": router.forwarded_total,
            }
        )
    body: dict[str, Any] = {"routers": entries}
    if more:
        body["next_cursor"] = encode_cursor(entries[-1]["router"])
    return json_response(body, started)
