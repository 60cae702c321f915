"""``topics smoke``: is this deployment healthy end to end?"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from topics_cli.context import get_app
from topics_cli.errors import EXIT_CONNECT
from topics_cli.group import typer_app

HELP = """Check a running server end to end, step by step, and clean up after.

Steps, in order: health, ready, create (a throwaway topic), write (with an
idempotency key, then the same write again: it must be deduplicated), read (the
records come back), watch (a live record arrives on a watch), router (a router's
copy arrives with its $node), tombstone (a capped topic reports the evicted range
to a lagging cursor), lease (a queue job is claimed and acked). Everything the
run creates is named PREFIX + a random id and deleted at the end, also after a
failure or Ctrl-C.

A step the server refuses for a documented reason (403: the API key's scope or
prefixes; a route the server does not offer) is reported as skipped, not failed.
Pretty on a terminal, one JSON report in a pipe; --junit-xml also writes a JUnit
report for CI systems that show test results.

\b
Examples:
  topics smoke
  topics smoke --url https://topics.internal:4000 --api-key "$KEY"
  topics smoke --junit-xml smoke.xml --prefix ci-smoke-
  topics smoke --only health,ready,write,read
  topics smoke --skip router,lease -o json | jq .failed
"""

SMOKE_EXIT_HELP = (
    "Exit codes: 0 every step that ran passed, 1 a step failed (or cleanup failed), "
    "2 usage, 5 auth (401), 6 cannot connect, 130 interrupted (cleanup runs first)."
)

app = typer_app()


def _step_list(value: str | None, option: str) -> list[str]:
    from topics_cli.smoke_steps import STEPS

    if not value:
        return []
    names = [part.strip() for part in value.split(",") if part.strip()]
    unknown = [n for n in names if n not in STEPS]
    if unknown:
        raise typer.BadParameter(
            f"unknown step {', '.join(unknown)} (steps: {', '.join(STEPS)})", param_hint=option
        )
    return names


@app.command("smoke", help=HELP, epilog=SMOKE_EXIT_HELP)
def smoke(
    ctx: typer.Context,
    only: Annotated[
        str | None, typer.Option("--only", help="Run only these steps (comma-separated).")
    ] = None,
    skip: Annotated[
        str | None, typer.Option("--skip", help="Leave out these steps (comma-separated).")
    ] = None,
    prefix: Annotated[
        str, typer.Option("--prefix", help="Name prefix of the topics and routers created.")
    ] = "smoke-",
    junit_xml: Annotated[
        Path | None,
        typer.Option("--junit-xml", help="Also write a JUnit XML report to this file."),
    ] = None,
    timeout: Annotated[
        str, typer.Option("--timeout", help="How long a step may wait for a delivery (e.g. 10s).")
    ] = "10s",
) -> None:
    from topics_cli.options import duration_ms
    from topics_cli.smoke_steps import Workspace, run_step, select_steps

    ap = get_app(ctx)
    timeout_s = duration_ms(timeout, "--timeout") / 1000
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,200}", prefix):
        raise typer.BadParameter(
            "must start with a letter or digit, then letters, digits, '.', '_', ':' or '-'",
            param_hint="--prefix",
        )
    names = list(select_steps(_step_list(only, "--only"), _step_list(skip, "--skip")))
    if not names:
        raise typer.BadParameter("--only/--skip leave no step to run")
    client = ap.client(timeout=max(5.0, timeout_s + 5.0))
    ws = Workspace(client, ap.base_url, ap.settings.api_key, prefix, timeout_s)
    sink = ap.sink
    results = []
    started = time.perf_counter()
    try:
        for name in names:
            sink.status(f"smoke: {name} …")
            results.append(run_step(name, ws))
            sink.clear_status()
            _progress_line(sink, results[-1])
    finally:
        sink.clear_status()
        problems = ws.cleanup()
    seconds = time.perf_counter() - started
    report = _report(ap.base_url, results, problems, seconds)
    if junit_xml is not None:
        from topics_cli.smoke_steps import junit_xml as render_junit

        junit_xml.write_bytes(render_junit(results, ap.base_url, seconds))
    sink.result(report, lambda console: _pretty_summary(console, report))
    if ws.unreachable:
        raise typer.Exit(EXIT_CONNECT)
    if report["failed"] or problems:
        raise typer.Exit(1)


def _progress_line(sink: Any, result: Any) -> None:
    """On a terminal, each step's line as it finishes (the summary follows at the end)."""
    if sink.mode != "pretty" or sink.quiet:
        return
    mark = {"passed": "[green]✓[/]", "failed": "[red]✗[/]", "skipped": "[yellow]–[/]"}
    sink.console().print(
        f"{mark[result.status]} {result.name:<10} {result.seconds * 1000:8.1f} ms  "
        f"{_escape(result.detail)}"
    )


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _report(url: str, results: list[Any], problems: list[str], seconds: float) -> dict[str, Any]:
    return {
        "url": url,
        "passed": sum(r.status == "passed" for r in results),
        "failed": sum(r.status == "failed" for r in results),
        "skipped": sum(r.status == "skipped" for r in results),
        "seconds": round(seconds, 3),
        "steps": [r.to_wire() for r in results],
        "cleanup": {"ok": not problems, "problems": problems},
    }


def _pretty_summary(console: Any, report: dict[str, Any]) -> None:
    failed = report["failed"]
    colour = "red" if failed or not report["cleanup"]["ok"] else "green"
    console.print(
        f"[{colour}]{report['passed']} passed, {failed} failed, {report['skipped']} skipped[/] "
        f"in {report['seconds']:.2f} s against {report['url']}"
    )
    for problem in report["cleanup"]["problems"]:
        console.print(f"[red]cleanup:[/] {_escape(problem)}")
