"""HTTP connections: a deadline for receiving each request, a cap, and the fd limit.

uvicorn closes a connection that idles *between* requests (``timeout_keep_alive``)
but not one that never finishes sending a request, so a few hundred silent
sockets could hold every file descriptor the process has. The protocol class
here is uvicorn's httptools protocol, handed to ``uvicorn.Config(http=...)``, with:

- a deadline for the request line and headers, counted from the connection's
  first byte of each request (or from the accept, for the first one);
- an idle deadline for the body: no byte for ``body_timeout`` closes it. The
  handler reading the body then sees a disconnect, logged as one line;
- a cap on open connections: a connection past it gets a short grace to send
  its request, which is answered ``429 throttled`` with ``Retry-After`` (by
  :class:`topics_server.middleware.Front`) and closed;
- a response's head and body sent in one write (:class:`_Coalesced`).

The deadlines share one timer per connection, moved lazily: a request only
notes when its phase ends, and the timer, when it fires, closes the connection
or re-arms for what is left.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from topics_server.middleware import BACKLOG, OVER_CAPACITY

__all__ = ["default_max_connections", "protocol_class", "raise_fd_limit"]

log = logging.getLogger("topics_server")

# a connection past the cap has this long to send its request before it is closed
OVER_CAP_GRACE_S = 1.0
# descriptors kept back from the connection cap: the store, the listener, stdio,
# and connections accepted past the cap while they wait for their 429
FD_RESERVE_FRACTION = 4


def raise_fd_limit() -> int:
    """Raise the soft open-file limit to the hard one; returns the soft limit in force."""
    if sys.platform == "win32":  # pragma: no cover - no rlimits there
        return 0
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    # an unlimited hard limit is not a valid soft one everywhere (macOS caps it)
    wanted = [hard] if hard != resource.RLIM_INFINITY else [1 << 20, 10240]
    for target in wanted:
        if target <= soft:
            break
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            continue
        return target
    return soft


def default_max_connections(fd_limit: int) -> int:
    """The connection cap when none is configured: most of the descriptors, never all."""
    if fd_limit <= 0:
        return 0
    return max(16, fd_limit - fd_limit // FD_RESERVE_FRACTION)


class _Coalesced:
    """The connection's transport, sending a response's head with its body.

    uvicorn writes a response's status line and headers as soon as the app starts
    the response, and the body with the next message: two writes, two segments and
    two wake-ups of the client for every small answer. Here a head that announces a
    ``content-length`` (every answer but the event streams, whose heads go out at
    once) is held until the next write joins it; the protocol flushes it when the
    response completes without a body write (HEAD), and a close flushes it too.
    """

    __slots__ = ("_held", "_transport", "hold")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: bytes | None = None
        self.hold = False  # the next head written may wait for its body

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
        elif self.hold and b"\r\ncontent-length: " in data:
            self.hold = False
            self._held = bytes(data)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _Guarded(HttpToolsProtocol):
    header_timeout = 10.0  # seconds; 0 disables
    body_timeout = 30.0  # seconds without a body byte; 0 disables
    max_connections = 0  # 0: no cap

    # One timer per connection, moved lazily: each request only notes its deadline, and
    # the timer, when it fires, closes the connection or re-arms for what is left.
    _timer: asyncio.TimerHandle | None
    _timer_at: float  # when the armed timer fires
    _deadline: float  # 0: none (between requests, or no timeout for this phase)
    _in_body: bool  # the deadline is the body's: idle time since the last body byte
    _progress: float
    _over: int
    _coalesced: _Coalesced

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._coalesced = _Coalesced(transport)
        self.transport = cast(asyncio.Transport, self._coalesced)
        self._timer = None
        self._timer_at = 0.0
        self._deadline = 0.0
        self._in_body = False
        self._progress = 0.0
        cap = self.max_connections
        self._over = cap if cap and len(self.connections) > cap else 0
        self._arm_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._deadline = 0.0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        scope = cast(dict[str, Any], self.scope)
        if self._over:
            scope[OVER_CAPACITY] = self._over
        # how much this connection has queued: the watch tails write only to idle ones
        scope[BACKLOG] = self._coalesced.get_write_buffer_size
        self._arm_headers()  # the next request on a kept-alive connection

    def on_headers_complete(self) -> None:
        self._coalesced.hold = True  # the answer's head waits for its body
        super().on_headers_complete()
        if self.body_timeout:
            self._in_body = True
            self._progress = now = self.loop.time()
            self._set_deadline(now + self.body_timeout)
        else:
            self._deadline = 0.0

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._progress = self.loop.time()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._deadline = 0.0

    def on_response_complete(self) -> None:
        self._coalesced.hold = False
        self._coalesced.flush()  # a head whose body was never written (HEAD)
        super().on_response_complete()

    def _arm_headers(self) -> None:
        if self._deadline and not self._in_body:
            return  # already counting: from the accept, for the first request
        timeout = self.header_timeout
        if self._over:
            timeout = min(timeout, OVER_CAP_GRACE_S) if timeout else OVER_CAP_GRACE_S
        if timeout:
            self._in_body = False
            self._set_deadline(self.loop.time() + timeout)

    def _set_deadline(self, deadline: float) -> None:
        self._deadline = deadline
        timer = self._timer
        if timer is not None:
            if self._timer_at <= deadline:
                return  # fires first, and moves on to this deadline
            timer.cancel()
        self._timer_at = deadline
        self._timer = self.loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        self._timer = None
        deadline = self._deadline
        if not deadline:
            return
        if self._in_body:
            deadline = self._progress + self.body_timeout
        if self.loop.time() < deadline:
            self._timer_at = deadline
            self._timer = self.loop.call_at(deadline, self._expire)
            return
        if not self.transport.is_closing():
            where = "body" if self._in_body else "request headers"
            log.info("closing a connection that did not send its %s in time", where)
            self.transport.close()


def protocol_class(
    header_timeout_ms: int, body_timeout_ms: int, max_connections: int
) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with these deadlines and this cap (``http=`` of its Config)."""
    return type(
        "GuardedHttpToolsProtocol",
        (_Guarded,),
        {
            "header_timeout": header_timeout_ms / 1000,
            "body_timeout": body_timeout_ms / 1000,
            "max_connections": max_connections,
        },
    )
