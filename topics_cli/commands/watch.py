"""``topics watch``: live tail of many topics over one SSE watch stream."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from topics_cli.completions import topic_names
from topics_cli.context import get_app
from topics_cli.errors import EXIT_CODES_HELP, EXIT_GAP, CliError
from topics_cli.group import typer_app
from topics_cli.options import (
    CheckpointOpt,
    CountOpt,
    FailOnGapOpt,
    FromOpt,
    IdleTimeoutOpt,
    NodeFilterOpt,
    OnGapOpt,
    on_gap_policy,
)

if TYPE_CHECKING:
    from topics_cli.consume import Checkpoint, Tracker
    from topics_cli.output import Sink
    from topics_cli.positions import FromPos
    from topics_cli.terminal import Screen
    from topics_client import Client, WatchStream

HELP = """Live tail of one or more topics over a single SSE watch stream.

Starts at the end by default (only new records); TOPIC@SEQ starts that topic after SEQ,
--from applies to the others (start | end | N | -N | @TIME). Reconnects by itself and
prints a receipt on stderr (where it resumed, records missed since).
jsonl lines are records exactly as the server sends them, plus "topic". On a terminal a
status line shows per-topic lag, records/s and gaps so far.

\b
Examples:
  topics watch orders                              # new records as they arrive
  topics watch orders@41 audit --from start        # orders after 41, audit from the start
  topics watch orders -o jsonl | jq .data          # lossless records in a pipe
  topics watch orders -c cp.json                   # resumable: cursors saved per batch
  topics watch orders --from start --until-caught-up --count 100
  topics watch a b --node edge-a                   # skip records this node wrote
