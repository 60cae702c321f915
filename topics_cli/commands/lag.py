"""``topics lag``: every known consumer's lag, and when retention takes its unread records."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from topics_cli.completions import choices, paths
from topics_cli.context import get_app
from topics_cli.errors import EXIT_GAP, EXIT_INTERRUPTED, EXIT_NOT_FOUND, interrupted
from topics_cli.group import typer_app

if TYPE_CHECKING:
    from topics_cli.consumers import ConsumerRisk
    from topics_cli.output import Sink

HELP = """Consumer lag and time-to-loss for the cursors you already have: checkpoint files
(written by topics diff/watch --checkpoint and the client's save_checkpoint; the consumer
is named after the file) or inline cursors TOPIC=SEQ (CONSUMER/TOPIC=SEQ to name one).

For each cursor: lag in records (live records after it) and in time (age of the oldest
unread record), and "falls off in": when the topic's cap (at the write rate measured over
--sample) or TTL evicts that record, or LOST with the range and reason when it already
happened.

\b
Examples:
  topics lag 'workers/*.cp'                      # a table; jsonl in a pipe
  topics lag 'workers/*.cp' --warn-before 30m    # exit 3 if any will lose records in 30 min
  topics lag 'workers/*.cp' -o prom > lag.prom   # for node_exporter's textfile collector
  topics lag orders=41 audit=7 -o json
  topics lag billing/orders=41 --map             # one consumer: coverage map of its unread range
"""

EPILOG = (
    "Exit codes: 0 healthy, 3 a consumer lost records or will within --warn-before, "
    "4 a topic is missing (wins over 3), 1 API/server error, 2 usage, 5 auth, "
    "6 cannot connect, 130 interrupted."
)

_OUTPUTS = ("pretty", "json", "jsonl", "prom")

app = typer_app()


@app.command("lag", help=HELP, epilog=EPILOG)
def lag(
    ctx: typer.Context,
    cursors: Annotated[
        list[str],
        typer.Argument(
            help="Checkpoint files, globs of them (quote them), or TOPIC=SEQ / CONSUMER/TOPIC=SEQ.",
            show_default=False,
            autocompletion=paths,
        ),
    ],
    warn_before: Annotated[
        str | None,
        typer.Option(
            "--warn-before",
            help="Exit 3 when a consumer's oldest unread record falls off sooner than this "
            "(e.g. 30m); lost records always exit 3.",
            show_default=False,
        ),
    ] = None,
    sample: Annotated[
        str, typer.Option("--sample", help="Measure write rates over this long (0 = skip).")
    ] = "1s",
    coverage_map: Annotated[
        bool,
        typer.Option(
            "--map",
            help="Draw the coverage map of one consumer's unread range (one cursor only; "
            "replays that range without printing it).",
        ),
    ] = False,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="pretty | json | jsonl | prom (Prometheus text) (default: pretty on a "
            "terminal, else jsonl).",
            show_default=False,
            case_sensitive=False,
            autocompletion=choices("pretty", "json", "jsonl", "prom"),
        ),
    ] = None,
) -> None:
    from topics_cli.consumers import assess, load_cursors
    from topics_cli.positions import PositionError, parse_duration_ms

    ap = get_app(ctx)
    mode = (output or ap.output or "").lower() or None
    if mode is not None and mode not in _OUTPUTS:
        raise typer.BadParameter(f"{mode!r} is not one of {', '.join(_OUTPUTS)}", param_hint="-o")
    try:
        warn_ms = parse_duration_ms(warn_before) if warn_before else None
        sample_s = parse_duration_ms(sample) / 1000
    except PositionError as exc:
        raise typer.BadParameter(str(exc)) from None
    found = load_cursors(cursors)
    if not found:
        raise typer.BadParameter("no cursors: the checkpoint files are empty")
    if coverage_map and len(found) != 1:
        raise typer.BadParameter(
            f"--map draws one consumer's range; {len(found)} cursors were given",
            param_hint="--map",
        )
    client = ap.client()
    risks = assess(client, found, sample_s=sample_s, warn_before_ms=warn_ms)
    coverage = None
    if coverage_map and risks[0].status != "missing":
        coverage = _coverage(ap.sink, client, risks[0])
    if mode == "prom":
        for consumer, topic in _duplicates(risks):
            ap.sink.warn(
                f"consumer {consumer!r} has two cursors in {topic!r} (two files with one name?); "
                "only the first is exported"
            )
        ap.sink.write_raw(prometheus_text(risks))
    else:
        sink = ap.sink if mode is None or mode == ap.sink.mode else _sink_for(ap.sink, mode)
        rows = [r.to_dict() for r in risks]
        if coverage is not None:
            rows[0]["coverage"] = coverage.to_dict()
        value: Any = rows
        sink.result(value, lambda console: _pretty(console, risks, warn_ms, coverage))
    if any(r.status == "missing" for r in risks):
        raise typer.Exit(EXIT_NOT_FOUND)
    if any(r.status in ("lost", "at_risk") for r in risks):
        raise typer.Exit(EXIT_GAP)


def _sink_for(sink: Sink, mode: str) -> Sink:
    from topics_cli.output import Sink

    return Sink(mode, quiet=sink.quiet, no_color=sink.no_color, out=sink.out, err=sink.err)


def _coverage(sink: Sink, client: Any, risk: ConsumerRisk) -> Any:
    """Replay the consumer's unread range (cursor to the head) without printing it."""
    from topics_cli.commands.diff import Window
    from topics_cli.commands.tombstone import replay_coverage
    from topics_cli.consume import Tracker

    tracker = Tracker(sink, "warn", command="lag --map", report_gaps=False)
    window = Window(risk.cursor.seq, risk.head_seq, None)
    code, coverage = replay_coverage(client, risk.cursor.topic, window, tracker)
    if code == EXIT_INTERRUPTED:
        raise interrupted()
    return coverage


