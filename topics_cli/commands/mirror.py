"""``topics mirror``: copy topics between two servers, one way or both, without echoes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from topics_cli.context import get_app
from topics_cli.group import typer_app
from topics_cli.mirror.plan import MAX_FRAME_RECORDS

if TYPE_CHECKING:
    from topics_cli.mirror.relay import Relay
    from topics_cli.output import Sink

HELP = """Copy topics from one server to another, live: catch up from a checkpoint, then
follow. Each source batch goes to the destination under an idempotency key named after its
first source record (seq and $ts), and the checkpoint is saved after the destination
acknowledges it, so a relay killed at any point neither loses nor doubles a record (within
the destination topic's idempotency_window_ms, default 2 minutes).

$node and $tag travel verbatim; meta gains "_topics_mirror": {"hops", "path", "topic",
"seq"}. A record is never copied into a server already on its path (no echoes in a
two-way mirror) nor after 8 hops (any mesh terminates). Readers pass their own node id
as the node filter and never see their own writes come back.

Gaps (the source evicted records before the relay read them) are reported on stderr and
in the metrics; --gap-marker also writes a marker record into the destination;
--fail-on-gap exits 3 and leaves the checkpoint before the gap.

Servers: NAME=URL twice (first to second; --both-ways adds second to first), or --from
and --to with an optional /TOPIC on each URL (one topic, renamed if the names differ).
A server's NAME (default: the URL's host:port) goes into keys, paths and checkpoints:
give a server the same name in every relay that touches it.

\b
Examples:
  topics mirror fra=http://fra:4000 iad=http://iad:4000 --topic 'chat:*' --both-ways -c mirror.cp
  topics mirror --from http://fra:4000/orders --to http://iad:4000/orders.fra -c orders.cp
  topics mirror fra=http://fra:4000 iad=http://iad:4000 -t 'orders' --once      # backfill, exit
  topics mirror fra=http://fra:4000 iad=http://iad:4000 -t 'chat:*' --metrics-port 9464