"""


def _split(arg: str) -> tuple[str, int | None]:
    name, sep, seq = arg.rpartition("@")
    if not sep:
        return arg, None
    if not seq.isdigit() or not name:
        raise typer.BadParameter(f"{arg!r}: expected TOPIC or TOPIC@SEQ", param_hint="TOPIC")
    return name, int(seq)


class _Pump(threading.Thread):
    """Reads the stream in the background so the main thread can keep time (idle timeout,
    status line, Ctrl-C) while the stream blocks. Before the first event of each new
    connection it queues a ``reconnect`` (the stream's connection number, and whether a
    new session had to be created), which the main thread turns into the receipt."""

    def __init__(self, stream: WatchStream, out: queue.Queue[tuple[str, Any]]) -> None:
        super().__init__(daemon=True, name="topics-watch")
        self.stream = stream
        self.out = out

    def run(self) -> None:
        stream, seen = self.stream, 1
        try:
            for event in stream:
                if stream.connections > seen:
                    seen = stream.connections
                    self.out.put(("reconnect", (seen, stream.sessions > 1)))
                self.out.put(("event", event))
        except BaseException as exc:  # handed to the main thread
            self.out.put(("error", exc))
        else:
            self.out.put(("end", None))


class _Watcher:
    def __init__(
        self,
        sink: Sink,
        screen: Screen,
        tracker: Tracker,
        checkpoint: Checkpoint | None,
        cursors: dict[str, int],
        *,
        with_data: bool,
        count: int | None,
        until_caught_up: bool,
    ) -> None:
        self.sink = sink
        self.screen = screen
        self.tracker = tracker
        self.checkpoint = checkpoint
        self.cursors = cursors
        self.with_data = with_data
        self.count = count
        self.until_caught_up = until_caught_up
        self.live = set(cursors)
        self.unknown: set[str] = set()
        self.caught_up: set[str] = set()
        self.lag: dict[str, int] = {}
        self.delivered = 0
        self.reconnects = 0
        self.pending_receipt: dict[str, Any] | None = None
        self.rate_window: list[tuple[float, int]] = []

    def save(self) -> None:
        if self.checkpoint is not None:
            for topic, seq in self.cursors.items():
                if topic not in self.unknown:  # a tail start not yet resolved
                    self.checkpoint.set(topic, seq)
            self.checkpoint.save()

    def adopt_tail_starts(self, session: Any) -> None:
        """Tail starts (``--from end``): take the session's resolved cursors once known."""
        if self.unknown and session is not None:
            for name, start in session.topics.items():
                if name in self.unknown:
                    self.unknown.discard(name)
                    self.cursors[name] = max(self.cursors[name], start.from_seq)

    def reconnected(self, connection: int, new_session: bool) -> None:
        self.reconnects += 1
        if self.pending_receipt is None:
            self.pending_receipt = {
                "connection": connection,
                "resumed_at": dict(self.cursors),
                "new_session": new_session,
                "missed_before": self.tracker.total_missed,
            }
        elif new_session:
            self.pending_receipt["new_session"] = True

    def receipt(self) -> None:
        r = self.pending_receipt
        if r is None:
            return
        self.pending_receipt = None
        missed = self.tracker.total_missed - r["missed_before"]
        at = ", ".join(f"{t}@{s}" for t, s in r["resumed_at"].items())
        how = "new session" if r["new_session"] else "same session"
        payload = {
            "connection": r["connection"],
            "resumed_at": r["resumed_at"],
            "new_session": r["new_session"],
            "missing": missed,
        }
        text = f"reconnected ({how}), resumed at {at}, {missed} missing"
        self.sink.event("reconnect", payload, text, style="yellow")

    def handle(self, event: Any) -> bool:
        """Fold one watch event in; True when the run is complete."""
        from topics_client import CaughtUpEvent, Gap, RecordsEvent, StreamErrorEvent

        if isinstance(event, RecordsEvent):
            topic = event.topic
            seen = self.cursors.get(topic, 0)
            records = event.records  # the client hands each seq out once, across reconnects
            done = False
            to_seq = max(seen, event.to_seq)
            if self.count is not None and self.delivered + len(records) >= self.count:
                records = records[: self.count - self.delivered]
                to_seq = records[-1].seq if records else seen
                done = True
            self.receipt()
            if records:
                self.screen.records(records, topic, with_topic=True, with_data=self.with_data)
                self.tracker.records(topic, records)
                self.delivered += len(records)
                self.rate_window.append((time.monotonic(), len(records)))
            self.cursors[topic] = to_seq
            self.lag[topic] = event.lag
            self.caught_up.discard(topic)
            self.save()
            return done
        if isinstance(event, Gap):
            fail = self.tracker.gap(event)
            if event.reason == "recreated":
                self.cursors[event.topic] = max(0, event.earliest_seq - 1)
            else:
                self.cursors[event.topic] = max(self.cursors.get(event.topic, 0), event.gap_to)
            if fail:
                raise _GapStop
            self.save()
            return False
        if isinstance(event, CaughtUpEvent):
            self.receipt()
            self.caught_up.add(event.topic)
            self.lag[event.topic] = 0
            return self.until_caught_up and self.live <= self.caught_up
        if isinstance(event, StreamErrorEvent):
            if event.terminal:
                raise CliError(f"watch stream ended: {event.code}: {event.message}", code=1)
            return False
        # TopicDeletedEvent
        topic = event.topic
        self.live.discard(topic)
        self.sink.event(
            "topic_deleted",
            {"topic": topic, "reason": event.reason},
            f"{topic}: topic deleted ({event.reason}); still watching {len(self.live)}",
            style="yellow",
        )
        return not self.live or (self.until_caught_up and self.live <= self.caught_up)

    def status_line(self) -> str:
        now = time.monotonic()
        self.rate_window = [(t, n) for t, n in self.rate_window if now - t <= 5.0]
        span = max(1.0, min(5.0, now - self.tracker.started))
        rate = sum(n for _, n in self.rate_window) / span
        lags = " ".join(
            f"{t}:{'✓' if t in self.caught_up else self.lag.get(t, '?')}" for t in sorted(self.live)
        )
        gaps = len(self.tracker.gap_list)
        return (
            f"watching {lags} | {self.delivered:,} records, {rate:,.0f}/s | "
            f"{gaps} gap{'s' if gaps != 1 else ''}"
            + (f" | {self.reconnects} reconnects" if self.reconnects else "")
        )


class _GapStop(Exception):
    pass


app = typer_app()


