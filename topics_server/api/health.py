"""Probes and metrics (SPEC §11)."""

from __future__ import annotations

import time

import orjson
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from topics_server import __version__
from topics_server.api.common import engine_of, key_of
from topics_server.errors import ApiError
from topics_server.metrics import metrics_json, metrics_text
from topics_server.wire import JsonResponse, json_response, now_ms

__all__ = ["health", "metrics", "ready"]


def _uptime_ms(request: Request) -> int:
    return int((time.monotonic() - engine_of(request).started) * 1000)


async def health(request: Request) -> Response:
    body = {"status": "ok", "version": __version__, "uptime_ms": _uptime_ms(request)}
    return JsonResponse(orjson.dumps(body))


async def ready(request: Request) -> Response:
    engine = engine_of(request)
    if engine.shutting_down:
        raise ApiError(503, "shutting_down", "the server is shutting down", retry_after=1)
    if not engine.ready:
        raise ApiError(
            503,
            "not_ready",
            "the server is recovering its state",
            {"replay_progress": round(engine.recovery_progress, 3)},
            retry_after=1,
        )
    body = {
        "status": "ready",
        "wal_replay_complete": True,
        "topics": len(engine.topics),
        "storage": "full" if engine.store.full else "ok",
    }
    return JsonResponse(orjson.dumps(body))


async def metrics(request: Request) -> Response:
    started = time.perf_counter()
    engine = engine_of(request)
    if "application/json" in request.headers.get("accept", ""):
        return json_response(metrics_json(engine, _uptime_ms(request)), started)
    key = key_of(request)
    visible = key.allows if key is not None and key.prefixes else None
    text = metrics_text(engine, _uptime_ms(request), now_ms(), visible)
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4")
