"""``topics bench``: load a /v0 server and report latency percentiles and throughput."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from topics_cli.context import get_app
from topics_cli.errors import EXIT_API, EXIT_USAGE, CliError
from topics_cli.group import typer_app

if TYPE_CHECKING:
    from rich.console import Console

    from topics_cli.bench.runner import StepResult
    from topics_cli.bench.workloads import Step
    from topics_cli.output import Sink

HELP = """Benchmark a topics server: latency percentiles, throughput, a histogram.

\b
Workloads (WORKLOAD is one of them, a comma-separated list, or all):
  write    single-record writes from --clients concurrent writers, each timed
           from send to ack (--batch N: N records per write, for throughput;
           `all` without --batch runs both 1 and 100)
  replay   /diff pages of --limit 1, 256 and 1000 records over a filled topic,
           read by --clients concurrent readers
  fanout   write -> SSE delivery latency with --watchers 1, 10 and 100 watchers
           (one connection each), one writer sending a record per ack
  router   the latency a router adds: a record's arrival on the destination's
           watch minus its arrival on the source's
  queue    claim -> ack round trips of --clients workers draining a queue of
           --records jobs (--batch jobs per claim)

Default --records per workload: write 20000, replay 20000, fanout 500 writes,
router 500 writes, queue 5000 jobs (batched writes round up to whole
batches). --duration caps write, replay and queue.

Everything the run creates is named --topic-prefix + a random id and deleted
at the end, also after an error or Ctrl-C. Latencies are in ms; "gen CPU" is
the load generator's own CPU time over the wall time (100% = one core busy):
near the machine's cores, the generator, not the server, is the limit; then
--procs N spreads the load over N processes, whose histograms are merged
bucket by bucket (never averaged percentiles); fanout splits its watchers
among them; router always runs in one process.

\b
Examples:
  topics bench write --records 5000 --clients 8
  topics bench write --batch 100 --clients 16 --durability memory
  topics bench replay --limit 1,1000
  topics bench fanout --watchers 10,100 --procs 2
  topics bench all -o json > ours.json
  topics bench all --url http://127.0.0.1:4100 --compare ours.json
