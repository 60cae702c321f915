"""``create_app(settings)``: the ASGI application serving ``/v0``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from topics_server.api import health, queues, records, routers, topics, watch
from topics_server.engine.engine import Engine
from topics_server.errors import ApiError, error_body
from topics_server.middleware import (
    Auth,
    ClientGone,
    ConnectionCap,
    EncodedSlashes,
    ReadinessGate,
    parse_keys,
)
from topics_server.settings import Settings
from topics_server.storage.base import StoreCorrupt
from topics_server.storage.memory import MemoryStore

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


async def _recover(engine: Engine, on_fatal: Callable[[str], None] | None) -> None:
    try:
        await asyncio.to_thread(engine.recover)
    except Exception as exc:  # recovery never hangs: any failure ends start-up, named
        message = str(exc) if isinstance(exc, StoreCorrupt) else f"recovery failed: {exc!r}"
        if on_fatal is None:
            raise StoreCorrupt(message) from None
        on_fatal(message)
        return
    await engine.finish_recovery()
    engine.routers.start()
    engine.ready = True


def create_app(
    settings: Settings | None = None,
    engine: Engine | None = None,
    on_fatal: Callable[[str], None] | None = None,
) -> Starlette:
    """The ASGI app; ``on_fatal`` is told when recovery finds the store unusable."""
    settings = settings or Settings()
    engine = engine or Engine(settings, MemoryStore())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        recovery = None
        if engine.store is not None:
            engine.store.start(asyncio.get_running_loop())
            # serve probes while the state is rebuilt: /v0/ready says not_ready until then
            recovery = asyncio.create_task(_recover(engine, on_fatal))
        else:
            engine.routers.start()
        try:
            yield
        finally:
            engine.begin_shutdown()
            if recovery is not None and not recovery.done():
                recovery.cancel()
            await engine.routers.drain(timeout=2.0)
            await engine.routers.stop()
            await engine.close()

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
        _route("/v0/topics/{topic}/claim", POST=queues.claim),
        _route("/v0/topics/{topic}/ack", POST=queues.ack),
        _route("/v0/topics/{topic}/nack", POST=queues.nack),
        _route("/v0/topics/{topic}/extend", POST=queues.extend),
        _route("/v0/topics/{topic}/work", GET=queues.work),
        _route("/v0/routers", GET=routers.list_routers),
        _route("/v0/watch", POST=watch.create_watch),
        _route("/v0/watch/{wid}", GET=watch.stream_watch),
        _route(
            "/v0/routers/{router}",
            GET=routers.get_router,
            PUT=routers.put_router,
            DELETE=routers.delete_router,
        ),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            Middleware(ClientGone),
            Middleware(ConnectionCap),
            Middleware(
                Auth,
                keys=parse_keys(settings.api_keys),
                probe_auth=settings.probe_auth,
                inflight=settings.max_inflight_per_key,
                streams_per_key=settings.max_sse_connections_per_key,
            ),
            Middleware(EncodedSlashes),
            Middleware(ReadinessGate, engine=engine),
        ],
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            Exception: _internal,
        },
    )
    app.router.redirect_slashes = False  # an unknown path is 404, never a redirect
    app.state.settings = settings
    app.state.engine = engine
    return app
