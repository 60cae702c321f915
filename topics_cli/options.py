"""Shared ``Annotated`` option aliases: one definition per flag, used by every command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from topics_cli.completions import choices, topic_names

__all__ = [
    "CheckpointOpt",
    "CountOpt",
    "FailOnGapOpt",
    "FromOpt",
    "IdleTimeoutOpt",
    "LimitOpt",
    "NodeFilterOpt",
    "OnGapOpt",
    "TopicArg",
    "UntilOpt",
    "YesOpt",
    "on_gap_policy",
]

TopicArg = Annotated[
    str, typer.Argument(help="Topic name.", show_default=False, autocompletion=topic_names)
]

FromOpt = Annotated[
    str | None,
    typer.Option(
        "--from",
        "-f",
        help="Start: start | end | N (records after seq N) | -N (last N) | @TIME "
        "(ISO-8601 or relative, e.g. @-15m).",
        show_default=False,
        autocompletion=choices("start", "end"),
    ),
]
UntilOpt = Annotated[
    str | None,
    typer.Option(
        "--until",
        help="Stop: head (head at start) | N (last seq, inclusive) | @TIME.",
        show_default=False,
        autocompletion=choices("head"),
    ),
]
CheckpointOpt = Annotated[
    Path | None,
    typer.Option(
        "--checkpoint",
        "-c",
        help="Resume from this {topic: seq} file (or start at --from when absent); "
        "advanced atomically after each delivered batch.",
        show_default=False,
    ),
]
CountOpt = Annotated[
    int | None,
    typer.Option("--count", "-n", min=0, help="Stop after N records.", show_default=False),
]
IdleTimeoutOpt = Annotated[
    str | None,
    typer.Option(
        "--idle-timeout",
        help="Stop (exit 0) after this long without a record, e.g. 5s, 2m.",
        show_default=False,
    ),
]
OnGapOpt = Annotated[
    str,
    typer.Option(
        "--on-gap",
        help="On a tombstone: warn (report on stderr), fail (report, exit 3), "
        'inline (also a {"$gap": …} line in the stream).',
        case_sensitive=False,
        autocompletion=choices("warn", "fail", "inline"),
    ),
]
FailOnGapOpt = Annotated[
    bool, typer.Option("--fail-on-gap", help="Same as --on-gap fail.", show_default=False)
]
NodeFilterOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--node",
        help="Skip records written by this node (loop prevention); repeatable.",
        show_default=False,
    ),
]
LimitOpt = Annotated[
    int,
    typer.Option("--limit", min=1, max=1000, help="Records per page (server max 1000)."),
]
YesOpt = Annotated[
    bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.", show_default=False)
]

_GAP_POLICIES = ("warn", "fail", "inline")


def on_gap_policy(on_gap: str, fail_on_gap: bool) -> str:
    policy = "fail" if fail_on_gap else on_gap.lower()
    if policy not in _GAP_POLICIES:
        raise typer.BadParameter(
            f"{on_gap!r} is not one of {', '.join(_GAP_POLICIES)}", param_hint="--on-gap"
        )
    return policy


def duration_ms(text: str, flag: str) -> int:
    """A duration flag's value in ms (``500ms``, ``30s``, ``2m``), or a usage error naming
    ``flag``."""
    from topics_cli.positions import PositionError, parse_duration_ms

    try:
        return parse_duration_ms(text)
    except PositionError as exc:
        raise typer.BadParameter(str(exc), param_hint=flag) from None