"""

BENCH_EXIT_HELP = (
    "Exit codes: 0 ok, 1 API/server error or cleanup failed, 2 usage, 5 auth (401/403), "
    "6 cannot connect, 130 interrupted (what the run created is deleted first)."
)

_DURABILITIES = ("ephemeral", "memory", "disk", "fsync")

app = typer_app()


def _ints(value: str | None, option: str, default: tuple[int, ...]) -> tuple[int, ...]:
    if value is None:
        return default
    try:
        numbers = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        numbers = ()
    if not numbers or min(numbers) < 1:
        raise typer.BadParameter("a comma-separated list of positive integers", param_hint=option)
    return numbers


def _workloads(value: str) -> list[str]:
    from topics_cli.bench.workloads import WORKLOADS

    names = [part.strip().lower() for part in value.split(",") if part.strip()]
    if names == ["all"]:
        return list(WORKLOADS)
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown or not names:
        raise typer.BadParameter(
            f"unknown workload {', '.join(unknown) or repr(value)} "
            f"(workloads: {', '.join(WORKLOADS)}, all)",
            param_hint="WORKLOAD",
        )
    return list(dict.fromkeys(names))


def _load_earlier(path: Path) -> dict[str, Any]:
    try:
        earlier = json.loads(path.read_text())
    except OSError as exc:
        raise CliError(f"--compare: cannot read {path}: {exc.strerror}", code=EXIT_USAGE) from None
    except ValueError as exc:
        raise CliError(f"--compare: {path} is not JSON: {exc}", code=EXIT_USAGE) from None
    from topics_cli.bench.report import SCHEMA

    if not isinstance(earlier, dict) or earlier.get("schema") != SCHEMA:
        raise CliError(
            f"--compare: {path} is not a `topics bench -o json` report",
            code=EXIT_USAGE,
            hint="write one with: topics bench all -o json > FILE.json",
        )
    return earlier


@app.command("bench", help=HELP, epilog=BENCH_EXIT_HELP)
def bench(
    ctx: typer.Context,
    workload: Annotated[
        str,
        typer.Argument(
            help="write | replay | fanout | router | queue | all (or a list).", show_default=False
        ),
    ],
    records: Annotated[
        int | None,
        typer.Option(
            "--records",
            "-n",
            min=1,
            help="Records (writes, jobs) per workload.",
            show_default=False,
        ),
    ] = None,
    size: Annotated[int, typer.Option("--size", min=2, help="Payload bytes per record.")] = 100,
    clients: Annotated[
        int, typer.Option("--clients", min=1, help="Concurrent writers, readers or workers.")
    ] = 16,
    batch: Annotated[
        int | None,
        typer.Option(
            "--batch",
            min=1,
            max=1000,
            help="Records per write; jobs per claim [default: 1; all: write 1 and 100].",
            show_default=False,
        ),
    ] = None,
    durability: Annotated[
        str | None,
        typer.Option(
            "--durability",
            help="ephemeral | memory | disk | fsync (default: the server's).",
            show_default=False,
            case_sensitive=False,
        ),
    ] = None,
    duration: Annotated[
        str | None,
        typer.Option(
            "--duration",
            help="Stop write/replay/queue after this long, e.g. 10s.",
            show_default=False,
        ),
    ] = None,
    watchers: Annotated[
        str | None,
        typer.Option(
            "--watchers", help="fanout's watcher counts [default: 1,10,100].", show_default=False
        ),
    ] = None,
    limit: Annotated[
        str | None,
        typer.Option(
            "--limit", help="replay's page limits [default: 1,256,1000].", show_default=False
        ),
    ] = None,
    topic_prefix: Annotated[
        str, typer.Option("--topic-prefix", help="Name prefix of the topics and routers created.")
    ] = "bench-",
    procs: Annotated[
        int, typer.Option("--procs", "-p", min=1, max=64, help="Load generator processes.")
    ] = 1,
    compare_file: Annotated[
        Path | None,
        typer.Option(
            "--compare",
            help="Print this run's figures as ratios of an earlier -o json report's.",
            show_default=False,
        ),
    ] = None,
    histogram: Annotated[
        bool, typer.Option("--histogram/--no-histogram", help="Draw each step's latency histogram.")
    ] = True,
) -> None:
    import os
    import secrets
    from datetime import UTC, datetime

    from topics_cli.bench.workloads import DEFAULT_LIMITS, DEFAULT_WATCHERS, Options, plan

    names = _workloads(workload)
    if durability is not None and durability.lower() not in _DURABILITIES:
        raise typer.BadParameter(f"one of {', '.join(_DURABILITIES)}", param_hint="--durability")
    duration_s = _duration(duration)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,100}", topic_prefix):
        raise typer.BadParameter(
            "must start with a letter or digit, then letters, digits, '.', '_', ':' or '-'",
            param_hint="--topic-prefix",
        )
    earlier = _load_earlier(compare_file) if compare_file is not None else None
    ap = get_app(ctx)
    sink = ap.sink
    opts = Options(
        url=ap.base_url,
        api_key=ap.settings.api_key,
        prefix=f"{topic_prefix}{secrets.token_hex(4)}-",
        records=records,
        size=size,
        clients=clients,
        batch=batch or 1,
        write_batches=(batch,)
        if batch
        else (1, 100)
        if workload.strip().lower() == "all"
        else (1,),
        durability=durability.lower() if durability else None,
        duration=duration_s,
        watchers=_ints(watchers, "--watchers", DEFAULT_WATCHERS),
        limits=_ints(limit, "--limit", DEFAULT_LIMITS),
    )
    steps = plan(names, opts)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    started = time.perf_counter()
    results, problems = _run(sink, opts, steps, procs)
    from topics_cli.bench.report import compare, document

    doc = document(
        opts.url,
        {
            "workloads": names,
            "records": records,
            "size": size,
            "clients": clients,
            "batch": batch,
            "durability": opts.durability,
            "duration_s": duration_s,
            "procs": procs,
            "prefix": opts.prefix,
        },
        results,
        started=started_at,
        seconds=time.perf_counter() - started,
        cpu_count=os.cpu_count(),
        problems=problems,
    )
    if earlier is not None:
        doc["compare"] = compare(doc, earlier)
        doc["compare"]["file"] = str(compare_file)
    sink.result(doc, lambda console: _pretty(console, doc, results, histogram))
    if doc["cleanup"]["problems"]:
        raise typer.Exit(EXIT_API)


def _duration(text: str | None) -> float | None:
    if text is None:
        return None
    from topics_cli.positions import PositionError, parse_duration_ms

    try:
        ms = parse_duration_ms(text)
    except PositionError as exc:
        raise typer.BadParameter(str(exc), param_hint="--duration") from None
    if ms <= 0:
        raise typer.BadParameter("must be longer than 0", param_hint="--duration")
    return ms / 1000


def _run(
    sink: Sink, opts: Any, steps: list[Step], procs: int
) -> tuple[list[StepResult], list[str]]:
    """Every step in turn, its progress on the terminal; whatever happens (an error, Ctrl-C)
    every router and topic under the run's prefix is deleted before this returns or raises."""
    from topics_cli.bench.runner import run_step
    from topics_cli.bench.workloads import cleanup

    results: list[StepResult] = []
    problems: list[str] = []
    try:
        for number, step in enumerate(steps, 1):
            bar = _ProgressBar(
                sink, f"[{number}/{len(steps)}] {step.name}", step.total, opts.duration
            )
            bar.draw(force=True)
            _step_started(sink, f"[{number}/{len(steps)}]", step)
            results.append(run_step(opts, step, procs, bar.add))
            sink.clear_status()
            _step_done(sink, f"[{number}/{len(steps)}]", results[-1])
            sink.status(f"[{number}/{len(steps)}] {step.name}: cleaning up")
            problems += cleanup(opts.url, opts.api_key, opts.prefix)
    finally:
        sink.clear_status()
        problems += cleanup(opts.url, opts.api_key, opts.prefix)
    return results, problems