"""

EPILOG = (
    "Exit codes: 0 done (--once) or stopped by SIGTERM (checkpoint saved), 3 gap with "
    "--fail-on-gap, 1 API/server error that retrying cannot fix, 2 usage, 5 auth, "
    "6 cannot connect (--once gives up after --give-up-after failures), 130 interrupted."
)

app = typer_app()


@app.command("mirror", help=HELP, epilog=EPILOG)
def mirror(
    ctx: typer.Context,
    servers: Annotated[
        list[str] | None,
        typer.Argument(
            help="Two servers, NAME=URL (e.g. fra=http://fra:4000), source first.",
            show_default=False,
        ),
    ] = None,
    source: Annotated[
        str | None,
        typer.Option("--from", help="Source [NAME=]URL[/TOPIC].", show_default=False),
    ] = None,
    dest: Annotated[
        str | None,
        typer.Option("--to", help="Destination [NAME=]URL[/TOPIC].", show_default=False),
    ] = None,
    topic: Annotated[
        list[str] | None,
        typer.Option(
            "--topic",
            "-t",
            help="Topic name or glob (quote it), repeatable; re-listed every --relist.",
            show_default=False,
        ),
    ] = None,
    both_ways: Annotated[
        bool, typer.Option("--both-ways", help="Also copy from the second server to the first.")
    ] = False,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint",
            "-c",
            help="Checkpoint file ({SOURCE/TOPIC: seq}), saved after every acknowledged write.",
            show_default=False,
        ),
    ] = None,
    start: Annotated[
        str,
        typer.Option(
            "--start", help="Where a topic not in the checkpoint starts: earliest | latest."
        ),
    ] = "earliest",
    once: Annotated[
        bool, typer.Option("--once", help="Copy what is there now, then exit (CI, backfills).")
    ] = False,
    fail_on_gap: Annotated[
        bool, typer.Option("--fail-on-gap", help="Exit 3 at the first source gap.")
    ] = False,
    gap_marker_flag: Annotated[
        bool,
        typer.Option(
            "--gap-marker",
            help="Write a marker record (tag mirror-gap) into the destination for each gap.",
        ),
    ] = False,
    node: Annotated[
        str, typer.Option("--node", help="$node of the gap markers the relay writes.")
    ] = "topics-mirror",
    relist: Annotated[
        str, typer.Option("--relist", help="How often topic globs are re-listed.")
    ] = "10s",
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            help="Serve Prometheus text on this port (0: any free port, printed on stderr).",
            show_default=False,
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option("--metrics-host", help="Address the metrics endpoint binds.")
    ] = "127.0.0.1",
    status_every: Annotated[
        str,
        typer.Option(
            "--status-every", help="How often a status JSON line is printed when not on a terminal."
        ),
    ] = "10s",
    source_key: Annotated[
        str | None,
        typer.Option(
            "--source-key",
            help="API key for the first server (default: --api-key / TOPICS_API_KEY).",
            show_default=False,
        ),
    ] = None,
    dest_key: Annotated[
        str | None,
        typer.Option(
            "--dest-key",
            help="API key for the second server (default: --api-key / TOPICS_API_KEY).",
            show_default=False,
        ),
    ] = None,
    batch: Annotated[
        int,
        typer.Option("--batch", help="Most records per source frame and destination write."),
    ] = MAX_FRAME_RECORDS,
    give_up_after: Annotated[
        int | None,
        typer.Option(
            "--give-up-after",
            help="Consecutive failed attempts before giving up (default: never; 8 with --once).",
            show_default=False,
        ),
    ] = None,
) -> None:
    import asyncio

    from topics_cli.mirror.plan import EndpointError, parse_endpoint
    from topics_cli.mirror.relay import MirrorOptions
    from topics_cli.positions import PositionError, parse_duration_ms

    ap = get_app(ctx)
    if start not in ("earliest", "latest"):
        raise typer.BadParameter(f"{start!r} is not earliest or latest", param_hint="--start")
    try:
        relist_s = parse_duration_ms(relist) / 1000
        status_s = parse_duration_ms(status_every) / 1000
    except PositionError as exc:
        raise typer.BadParameter(str(exc)) from None
    if not 1 <= batch <= MAX_FRAME_RECORDS:
        raise typer.BadParameter(f"--batch is 1..{MAX_FRAME_RECORDS}")
    if relist_s <= 0 or status_s <= 0:
        raise typer.BadParameter("--relist and --status-every must be positive")
    try:
        if servers:
            if source or dest:
                raise typer.BadParameter("give NAME=URL servers or --from/--to, not both")
            if len(servers) != 2:
                raise typer.BadParameter(f"expected two servers, got {len(servers)}")
            a = parse_endpoint(servers[0], with_topic=False)
            b = parse_endpoint(servers[1], with_topic=False)
        elif source and dest:
            a = parse_endpoint(source, with_topic=True)
            b = parse_endpoint(dest, with_topic=True)
        else:
            raise typer.BadParameter("give two servers (NAME=URL NAME=URL) or --from and --to")
    except EndpointError as exc:
        raise typer.BadParameter(str(exc)) from None
    if a.name == b.name and a.url != b.url:
        raise typer.BadParameter(f"both servers are named {a.name!r}; name them (NAME=URL)")
    rename: tuple[str, str] | None = None
    if a.topic or b.topic:
        if topic:
            raise typer.BadParameter("a topic in the URL and --topic: give one")
        rename = (a.topic or b.topic or "", b.topic or a.topic or "")
    elif not topic:
        raise typer.BadParameter("which topics? --topic NAME or --topic 'GLOB*'")
    if a.url == b.url and (rename is None or rename[0] == rename[1]):
        raise typer.BadParameter("source and destination are the same topics on one server")
    options = MirrorOptions(
        patterns=tuple(topic or ()),
        checkpoint=None if checkpoint is None else str(checkpoint),
        start=start,
        once=once,
        fail_on_gap=fail_on_gap,
        gap_marker=gap_marker_flag,
        node=node,
        relist_s=relist_s,
        batch=batch,
        give_up_after=give_up_after if give_up_after is not None else (8 if once else None),
    )
    sink = ap.sink
    code = asyncio.run(
        _main(
            options,
            sides=(a, b),
            rename=rename,
            both_ways=both_ways,
            api_keys=(source_key or ap.settings.api_key, dest_key or ap.settings.api_key),
            sink=sink,
            metrics=(metrics_host, metrics_port),
            status_s=status_s,
        )
    )
    if code:
        raise typer.Exit(code)


async def _main(
    options: Any,
    *,
    sides: tuple[Any, Any],
    rename: tuple[str, str] | None,
    both_ways: bool,
    api_keys: tuple[str | None, str | None],
    sink: Sink,
    metrics: tuple[str, int | None],
    status_s: float,
) -> int:
    import asyncio
    import signal

    from topics_cli.errors import CliError
    from topics_cli.mirror.relay import Relay, Side
    from topics_client import AsyncClient

    reporter = _Reporter(sink)
    relay = Relay(options, reporter)
    a, b = (
        Side(e, AsyncClient(e.url, api_key=key, max_retries=0))
        for e, key in zip(sides, api_keys, strict=True)
    )
    relay.add(a, b, rename)
    if both_ways:
        relay.add(b, a, None if rename is None else (rename[1], rename[0]))
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, relay.stop, 0)
    loop.add_signal_handler(signal.SIGINT, relay.stop, 130)
    server = None
    ticker = asyncio.ensure_future(_tick(relay, reporter, status_s))
    try:
        host, port = metrics
        if port is not None:
            try:
                server = await _serve_metrics(relay, host, port)
            except OSError as exc:
                raise CliError(f"--metrics-port {port}: {exc.strerror or exc}") from None
            bound = server.sockets[0].getsockname()[1]
            reporter.info(f"metrics on http://{host}:{bound}/metrics")
        reporter.emit("start", {"directions": [d.name for d in relay.directions]})
        code = await relay.run()
        reporter.finish(relay)
        return code
    finally:
        ticker.cancel()
        if server is not None:
            server.close()
        loop.remove_signal_handler(signal.SIGTERM)
        loop.remove_signal_handler(signal.SIGINT)
        await a.client.close()
        await b.client.close()


class _Reporter:
    """Status and events: a status line on a terminal, JSON lines on stdout otherwise;
    gaps, retries and errors always as a line on stderr."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.pretty = sink.mode == "pretty"

    def __call__(self, kind: str, payload: dict[str, Any], text: str) -> None:
        if kind in ("gap", "retry", "error"):
            self.sink.warn(text)
        elif self.pretty:
            self.sink.info(text)
        if not self.pretty:
            self.emit(kind, payload)

    def info(self, text: str) -> None:
        self.sink.info(text)

    def emit(self, kind: str, payload: dict[str, Any]) -> None:
        if self.pretty:
            return
        import time

        import orjson

        line = {"event": kind, "ts": int(time.time() * 1000), **payload}
        self.sink.write_raw(orjson.dumps(line).decode() + "\n")

    def status(self, relay: Relay) -> None:
        if self.pretty:
            self.sink.status(" | ".join(d.stats.line() for d in relay.directions))
        else:
            for d in relay.directions:
                self.emit("status", d.stats.summary())

    def finish(self, relay: Relay) -> None:
        if self.pretty:
            self.sink.clear_status()
            for d in relay.directions:
                self.sink.info(d.stats.line())
        else:
            for d in relay.directions:
                self.emit("stop", d.stats.summary())


async def _tick(relay: Relay, reporter: _Reporter, status_s: float) -> None:
    import asyncio

    every = 1.0 if reporter.pretty else status_s
    while True:
        await asyncio.sleep(every)
        reporter.status(relay)


async def _serve_metrics(relay: Relay, host: str, port: int) -> Any:
    """A minimal HTTP/1.0 endpoint: ``GET /metrics`` → Prometheus text, else 404."""
    import asyncio

    from topics_cli.mirror.stats import prometheus_text

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            target = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b""
            if target.split(b"?")[0] in (b"/metrics", b"/"):
                body = prometheus_text([d.stats for d in relay.directions]).encode()
                head = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
            else:
                body, head = b"not found\n", b"HTTP/1.0 404 Not Found\r\n"
            writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
