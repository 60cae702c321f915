"""``create_app(settings)``: the ASGI application serving ``/v0``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from topics_server.api import health, records, topics
from topics_server.engine.engine import Engine
from topics_server.errors import ApiError, error_body
from topics_server.settings import Settings

__all__ = ["create_app"]

log = logging.getLogger("topics_server")


def _render(error: ApiError) -> Response:
    return Response(
        error.body(),
        status_code=error.status,
        media_type="application/json",
        headers=error.headers(),
    )


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _render(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        error = ApiError(405, "method_not_allowed", f"{request.method} is not allowed here")
        response = _render(error)
        if exc.headers and "Allow" in exc.headers:
            response.headers["allow"] = exc.headers["Allow"]
        return response
    if exc.status_code == 404:
        return _render(ApiError(404, "not_found", f"no route for {request.url.path}"))
    return _render(ApiError(exc.status_code, "invalid_request", str(exc.detail)))


async def _internal(request: Request, exc: Exception) -> Response:
    log.exception("internal error on %s %s", request.method, request.url.path)
    return Response(
        error_body("internal", "internal server error"),
        status_code=500,
        media_type="application/json",
    )


Handler = Callable[[Request], Awaitable[Response]]


def _route(path: str, **handlers: Handler) -> Route:
    """One route per path, dispatching on the method, so a 405 lists every allowed one."""
    if "GET" in handlers:
        handlers["HEAD"] = handlers["GET"]
    if len(handlers) == 1:
        return Route(path, next(iter(handlers.values())), methods=list(handlers))

    async def dispatch(request: Request) -> Response:
        return await handlers[request.method](request)

    return Route(path, dispatch, methods=list(handlers))


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> Starlette:
    settings = settings or Settings()
    engine = engine or Engine(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.ready = True
        app.state.replay_progress = 1.0
        try:
            yield
        finally:
            engine.begin_shutdown()
            await engine.store.close()

    routes = [
        _route("/v0/health", GET=health.health),
        _route("/healthz", GET=health.health),
        _route("/v0/ready", GET=health.ready),
        _route("/readyz", GET=health.ready),
        _route("/v0/metrics", GET=health.metrics),
        _route("/v0/topics", GET=topics.list_topics),
        _route(
            "/v0/topics/{topic}",
            GET=topics.get_topic,
            PUT=topics.put_topic,
            POST=records.write,
            DELETE=topics.delete_topic,
        ),
        _route("/v0/topics/{topic}/diff", POST=records.diff),
        _route("/v0/topics/{topic}/delete", POST=records.delete_records),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            Exception: _internal,
        },
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.ready = False
    app.state.replay_progress = 0.0
    return app
