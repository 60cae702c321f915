"""Fake transports for stream fault injection (dropped, cut, silent, collected)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

SSE_HEADERS = {"content-type": "text/event-stream", "cache-control": "no-store"}


def cid(cursors: dict[str, int]) -> str:
    """A composite SSE id as SPEC §9.5 builds it."""
    raw = orjson.dumps(cursors, option=orjson.OPT_SORT_KEYS)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def frame(event: str, data: Any, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    return (head + f"event: {event}\ndata: ").encode() + orjson.dumps(data) + b"\n\n"


def records_frame(
    topic: str, seqs: Sequence[int], *, from_seq: int, to_seq: int | None = None, event_id: str
) -> bytes:
    records = [{"$seq": s, "$ts": 1000 + s, "data": {"n": s}} for s in seqs]
    to = to_seq if to_seq is not None else (seqs[-1] if seqs else from_seq)
    body = {"topic": topic, "from_seq": from_seq, "to_seq": to, "head_seq": to, "records": records}
    return frame("record", body, event_id)


class ChunkStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """Yields chunks, then ends cleanly or raises ``end`` (a transport failure)."""

    def __init__(self, chunks: Sequence[bytes], end: Exception | None = None) -> None:
        self.chunks = list(chunks)
        self.end = end

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        if self.end is not None:
            raise self.end

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        if self.end is not None:
            raise self.end


@dataclass
class Conn:
    """One scripted GET of the stream: chunks then ``end``, or a fixed ``response``."""

    chunks: Sequence[bytes] = ()
    end: Exception | None = None
    response: httpx.Response | None = None


@dataclass
class FakeWatchServer:
    conns: list[Conn | Exception]
    post_errors: list[httpx.Response] = field(default_factory=list)
    posts: list[dict[str, Any]] = field(default_factory=list)
    gets: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path == "/v0/watch":
            body = orjson.loads(request.content)
            self.posts.append(body)
            if self.post_errors:
                return self.post_errors.pop(0)
            wid = f"wid_{len(self.posts)}"
            topics = {
                t: {
                    "from_seq": spec.get("from_seq", 7 if spec.get("tail") else 0),
                    "head_seq": 0,
                    "earliest_seq": 1,
                }
                for t, spec in body["topics"].items()
            }
            return httpx.Response(
                200,
                json={
                    "wid": wid,
                    "stream_url": f"/v0/watch/{wid}",
                    "session_ttl_ms": 300000,
                    "topics": topics,
                },
            )
        assert request.method == "GET" and request.url.path.startswith("/v0/watch/")
        self.gets.append(request)
        if not self.conns:
            raise AssertionError("unexpected extra stream connection")
        conn = self.conns.pop(0)
        if isinstance(conn, Exception):
            raise conn
        if conn.response is not None:
            return conn.response
        return httpx.Response(200, headers=SSE_HEADERS, stream=ChunkStream(conn.chunks, conn.end))


def not_found(code: str = "not_found", **detail: Any) -> httpx.Response:
    body = {"error": {"code": code, "message": code, "detail": detail}}
    return httpx.Response(404, json=body)


SHUTDOWN = frame("error", {"code": "server_shutting_down", "message": "bye"})
