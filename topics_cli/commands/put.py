"""``topics put``: append records from arguments or stdin."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Annotated, Any

import typer

from topics_cli.context import get_app
from topics_cli.errors import EXIT_CODES_HELP, CliError
from topics_cli.group import typer_app
from topics_cli.options import TopicArg

HELP = """Append records to TOPIC, from DATA arguments or from stdin (one JSON value a line).

Each batch of up to --batch-size lines is one atomic write: an invalid JSON line stops the
run before any of its batch is sent (the error names the line); --skip-invalid skips and
counts such lines instead. Blank lines are ignored. From stdin a batch is also sent once
its first line has waited --linger with the batch not full, so a slow producer
(tail -f) is written as it goes; with --key batches are cut by size only.

Prints what was appended. In a pipe (JSON lines): for DATA arguments, the write's answer
with every seq; for stdin, one compact ack per batch,
{"topic", "first_seq", "last_seq", "count", "created", "deduped"} (a batch's seqs are
first_seq..last_seq). -o json prints one document with every seq at the end; on a
terminal, progress and a one-line summary.

\b
Examples:
  topics put orders '{"id": 1}' '{"id": 2}'
  topics put orders --tag order:7 --meta trace=t9 '{"qty": 2}'
  seq 1 100000 | topics put numbers
  tail -f app.log | topics put logs --raw --batch-size 1
  topics put orders --key import-2026-01 < orders.jsonl     # re-runs append nothing
  topics diff A -o jsonl | topics put B --envelope           # copy a topic
  topics put billing --config cap_records=50000 --config durability=fsync '{"x": 1}'
