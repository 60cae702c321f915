"""``topics diff``: replay a topic from a position, with explicit gaps."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from topics_cli.context import get_app
from topics_cli.errors import EXIT_CODES_HELP, EXIT_GAP, EXIT_INTERRUPTED, interrupted
from topics_cli.group import typer_app
from topics_cli.options import (
    CheckpointOpt,
    CountOpt,
    FailOnGapOpt,
    FromOpt,
    IdleTimeoutOpt,
    LimitOpt,
    NodeFilterOpt,
    OnGapOpt,
    TopicArg,
    UntilOpt,
    on_gap_policy,
)
from topics_client import DEFAULT_FOLLOW_WAIT_MS, DEFAULT_REPLAY_LIMIT

if TYPE_CHECKING:
    from topics_cli.consume import Checkpoint, Tracker
    from topics_client import Client, Gap, ReplayState

_B = TypeVar("_B")
WireRecord = dict[str, Any]
"""A record as the server returned it: ``{"$seq", "$ts", "$tag"?, "$node"?, "meta"?, "data"}``."""


class WirePage:
    """One diff page, undecoded into models: ``records`` are the server's dicts."""

    __slots__ = ("caught_up", "gap", "next_from_seq", "records")

    def __init__(
        self, records: list[WireRecord], gap: Gap | None, next_from_seq: int, caught_up: bool
    ) -> None:
        self.records = records
        self.gap = gap
        self.next_from_seq = next_from_seq
        self.caught_up = caught_up


def wire_pages(
    client: Client, topic: str, state: ReplayState, options: dict[str, Any]
) -> Iterator[WirePage]:
    """:meth:`topics_client.Replay.batches` without the models: each ``POST …/diff`` answer
    is decoded once with orjson and its records are handed on as they are (the lossless
    JSONL form), so a replay to a pipe never builds a ``Record`` per line. What to ask and
    what an answer means (limit, ``until_seq``, ``follow``) is the client's
    :class:`~topics_client.ReplayState`."""
    import orjson

    diff = client.with_raw_response.topics.diff
    options = {k: v for k, v in options.items() if v is not None}
    while not state.done:
        cursor = state.cursor
        page = orjson.loads(diff(topic, **state.request(), **options).content)
        gap = None
        tomb = page.get("tombstone")
        if tomb:
            from topics_client import Gap, Tombstone

            gap = Gap.from_tombstone(topic, Tombstone.from_wire(tomb), cursor)
        caught_up = page.get("caught_up", page["next_from_seq"] >= page["head_seq"])
        nxt = state.step(page["next_from_seq"], caught_up)
        records: list[WireRecord] = page["records"]
        if records and records[-1]["$seq"] > nxt:  # past until_seq
            records = [r for r in records if r["$seq"] <= nxt]
        yield WirePage(records, gap, nxt, caught_up)


HELP = """Replay TOPIC from a position: by default everything retained up to the head as it
was when the command started, then exit 0. --follow keeps long-polling for new records.

Positions: --from start | end | N (records after seq N) | -N (last N) | @TIME
(ISO-8601 or relative like @-15m); --until head | N | @TIME. A tombstone (records lost to
cap or TTL before the cursor) is reported on stderr the moment it arrives, and in the
end-of-run summary; --on-gap fail stops with exit 3, --on-gap inline also writes a
{"$gap": {...}} line into the stream.

\b
Examples:
  topics diff orders                                # replay, then exit
  topics diff orders --from -20                     # the last 20 records
  topics diff orders --from @-15m --follow          # last 15 minutes, then keep going
  topics diff orders --from 41 --until 100 -o jsonl
  topics diff orders -c orders.cp --follow          # resumable consumer
  topics diff orders -o jsonl --fail-on-gap > backup.jsonl
  topics diff orders --template '{seq}\\t{tag}\\t{data}'
"""


def _prefetched(batches: Iterator[_B], depth: int = 3) -> Iterator[_B]:
    """Fetch the next pages in a thread while this one is written out (server and client
    work overlap). The producer is a daemon: an early stop simply abandons it."""
    import queue
    import threading

    pages: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)

    def produce() -> None:
        try:
            for batch in batches:
                pages.put(("batch", batch))
        except BaseException as exc:
            pages.put(("error", exc))
        else:
            pages.put(("end", None))

    threading.Thread(target=produce, daemon=True, name="topics-replay").start()
    while True:
        kind, item = pages.get()
        if kind == "end":
            return
        if kind == "error":
            raise item
        yield item


@dataclass
class Window:
    """Where a replay starts and stops, resolved against the topic once."""

    cursor: int
    until_seq: int | None
    until_ms: int | None


def open_window(
    client: Client,
    topic: str,
    from_text: str,
    until_text: str | None,
    follow: bool,
    checkpoint: Checkpoint | None,
) -> Window:
    """Resolve ``--from`` (or the checkpoint) and ``--until`` (``head`` unless following)."""
    from topics_cli.consume import now_ms, start_cursor
    from topics_cli.positions import parse_from, parse_until, resolve_until

    now = now_ms()
    until_pos = parse_until(until_text, now) if until_text else None
    if until_pos is None and not follow:
        until_pos = parse_until("head", now)
    cursor = start_cursor(client, topic, parse_from(from_text, now), checkpoint)
    head = 0
    if until_pos is not None and until_pos.kind == "head":
        head = client.topics.get(topic, touch=False).head_seq
    until_seq, until_ms = resolve_until(until_pos, head)
    return Window(cursor, until_seq, until_ms)


