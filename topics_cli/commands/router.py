"""``topics router put | get | ls | rm``: routers copy records from a source to a dest."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from topics_cli.completions import router_names, topic_names
from topics_cli.context import get_app
from topics_cli.group import typer_app
from topics_cli.options import YesOpt

app = typer_app(
    help="""Routers: copy every new record of a source topic into a dest topic.

Quote a name holding '>' (as in the examples): unquoted, the shell takes `>audit` as a
redirect, names the router 'orders-' and writes the reply into a file ./audit.

\b
Examples:
  topics router put 'orders->audit' --source orders --dest audit
  topics router put 'a->b' --source a --dest b --allow-cycle    # two-node mirror,
  topics router put 'b->a' --source b --dest a --allow-cycle    # echo-free with --node
  topics router ls
  topics router get 'orders->audit'
  topics router rm 'orders->audit' --yes
""",
)

RouterArg = Annotated[
    str,
    typer.Argument(
        help="Router name, e.g. 'orders->audit' (quoted).",
        show_default=False,
        autocompletion=router_names,
    ),
]


def stray_redirect_warning(name: str, source: str, dest: str) -> str | None:
    """The warning for a name that looks cut by the shell at ``>`` (``orders->audit``
    unquoted arrives as ``orders-``): it ends in ``-`` and does not name the dest."""
    if not name.endswith("-") or dest in name:
        return None
    guess = f"{name}>{dest}"
    return (
        f"router name {name!r} ends in '-': was it {guess!r} cut by the shell at '>' "
        f"(the reply then went to a file ./{dest})? Quote the name: '{guess}'"
    )


def _router_dict(r: Any) -> dict[str, Any]:
    out = {
        "router": r.router,
        "source": r.source,
        "dest": r.dest,
        "preserve_node": r.preserve_node,
        "preserve_tag": r.preserve_tag,
        "filter": r.filter,
        "allow_cycle": r.allow_cycle,
        "guarantee": r.guarantee,
    }
    if r.created is not None:
        out["created"] = r.created
    if r.forwarded_total is not None:
        out["forwarded_total"] = r.forwarded_total
    return out


@app.command("put")
def put(
    ctx: typer.Context,
    name: RouterArg,
    source: Annotated[
        str,
        typer.Option(
            "--source", help="Source topic.", show_default=False, autocompletion=topic_names
        ),
    ],
    dest: Annotated[
        str,
        typer.Option(
            "--dest", help="Destination topic.", show_default=False, autocompletion=topic_names
        ),
    ],
    filter_tag: Annotated[
        str | None, typer.Option("--filter-tag", help="Forward only this tag.", show_default=False)
    ] = None,
    filter_prefix: Annotated[
        str | None,
        typer.Option(
            "--filter-prefix", help="Forward only tags with this prefix.", show_default=False
        ),
    ] = None,
    allow_cycle: Annotated[
        bool, typer.Option("--allow-cycle", help="Allow closing a cycle (mirrors).")
    ] = False,
    no_preserve_node: Annotated[
        bool, typer.Option("--no-preserve-node", help="Strip $node from copies.")
    ] = False,
    no_preserve_tag: Annotated[
        bool, typer.Option("--no-preserve-tag", help="Strip $tag from copies.")
    ] = False,
    no_create_dest: Annotated[
        bool, typer.Option("--no-create-dest", help="Fail (exit 4) if dest does not exist.")
    ] = False,
    exactly_once: Annotated[
        bool, typer.Option("--exactly-once", help="Dedupe copies in dest (guarantee exactly_once).")
    ] = False,
) -> None:
    """Create or update a router (source and dest cannot change later)."""
    if filter_tag is not None and filter_prefix is not None:
        raise typer.BadParameter("give --filter-tag or --filter-prefix", param_hint="--filter-tag")
    flt: tuple[str, str, str] | None = None
    if filter_tag is not None:
        flt = ("tag", "Eq", filter_tag)
    elif filter_prefix is not None:
        flt = ("tag", "Glob", filter_prefix + "*")
    ap = get_app(ctx)
    warning = stray_redirect_warning(name, source, dest)
    if warning is not None:
        ap.sink.warn(warning)
    r = ap.client().routers.put(
        name,
        source=source,
        dest=dest,
        preserve_node=False if no_preserve_node else None,
        preserve_tag=False if no_preserve_tag else None,
        create_dest=False if no_create_dest else None,
        filter=flt,
        allow_cycle=True if allow_cycle else None,
        guarantee="exactly_once" if exactly_once else None,
    )
    value = _router_dict(r)

    def pretty(console: Any) -> None:
        verb = "created" if r.created else "updated"
        console.print(f"{verb} router [bold]{r.router}[/]: {r.source} → {r.dest} ({r.guarantee})")

    ap.sink.result(value, pretty)


@app.command("get")
def get(ctx: typer.Context, name: RouterArg) -> None:
    """Show one router and how many records it forwarded."""
    ap = get_app(ctx)
    value = _router_dict(ap.client().routers.get(name))
    ap.sink.result(value, lambda console: _table(console, [value]))


def _table(console: Any, rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(box=None, padding=(0, 2))
    for col in ("router", "source → dest", "guarantee", "forwarded", "dest lag"):
        table.add_column(col)
    for r in rows:
        lag = r.get("dest_lag")
        table.add_row(
            str(r["router"]),
            f"{r['source']} → {r['dest']}",
            str(r.get("guarantee", "")),
            f"{r.get('forwarded_total', 0):,}",
            "" if lag is None else f"{lag:,}",
        )
    console.print(table if rows else "[dim]no routers[/]")


@app.command("ls")
def ls(
    ctx: typer.Context,
    prefix: Annotated[str | None, typer.Option("--prefix", help="Router name prefix.")] = None,
    source: Annotated[
        str | None,
        typer.Option("--source", help="Only from this topic.", autocompletion=topic_names),
    ] = None,
    dest: Annotated[
        str | None,
        typer.Option("--dest", help="Only into this topic.", autocompletion=topic_names),
    ] = None,
) -> None:
    """List routers with forwarded_total and the destination's lag behind its source.

    dest_lag = source head - the source seq of the newest copy in dest, read from the
    copy's meta._topics_router (exactly-once routers); null when that is not available.
    """
    from topics_client import TopicNotFoundError

    ap = get_app(ctx)
    client = ap.client()
    heads: dict[str, int | None] = {}

    def head(topic: str) -> int | None:
        if topic not in heads:
            try:
                heads[topic] = client.topics.get(topic, touch=False).head_seq
            except TopicNotFoundError:
                heads[topic] = None
        return heads[topic]

    rows = []
    for r in client.routers.list(prefix=prefix, source=source, dest=dest):
        src_head = head(r.source)
        rows.append(
            {
                "router": r.router,
                "source": r.source,
                "dest": r.dest,
                "guarantee": r.guarantee,
                "forwarded_total": r.forwarded_total,
                "source_head_seq": src_head,
                "dest_head_seq": head(r.dest),
                "dest_lag": _dest_lag(client, r.dest, src_head),
            }
        )
    if ap.sink.mode in ("data", "template"):
        ap.sink.lines(str(r["router"]) for r in rows)
        return
    ap.sink.result(rows, lambda console: _table(console, rows))


def _dest_lag(client: Any, dest: str, src_head: int | None) -> int | None:
    from topics_client import TopicNotFoundError

    if src_head is None:
        return None
    try:
        state = client.topics.get(dest, touch=False)
        if state.head_seq == 0:
            return None
        last = client.topics.diff(dest, from_seq=state.head_seq - 1, limit=1)
    except TopicNotFoundError:
        return None
    for rec in last.records:
        info = (rec.meta or {}).get("_topics_router")
        source_seq = info.get("source_seq") if isinstance(info, dict) else None
        if isinstance(source_seq, int):
            return max(0, src_head - source_seq)
    return None


@app.command("rm")
def rm(
    ctx: typer.Context,
    name: RouterArg,
    yes: YesOpt = False,
    missing_ok: Annotated[
        bool, typer.Option("--missing-ok", help="A router that does not exist is not an error.")
    ] = False,
) -> None:
    """Delete a router; records already copied stay. A router that does not exist is an
    error (exit 4) unless --missing-ok."""
    ap = get_app(ctx)
    if not yes and sys.stdin.isatty() and sys.stderr.isatty():
        typer.confirm(f"Delete router {name!r}?", abort=True, err=True)
    result = ap.client().routers.delete(name)
    if not result.deleted and not missing_ok:
        from topics_cli.errors import EXIT_NOT_FOUND, CliError

        raise CliError(
            f"no such router {name!r} (nothing deleted)",
            code=EXIT_NOT_FOUND,
            hint="list routers with: topics router ls; --missing-ok accepts an absent router",
        )
    value = {"router": result.router, "deleted": result.deleted}

    def pretty(console: Any) -> None:
        if result.deleted:
            console.print(f"deleted router [bold]{name}[/]")
        else:
            console.print(f"[dim]{name}: already absent (nothing deleted)[/]")

    ap.sink.result(value, pretty)