def _step_started(sink: Sink, counter: str, step: Step) -> None:
    """Off a terminal, a line as each step starts (see :func:`_step_done`)."""
    if sink.quiet or sink.err_is_tty():
        return
    payload = {"step": step.name, "ops": step.total}
    text = f"bench: {counter} {step.name}: {step.total:,} ops …"
    sink.event("bench_start", payload, text)


def _step_done(sink: Sink, counter: str, result: StepResult) -> None:
    """Off a terminal (no progress bar there), a line per step on stderr as it starts and as
    it ends, so a run of minutes in CI shows where it is (``{"$bench_start": …}`` and
    ``{"$bench_step": …}`` in json/jsonl modes)."""
    if sink.quiet or sink.err_is_tty():
        return
    from topics_cli.bench.report import latency_ms

    p50 = latency_ms(result.latency)["p50"]
    payload = {
        "step": result.step.name,
        "ops": result.ops,
        "seconds": round(result.seconds, 3),
        "p50_ms": p50,
    }
    text = (
        f"bench: {counter} {result.step.name}: {result.ops:,} ops in {result.seconds:.1f} s, "
        f"p50 {p50:.3f} ms"
    )
    sink.event("bench_step", payload, text)


class _ProgressBar:
    """A one-line bar on a terminal's stderr (nothing elsewhere), redrawn ≤ 10 times/s."""

    def __init__(self, sink: Sink, label: str, total: int, duration: float | None) -> None:
        self.sink, self.label, self.total, self.duration = sink, label, max(1, total), duration
        self.done = 0
        self.started = time.monotonic()
        self.drawn_at = 0.0

    def add(self, n: int) -> None:
        self.done += n
        self.draw()

    def draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.drawn_at < 0.1:
            return
        self.drawn_at = now
        elapsed = now - self.started
        fraction = self.done / self.total
        if self.duration:
            fraction = max(fraction, elapsed / self.duration)
        fraction = min(1.0, fraction)
        filled = int(fraction * 30)
        bar = "█" * filled + "░" * (30 - filled)
        self.sink.status(
            f"{self.label} {bar} {fraction * 100:3.0f}%  "
            f"{self.done:,}/{self.total:,}  {elapsed:.1f} s"
        )


def _pretty(
    console: Console, doc: dict[str, Any], results: list[StepResult], histogram: bool
) -> None:
    from topics_cli.bench.report import compare_lines, histogram_lines, summary_lines

    gen = doc["generator"]
    console.print(
        f"topics bench against {doc['url']}: {len(results)} steps in {doc['seconds']:.1f} s; "
        f"load generator CPU {gen['cpu_cores'] * 100:.0f}% of one core "
        f"({doc['options']['procs']} process(es), {gen['cpu_count']} cores on this machine)",
        markup=False,
    )
    console.print()
    for line in summary_lines(doc):
        console.print(line, markup=False)
    if histogram:
        for result in results:
            console.print()
            console.print(f"{result.step.name}: {result.latency.total:,} samples", markup=False)
            for line in histogram_lines(result.latency):
                console.print(line, markup=False)
    if "compare" in doc:
        console.print()
        console.print(
            f"against {doc['compare']['file']} ({doc['compare']['against']}):", markup=False
        )
        for line in compare_lines(doc["compare"]):
            console.print(line, markup=False)
    for problem in doc["cleanup"]["problems"]:
        console.print(f"cleanup: {problem}", markup=False)
