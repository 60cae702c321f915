"""``topics delete``: delete records by seq and/or tag (never the topic itself)."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from topics_cli.context import get_app
from topics_cli.errors import EXIT_CODES_HELP
from topics_cli.group import typer_app
from topics_cli.options import TopicArg, YesOpt

HELP = """Delete records from TOPIC: those before a seq, with a tag, or with a tag prefix
(selectors combine with AND). Deletion is immediate, permanent and silent for readers
(no tombstone). Asks first on a terminal unless --yes. To delete the topic: topics rm.

\b
Examples:
  topics delete orders --before-seq 1000 --yes
  topics delete carts --tag cart:77
  topics delete carts --tag-prefix tenant42: --before-seq 5000
"""


app = typer_app()


@app.command("delete", help=HELP, epilog=EXIT_CODES_HELP)
def delete(
    ctx: typer.Context,
    topic: TopicArg,
    before_seq: Annotated[
        int | None,
        typer.Option(
            "--before-seq", min=0, help="Delete records with seq < N.", show_default=False
        ),
    ] = None,
    tag: Annotated[
        str | None, typer.Option("--tag", help="Delete records with this tag.", show_default=False)
    ] = None,
    tag_prefix: Annotated[
        str | None,
        typer.Option(
            "--tag-prefix", help="Delete records whose tag starts with P.", show_default=False
        ),
    ] = None,
    yes: YesOpt = False,
) -> None:
    if tag is not None and tag_prefix is not None:
        raise typer.BadParameter("give --tag or --tag-prefix, not both", param_hint="--tag")
    if before_seq is None and tag is None and tag_prefix is None:
        raise typer.BadParameter(
            "say what to delete: --before-seq N, --tag X or --tag-prefix P",
            param_hint="--before-seq",
        )
    match: tuple[str, str, str] | None = None
    if tag is not None:
        match = ("tag", "Eq", tag)
    elif tag_prefix is not None:
        match = ("tag", "Glob", tag_prefix + "*")
    what = []
    if before_seq is not None:
        what.append(f"seq < {before_seq}")
    if tag is not None:
        what.append(f"tag = {tag!r}")
    if tag_prefix is not None:
        what.append(f"tag starting {tag_prefix!r}")
    app = get_app(ctx)
    if not yes and sys.stdin.isatty() and sys.stderr.isatty():
        typer.confirm(
            f"Delete records of {topic!r} with {' and '.join(what)}?", abort=True, err=True
        )
    result = app.client().topics.delete_records(topic, before_seq=before_seq, match=match)
    value = {
        "topic": result.topic,
        "deleted": result.deleted,
        "earliest_seq": result.earliest_seq,
        "head_seq": result.head_seq,
        "count": result.count,
        "bytes": result.bytes,
    }

    def pretty(console: Any) -> None:
        from topics_cli.commands._render import seq_range

        span = seq_range(result.earliest_seq, result.head_seq, "seqs ")
        console.print(
            f"deleted {result.deleted:,} records from [bold]{topic}[/] "
            f"(now {result.count:,} live, {span})"
        )

    app.sink.result(value, pretty)
