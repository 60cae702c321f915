"""A seq range's coverage, and its one-line map (pure: no I/O, rich only when asked).

A replay over ``lo..hi`` tells three things apart: records it got (**present**), ranges a
tombstone reported (**evicted** by a cap or TTL, or lost to a router's source trim), and
every other seq, which the server passed over silently because it was **deleted** on
purpose (SPEC §5.5). :class:`Coverage` collects the first two as runs; the rest is deleted.

:func:`render_map` draws the range as one line, seq numbers at the edges::

    1 ▕···✗✗✗✗✗✗✗✗✗✗✗✗██████████████████▏ 5000     (a terminal, colour unless NO_COLOR)
    1 |...xxxxxxxxxxxx##################| 5000     (plain text, outside a terminal)

Each cell stands for a slice of seqs: evicted when any seq in it was evicted (loss is never
rounded away), present when all are present, deleted when none is, mixed otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from rich.text import Text

__all__ = ["GLYPHS", "Coverage", "Run", "legend", "map_cells", "render_map", "render_text"]

State = Literal["present", "deleted", "evicted"]
Cell = Literal["present", "mixed", "deleted", "evicted"]

GLYPHS: dict[bool, dict[Cell, str]] = {
    True: {"present": "█", "mixed": "▒", "deleted": "·", "evicted": "✗"},
    False: {"present": "#", "mixed": "+", "deleted": ".", "evicted": "x"},
}
"""Cell characters: ``GLYPHS[unicode][cell]``."""

_STYLES: dict[Cell, str] = {
    "present": "green",
    "mixed": "green",
    "deleted": "dim",
    "evicted": "bold red",
}
_LABELS: dict[Cell, str] = {
    "present": "present",
    "mixed": "partly deleted",
    "deleted": "deleted on purpose",
    "evicted": "evicted (cap/ttl)",
}


@dataclass(frozen=True, slots=True)
class Run:
    """Seqs ``first..last`` (inclusive) in one state; ``reason`` for evicted runs."""

    first: int
    last: int
    state: State
    reason: str | None = None

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"from_seq": self.first, "to_seq": self.last, "state": self.state}
        if self.reason is not None:
            out["reason"] = self.reason
        return out


@dataclass
class Coverage:
    """What a replay saw of seqs ``lo..hi``: present runs and evicted (tombstone) runs."""

    lo: int
    hi: int
    _present: list[list[int]] = field(default_factory=list, repr=False)
    _evicted: list[Run] = field(default_factory=list, repr=False)

    def add_seqs(self, seqs: list[int]) -> None:
        """Records delivered, in ascending seq order (a replay's page)."""
        if not seqs:
            return
        present = self._present
        if seqs[-1] - seqs[0] + 1 == len(seqs):  # a contiguous page: one run
            self._extend(seqs[0], seqs[-1])
            return
        for seq in seqs:
            if present and present[-1][1] + 1 == seq:
                present[-1][1] = seq
            else:
                present.append([seq, seq])

    def _extend(self, first: int, last: int) -> None:
        present = self._present
        if present and present[-1][1] + 1 == first:
            present[-1][1] = last
        else:
            present.append([first, last])

    def add_evicted(self, first: int, last: int, reason: str) -> None:
        """A tombstone's range (clipped to ``lo..hi``)."""
        first, last = max(first, self.lo), min(last, self.hi)
        if first <= last:
            self._evicted.append(Run(first, last, "evicted", reason))

    def runs(self) -> list[Run]:
        """The whole of ``lo..hi`` as runs in seq order; seqs in no run are deleted."""
        marked = [Run(max(a, self.lo), min(b, self.hi), "present") for a, b in self._present]
        marked = [r for r in marked if r.first <= r.last]
        marked.extend(self._evicted)
        marked.sort(key=lambda r: (r.first, r.state != "evicted"))
        out: list[Run] = []
        pos = self.lo
        for run in marked:
            first = max(run.first, pos)  # an evicted range wins over what overlaps it
            if first > run.last:
                continue
            if first > pos:
                out.append(Run(pos, first - 1, "deleted"))
            out.append(Run(first, run.last, run.state, run.reason))
            pos = run.last + 1
        if pos <= self.hi:
            out.append(Run(pos, self.hi, "deleted"))
        return out

    def totals(self) -> dict[State, int]:
        totals: dict[State, int] = {"present": 0, "deleted": 0, "evicted": 0}
        for run in self.runs():
            totals[run.state] += run.size
        return totals

    def to_dict(self, max_runs: int = 1000) -> dict[str, Any]:
        """JSON form: the range, totals per state, the runs (at most ``max_runs``;
        ``runs_truncated`` says when there were more) and the plain-text map."""
        runs = self.runs()
        return {
            "from_seq": self.lo,
            "to_seq": self.hi,
            **{str(k): v for k, v in self.totals().items()},
            "runs": [r.to_dict() for r in runs[:max_runs]],
            "runs_truncated": len(runs) > max_runs,
            "map": render_text(self, 64),
        }


def map_cells(coverage: Coverage, width: int) -> list[Cell]:
    """The range in ``width`` cells (fewer when the range is shorter)."""
    n = coverage.hi - coverage.lo + 1
    if n <= 0:
        return []
    cells = max(1, min(width, n))
    runs = coverage.runs()
    out: list[Cell] = []
    i = 0
    for c in range(cells):
        lo = coverage.lo + c * n // cells
        hi = coverage.lo + (c + 1) * n // cells - 1
        present = deleted = 0
        evicted = False
        while i < len(runs) and runs[i].last < lo:
            i += 1
        j = i
        while j < len(runs) and runs[j].first <= hi:
            run = runs[j]
            overlap = min(run.last, hi) - max(run.first, lo) + 1
            if run.state == "evicted":
                evicted = True
            elif run.state == "present":
                present += overlap
            else:
                deleted += overlap
            j += 1
        if evicted:
            out.append("evicted")
        elif not deleted:
            out.append("present")
        elif not present:
            out.append("deleted")
        else:
            out.append("mixed")
    return out


def _bar_width(coverage: Coverage, width: int) -> int:
    edges = len(str(coverage.lo)) + len(str(coverage.hi)) + 4
    return max(8, width - edges)


def render_text(coverage: Coverage, width: int = 80) -> str:
    """The plain-text map: ``LO |##..xx##| HI`` in at most ``width`` columns, ASCII only."""
    if coverage.hi < coverage.lo:
        return "(empty range)"
    glyphs = GLYPHS[False]
    bar = "".join(glyphs[c] for c in map_cells(coverage, _bar_width(coverage, width)))
    return f"{coverage.lo} |{bar}| {coverage.hi}"


def render_map(coverage: Coverage, width: int) -> Text:
    """The terminal map: block characters, coloured per state (the console drops colour
    under ``NO_COLOR``; the characters alone still tell the states apart)."""
    from rich.text import Text

    if coverage.hi < coverage.lo:
        return Text("(empty range)", style="dim")
    glyphs = GLYPHS[True]
    line = Text()
    line.append(f"{coverage.lo} ▕", style="cyan")
    for cell in map_cells(coverage, _bar_width(coverage, width)):
        line.append(glyphs[cell], style=_STYLES[cell])
    line.append(f"▏ {coverage.hi}", style="cyan")
    return line


def legend(unicode: bool, cells: list[Cell] | None = None) -> str:
    """``█ present  · deleted on purpose  ✗ evicted (cap/ttl)`` (only the ``cells`` shown)."""
    glyphs = GLYPHS[unicode]
    shown = [c for c in _LABELS if cells is None or c in cells]
    return "  ".join(f"{glyphs[c]} {_LABELS[c]}" for c in shown)
