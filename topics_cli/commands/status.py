"""``topics status``: health, readiness and a metrics summary."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from topics_cli.context import get_app
from topics_cli.errors import EXIT_CODES_HELP
from topics_cli.group import typer_app

HELP = """Show the server's health, readiness and a metrics summary.

--wait blocks until the server is ready (for CI), up to --timeout, polling both
connection refusals and 503 not_ready; exit 0 once ready, 6 if it never answered,
1 if it answered but never became ready.

\b
Examples:
  topics status
  topics status --wait --timeout 30s && topics ls     # block until ready, then go
  topics status -o json | jq .metrics.records_live
"""


app = typer_app()


@app.command("status", help=HELP, epilog=EXIT_CODES_HELP)
def status(
    ctx: typer.Context,
    wait: Annotated[bool, typer.Option("--wait", help="Block until the server is ready.")] = False,
    timeout: Annotated[
        str, typer.Option("--timeout", help="How long --wait waits (e.g. 30s, 2m).")
    ] = "30s",
) -> None:
    import topics_client as tc
    from topics_cli.options import duration_ms

    ap = get_app(ctx)
    timeout_s = duration_ms(timeout, "--timeout") / 1000
    client = ap.client(max_retries=0, timeout=min(10.0, max(1.0, timeout_s)))
    if wait:
        deadline = time.monotonic() + timeout_s
        delay = 0.05
        while True:
            try:
                client.ready()
                break
            except (tc.APIConnectionError, tc.ServiceUnavailableError) as exc:
                if time.monotonic() + delay > deadline:
                    raise exc from None
                ap.sink.status(f"waiting for {ap.base_url}: {exc}")
                time.sleep(delay)
                delay = min(1.0, delay * 1.5)
        ap.sink.clear_status()
    health = client.health()
    value: dict[str, Any] = {
        "url": ap.base_url,
        "health": {
            "status": health.status,
            "version": health.version,
            "uptime_ms": health.uptime_ms,
        },
    }
    ready_ok = True
    try:
        ready = client.ready()
        value["ready"] = {"status": ready.status, "topics": ready.topics}
    except tc.ServiceUnavailableError as exc:
        ready_ok = False
        value["ready"] = {"status": exc.code, "detail": dict(exc.detail)}
    try:
        m = client.metrics_json()
        value["metrics"] = {
            "topics": m.topics,
            "routers": m.routers,
            "records_live": m.records_live,
            "bytes_live": m.bytes_live,
            "watch_sessions": m.watch_sessions,
            "sse_connections": m.sse_connections,
            **{k: v for k, v in m.extra.items() if isinstance(v, int | float | bool)},
        }
    except tc.APIError as exc:
        value["metrics"] = {"error": exc.code}

    def pretty(console: Any) -> None:
        from topics_cli.positions import format_duration

        mark = "[green]ready[/]" if ready_ok else f"[red]{value['ready']['status']}[/]"
        console.print(
            f"[bold]{ap.base_url}[/]  {mark}  version {health.version}, "
            f"up {format_duration(health.uptime_ms)}"
        )
        metrics = value["metrics"]
        if "error" not in metrics:
            console.print(
                f"  {metrics['topics']:,} topics, {metrics['routers']:,} routers, "
                f"{metrics['records_live']:,} records ({metrics['bytes_live']:,} bytes), "
                f"{metrics['watch_sessions']:,} watch sessions, "
                f"{metrics['sse_connections']:,} SSE connections"
            )

    ap.sink.result(value, pretty)
    if not ready_ok:
        raise typer.Exit(1)
