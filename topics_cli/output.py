"""The one output sink: ``pretty`` | ``json`` | ``jsonl`` | ``data`` | ``template``.

* ``pretty`` — for people: colour and tables via rich (imported only here, only then).
* ``json`` — one indented JSON document per result (per record for record streams).
* ``jsonl`` — one compact JSON object per line; records exactly as the server returns
  them (``$seq``, ``$ts``, ``$tag``, ``$node``, ``meta``, ``data``; watch adds ``topic``).
* ``data`` — only each record's ``data``: strings raw, anything else as compact JSON.
* ``template`` — ``--template '{seq}\\t{tag}\\t{data}'``; fields ``seq ts time tag node
  data meta topic`` (``{data[id]}`` indexes into objects; ``\\t``/``\\n`` are expanded).

Record pages are written with one buffered ``write`` each. Diagnostics (gaps, summaries,
receipts, progress) go to stderr: a JSON object in json/jsonl mode, a line otherwise.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from rich.console import Console

    from topics_client import Gap, Record

__all__ = ["MODES", "Sink", "default_mode", "jsonl_page", "record_to_wire"]

MODES = ("pretty", "json", "jsonl", "data", "template")


def default_mode(stream: IO[Any] | None = None) -> str:
    stream = stream or sys.stdout
    try:
        return "pretty" if stream.isatty() else "jsonl"
    except (AttributeError, ValueError):
        return "jsonl"


def record_to_wire(
    record: Record, topic: str | None = None, *, with_data: bool = True
) -> dict[str, Any]:
    """The record as the server sent it (lossless: unknown fields ride along)."""
    out: dict[str, Any] = {}
    if topic is not None:
        out["topic"] = topic
    out["$seq"] = record.seq
    out["$ts"] = record.ts
    if record.node is not None:
        out["$node"] = record.node
    if record.tag is not None:
        out["$tag"] = record.tag
    if record.meta is not None:
        out["meta"] = record.meta
    if with_data:
        out["data"] = record.data
    if record.extra:
        out.update(record.extra)
    return out


def jsonl_page(records: Sequence[Mapping[str, Any]]) -> bytes:
    """``records`` as JSON lines, byte for byte ``b"".join(orjson.dumps(r) + b"\\n" …)``.

    One ``orjson.dumps`` call per page instead of one per record (per call, orjson costs
    several times what it costs per element of a list): the page is serialized as a list
    and split at the ``},{"$seq":`` between its elements. A quote inside a JSON string is
    always escaped, so that separator only occurs where an object with that first key
    follows a comma; when every record starts with that key, all ``len - 1`` real
    boundaries match, and any nested match (an array of such objects inside ``data``)
    makes the count exceed it, which falls back to one call per record.
    """
    dumps = orjson.dumps
    n = len(records)
    if n > 1:
        first_keys = set(map(next, map(iter, records)))  # C loops: no bytecode per record
        if len(first_keys) == 1:
            sep = b"},{" + dumps(first_keys.pop()) + b":"
            blob = dumps(records)
            if blob.count(sep) == n - 1:
                return blob[1:-1].replace(sep, b"}\n{" + sep[3:]) + b"\n"
    return b"".join([dumps(r) + b"\n" for r in records])


def gap_to_wire(gap: Gap) -> dict[str, Any]:
    return {
        "topic": gap.topic,
        "gap_from": gap.gap_from,
        "gap_to": gap.gap_to,
        "reason": gap.reason,
        "missed_estimate": gap.missed_estimate,
        "earliest_seq": gap.earliest_seq,
        "head_seq": gap.head_seq,
        "cursor": gap.cursor,
        "resume_from": gap.resume_from,
    }


def _iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat(timespec="milliseconds")


class _J:
    """Template value: formats as raw string / compact JSON, indexes into containers."""

    __slots__ = ("v",)

    def __init__(self, v: Any) -> None:
        self.v = v

    def __getitem__(self, key: str) -> _J:
        v = self.v
        if isinstance(v, list):
            return _J(v[int(key)])
        if isinstance(v, dict):
            return _J(v.get(key))
        return _J(None)

    def __getattr__(self, key: str) -> _J:
        return self[key]

    def __format__(self, spec: str) -> str:
        v = self.v
        if v is None:
            text = ""
        elif isinstance(v, str):
            text = v
        else:
            text = orjson.dumps(v).decode()
        return format(text, spec)


_ESCAPES = {"t": "\t", "n": "\n", "\\": "\\"}


def expand_escapes(template: str) -> str:
    """``\\t``, ``\\n`` and ``\\\\`` in one left-to-right pass: ``\\\\t`` is a backslash
    then ``t``. Any other backslash stays as written."""
    import re

    return re.sub(r"\\([tn\\])", lambda m: _ESCAPES[m.group(1)], template)


def _compile_template(template: str) -> Callable[[Mapping[str, Any]], str]:
    text = expand_escapes(template)

    def render(fields: Mapping[str, Any]) -> str:
        return text.format_map(fields)

    return render


class Sink:
    """Everything the CLI prints goes through one of these."""

    def __init__(
        self,
        mode: str,
        *,
        template: str | None = None,
        quiet: bool = False,
        no_color: bool = False,
        out: IO[str] | None = None,
        err: IO[str] | None = None,
    ) -> None:
        self.mode = mode
        self.quiet = quiet
        self.no_color = no_color or bool(os.environ.get("NO_COLOR"))
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._template = _compile_template(template) if template is not None else None
        self._console: Console | None = None
        self._err_console: Console | None = None

    # -- terminals

    @property
    def machine(self) -> bool:
        return self.mode in ("json", "jsonl")

    def err_is_tty(self) -> bool:
        try:
            return self.err.isatty()
        except (AttributeError, ValueError):
            return False

    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(
                file=self.out, no_color=self.no_color, highlight=False, soft_wrap=True
            )
        return self._console

    def err_console(self) -> Console:
        if self._err_console is None:
            from rich.console import Console

            self._err_console = Console(
                file=self.err, no_color=self.no_color, highlight=False, soft_wrap=True
            )
        return self._err_console

    # -- stdout

    def write_bytes(self, blob: bytes) -> None:
        """One write straight to the binary layer when there is one (no re-encoding)."""
        buffer = getattr(self.out, "buffer", None)
        if buffer is None:
            self.out.write(blob.decode())
            self.out.flush()
            return
        self.out.flush()
        buffer.write(blob)
        buffer.flush()

    def write_raw(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def records(
        self,
        records: Sequence[Record],
        topic: str | None = None,
        *,
        with_topic: bool = False,
        with_data: bool = True,
    ) -> None:
        """One page of records, one write: rendered as the server's dicts, like every
        record page (:meth:`wire_records`)."""
        if not records:
            return
        field_topic = topic if with_topic else None
        self.wire_records(
            [record_to_wire(r, field_topic, with_data=with_data) for r in records], topic
        )

    def wire_records(self, records: Sequence[Mapping[str, Any]], topic: str | None = None) -> None:
        """One page of records as the server sent them (``$seq``, ``$ts``, … dicts), one
        write. ``topic`` fills the template's ``{topic}``; pretty mode shows a record's own
        ``topic`` field (watch), and its data only when the record has a ``data`` field."""
        if not records:
            return
        mode = self.mode
        if mode == "pretty":
            self._pretty_records(records)
            return
        if mode == "jsonl":
            self.write_bytes(jsonl_page(records))
            return
        if mode == "json":
            opt = orjson.OPT_INDENT_2
            self.write_bytes(b"".join([orjson.dumps(r, option=opt) + b"\n" for r in records]))
            return
        if mode == "data":
            dumps = orjson.dumps
            parts = []
            for r in records:
                d = r.get("data")
                parts.append(d.encode() if isinstance(d, str) else dumps(d))
            parts.append(b"")
            self.write_bytes(b"\n".join(parts))
            return
        if mode == "template":
            assert self._template is not None
            render = self._template
            self.out.write(
                "".join(
                    render(
                        {
                            "seq": r["$seq"],
                            "ts": r["$ts"],
                            "time": _iso(r["$ts"]),
                            "tag": r.get("$tag") or "",
                            "node": r.get("$node") or "",
                            "topic": topic or "",
                            "data": _J(r.get("data")),
                            "meta": _J(r.get("meta")),
                        }
                    )
                    + "\n"
                    for r in records
                )
            )
            self.out.flush()
            return
        raise ValueError(f"wire_records: no raw form for mode {mode!r}")

    def _pretty_records(self, records: Sequence[Mapping[str, Any]]) -> None:
        from rich.text import Text

        console = self.console()
        dumps = orjson.dumps
        for r in records:
            line = Text()
            if "topic" in r:
                line.append(f"{r['topic']} ", style="bold blue")
            line.append(f"{r['$seq']:>8}", style="cyan")
            line.append("  " + _iso(r["$ts"])[11:23], style="dim")
            if r.get("$tag") is not None:
                line.append(f"  #{r['$tag']}", style="magenta")
            if r.get("$node") is not None:
                line.append(f"  @{r['$node']}", style="yellow")
            if "data" in r:
                d = r["data"]
                line.append("  " + (d if isinstance(d, str) else dumps(d).decode()))
            if r.get("meta"):
                line.append("  meta=" + dumps(r["meta"]).decode(), style="dim")
            console.print(line)

    def inline_gap(self, gap: Gap) -> None:
        """``--on-gap inline``: a ``{"$gap": {...}}`` line in the record stream."""
        if self.mode in ("jsonl", "json"):
            opt = orjson.OPT_INDENT_2 if self.mode == "json" else 0
            self.out.write(orjson.dumps({"$gap": gap_to_wire(gap)}, option=opt).decode() + "\n")
        elif self.mode == "pretty":
            self.console().print(f"[reverse red] GAP [/] {gap_text(gap)}")
        else:
            self.out.write(f"# GAP {gap_text(gap)}\n")
        self.out.flush()

    def result(self, value: Any, pretty: Callable[[Console], None] | None = None) -> None:
        """A command's result: a JSON-able value, or a pretty renderer on a terminal."""
        if self.quiet and self.mode in ("pretty", "data", "template"):
            return
        if self.mode == "pretty" and pretty is not None:
            pretty(self.console())
            return
        if self.mode == "jsonl":
            items = value if isinstance(value, list) else [value]
            self.out.write("".join(orjson.dumps(v).decode() + "\n" for v in items))
        elif self.mode in ("json", "pretty"):
            self.out.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")
        else:
            items = value if isinstance(value, list) else [value]
            for v in items:
                self.out.write((v if isinstance(v, str) else orjson.dumps(v).decode()) + "\n")
        self.out.flush()

    def lines(self, items: Iterable[str]) -> None:
        self.out.write("".join(f"{s}\n" for s in items))
        self.out.flush()

    # -- stderr

    def event(self, kind: str, payload: Mapping[str, Any], text: str, style: str = "") -> None:
        """A diagnostic: ``{"$kind": payload}`` in machine modes, else a (styled) line."""
        if self.machine:
            self.err.write(orjson.dumps({f"${kind}": payload}).decode() + "\n")
            self.err.flush()
        elif style and self.err_is_tty():
            self.clear_status()
            self.err_console().print(text, style=style, markup=False)
        else:
            self.clear_status()
            self.err.write(text + "\n")
            self.err.flush()

    def info(self, text: str) -> None:
        if not self.quiet:
            self.clear_status()
            self.err.write(text + "\n")
            self.err.flush()

    def warn(self, text: str) -> None:
        self.clear_status()
        self.err.write(f"topics: warning: {text}\n")
        self.err.flush()

    def gap(self, gap: Gap) -> None:
        self.event("gap", gap_to_wire(gap), "GAP " + gap_text(gap), style="bold red")

    # -- status line (terminals only)

    _status_shown = False

    def status(self, text: str) -> None:
        """A single self-overwriting line on a terminal's stderr; no-op elsewhere."""
        if self.quiet or not self.err_is_tty():
            return
        width = 200
        with contextlib.suppress(OSError, ValueError, AttributeError):
            columns = os.get_terminal_size(self.err.fileno()).columns
            width = columns - 1 if columns > 1 else width  # 0: a terminal with no size set
        self.err.write("\r\x1b[2K" + text[:width])
        self.err.flush()
        self._status_shown = True

    def clear_status(self) -> None:
        if self._status_shown:
            self.err.write("\r\x1b[2K")
            self.err.flush()
            self._status_shown = False


def gap_text(gap: Gap) -> str:
    return (
        f"{gap.topic}: seqs {gap.gap_from}..{gap.gap_to} lost ({gap.reason}), "
        f"~{gap.missed_estimate} missed; cursor {gap.cursor} hit it, "
        f"resuming after {gap.resume_from} (earliest retained {gap.earliest_seq})"
    )
