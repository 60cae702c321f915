"""Write -> SSE delivery across idle gaps, against any /v0 server: ours or upstream's.

Run: .venv/bin/python -m bench.bench_fanout [--url URL --pid PID] [--watchers 1,10,100]
     [--writes 200] [--interval-ms 20]

One writer sends one-record writes ``--interval-ms`` apart (as ``topics-probe`` does, so
every write wakes an idle server), and N watchers tail the topic over raw sockets, all
read by one ``selectors`` loop in this process. For each write it times the writer's ack
and every watcher's first ``record`` frame from the moment the write was sent. Without
``--url`` it starts our server; with ``--pid`` (or for the server it started) it also
prints the server's CPU time per write, read from ``/proc`` (Linux). Prints figures;
never passes or fails.
"""

from __future__ import annotations

import argparse
import selectors
import socket
import time
import uuid

import orjson

from bench._common import ServerProcess, cpu_seconds, percentile

TIMEOUT_S = 10.0


def _connect(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _request(sock: socket.socket, method: str, path: str, body: bytes = b"") -> bytes:
    sock.sendall(_head(method, path, body) + body)
    buf = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        buf += chunk
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            continue
        length = int(buf[:end].lower().split(b"content-length:")[1].split(b"\r\n")[0])
        if len(buf) >= end + 4 + length:
            return buf[end + 4 : end + 4 + length]


def _head(method: str, path: str, body: bytes) -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode()


def run(url: str, watchers: int, writes: int, interval: float, pid: int | None) -> None:
    host, port_text = url.removeprefix("http://").rsplit(":", 1)
    port = int(port_text)
    topic = f"bench-fanout-{uuid.uuid4().hex[:8]}"
    writer = _connect(host, port)
    _request(writer, "POST", f"/v0/topics/{topic}", b'{"records":[{"data":"seed"}]}')
    selector = selectors.DefaultSelector()
    streams: list[socket.socket] = []
    try:
        for i in range(watchers):
            body = orjson.dumps({"topics": {topic: {"tail": True}}, "heartbeat_ms": 60_000})
            wid = orjson.loads(_request(writer, "POST", "/v0/watch", body))["stream_url"]
            stream = _connect(host, port)
            stream.sendall(f"GET {wid} HTTP/1.1\r\nhost: bench\r\n\r\n".encode())
            stream.setblocking(False)
            selector.register(stream, selectors.EVENT_READ, i)
            streams.append(stream)
        time.sleep(0.5)
        for stream in streams:  # what the streams sent on connecting
            try:
                while stream.recv(65536):
                    pass
            except BlockingIOError:
                pass
        writer.setblocking(False)
        selector.register(writer, selectors.EVENT_READ, -1)
        acks: list[float] = []
        deliveries: list[float] = []
        cpu = cpu_seconds(pid) if pid else float("nan")
        body = b'{"records":[{"data":{"x":"abcdefghij0123456789"}}]}'
        request = _head("POST", f"/v0/topics/{topic}", body) + body
        for _ in range(writes):
            sent = time.perf_counter()
            writer.sendall(request)
            waiting = set(range(watchers)) | {-1}
            deadline = time.monotonic() + TIMEOUT_S
            while waiting:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{len(waiting)} answers never came")
                for key, _ in selector.select(1):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if key.data == -1:
                        if -1 in waiting:
                            waiting.discard(-1)
                            acks.append(time.perf_counter() - sent)
                    elif key.data in waiting and b"event: record" in data:
                        waiting.discard(key.data)
                        deliveries.append(time.perf_counter() - sent)
            time.sleep(interval)
        cpu = (cpu_seconds(pid) - cpu) if pid else float("nan")
    finally:
        for stream in streams:
            stream.close()
        writer.setblocking(True)
        try:
            _request(writer, "DELETE", f"/v0/topics/{topic}")
        finally:
            writer.close()
    ms = [d * 1000 for d in deliveries]
    ack_ms = [a * 1000 for a in acks]
    line = (
        f"{watchers:4} watchers: ack p50 {percentile(ack_ms, 50):.2f} / p99 "
        f"{percentile(ack_ms, 99):.2f} ms; delivery p50 {percentile(ms, 50):.2f} / p90 "
        f"{percentile(ms, 90):.2f} / p99 {percentile(ms, 99):.2f} ms"
    )
    if pid:
        line += f"; server CPU per write {cpu / writes * 1000:.2f} ms"
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running server (default: start ours)")
    parser.add_argument("--pid", type=int, help="that server's process, for its CPU time")
    parser.add_argument("--watchers", default="1,10,100")
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--interval-ms", type=float, default=20.0)
    args = parser.parse_args()
    counts = [int(n) for n in args.watchers.split(",")]
    interval = args.interval_ms / 1000
    if args.url:
        for n in counts:
            run(args.url, n, args.writes, interval, args.pid)
        return
    with ServerProcess() as server:
        assert server.proc is not None
        for n in counts:
            run(server.url, n, args.writes, interval, server.proc.pid)


if __name__ == "__main__":
    main()