"""

MetaOpt = Annotated[
    list[str] | None,
    typer.Option("--meta", help="Meta entry k=v for every record; repeatable.", show_default=False),
]


def _parse_value(text: str) -> Any:
    import orjson

    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def _pairs(items: list[str] | None, flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r}: expected key=value", param_hint=flag)
        out[key.strip()] = _parse_value(value) if flag == "--config" else value
    return out


class _Input:
    """Numbered input lines → wire records, batch by batch."""

    def __init__(
        self,
        *,
        raw: bool,
        envelope: bool,
        skip_invalid: bool,
        tag: str | None,
        meta: dict[str, Any],
    ) -> None:
        self.raw = raw
        self.envelope = envelope
        self.skip_invalid = skip_invalid
        self.tag = tag
        self.meta = meta
        self.skipped: list[int] = []
        self.gap_markers = 0

    def record(self, line_no: int, line: bytes | str) -> dict[str, Any] | None:
        import orjson

        if isinstance(line, bytes):
            line = line.rstrip(b"\r\n")
            if not line.strip():
                return None
        else:
            line = line.rstrip("\r\n")
        rec: dict[str, Any]
        if self.raw:
            text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
            rec = {"data": text}
        else:
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                self._invalid(line_no, f"invalid JSON ({exc.msg})")
                return None
            if self.envelope:
                if not isinstance(value, dict):
                    self._invalid(line_no, "not a record envelope (a JSON object)")
                    return None
                if "$gap" in value:
                    self.gap_markers += 1
                    return None
                if "data" not in value:
                    self._invalid(line_no, "envelope without a data field")
                    return None
                rec = {"data": value["data"]}
                if isinstance(value.get("$tag"), str):
                    rec["tag"] = value["$tag"]
                if isinstance(value.get("$node"), str):
                    rec["node"] = value["$node"]
                meta = value.get("meta")
                if isinstance(meta, dict):
                    rec["meta"] = {**self.meta, **meta} if self.meta else meta
            else:
                rec = {"data": value}
        if self.tag is not None and "tag" not in rec:
            rec["tag"] = self.tag
        if self.meta and "meta" not in rec:
            rec["meta"] = dict(self.meta)
        return rec

    def _invalid(self, line_no: int, why: str) -> None:
        if not self.skip_invalid:
            raise _BadLine(line_no, why)
        self.skipped.append(line_no)


class _BadLine(Exception):
    def __init__(self, line_no: int, why: str) -> None:
        super().__init__(why)
        self.line_no = line_no
        self.why = why


Lines = Iterator[tuple[int, Sequence[bytes | str]]]
"""Batches of raw input lines, each with the number of its first line."""


def _batches(batches: Lines, parse: _Input) -> Iterator[list[dict[str, Any]]]:
    """The records of each batch of lines; parses a whole batch before it is sent."""
    record = parse.record
    for first, chunk in batches:
        records = []
        for line_no, line in enumerate(chunk, first):
            rec = record(line_no, line)
            if rec is not None:
                records.append(rec)
        if records:
            yield records


def _arg_batches(data: list[str], size: int) -> Lines:
    for i in range(0, len(data), size):
        yield i + 1, data[i : i + size]


READ_SIZE = 1 << 16


def _stdin_batches(
    read: Callable[[int], bytes], fd: int | None, size: int, linger: float | None
) -> Lines:
    """Batches of up to ``size`` lines from ``read``: a full batch as soon as it is read, a
    partial one once its first line has waited ``linger`` seconds with nothing more to
    read on ``fd`` (``None``: only at EOF). Reads whole chunks (no per-line system call);
    ``select`` only waits while a partial batch is held."""
    import select

    pending: list[bytes] = []
    held = b""  # a line still missing its newline
    line_no = 1  # number of pending[0]
    since = 0.0  # when pending[0] was read
    while True:
        if pending and linger is not None and fd is not None:  # fd None: in-memory stdin
            left = since + linger - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                yield line_no, pending
                line_no += len(pending)
                pending = []
                continue
        chunk = read(READ_SIZE)
        if not chunk:
            if held:
                pending.append(held)
            for i in range(0, len(pending), size):
                yield line_no + i, pending[i : i + size]
            return
        lines = (held + chunk).split(b"\n") if held else chunk.split(b"\n")
        held = lines.pop()
        if not lines:
            continue
        if not pending:
            since = time.monotonic()
        pending += lines
        if len(pending) >= size:
            full = len(pending) - len(pending) % size
            for i in range(0, full, size):
                yield line_no + i, pending[i : i + size]
            line_no += full
            pending = pending[full:]
            since = time.monotonic()


app = typer_app()


@app.command("put", help=HELP, epilog=EXIT_CODES_HELP)
def put(
    ctx: typer.Context,
    topic: TopicArg,
    data: Annotated[
        list[str] | None,
        typer.Argument(help="Records as JSON values (strings with --raw).", show_default=False),
    ] = None,
    raw: Annotated[bool, typer.Option("--raw", help="Each line/argument is a string.")] = False,
    tag: Annotated[
        str | None, typer.Option("--tag", "-t", help="Tag for every record.", show_default=False)
    ] = None,
    node: Annotated[
        str | None,
        typer.Option("--node", help="Origin node for every record.", show_default=False),
    ] = None,
    meta: MetaOpt = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            help="Idempotency key (batch i>0 uses KEY:i): a repeated run appends nothing.",
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=10000, help="Records per write.")
    ] = 500,
    no_create: Annotated[
        bool, typer.Option("--no-create", help="Fail (exit 4) if the topic does not exist.")
    ] = False,
    config: Annotated[
        list[str] | None,
        typer.Option(
            "--config",
            help="Config k=v applied if this write creates the topic; repeatable.",
            show_default=False,
        ),
    ] = None,
    envelope: Annotated[
        bool,
        typer.Option(
            "--envelope",
            help="Lines are records as the server returns them ($tag, $node, meta, data).",
        ),
    ] = False,
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Skip and count invalid lines.")
    ] = False,
    linger: Annotated[
        str,
        typer.Option(
            "--linger",
            help="From stdin: send a batch that is not full once its first line has waited "
            "this long, e.g. 100ms, 2s (0: send every read at once). Ignored with --key.",
        ),
    ] = "100ms",
) -> None:
    from topics_cli.options import duration_ms

    if raw and envelope:
        raise typer.BadParameter("--raw and --envelope exclude each other", param_hint="--raw")
    linger_s = duration_ms(linger, "--linger") / 1000
    app = get_app(ctx)
    sink = app.sink
    parse = _Input(
        raw=raw, envelope=envelope, skip_invalid=skip_invalid, tag=tag, meta=_pairs(meta, "--meta")
    )
    if data:
        batches, source = _arg_batches(data, batch_size), "argument"
    else:
        read, fd = _stdin()
        batches = _stdin_batches(read, fd, batch_size, None if key else linger_s)
        source = "line"
    writer = _Writer(
        app.client(),
        sink,
        topic,
        node=node,
        key=key,
        create=False if no_create else None,
        config=_pairs(config, "--config") or None,
        compact=not data,
    )
    try:
        try:
            for batch in _batches(batches, parse):
                writer.write(batch)
        finally:
            writer.screen.close()  # an error or Ctrl-C then starts a line of its own
    except _BadLine as bad:
        total = writer.total
        done = f"{total:,} records before it were appended" if total else "nothing appended"
        raise CliError(
            f"{source} {bad.line_no}: {bad.why}; nothing of its batch was sent ({done})",
            hint="--raw sends lines as strings; --skip-invalid skips bad lines",
        ) from None
    if parse.skipped:
        shown = ", ".join(map(str, parse.skipped[:10])) + (" …" if len(parse.skipped) > 10 else "")
        sink.warn(f"skipped {len(parse.skipped)} invalid {source}s ({shown})")
    if parse.gap_markers:
        sink.info(f"ignored {parse.gap_markers} $gap markers in the input")
    writer.summary(parse.skipped)


def _stdin() -> tuple[Callable[[int], bytes], int | None]:
    """How to read stdin (its descriptor when it has one), unless it is a terminal."""
    import io
    import os

    if sys.stdin.isatty():
        raise CliError(
            "no records: pass DATA arguments or pipe JSON lines on stdin",
            hint="topics put TOPIC '{\"id\": 1}'",
        )
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return sys.stdin.buffer.read, None
    return lambda n: os.read(fd, n), fd


class _Writer:
    """Sends batches (batch i > 0 with idempotency key ``KEY:i``), prints each write's
    receipt in jsonl mode (``compact``: without the seqs, which are first..last; progress
    on a terminal), and one summary otherwise."""

    def __init__(
        self,
        client: Any,
        sink: Any,
        topic: str,
        *,
        node: str | None,
        key: str | None,
        create: bool | None,
        config: dict[str, Any] | None,
        compact: bool = False,
    ) -> None:
        from topics_cli.terminal import Screen

        self.client = client
        self.compact = compact
        self.screen = Screen(sink, live=sink.err_is_tty() and not sink.quiet)
        self.sink = sink
        self.topic = topic
        self.options = {"node": node, "create": create, "config": config}
        self.key = key
        self.started = time.monotonic()
        self.total = 0
        self.seqs: list[int] = []
        self.results: list[dict[str, Any]] = []

    def write(self, records: list[dict[str, Any]]) -> None:
        index = len(self.results)
        batch_key = (
            None if self.key is None else (self.key if index == 0 else f"{self.key}:{index}")
        )
        result = self.client.topics.write(
            self.topic, records, idempotency_key=batch_key, **self.options
        )
        self.total += result.count
        self.seqs.extend(result.seqs or range(result.first_seq, result.last_seq + 1))
        entry = {
            "topic": result.topic,
            "first_seq": result.first_seq,
            "last_seq": result.last_seq,
            "count": result.count,
            "seqs": list(result.seqs),
            "created": result.created,
            "deduped": result.deduped,
        }
        self.results.append(entry)
        if self.sink.mode == "jsonl":
            with self.screen.above():  # acks on a terminal: above the progress line
                self.sink.result(
                    {k: v for k, v in entry.items() if k != "seqs"} if self.compact else entry
                )
        if index > 0 or self.compact:
            rate = self.total / max(1e-6, time.monotonic() - self.started)
            self.screen.status(f"put {self.topic}: {self.total:,} records ({rate:,.0f}/s)")

    def summary(self, skipped: list[int]) -> None:
        sink, seqs, results = self.sink, self.seqs, self.results
        if sink.mode == "jsonl":
            return
        if sink.mode in ("data", "template"):
            sink.lines(map(str, seqs))
            return
        deduped = bool(results) and all(r["deduped"] for r in results)
        created = any(r["created"] for r in results)
        summary = {
            "topic": self.topic,
            "count": self.total,
            "first_seq": seqs[0] if seqs else None,
            "last_seq": seqs[-1] if seqs else None,
            "seqs": seqs,
            "writes": len(results),
            "created": created,
            "deduped": deduped,
            "skipped_lines": skipped,
        }

        def pretty(console: Any) -> None:
            if not seqs:
                console.print(f"nothing appended to [bold]{self.topic}[/]")
                return
            span = f"seq {seqs[0]}" if len(seqs) == 1 else f"seqs {seqs[0]}..{seqs[-1]}"
            note = " [yellow](deduplicated: already written with this key)[/]" if deduped else ""
            made = " [green](created)[/]" if created else ""
            console.print(f"appended {self.total:,} to [bold]{self.topic}[/]{made}: {span}{note}")

        sink.result(summary, pretty)
