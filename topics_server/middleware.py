"""The one pure-ASGI layer in front of the server's handlers, and the API-key table.

:class:`Front` does, in order (each costs one test when it does not apply):

    connection cap  a connection opened past the cap answers 429 + Retry-After, then closes
    API keys        authenticate (401) -> the key's in-flight cap (429) -> scope (403)
                    -> the path's name against the key's prefixes (403)        (SPEC §12)
    encoded slash   a name segment holding ``%2F`` is an invalid name (400 / 404)  (SPEC §0.3)
    readiness       while the engine recovers, everything but the probes is 503
    routing         the hot routes straight to their handler, the rest to Starlette
    client gone     a client that hangs up before its answer is routine: one debug line

``TOPICS_API_KEYS`` holds comma-separated entries ``secret[:scopes[:prefixes]]``.
Only SHA-256 digests are kept, and a presented token is compared against every
key in constant time. With no keys the server runs in dev mode: headers are
ignored and everything is allowed. Checks that need the body (watch topics,
router source/dest, config-on-create, dead letters) are made by the handlers
(``api/common.py``).

Routes are matched on the raw path split into segments, each percent-decoded on
its own: ``/v0/topics/a%2Fb`` is the topic route with the name ``a/b``, so it is
authenticated and scope-checked like any other before the name is judged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, unquote

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from topics_server.engine.engine import Engine
from topics_server.errors import ApiError, invalid_request, throttled
from topics_server.settings import Settings, SettingsError

__all__ = [
    "ENGINE",
    "OVER_CAPACITY",
    "PARTIAL_BODY",
    "SETTINGS",
    "ApiKey",
    "Front",
    "Routes",
    "parse_keys",
    "path_segments",
    "render",
]

PROBES = frozenset({"/v0/health", "/healthz", "/v0/ready", "/readyz"})
# set in a request's scope (to the cap) by the HTTP protocol when its connection is past it
OVER_CAPACITY: Final = "topics.over_capacity"
# set in every request's scope by the HTTP protocol: () -> bytes its connection has queued
BACKLOG: Final = "topics.backlog"
# set in every request's scope by the front: the app's engine and settings
ENGINE: Final = "topics.engine"
SETTINGS: Final = "topics.settings"
# set by the body reader when the client left after part of a body it announced
PARTIAL_BODY: Final = "topics.partial_body"


async def render(error: ApiError, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer with the canonical envelope, straight from middleware."""
    headers = [(b"content-type", b"application/json")]
    headers += [(k.encode(), v.encode()) for k, v in error.headers().items()]
    body = error.body()
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def path_segments(scope: Scope) -> list[str]:
    """The path's ``/``-separated segments, each percent-decoded on its own."""
    raw: bytes | None = scope.get("raw_path")
    if not raw or b"%" not in raw:
        path: str = scope["path"]
        return path.split("/")
    return [unquote(part) for part in raw.decode("latin-1").split("/")]


log = logging.getLogger("topics_server")


# -- API keys (SPEC §12.1) ----------------------------------------------------------

SCOPE_WORDS = {
    "read": {"read"},
    "r": {"read"},
    "write": {"write"},
    "w": {"write"},
    "delete": {"delete"},
    "del": {"delete"},
    "d": {"delete"},
    "admin": {"admin"},
    "a": {"admin"},
    "rw": {"read", "write"},
}
ALL_SCOPES = frozenset({"read", "write", "delete", "admin"})


@dataclass(frozen=True, slots=True)
class ApiKey:
    index: int  # position in TOPICS_API_KEYS: identifies the key without its secret
    digest: bytes
    scopes: frozenset[str]
    prefixes: tuple[str, ...]  # empty: any name

    def allows(self, name: str) -> bool:
        return not self.prefixes or any(name.startswith(p) for p in self.prefixes)

    def has(self, *scopes: str) -> bool:
        return all(s in self.scopes for s in scopes)


