"""``topics tombstone check | scan`` (alias ``topics gaps``; ``topics gaps TOPIC`` scans):
gap detection without consuming anything."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from topics_cli.completions import choices
from topics_cli.context import get_app
from topics_cli.errors import EXIT_CODES_HELP, EXIT_GAP, EXIT_INTERRUPTED, interrupted
from topics_cli.group import TopicsGroup, typer_app
from topics_cli.options import TopicArg, UntilOpt

if TYPE_CHECKING:
    from topics_cli.commands.diff import Window
    from topics_cli.consume import Tracker
    from topics_cli.coverage import Coverage
    from topics_cli.positions import FromPos
    from topics_client import Client, TopicState


class _ScanByDefault(TopicsGroup):
    """``topics gaps TOPIC [OPTIONS]`` (and ``topics tombstone TOPIC``) is ``… scan TOPIC``:
    a first argument that is not a subcommand's name is the topic of a scan."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["scan", *args]
        parsed: list[str] = super().parse_args(ctx, args)
        return parsed


app = typer_app(
    cls=_ScanByDefault,
    subcommand_metavar="TOPIC | COMMAND [ARGS]...",
    help="""Gap detection without consuming: would a reader at a cursor hit a gap, how long
until it does, and is a seq range complete?

`topics gaps TOPIC` (or `topics tombstone TOPIC`) is `topics gaps scan TOPIC`; the
options of scan follow the topic. (A topic named check or scan: `topics gaps scan check`.)

\b
Examples:
  topics gaps orders                                # = topics gaps scan orders
  topics tombstone check orders --from 41
  topics tombstone check orders --checkpoint billing.cp --warn-before 30m
  topics tombstone scan orders --from 0 -o json     # CI completeness proof
  topics gaps scan orders --from 1000 --until 5000
""",
    epilog=EXIT_CODES_HELP,
)

FromsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--from",
        "-f",
        help="A reader's cursor (N, -N, end, start, @TIME); repeatable.",
        show_default=False,
        autocompletion=choices("start", "end"),
    ),
]
CheckpointsOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--checkpoint",
        "-c",
        help="Take the cursor from this checkpoint file; repeatable.",
        show_default=False,
    ),
]


@app.command("check")
def check(
    ctx: typer.Context,
    topic: TopicArg,
    from_: FromsOpt = None,
    checkpoint: CheckpointsOpt = None,
    warn_before: Annotated[
        str | None,
        typer.Option(
            "--warn-before",
            help="Also exit 3 when a cursor will fall off sooner than this (e.g. 30m).",
            show_default=False,
        ),
    ] = None,
    sample: Annotated[
        str, typer.Option("--sample", help="Measure the write rate over this long (0 = skip).")
    ] = "1s",
) -> None:
    """For each cursor: a gap now? lag, headroom, and when it falls off at the current rate."""
    from topics_cli.consume import now_ms
    from topics_cli.consumers import write_rates
    from topics_cli.positions import PositionError, parse_duration_ms, parse_from

    ap = get_app(ctx)
    if not from_ and not checkpoint:
        raise typer.BadParameter("give at least one --from N or --checkpoint FILE")
    try:
        warn_ms = parse_duration_ms(warn_before) if warn_before else None
        sample_s = parse_duration_ms(sample) / 1000
        positions = [(text, parse_from(text, now_ms())) for text in from_ or ()]
    except PositionError as exc:
        raise typer.BadParameter(str(exc)) from None
    client = ap.client()
    state = client.topics.get(topic, touch=False)
    cursors = _cursors(client, topic, state, positions, checkpoint or [])
    states, rates = write_rates(client, {topic: state}, sample_s)
    state, rate = states[topic], rates[topic]
    now = now_ms()
    reports = [_cursor_report(client, topic, state, c, rate, now, warn_ms) for c in cursors]
    failing = any(r["status"] != "ok" for r in reports)
    value: dict[str, Any] = {
        "topic": topic,
        "head_seq": state.head_seq,
        "earliest_seq": state.earliest_seq,
        "cap_records": state.config.cap_records,
        "cap_bytes": state.config.cap_bytes,
        "ttl_ms": state.config.ttl_ms,
        "write_rate": None if rate is None else round(rate, 3),
        "cursors": reports,
        "ok": not failing,
    }
    ap.sink.result(value, lambda console: _pretty_check(console, topic, state, rate, reports))
    if failing:
        raise typer.Exit(EXIT_GAP)


