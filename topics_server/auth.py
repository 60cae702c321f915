"""API keys, scopes and name allowlists (SPEC §12), as pure ASGI middleware.

``TOPICS_API_KEYS`` holds comma-separated entries ``secret[:scopes[:prefixes]]``.
Only SHA-256 digests are kept, and a presented token is compared against every
key in constant time. With no keys the server runs in dev mode: headers are
ignored and everything is allowed.

Checks run in the contract's order: authenticate (401) -> the key's in-flight
cap (429) -> scope (403) -> the path's name against the key's prefixes (403).
Checks that need the body (watch topics, router source/dest, config-on-create)
are made by the handlers through :func:`key_of` and :meth:`ApiKey.allows`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from topics_server.errors import ApiError, throttled
from topics_server.settings import SettingsError

__all__ = ["ApiKey", "AuthMiddleware", "key_of", "parse_keys", "require_names"]

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
PROBES = frozenset({"/v0/health", "/healthz", "/v0/ready", "/readyz"})


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


def key_of(request: Request) -> ApiKey | None:
    """The authenticated key of a request, or None in dev mode."""
    key: ApiKey | None = request.scope.get("state", {}).get("api_key")
    return key


def require_names(request: Request, *names: str) -> None:
    """403 unless the request's key may use every one of ``names``."""
    key = key_of(request)
    if key is None:
        return
    for name in names:
        if not key.allows(name):
            raise ApiError(403, "forbidden", f"this key may not use {name!r}", {"topic": name})


# (method, path pattern) -> scopes required; the name group is checked against prefixes
_RULES: list[tuple[str, re.Pattern[str], tuple[str, ...], str | None]] = [
    (m, re.compile(p), s, kind)
    for m, p, s, kind in (
        ("GET", r"/v0/topics", ("read",), None),
        ("GET", r"/v0/topics/(?P<name>[^/]+)", ("read",), "topic"),
        ("PUT", r"/v0/topics/(?P<name>[^/]+)", ("admin",), "topic"),
        ("POST", r"/v0/topics/(?P<name>[^/]+)", ("write",), "topic"),
        ("DELETE", r"/v0/topics/(?P<name>[^/]+)", ("delete",), "topic"),
        ("POST", r"/v0/topics/(?P<name>[^/]+)/diff", ("read",), "topic"),
        ("POST", r"/v0/topics/(?P<name>[^/]+)/delete", ("delete",), "topic"),
        ("POST", r"/v0/topics/(?P<name>[^/]+)/claim", ("read", "write"), "topic"),
        ("POST", r"/v0/topics/(?P<name>[^/]+)/(ack|nack|extend)", ("write",), "topic"),
        ("GET", r"/v0/topics/(?P<name>[^/]+)/work", ("read", "write"), "topic"),
        ("GET", r"/v0/routers", ("read",), None),
        ("GET", r"/v0/routers/(?P<name>[^/]+)", ("read",), "router"),
        ("PUT", r"/v0/routers/(?P<name>[^/]+)", ("admin",), "router"),
        ("DELETE", r"/v0/routers/(?P<name>[^/]+)", ("delete",), "router"),
        ("POST", r"/v0/watch", ("read",), None),
        ("GET", r"/v0/metrics", ("read",), None),
    )
]
# streams: the token may come as ?token=, and they hold SSE slots, not in-flight slots
_STREAMS = (re.compile(r"/v0/watch/[^/]+"), re.compile(r"/v0/topics/[^/]+/work"))


class AuthMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        keys: list[ApiKey],
        probe_auth: bool,
        inflight: int,
        streams_per_key: int,
    ) -> None:
        self.app = app
        self.keys = keys
        self.probe_auth = probe_auth
        self.inflight_cap = inflight
        self.streams_cap = streams_per_key
        self.inflight: dict[int, int] = {}
        self.streams: dict[int, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if method == "HEAD":
            method = "GET"
        if path in PROBES and not self.probe_auth:
            await self.app(scope, receive, send)
            return
        stream = method == "GET" and any(p.fullmatch(path) for p in _STREAMS)
        try:
            key = self._authenticate(scope, stream)
            if not stream:
                self._check_route(key, method, path)
        except ApiError as refused:
            await _render(refused, scope, receive, send)
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
            await _render(
                throttled(limit, cap, "this key has too many requests open"), scope, receive, send
            )
            return
        slots[key.index] = count + 1
        try:
            await self.app(scope, receive, send)
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

    def _check_route(self, key: ApiKey, method: str, path: str) -> None:
        for rule_method, pattern, scopes, kind in _RULES:
            if rule_method != method:
                continue
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if not key.has(*scopes):
                raise ApiError(403, "forbidden", f"this key lacks the {'+'.join(scopes)} scope", {})
            if kind is not None:
                name = match.group("name")
                if not key.allows(name):
                    detail: dict[str, Any] = {kind: name}
                    raise ApiError(403, "forbidden", f"this key may not use {name!r}", detail)
            return


async def _render(error: ApiError, scope: Scope, receive: Receive, send: Send) -> None:
    from starlette.responses import Response

    response = Response(
        error.body(),
        status_code=error.status,
        media_type="application/json",
        headers=error.headers(),
    )
    await response(scope, receive, send)