def parse_keys(text: str) -> list[ApiKey]:
    """Parse ``TOPICS_API_KEYS``; an unknown scope word stops the server starting."""
    keys: list[ApiKey] = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        secret, _, rest = entry.partition(":")
        scope_text, _, prefix_text = rest.partition(":")
        secret = secret.strip()
        if not secret:
            raise SettingsError("TOPICS_API_KEYS has an entry with an empty secret")
        scopes: set[str] = set()
        for word in (w.strip().lower() for w in scope_text.split("+")):
            if not word:
                continue
            if word not in SCOPE_WORDS:
                raise SettingsError(
                    f"TOPICS_API_KEYS: unknown scope {word!r} "
                    "(read/r, write/w, delete/del/d, admin/a, rw)"
                )
            scopes |= SCOPE_WORDS[word]
        prefixes = tuple(p.strip() for p in prefix_text.split("|") if p.strip())
        keys.append(
            ApiKey(
                len(keys),
                hashlib.sha256(secret.encode()).digest(),
                frozenset(scopes) or ALL_SCOPES,
                prefixes,
            )
        )
    return keys


# -- authentication and authorisation (SPEC §12.2) --------------------------------------

# (method, route shape under /v0 with "*" for the name) -> (scopes, name kind, is a stream)
_RULES: dict[tuple[str, tuple[str, ...]], tuple[tuple[str, ...], str | None, bool]] = {
    ("GET", ("topics",)): (("read",), None, False),
    ("GET", ("topics", "*")): (("read",), "topic", False),
    ("PUT", ("topics", "*")): (("admin",), "topic", False),
    ("POST", ("topics", "*")): (("write",), "topic", False),
    ("DELETE", ("topics", "*")): (("delete",), "topic", False),
    ("POST", ("topics", "*", "diff")): (("read",), "topic", False),
    ("POST", ("topics", "*", "delete")): (("delete",), "topic", False),
    ("POST", ("topics", "*", "claim")): (("read", "write"), "topic", False),
    ("POST", ("topics", "*", "ack")): (("write",), "topic", False),
    ("POST", ("topics", "*", "nack")): (("write",), "topic", False),
    ("POST", ("topics", "*", "extend")): (("write",), "topic", False),
    ("GET", ("topics", "*", "work")): (("read", "write"), "topic", True),
    ("GET", ("routers",)): (("read",), None, False),
    ("GET", ("routers", "*")): (("read",), "router", False),
    ("PUT", ("routers", "*")): (("admin",), "router", False),
    ("DELETE", ("routers", "*")): (("delete",), "router", False),
    ("POST", ("watch",)): (("read",), None, False),
    # the session is bound to its creating key: the handler checks it (SPEC §12.3)
    ("GET", ("watch", "*")): ((), None, True),
    ("GET", ("metrics",)): (("read",), None, False),
}
_NO_RULE: Final = ((), None, False)


def _rule(method: str, segments: list[str]) -> tuple[tuple[str, ...], str | None, bool, str]:
    """(scopes, name kind, is a stream, name) of a request; no scopes for unknown routes."""
    if len(segments) < 3 or segments[0] or segments[1] != "v0":
        return (*_NO_RULE, "")
    rest = segments[2:]
    if len(rest) == 1:
        return (*_RULES.get((method, (rest[0],)), _NO_RULE), "")
    name = rest[1]
    if not name:
        return (*_NO_RULE, "")
    return (*_RULES.get((method, (rest[0], "*", *rest[2:])), _NO_RULE), name)


# -- the one layer in front of the app --------------------------------------------------

Handler = Callable[[Request], Awaitable[Response]]
Methods = dict[str, Handler]