@dataclass(frozen=True, slots=True)
class _Cursor:
    source: str  # "--from TEXT" or the checkpoint's path
    seq: int


def _cursors(
    client: Client,
    topic: str,
    state: TopicState,
    positions: list[tuple[str, FromPos]],
    checkpoints: list[Path],
) -> list[_Cursor]:
    """Every cursor to check: the ``--from`` positions resolved (``@TIME`` by the client's
    time seek, below any records evicted from that window), then the checkpoints'."""
    from topics_cli.consume import Checkpoint
    from topics_cli.positions import resolve_from

    cursors = []
    for text, pos in positions:
        if pos.kind == "time":
            seq = client.topics.seek(topic, pos.value)
        else:
            resolved = resolve_from(pos, state.head_seq, state.earliest_seq)
            assert resolved is not None
            seq = resolved
        cursors.append(_Cursor(f"--from {text}", seq))
    for path in checkpoints:
        saved = Checkpoint(path, read_only=True).get(topic)
        if saved is None:
            raise typer.BadParameter(f"{path} holds no cursor for {topic!r}")
        cursors.append(_Cursor(str(path), saved))
    return cursors


def _cursor_report(
    client: Client,
    topic: str,
    state: TopicState,
    cursor: _Cursor,
    rate: float | None,
    now: int,
    warn_ms: int | None,
) -> dict[str, Any]:
    """One cursor's line: a gap now (the server's tombstone), lag, headroom, and when
    retention reaches it; ``status`` gap | at_risk | ok."""
    from topics_cli.consumers import eviction_estimate

    probe = client.topics.diff(topic, from_seq=cursor.seq, limit=1, include_meta=False)
    tomb = probe.tombstone
    gap = None
    if tomb is not None:
        gap = {
            "gap_from": tomb.gap_from,
            "gap_to": tomb.gap_to,
            "reason": tomb.reason,
            "missed_estimate": tomb.missed_estimate,
            "earliest_seq": tomb.earliest_seq,
        }
    next_ts = probe.records[0].ts if probe.records and tomb is None else None
    report: dict[str, Any] = {
        "cursor": cursor.seq,
        "source": cursor.source,
        "gap": gap,
        "lag": max(0, state.head_seq - cursor.seq),
        "headroom": cursor.seq - state.earliest_seq + 1,
    }
    report.update(eviction_estimate(state, cursor.seq, rate, next_ts, now))
    soon = (
        warn_ms is not None
        and gap is None
        and report["evicted_in_ms"] is not None
        and report["evicted_in_ms"] < warn_ms
    )
    report["status"] = "gap" if gap else ("at_risk" if soon else "ok")
    return report


def _pretty_check(
    console: Any, topic: str, state: TopicState, rate: float | None, reports: list[dict[str, Any]]
) -> None:
    from topics_cli.commands._render import seq_range
    from topics_cli.positions import format_duration

    rate_text = "not sampled" if rate is None else f"{rate:,.1f} rec/s"
    retained = seq_range(state.earliest_seq, state.head_seq, "retained seqs ")
    console.print(f"[bold]{topic}[/]: {retained}, writing at {rate_text}")
    for r in reports:
        head = f"  cursor {r['cursor']} ({r['source']}): "
        if r["gap"]:
            g = r["gap"]
            console.print(
                head + f"[bold red]GAP[/] seqs {g['gap_from']}..{g['gap_to']} already lost "
                f"({g['reason']}, ~{g['missed_estimate']} records)"
            )
            continue
        line = head + f"lag {r['lag']:,}, headroom {r['headroom']:,}"
        eta = r["evicted_in_ms"]
        if eta is not None:
            rate_part = f"at {rate:,.0f} rec/s " if r["evicted_by"] == "cap" and rate else ""
            style = "bold yellow" if r["status"] == "at_risk" else ""
            warn = f"[{style}]" if style else ""
            end = f"[/{style}]" if style else ""
            line += (
                f"; {warn}{rate_part}this cursor is evicted in ~{format_duration(eta)}"
                f" ({r['evicted_by']}){end}"
            )
        elif r["writes_until_eviction"] is not None:
            line += f"; evicted after {r['writes_until_eviction']:,} more writes"
        else:
            line += "; no cap or TTL: never evicted"
        console.print(line)