def _cut(
    page: WirePage, position: int, until_ms: int | None, left: int | None
) -> tuple[list[WireRecord], int, bool]:
    """The part of ``page`` to deliver, the cursor after it, and whether the run ends there
    (``--until @TIME`` passed, or ``left`` records of ``--count`` delivered)."""
    records, end, stop = page.records, page.next_from_seq, False
    if until_ms is not None:
        if records and records[-1]["$ts"] > until_ms:
            records = [r for r in records if r["$ts"] <= until_ms]
            end = records[-1]["$seq"] if records else position
            stop = True
        elif page.caught_up and int(time.time() * 1000) > until_ms:
            stop = True
    if left is not None and len(records) >= left:
        records = records[:left]
        if records:
            end = records[-1]["$seq"]
        stop = True
    return records, end, stop


def run_replay(
    client: Client,
    topic: str,
    window: Window,
    *,
    tracker: Tracker,
    emit: Callable[[list[WireRecord]], None] | None,
    follow: bool,
    checkpoint: Checkpoint | None = None,
    count: int | None = None,
    idle_ms: int | None = None,
    limit: int = DEFAULT_REPLAY_LIMIT,
    node: list[str] | None = None,
    include_tags: bool = True,
    include_meta: bool = True,
) -> int:
    """Replay one topic over ``window`` into ``emit`` (the server's record dicts, page by
    page; ``None``: count only); returns the exit code (0, or 3 on ``fail``).

    The checkpoint advances after each page ``emit`` has written, never past an unreported
    gap; Ctrl-C leaves it at the last delivered record.
    """
    from topics_client import ReplayState

    wait_ms = DEFAULT_FOLLOW_WAIT_MS
    if idle_ms is not None:
        wait_ms = max(1, min(wait_ms, idle_ms))
    state = ReplayState(
        topic,
        window.cursor,
        until_seq=window.until_seq,
        follow=follow,
        limit=limit,
        wait_ms=wait_ms,
    )
    options = {"node": node or None, "include_tags": include_tags, "include_meta": include_meta}
    delivered = 0
    last_record_at = time.monotonic()
    position = window.cursor

    def save(seq: int) -> None:
        if checkpoint is not None:
            checkpoint.set(topic, seq)
            checkpoint.save()

    try:
        for page in _prefetched(wire_pages(client, topic, state, options)):
            if page.gap is not None and tracker.gap(page.gap):
                return EXIT_GAP
            left = None if count is None else count - delivered
            records, position, stop = _cut(page, position, window.until_ms, left)
            if records:
                if emit is not None:
                    emit(records)
                tracker.span(topic, len(records), records[0]["$seq"], records[-1]["$seq"])
                delivered += len(records)
                last_record_at = time.monotonic()
            save(position)
            idle = follow and idle_ms is not None and not records
            if stop or (idle and (time.monotonic() - last_record_at) * 1000 >= (idle_ms or 0)):
                break
    except KeyboardInterrupt:
        save(position)
        return EXIT_INTERRUPTED
    return 0


app = typer_app()


@app.command("diff", help=HELP, epilog=EXIT_CODES_HELP)
def diff(
    ctx: typer.Context,
    topic: TopicArg,
    from_: FromOpt = None,
    until: UntilOpt = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-F", help="Keep going: long-poll for new records.")
    ] = False,
    checkpoint: CheckpointOpt = None,
    count: CountOpt = None,
    idle_timeout: IdleTimeoutOpt = None,
    limit: LimitOpt = DEFAULT_REPLAY_LIMIT,
    node: NodeFilterOpt = None,
    tags: Annotated[
        bool, typer.Option("--tags/--no-tags", help="Include each record's $tag.")
    ] = True,
    meta: Annotated[
        bool, typer.Option("--meta/--no-meta", help="Include each record's meta.")
    ] = True,
    on_gap: OnGapOpt = "warn",
    fail_on_gap: FailOnGapOpt = False,
) -> None:
    from topics_cli.consume import Checkpoint, Tracker
    from topics_cli.positions import PositionError, parse_duration_ms

    app = get_app(ctx)
    policy = on_gap_policy(on_gap, fail_on_gap)
    try:
        idle_ms = parse_duration_ms(idle_timeout) if idle_timeout else None
        from topics_cli.positions import parse_from, parse_until

        parse_from(from_ or "start", 0)
        if until:
            parse_until(until, 0)
    except PositionError as exc:
        raise typer.BadParameter(str(exc)) from None
    sink = app.sink
    tracker = Tracker(sink, policy, command=f"diff {topic}")
    cp = Checkpoint(Path(checkpoint)) if checkpoint else None
    client = app.client()

    def emit(records: list[WireRecord]) -> None:
        sink.wire_records(records, topic)

    window = open_window(client, topic, from_ or "start", until, follow, cp)
    code = run_replay(
        client,
        topic,
        window,
        tracker=tracker,
        emit=emit,
        follow=follow,
        checkpoint=cp,
        count=count,
        idle_ms=idle_ms,
        limit=limit,
        node=node,
        include_tags=tags,
        include_meta=meta,
    )
    tracker.summary()
    if code == EXIT_INTERRUPTED:
        raise interrupted()
    if code:
        raise typer.Exit(code)
