"""``create_app(settings)``: the ASGI application serving ``/v0``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from topics_server.api import health, queues, records, routers, topics, watch
from topics_server.engine.engine import Engine
from topics_server.errors import ApiError, error_body
from topics_server.middleware import Front, Handler, Methods, Routes, parse_keys
from topics_server.settings import Settings
from topics_server.storage.base import StoreCorrupt
from topics_server.storage.memory import MemoryStore
from topics_server.wire import error_response

__all__ = ["create_app"]

log = logging.getLogger("topics_server")


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        error = ApiError(405, "method_not_allowed", f"{request.method} is not allowed here")
        response = error_response(error)
        if exc.headers and "Allow" in exc.headers:
            response.headers["allow"] = exc.headers["Allow"]
        return response
    if exc.status_code == 404:
        return error_response(ApiError(404, "not_found", f"no route for {request.url.path}"))
    return error_response(ApiError(exc.status_code, "invalid_request", str(exc.detail)))


async def _internal(request: Request, exc: Exception) -> Response:
    log.exception("internal error on %s %s", request.method, request.url.path)
    return Response(
        error_body("internal", "internal server error"),
        status_code=500,
        media_type="application/json",
    )


def _methods(**handlers: Handler) -> Methods:
    if "GET" in handlers:
        handlers["HEAD"] = handlers["GET"]
    return handlers


def _route(path: str, handlers: Methods) -> Route:
    """One route per path, dispatching on the method, so a 405 lists every allowed one."""
    if len(handlers) == 1:
        return Route(path, next(iter(handlers.values())), methods=list(handlers))

    async def dispatch(request: Request) -> Response:
        return await handlers[request.method](request)

    return Route(path, dispatch, methods=list(handlers))


# every route, answered by the front itself (see Routes); Starlette's router only
# answers what matches none of them (404, 405), with the same table
_EXACT: dict[str, Methods] = {
    "/v0/health": _methods(GET=health.health),
    "/healthz": _methods(GET=health.health),
    "/v0/ready": _methods(GET=health.ready),
    "/readyz": _methods(GET=health.ready),
    "/v0/metrics": _methods(GET=health.metrics),
    "/v0/topics": _methods(GET=topics.list_topics),
    "/v0/routers": _methods(GET=routers.list_routers),
    "/v0/watch": _methods(POST=watch.create_watch),
}
_NAMED: dict[str, tuple[str, dict[str, Methods]]] = {
    "topics": (
        "topic",
        {
            "": _methods(
                GET=topics.get_topic,
                PUT=topics.put_topic,
                POST=records.write,
                DELETE=topics.delete_topic,
            ),
            "diff": _methods(POST=records.diff),
            "delete": _methods(POST=records.delete_records),
            "claim": _methods(POST=queues.claim),
            "ack": _methods(POST=queues.ack),
            "nack": _methods(POST=queues.nack),
            "extend": _methods(POST=queues.extend),
            "work": _methods(GET=queues.work),
        },
    ),
    "routers": (
        "router",
        {
            "": _methods(
                GET=routers.get_router, PUT=routers.put_router, DELETE=routers.delete_router
            )
        },
    ),
    "watch": ("wid", {"": _methods(GET=watch.stream_watch)}),
}


def _starlette_routes() -> list[Route]:
    """Every route, for Starlette's router: what the front finds no handler for reaches it
    (the 404s, and the 405s with their Allow header)."""
    routes = [_route(path, methods) for path, methods in _EXACT.items()]
    for collection, (param, verbs) in _NAMED.items():
        for verb, methods in verbs.items():
            path = f"/v0/{collection}/{{{param}}}" + (f"/{verb}" if verb else "")
            routes.append(_route(path, methods))
    return routes


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


class _App(Starlette):
    """Starlette, entered through :class:`Front`: the hot routes never reach its layers."""

    front: Front

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self
        await self.front(scope, receive, send)

    async def starlette(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)


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

    keys = parse_keys(settings.api_keys)
    app = _App(
        routes=_starlette_routes(),
        lifespan=lifespan,
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            Exception: _internal,
        },
    )
    app.router.redirect_slashes = False  # an unknown path is 404, never a redirect
    app.front = Front(
        app.starlette,
        engine=engine,
        settings=settings,
        keys=keys,
        routes=Routes(_EXACT, _NAMED),
        error_response=error_response,
        internal=_internal,
    )
    app.state.settings = settings
    app.state.engine = engine
    return app