_METRICS = (
    (
        "topics_consumer_lag_records",
        "Live records after the consumer's cursor (head minus cursor, less deleted records).",
    ),
    ("topics_consumer_lag_seconds", "Age of the oldest record the consumer has not read."),
    (
        "topics_consumer_falloff_seconds",
        "Seconds until retention evicts the consumer's oldest unread record "
        "(0: records already lost; +Inf: nothing evicts it).",
    ),
    (
        "topics_consumer_lost_records",
        "Records after the consumer's cursor that retention already evicted (estimate).",
    ),
)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(round(value, 3))


def _duplicates(risks: list[ConsumerRisk]) -> list[tuple[str, str]]:
    seen: set[tuple[str, str]] = set()
    dups = []
    for r in risks:
        key = (r.cursor.consumer, r.cursor.topic)
        if key in seen:
            dups.append(key)
        seen.add(key)
    return dups


def prometheus_text(risks: list[ConsumerRisk]) -> str:
    """The text exposition format (version 0.0.4): HELP and TYPE once per metric, one
    gauge sample per consumer and topic (the first cursor when a pair repeats). A missing
    topic has no samples; a falloff nothing foreseeable causes is ``+Inf`` when nothing
    unread can fall off (no retention, or caught up), absent when unknown (a cap, no
    measured rate)."""
    values: dict[str, list[tuple[ConsumerRisk, float]]] = {name: [] for name, _ in _METRICS}
    seen: set[tuple[str, str]] = set()
    for r in risks:
        key = (r.cursor.consumer, r.cursor.topic)
        if r.status == "missing" or key in seen:
            continue
        seen.add(key)
        if r.lag_records is not None:
            values["topics_consumer_lag_records"].append((r, r.lag_records))
        if r.lag_ms is not None:
            values["topics_consumer_lag_seconds"].append((r, r.lag_ms / 1000))
        if r.falloff_ms is not None:
            values["topics_consumer_falloff_seconds"].append((r, r.falloff_ms / 1000))
        elif not r.retention or r.lag_records == 0:
            values["topics_consumer_falloff_seconds"].append((r, float("inf")))
        lost = r.lost.missed_estimate if r.lost is not None else 0
        values["topics_consumer_lost_records"].append((r, lost))
    lines: list[str] = []
    for name, text in _METRICS:
        lines.append(f"# HELP {name} {text}")
        lines.append(f"# TYPE {name} gauge")
        for r, v in values[name]:
            labels = f'consumer="{_label(r.cursor.consumer)}",topic="{_label(r.cursor.topic)}"'
            lines.append(f"{name}{{{labels}}} {_number(v)}")
    return "\n".join(lines) + "\n"


def _falls_off(r: ConsumerRisk) -> tuple[str, str]:
    """The "falls off in" cell and its style."""
    from topics_cli.positions import format_duration

    if r.status == "missing":
        return "topic missing", "bold red"
    if r.lost is not None:
        lost = r.lost
        return (
            f"LOST {lost.missed_estimate:,} (seqs {lost.gap_from}..{lost.gap_to}, {lost.reason})",
            "bold red",
        )
    if r.falloff_ms is not None:
        style = "bold yellow" if r.status == "at_risk" else ""
        return f"{format_duration(r.falloff_ms)} ({r.falloff_by})", style
    if r.lag_records == 0:
        return "-", "dim"
    if r.writes_until_eviction is not None:
        return f"after {r.writes_until_eviction:,} writes", ""
    return "never", "dim"


def _pretty(console: Any, risks: list[ConsumerRisk], warn_ms: int | None, coverage: Any) -> None:
    from rich.table import Table

    from topics_cli.positions import format_duration

    table = Table(box=None, pad_edge=False, header_style="bold")
    for title, justify in (
        ("consumer", "left"),
        ("topic", "left"),
        ("cursor", "right"),
        ("head", "right"),
        ("lag", "right"),
        ("lag age", "right"),
        ("falls off in", "left"),
        ("status", "left"),
    ):
        table.add_column(title, justify=justify)  # type: ignore[arg-type]
    status_style = {
        "ok": "green",
        "lagging": "",
        "at_risk": "bold yellow",
        "lost": "bold red",
        "missing": "bold red",
    }
    for r in risks:
        falls, falls_style = _falls_off(r)
        table.add_row(
            r.cursor.consumer,
            r.cursor.topic,
            f"{r.cursor.seq:,}",
            "-" if r.head_seq is None else f"{r.head_seq:,}",
            "-" if r.lag_records is None else f"{r.lag_records:,}",
            "-" if not r.lag_ms else format_duration(r.lag_ms),
            f"[{falls_style}]{falls}[/]" if falls_style else falls,
            f"[{status_style[r.status]}]{r.status}[/]" if status_style[r.status] else r.status,
        )
    # a terminal wraps the table to its width; elsewhere (a file, a pager) lines stay whole
    if not console.is_terminal:
        console.width = 10_000  # the table is as wide as its cells, never wider
    console.print(table)
    if coverage is not None:
        from topics_cli.commands.tombstone import print_coverage

        r = risks[0]
        console.print(f"unread range of {r.cursor.consumer} in {r.cursor.topic}:")
        print_coverage(console, coverage)
