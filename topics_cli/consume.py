"""What ``diff``, ``watch``, ``tombstone scan`` and ``demo`` share while consuming:
checkpoint files, gap policy (warn / fail / inline) and the end-of-run summary."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from topics_cli.errors import EXIT_CHECKPOINT, CliError

if TYPE_CHECKING:
    from topics_cli.output import Sink
    from topics_cli.positions import FromPos
    from topics_client import Client, Gap, Record

__all__ = ["Checkpoint", "Tracker", "now_ms", "start_cursor"]


def now_ms() -> int:
    return int(time.time() * 1000)


class Checkpoint:
    """A ``{topic: seq}`` file advanced atomically (temp file + rename + fsync).

    Opening one checks, before anything is read from the server, that it can be used:
    an existing file must be a checkpoint, and (unless ``read_only``) its directory must
    exist and take new files, since every save writes a temp file there and renames it
    over the old one. Each failure is a :class:`CliError` (one line, exit 2). A save
    that fails later (disk full, directory removed mid-run) is a :class:`CliError` with
    exit 7: the records already written stay written, and the file keeps the cursors of
    the last good save, so a resumed run repeats rather than skips.
    """

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        from topics_client import load_checkpoint

        if path.is_dir():
            raise CliError(f"checkpoint {path} is a directory; name a file in it")
        if not read_only:
            _check_writable(path)
        try:
            self.cursors: dict[str, int] = load_checkpoint(path)
        except ValueError:
            raise CliError(
                f"checkpoint {path}: not a checkpoint (a {{topic: seq}} JSON object); "
                "name a new file or an existing checkpoint"
            ) from None
        except OSError as exc:
            raise CliError(f"checkpoint {path} cannot be read: {exc.strerror}") from None
        self._saved = dict(self.cursors)

    def get(self, topic: str) -> int | None:
        return self.cursors.get(topic)

    def set(self, topic: str, seq: int) -> None:
        self.cursors[topic] = seq

    def save(self) -> None:
        if self.cursors == self._saved:
            return
        from topics_client import save_checkpoint

        try:
            save_checkpoint(self.path, self.cursors)
        except OSError as exc:
            raise CliError(
                f"checkpoint {self.path} could not be saved ({exc.strerror or exc}); it still "
                f"holds {_cursor_text(self._saved)}, the output reached "
                f"{_cursor_text(self.cursors)}: a resumed run repeats the records between",
                code=EXIT_CHECKPOINT,
            ) from None
        self._saved = dict(self.cursors)


def _cursor_text(cursors: dict[str, int]) -> str:
    if not cursors:
        return "no cursor"
    return ", ".join(f"{topic}@{seq}" for topic, seq in sorted(cursors.items()))


def _check_writable(path: Path) -> None:
    """The checkpoint's directory exists and takes new files (probed with a temp file,
    which also catches read-only file systems and works as root)."""
    import os
    import tempfile

    directory = path.parent
    if not directory.is_dir():
        reason = "does not exist" if not directory.exists() else "is not a directory"
        raise CliError(f"checkpoint {path}: the directory {directory} {reason}")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=directory)
    except OSError as exc:
        raise CliError(
            f"checkpoint {path} cannot be saved: no new files in {directory} ({exc.strerror})"
        ) from None
    os.close(fd)
    os.unlink(probe)


def start_cursor(client: Client, topic: str, pos: FromPos, checkpoint: Checkpoint | None) -> int:
    """Where one topic's read starts: the checkpoint's cursor, else ``--from`` resolved.
    ``@TIME`` is the client's time seek (:meth:`topics_client.Client.topics.seek`): when
    records that may be from that window were evicted, it starts below them, so the first
    read reports them as a gap like any other."""
    from topics_cli.positions import resolve_from

    if checkpoint is not None:
        saved = checkpoint.get(topic)
        if saved is not None:
            return saved
    if pos.kind == "time":
        return client.topics.seek(topic, pos.value)
    if pos.kind in ("start", "seq"):
        return pos.value if pos.kind == "seq" else 0
    state = client.topics.get(topic, touch=False)
    cursor = resolve_from(pos, state.head_seq, state.earliest_seq)
    assert cursor is not None
    return cursor


@dataclass
class _TopicStats:
    records: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    gaps: int = 0
    missed: int = 0


@dataclass
class Tracker:
    """Counts what was delivered, reports gaps the moment they arrive, sums up at the end.

    ``on_gap``: ``warn`` (report on stderr), ``fail`` (report; the caller stops with exit
    3), ``inline`` (report and put a ``{"$gap": …}`` line into the record stream).
    """

    sink: Sink
    on_gap: str = "warn"
    command: str = "diff"
    topics: dict[str, _TopicStats] = field(default_factory=dict)
    gap_list: list[Gap] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    report_gaps: bool = True

    def stats(self, topic: str) -> _TopicStats:
        stats = self.topics.get(topic)
        if stats is None:
            stats = self.topics[topic] = _TopicStats()
        return stats

    def gap(self, gap: Gap) -> bool:
        """Report ``gap``; True when the run must stop (``--on-gap fail``)."""
        stats = self.stats(gap.topic)
        stats.gaps += 1
        stats.missed += gap.missed_estimate
        self.gap_list.append(gap)
        if self.report_gaps:
            self.sink.gap(gap)
            if self.on_gap == "inline":
                self.sink.inline_gap(gap)
        return self.on_gap == "fail"

    def records(self, topic: str, records: tuple[Record, ...] | list[Record]) -> None:
        if records:
            self.span(topic, len(records), records[0].seq, records[-1].seq)

    def span(self, topic: str, count: int, first_seq: int, last_seq: int) -> None:
        """``count`` records delivered, ``first_seq`` to ``last_seq`` (in seq order)."""
        if count <= 0:
            return
        stats = self.stats(topic)
        stats.records += count
        if stats.first_seq is None:
            stats.first_seq = first_seq
        stats.last_seq = last_seq

    @property
    def total_records(self) -> int:
        return sum(s.records for s in self.topics.values())

    @property
    def total_missed(self) -> int:
        return sum(s.missed for s in self.topics.values())

    def summary_payload(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "records": self.total_records,
            "gaps": len(self.gap_list),
            "missed": self.total_missed,
            "seconds": round(time.monotonic() - self.started, 3),
            "topics": {
                name: {
                    "records": s.records,
                    "first_seq": s.first_seq,
                    "last_seq": s.last_seq,
                    "gaps": s.gaps,
                    "missed": s.missed,
                }
                for name, s in self.topics.items()
            },
        }

    def summary(self) -> None:
        if self.sink.quiet:
            return
        parts = []
        for name, s in self.topics.items():
            span = f"seqs {s.first_seq}..{s.last_seq}" if s.first_seq is not None else "no seqs"
            parts.append(f"{name}: {s.records:,} records, {span}")
        gaps = len(self.gap_list)
        text = (
            f"{self.command}: "
            + ("; ".join(parts) if parts else "no records")
            + f"; {gaps} gap{'s' if gaps != 1 else ''}, {self.total_missed:,} missed"
        )
        style = "bold red" if gaps else "dim"
        self.sink.event("summary", self.summary_payload(), text, style=style)
