"""The SSE endpoints' response: a producer writes chunks until it returns or the client leaves.

Starlette's ``StreamingResponse`` pulls an async iterator and, on servers that
speak ASGI spec 2.3 (uvicorn does), runs it in an anyio task group beside a
disconnect listener. That puts a generator level and anyio's task wrapper on
every chunk of every stream, and fan-out pays it once per watcher per write.
Here the producer is handed ``write`` and awaits it for each chunk (the server
applies backpressure in that await), in a plain task; a second task waits for
the client's disconnect and cancels it. Errors in the producer propagate as
they would from any handler; a client that left is a normal end.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Mapping
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

__all__ = ["EventStream", "Produce", "Write", "from_chunks"]

Write = Callable[[bytes], Awaitable[None]]
Produce = Callable[[Write], Coroutine[Any, Any, None]]


class EventStream(Response):
    """``text/event-stream``, written by ``produce(write)``."""

    media_type = "text/event-stream"

    def __init__(self, produce: Produce, headers: Mapping[str, str] | None = None) -> None:
        # like StreamingResponse: no body, so no content-length (the answer is chunked)
        self.produce = produce
        self.status_code = 200
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})

        async def write(chunk: bytes) -> None:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

        loop = asyncio.get_running_loop()
        writer = loop.create_task(self.produce(write))
        listener = loop.create_task(_disconnected(receive))
        try:
            await asyncio.wait((writer, listener), return_when=asyncio.FIRST_COMPLETED)
        finally:
            listener.cancel()
            writer.cancel()
            # the producer's clean-up (its finally blocks) runs before the handler returns
            await asyncio.wait((writer, listener))
        left = listener.done() and not listener.cancelled() and listener.exception() is None
        if writer.cancelled() or left:
            return  # the client left (anything the producer raised meanwhile is moot)
        writer.result()  # a producer's error is the handler's error
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def from_chunks(chunks: AsyncGenerator[bytes, None]) -> Produce:
    """A producer writing what an async generator yields (closed however it ends)."""

    async def produce(write: Write) -> None:
        try:
            async for chunk in chunks:
                await write(chunk)
        finally:
            await chunks.aclose()

    return produce