@dataclass(frozen=True, slots=True)
class Routes:
    """The routes the front answers itself, without Starlette's regex walk.

    ``exact``: path -> method -> handler. ``named``: collection (``topics``) ->
    (the path parameter's name, verb or ``""`` -> method -> handler), for
    ``/v0/{collection}/{name}[/{verb}]``. Anything else (an unknown path, a method
    a route lacks) goes on to Starlette's router.
    """

    exact: dict[str, Methods]
    named: dict[str, tuple[str, dict[str, Methods]]]

    def find(self, method: str, path: str) -> tuple[Handler, dict[str, str]] | None:
        methods = self.exact.get(path)
        if methods is not None:
            handler = methods.get(method)
            return None if handler is None else (handler, {})
        parts = path.split("/")
        if len(parts) < 4 or len(parts) > 5 or parts[0] or parts[1] != "v0":
            return None
        named = self.named.get(parts[2])
        name = parts[3]
        if named is None or not name:
            return None
        param, verbs = named
        verb = ""
        if len(parts) == 5 and not (verb := parts[4]):
            return None  # a trailing slash: no route
        methods = verbs.get(verb)
        if methods is None or (handler := methods.get(method)) is None:
            return None
        return handler, {param: name}


class Front:
    """Everything the server checks before a handler runs, in one pure-ASGI layer
    in front of Starlette (``app``).

    In order, each skipped at the cost of one test when it does not apply:

    - a connection accepted past the cap: 429 + Retry-After, then the connection closes;
    - API keys: authenticate (401) -> the key's in-flight cap (429) -> scope (403)
      -> the path's name against the key's prefixes (403)                 (SPEC §12);
    - a name segment holding ``%2F`` is an invalid name (400 / 404)      (SPEC §0.3);
    - while the engine recovers, everything but the probes is 503 ``not_ready``.

    Then the route: a known one is found in :class:`Routes` and its handler
    called here, an :class:`ApiError` it raises rendered as the envelope; an
    unknown path or method goes to Starlette, for its 404 or 405. A client that
    hangs up before its answer (``topics diff big | head -3``, a killed script)
    makes the body reader raise :class:`ClientDisconnect`: nobody is left to
    answer, so that is one debug line,
    or one warning when it left halfway through a body it announced. Any other
    exception from a handler called here is answered by ``internal`` (500) and
    re-raised, as Starlette's outermost layer does with the ones it sees.
    """

    def __init__(
        self,
        app: ASGIApp,
        engine: Engine,
        settings: Settings,
        keys: list[ApiKey],
        routes: Routes,
        error_response: Callable[[ApiError], Response],
        internal: Callable[[Request, Exception], Awaitable[Response]],
    ) -> None:
        self.app = app
        self.engine = engine
        self.settings = settings
        self.routes = routes
        self.error_response = error_response
        self.internal = internal
        self.keys = keys
        self.probe_auth = settings.probe_auth
        self.inflight_cap = settings.max_inflight_per_key
        self.streams_cap = settings.max_sse_connections_per_key
        self.inflight: dict[int, int] = {}
        self.streams: dict[int, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[ENGINE] = self.engine
        scope[SETTINGS] = self.settings
        try:
            if scope.get(OVER_CAPACITY):
                await _over_capacity(scope, receive, send)
            elif self.keys and (self.probe_auth or scope["path"] not in PROBES):
                await self._authorised(scope, receive, send)
            else:
                await self._admitted(scope, receive, send)
        except ClientDisconnect:
            client = scope.get("client")
            peer = "?" if not client else f"{client[0]}:{client[1]}"
            method, path = scope.get("method"), scope.get("path")
            if scope.get(PARTIAL_BODY):
                log.warning(
                    "client %s went away before sending its whole request: %s %s",
                    peer,
                    method,
                    path,
                )
            else:
                log.debug("client %s went away before its answer: %s %s", peer, method, path)

    async def _admitted(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw: bytes | None = scope.get("raw_path")
        if raw and b"%" in raw and b"%2f" in raw.lower():
            refused = _encoded_slash(scope)
            if refused is not None:
                await render(refused, scope, receive, send)
                return
        path: str = scope["path"]
        if not self.engine.ready and path not in PROBES:
            error = ApiError(
                503,
                "not_ready",
                "the server is recovering its state",
                {"replay_progress": round(self.engine.recovery_progress, 3)},
            )
            await render(error, scope, receive, send)
            return
        found = None if scope.get("root_path") else self.routes.find(scope["method"], path)
        if found is None:
            await self.app(scope, receive, send)
            return
        handler, scope["path_params"] = found
        request = Request(scope, receive, send)
        try:
            response = await handler(request)
        except ApiError as error:
            response = self.error_response(error)
        except ClientDisconnect:
            raise
        except Exception as exc:  # as Starlette's outermost layer does: a 500, then re-raise
            await (await self.internal(request, exc))(scope, receive, send)
            raise
        await response(scope, receive, send)

    async def _authorised(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        scopes, kind, stream, name = _rule(
            "GET" if method == "HEAD" else method, path_segments(scope)
        )
        try:
            key = self._authenticate(scope, stream)
            if not key.has(*scopes):
                raise ApiError(403, "forbidden", f"this key lacks the {'+'.join(scopes)} scope", {})
            if kind is not None and not key.allows(name):
                detail: dict[str, Any] = {kind: name}
                raise ApiError(403, "forbidden", f"this key may not use {name!r}", detail)
        except ApiError as refused:
            await render(refused, scope, receive, send)
            return
        scope.setdefault("state", {})["api_key"] = key
        # streams hold SSE slots, everything else in-flight slots (SPEC §13)
        slots, cap, limit = (
            (self.streams, self.streams_cap, "max_sse_connections_per_key")
            if stream
            else (self.inflight, self.inflight_cap, "max_inflight_per_key")
        )
        count = slots.get(key.index, 0)
        if cap and count >= cap:
            busy = throttled(limit, cap, "this key has too many requests open")
            await render(busy, scope, receive, send)
            return
        slots[key.index] = count + 1
        try:
            await self._admitted(scope, receive, send)
        finally:
            slots[key.index] -= 1

    def _authenticate(self, scope: Scope, stream: bool) -> ApiKey:
        token = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                text = value.decode("latin-1").strip()
                if text[:7].lower() == "bearer ":
                    token = text[7:].strip()
                break
        if token is None and stream:
            for name, value in parse_qsl(scope.get("query_string", b"").decode("latin-1")):
                if name == "token":
                    token = value
                    break
        if not token:
            raise ApiError(401, "unauthorized", "send an API key as Authorization: Bearer <key>")
        digest = hashlib.sha256(token.encode()).digest()
        found = None
        for key in self.keys:  # every key, every time: constant time whatever matches
            if hmac.compare_digest(digest, key.digest):
                found = key
        if found is None:
            raise ApiError(401, "unauthorized", "unknown API key")
        return found


async def _over_capacity(scope: Scope, receive: Receive, send: Send) -> None:
    """A request on a connection accepted past the cap: 429 and a close."""
    cap = scope[OVER_CAPACITY]
    # a resource cap like the others of SPEC §13: 429 throttled, Retry-After 1
    error = ApiError(
        429,
        "throttled",
        f"the server holds its maximum of {cap} connections; retry shortly",
        {"limit": "max_connections", "max": cap},
    )
    headers = [(b"connection", b"close")]

    async def closing(message: Any) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = list(message["headers"]) + headers
        await send(message)

    await render(error, scope, receive, closing)


def _encoded_slash(scope: Scope) -> ApiError | None:
    """A name segment holding an encoded ``/`` (``%2F``) is a bad name.

    The server decodes the whole path before routing, so ``a%2Fb`` would look
    like two segments and miss every route. Names can never contain ``/``, so
    answer as the contract does for any invalid name: 400 where the request
    would create it, 404 ``topic_not_found``/``router_not_found`` for look-ups.
    """
    parts = path_segments(scope)
    if len(parts) < 4 or parts[1] != "v0" or parts[2] not in ("topics", "routers"):
        return None
    name = parts[3]
    if "/" not in name:  # the encoded slash is elsewhere in the path
        return None
    kind = "topic" if parts[2] == "topics" else "router"
    creates = len(parts) == 4 and scope["method"] in (
        ("PUT", "POST") if kind == "topic" else ("PUT",)
    )
    if creates:
        return invalid_request(f"invalid {kind} name {name!r}", **{kind: name})
    return ApiError(404, f"{kind}_not_found", f"{kind} {name!r} does not exist", {kind: name})