ScanFromOpt = Annotated[
    str,
    typer.Option(
        "--from",
        "-f",
        help="Start cursor (N, start, -N, @TIME).",
        autocompletion=choices("start"),
    ),
]
ScanCheckpointOpt = Annotated[
    Path | None,
    typer.Option(
        "--checkpoint", "-c", help="Start from this checkpoint's cursor.", show_default=False
    ),
]


@app.command("scan")
def scan(
    ctx: typer.Context,
    topic: TopicArg,
    from_: ScanFromOpt = "start",
    until: UntilOpt = None,
    checkpoint: ScanCheckpointOpt = None,
) -> None:
    """Replay without printing records; report every gap. Exit 0 only when every seq in the
    range is present or was deliberately deleted (a completeness proof for CI). On a
    terminal a one-line coverage map shows present, deleted and evicted seqs."""
    from topics_cli.commands.diff import open_window
    from topics_cli.consume import Tracker

    _check_positions(from_, until)
    ap = get_app(ctx)
    client = ap.client()
    cp = _scan_checkpoint(checkpoint, topic)
    tracker = Tracker(ap.sink, "warn", command=f"scan {topic}")
    tracker.stats(topic)
    window = open_window(client, topic, from_, until or "head", False, cp)
    code, coverage = replay_coverage(client, topic, window, tracker, cp)
    if code == EXIT_INTERRUPTED:
        raise interrupted()
    value = _scan_result(topic, window.cursor, tracker)
    value["coverage"] = coverage.to_dict()
    ap.sink.result(value, lambda console: _pretty_scan(console, value, coverage))
    if value["gaps"]:
        raise typer.Exit(EXIT_GAP)


def replay_coverage(
    client: Client, topic: str, window: Window, tracker: Tracker, checkpoint: Any = None
) -> tuple[int, Coverage]:
    """Replay ``window`` without printing, noting which seqs were present and which a
    tombstone reported evicted (``tracker`` gets the gaps); returns the replay's exit
    code and the :class:`~topics_cli.coverage.Coverage` of the seqs it examined."""
    from topics_cli.commands.diff import run_replay
    from topics_cli.coverage import Coverage

    coverage = Coverage(window.cursor + 1, window.cursor)
    position: Any = _Position(window.cursor, checkpoint)  # get/set/save: a Checkpoint's

    def emit(records: list[dict[str, Any]]) -> None:
        coverage.add_seqs([r["$seq"] for r in records])

    seen = len(tracker.gap_list)
    code = run_replay(
        client,
        topic,
        window,
        tracker=tracker,
        emit=emit,
        follow=False,
        checkpoint=position,
        include_tags=False,
        include_meta=False,
    )
    coverage.hi = position.seq
    for gap in tracker.gap_list[seen:]:
        if gap.topic == topic:
            coverage.add_evicted(gap.gap_from, gap.gap_to, gap.reason)
    return code, coverage


class _Position:
    """The replay's checkpoint hook: remembers the last cursor (where the examined range
    ends) and passes reads and writes on to a real checkpoint, if any."""

    def __init__(self, start: int, inner: Any) -> None:
        self.seq = start
        self._inner = inner

    def get(self, topic: str) -> int | None:
        saved: int | None = None if self._inner is None else self._inner.get(topic)
        return saved

    def set(self, topic: str, seq: int) -> None:
        self.seq = seq
        if self._inner is not None:
            self._inner.set(topic, seq)

    def save(self) -> None:
        if self._inner is not None:
            self._inner.save()