@app.command("watch", help=HELP, epilog=EXIT_CODES_HELP)
def watch(
    ctx: typer.Context,
    topics: Annotated[
        list[str],
        typer.Argument(
            help="TOPIC or TOPIC@SEQ (start after SEQ).",
            show_default=False,
            autocompletion=topic_names,
        ),
    ],
    from_: FromOpt = None,
    checkpoint: CheckpointOpt = None,
    count: CountOpt = None,
    idle_timeout: IdleTimeoutOpt = None,
    node: NodeFilterOpt = None,
    until_caught_up: Annotated[
        bool,
        typer.Option("--until-caught-up", help="Exit 0 once every topic has caught up."),
    ] = False,
    no_data: Annotated[
        bool, typer.Option("--no-data", help="Omit record payloads (seqs, tags, meta only).")
    ] = False,
    meta: Annotated[
        bool, typer.Option("--meta/--no-meta", help="Include each record's meta.")
    ] = True,
    heartbeat_ms: Annotated[
        int,
        typer.Option("--heartbeat-ms", min=1000, max=60000, help="Server heartbeat interval."),
    ] = 15000,
    on_gap: OnGapOpt = "warn",
    fail_on_gap: FailOnGapOpt = False,
) -> None:
    from topics_cli.consume import Checkpoint, Tracker, now_ms
    from topics_cli.positions import PositionError, parse_duration_ms, parse_from
    from topics_cli.terminal import Screen

    app = get_app(ctx)
    policy = on_gap_policy(on_gap, fail_on_gap)
    try:
        pos = parse_from(from_ or "end", now_ms())
        idle_ms = parse_duration_ms(idle_timeout) if idle_timeout else None
    except PositionError as exc:
        raise typer.BadParameter(str(exc)) from None
    parsed = [_split(t) for t in topics]
    if len({name for name, _ in parsed}) != len(parsed):
        raise typer.BadParameter("a topic is listed twice", param_hint="TOPIC")
    sink = app.sink
    cp = Checkpoint(Path(checkpoint)) if checkpoint else None
    client = app.client()
    tracker = Tracker(sink, policy, command="watch")
    starts = _starts(client, parsed, pos, cp)
    for name in starts:
        tracker.stats(name)
    stream = client.watch.stream(
        starts,
        node=node or None,
        heartbeat_ms=heartbeat_ms,
        include_data=not no_data,
        include_tags=True,
        include_meta=meta,
    )
    screen = Screen(sink, live=sink.mode == "pretty" and sink.err_is_tty() and not sink.quiet)
    watcher = _Watcher(
        sink,
        screen,
        tracker,
        cp,
        {name: (s if s is not None else 0) for name, s in starts.items()},
        with_data=not no_data,
        count=count,
        until_caught_up=until_caught_up,
    )
    watcher.unknown = {name for name, s in starts.items() if s is None}
    code = 0
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    try:
        _Pump(stream, events).start()
        _follow(watcher, stream, events, idle_ms)
    except _GapStop:
        code = EXIT_GAP
    except KeyboardInterrupt:
        watcher.save()
        screen.close()
        tracker.summary()
        raise
    except BaseException:
        screen.close()  # the error gets a line of its own
        raise
    screen.close()
    watcher.save()
    tracker.summary()
    if code:
        raise typer.Exit(code)


def _starts(
    client: Client, parsed: list[tuple[str, int | None]], pos: FromPos, cp: Checkpoint | None
) -> dict[str, int | None]:
    """Each topic's start cursor (None: the tail): checkpoint, else TOPIC@SEQ, else
    ``--from`` (``@TIME``: below records evicted from that window, so the stream's first
    frames report them as a gap)."""
    from topics_cli.consume import start_cursor

    starts: dict[str, int | None] = {}
    for name, seq in parsed:
        saved = cp.get(name) if cp is not None else None
        if saved is not None or seq is not None:
            starts[name] = saved if saved is not None else seq
        elif pos.kind == "end":
            starts[name] = None
        else:
            starts[name] = start_cursor(client, name, pos, None)
    return starts


def _follow(
    watcher: _Watcher, stream: Any, events: queue.Queue[tuple[str, Any]], idle_ms: int | None
) -> None:
    """The main thread's loop: hand each event to ``watcher`` until it is done, the stream
    ends, or ``idle_ms`` pass without a record; keeps the terminal status line fresh
    (records are written above it, never onto its row: :class:`topics_cli.terminal.Screen`)."""
    screen = watcher.screen
    live_status = screen.live
    tick = 0.5 if live_status else None
    last_record = time.monotonic()
    while True:
        timeout = tick
        if idle_ms is not None:
            remaining = idle_ms / 1000 - (time.monotonic() - last_record)
            if remaining <= 0:
                return
            timeout = remaining if timeout is None else min(timeout, remaining)
        try:
            kind, item = events.get(timeout=timeout)
        except queue.Empty:
            if live_status:
                screen.status(watcher.status_line())
            continue
        if kind == "end":
            return
        if kind == "error":
            raise item
        if kind == "reconnect":
            watcher.reconnected(*item)
            continue
        watcher.adopt_tail_starts(stream.session)
        before = watcher.delivered
        done = watcher.handle(item)
        if watcher.delivered > before:
            last_record = time.monotonic()
        if live_status:
            screen.status(watcher.status_line())
        if done:
            return