def _check_positions(from_text: str, until_text: str | None) -> None:
    """``--from`` / ``--until`` parse, or a usage error (before any request)."""
    from topics_cli.positions import PositionError, parse_from, parse_until

    try:
        parse_from(from_text, 0)
        if until_text:
            parse_until(until_text, 0)
    except PositionError as exc:
        raise typer.BadParameter(str(exc)) from None


def _scan_checkpoint(path: Path | None, topic: str) -> Any:
    """The ``--checkpoint`` to start from, read-only (a scan never moves a reader)."""
    if path is None:
        return None
    from topics_cli.consume import Checkpoint

    loaded = Checkpoint(path, read_only=True)
    if loaded.get(topic) is None:
        raise typer.BadParameter(f"{path} holds no cursor for {topic!r}")
    return _ReadOnly(loaded)


def _scan_result(topic: str, start: int, tracker: Tracker) -> dict[str, Any]:
    stats = tracker.stats(topic)
    gaps = [
        {
            "gap_from": g.gap_from,
            "gap_to": g.gap_to,
            "reason": g.reason,
            "missed_estimate": g.missed_estimate,
            "cursor": g.cursor,
        }
        for g in tracker.gap_list
    ]
    return {
        "topic": topic,
        "from_seq": start,
        "records": stats.records,
        "first_seq": stats.first_seq,
        "last_seq": stats.last_seq,
        "gaps": gaps,
        "missed": stats.missed,
        "complete": not gaps,
    }


def _pretty_scan(console: Any, value: dict[str, Any], coverage: Coverage) -> None:
    topic, records, gaps = value["topic"], value["records"], value["gaps"]
    first = value["first_seq"]
    span = f"seqs {first}..{value['last_seq']}" if first else "no records"
    if gaps:
        console.print(
            f"[bold red]INCOMPLETE[/] {topic}: {len(gaps)} gap(s), ~{value['missed']:,} records "
            f"lost; {records:,} present ({span})"
        )
    else:
        console.print(
            f"[green]complete[/] {topic}: {records:,} records present ({span}); "
            "every other seq was deliberately deleted"
        )
    print_coverage(console, coverage)


_RUNS_LISTED = 12


def print_coverage(console: Any, coverage: Coverage) -> None:
    """The coverage map (block characters on a terminal, ASCII elsewhere), its legend and
    the first runs spelled out with their seqs."""
    from topics_cli.coverage import legend, map_cells, render_map, render_text

    if coverage.hi < coverage.lo:
        console.print("  (empty range: nothing after the cursor)")
        return
    terminal = bool(console.is_terminal)
    width = max(20, console.width - 2) if terminal else 78
    if terminal:
        from rich.text import Text

        console.print(Text("  ").append_text(render_map(coverage, width)))
    else:
        console.print("  " + render_text(coverage, width), markup=False, highlight=False)
    cells = map_cells(coverage, width)
    console.print("  " + legend(terminal, cells), markup=False, highlight=False, style="dim")
    runs = coverage.runs()
    for run in runs[:_RUNS_LISTED]:
        what = {"present": "present", "deleted": "deleted on purpose", "evicted": "evicted"}
        why = f" ({run.reason})" if run.reason else ""
        console.print(
            f"  {run.first}..{run.last}: {what[run.state]}{why}, {run.size:,} seq(s)",
            markup=False,
            highlight=False,
        )
    if len(runs) > _RUNS_LISTED:
        console.print(f"  … {len(runs) - _RUNS_LISTED:,} more runs (-o json lists them)")


class _ReadOnly:
    """A checkpoint that is read but never written (scan must not move a reader)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def get(self, topic: str) -> int | None:
        value: int | None = self._inner.get(topic)
        return value

    def set(self, topic: str, seq: int) -> None:
        pass

    def save(self) -> None:
        pass
