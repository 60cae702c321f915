"""``topics create | info | ls | rm``: topic lifecycle."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from topics_cli.completions import choices, topic_names
from topics_cli.context import get_app
from topics_cli.group import typer_app
from topics_cli.options import TopicArg, YesOpt

HELP_CREATE = """Create TOPIC, or reconfigure it (the flags given replace the whole config over
defaults, as the API does; --merge keeps the current values of flags not given).

\b
Examples:
  topics create orders --cap-records 100000 --durability fsync
  topics create sessions --ttl 15m --discard reject
  topics create jobs --type queue --lease-ms 30000 --max-deliveries 5 --dead-letter jobs.dlq
  topics create orders --cap-records 200000 --merge
"""

HELP_INFO = """Show TOPIC's state: watermarks, counts, config, queue counters.

\b
Examples:
  topics info orders
  topics info orders -o json | jq .head_seq
"""

HELP_LS = """List topics (all pages, sorted by name).

\b
Examples:
  topics ls
  topics ls --prefix tenant42:
  topics ls -o jsonl | jq -r .topic
"""

HELP_RM = """Delete TOPIC with all its records and the routers that touch it (irreversible).

Asks first on a terminal unless --yes. A TOPIC that does not exist is an error (exit 4),
as everywhere; --missing-ok makes it a no-op (exit 0) for idempotent clean-up scripts.

\b
Examples:
  topics rm scratch --yes
  topics rm scratch --if-empty
  topics rm scratch --yes --missing-ok      # exit 0 whether or not it exists
"""


app = typer_app()


def _opt(*names: str, help: str, complete: Any = None) -> Any:
    return typer.Option(*names, help=help, show_default=False, autocompletion=complete)


# One flag per field of topics_client.TOPIC_CONFIG_FIELDS (Python name = field name, but
# ``type_``), plus --ttl; a test holds the two lists equal.
TypeOpt = Annotated[
    str | None, _opt("--type", help="log | queue (immutable).", complete=choices("log", "queue"))
]
CapRecordsOpt = Annotated[int | None, _opt("--cap-records", help="Keep at most N records.")]
CapBytesOpt = Annotated[int | None, _opt("--cap-bytes", help="Keep at most N bytes.")]
TtlMsOpt = Annotated[int | None, _opt("--ttl-ms", help="Expire records after N ms.")]
TtlOpt = Annotated[str | None, _opt("--ttl", help="Expire records after a duration (15m).")]
DurabilityOpt = Annotated[
    str | None,
    _opt(
        "--durability",
        help="ephemeral | memory | disk | fsync.",
        complete=choices("ephemeral", "memory", "disk", "fsync"),
    ),
]
DurableOpt = Annotated[bool | None, _opt("--durable/--no-durable", help="fsync alias.")]
DiscardOpt = Annotated[
    str | None,
    _opt("--discard", help="old | reject (when full).", complete=choices("old", "reject")),
]
PriorityOpt = Annotated[int | None, _opt("--priority", help="Fixed priority -1000..1000.")]
AutoPriorityOpt = Annotated[
    bool | None, _opt("--auto-priority/--no-auto-priority", help="Idle-based priority.")
]
AutoCreateOpt = Annotated[
    bool | None, _opt("--auto-create/--no-auto-create", help="Writes may create it.")
]
IdempotencyWindowOpt = Annotated[
    int | None, _opt("--idempotency-window-ms", help="Dedupe window for keys.")
]
DedupeNodeOpt = Annotated[
    bool | None, _opt("--dedupe-node/--no-dedupe-node", help="Honour node filters.")
]
LeaseMsOpt = Annotated[int | None, _opt("--lease-ms", help="Queue lease length.")]
ClaimJitterOpt = Annotated[int | None, _opt("--claim-jitter-ms", help="Queue jitter.")]
MaxDeliveriesOpt = Annotated[
    int | None, _opt("--max-deliveries", help="Dead-letter after N deliveries.")
]
DeadLetterOpt = Annotated[
    str | None, _opt("--dead-letter", help="Dead-letter topic.", complete=topic_names)
]
LeasesDurableOpt = Annotated[
    bool | None, _opt("--leases-durable/--no-leases-durable", help="Persist leases.")
]
MergeOpt = Annotated[
    bool, typer.Option("--merge", help="Start from the current config, not the defaults.")
]


def config_flags(params: dict[str, Any], ttl: str | None) -> dict[str, Any]:
    """The config fields given as flags (``ctx.params``), by their wire names."""
    from topics_client import TOPIC_CONFIG_FIELDS

    fields = {name: params.get("type_" if name == "type" else name) for name in TOPIC_CONFIG_FIELDS}
    if ttl is not None:
        from topics_cli.positions import PositionError, parse_duration_ms

        try:
            fields["ttl_ms"] = parse_duration_ms(ttl)
        except PositionError as exc:
            raise typer.BadParameter(str(exc), param_hint="--ttl") from None
    return {k: v for k, v in fields.items() if v is not None}


@app.command("create", help=HELP_CREATE)
def create(
    ctx: typer.Context,
    topic: TopicArg,
    type_: TypeOpt = None,
    cap_records: CapRecordsOpt = None,
    cap_bytes: CapBytesOpt = None,
    ttl_ms: TtlMsOpt = None,
    ttl: TtlOpt = None,
    durability: DurabilityOpt = None,
    durable: DurableOpt = None,
    discard: DiscardOpt = None,
    priority: PriorityOpt = None,
    auto_priority: AutoPriorityOpt = None,
    auto_create: AutoCreateOpt = None,
    idempotency_window_ms: IdempotencyWindowOpt = None,
    dedupe_node: DedupeNodeOpt = None,
    lease_ms: LeaseMsOpt = None,
    claim_jitter_ms: ClaimJitterOpt = None,
    max_deliveries: MaxDeliveriesOpt = None,
    dead_letter: DeadLetterOpt = None,
    leases_durable: LeasesDurableOpt = None,
    merge: MergeOpt = False,
) -> None:
    body = config_flags(ctx.params, ttl)
    app = get_app(ctx)
    client = app.client()
    base = None
    if merge:
        from topics_client import TopicNotFoundError

        try:
            base = client.topics.get(topic, touch=False).config
        except TopicNotFoundError:
            base = None
    result = client.topics.put(topic, base, **body)
    from topics_cli.commands._render import config_dict

    config = config_dict(result.config)

    def pretty(console: Any) -> None:
        console.print(f"{'created' if result.created else 'reconfigured'} [bold]{result.topic}[/]")
        _config_table(console, config)

    app.sink.result({"topic": result.topic, "created": result.created, "config": config}, pretty)


def _config_table(console: Any, config: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(show_header=False, box=None, padding=(0, 2))
    for key, val in config.items():
        table.add_row(f"[dim]{key}[/]", "null" if val is None else str(val))
    console.print(table)


@app.command("info", help=HELP_INFO)
def info(ctx: typer.Context, topic: TopicArg) -> None:
    app = get_app(ctx)
    state = app.client().topics.get(topic, touch=False)
    from topics_cli.commands._render import state_dict

    value = state_dict(state)

    def pretty(console: Any) -> None:
        from rich.table import Table

        from topics_cli.commands._render import ago, seq_range

        table = Table(show_header=False, box=None, padding=(0, 2))
        table.add_row("[bold]topic[/]", f"[bold]{state.topic}[/] ({state.type})")
        span = seq_range(state.earliest_seq, state.head_seq)
        if state.earliest_seq <= state.head_seq:
            span += f" (next {state.next_seq})"
        table.add_row("seqs", span)
        table.add_row("records", f"{state.count:,} live, {state.bytes:,} bytes")
        table.add_row("last write", ago(state.last_write_ts))
        table.add_row("last read", ago(state.last_read_ts))
        table.add_row("priority", str(state.effective_priority))
        if state.queue is not None:
            q = state.queue
            table.add_row(
                "queue",
                f"{q.ready:,} ready, {q.in_flight:,} in flight, {q.dead_lettered:,} dead-lettered",
            )
        console.print(table)
        console.print("[dim]config[/]")
        _config_table(console, value["config"])

    app.sink.result(value, pretty)


@app.command("ls", help=HELP_LS)
def ls(
    ctx: typer.Context,
    prefix: Annotated[
        str | None, typer.Option("--prefix", help="Only names starting with this.")
    ] = None,
    page_size: Annotated[
        int, typer.Option("--page-size", min=1, max=1000, help="Topics per request.")
    ] = 100,
) -> None:
    app = get_app(ctx)
    items: list[dict[str, Any]] = [
        {
            "topic": t.topic,
            "head_seq": t.head_seq,
            "earliest_seq": t.earliest_seq,
            "count": t.count,
            "bytes": t.bytes,
            "durable": t.durable,
            "effective_priority": t.effective_priority,
        }
        for t in app.client().topics.list(prefix=prefix, page_size=page_size)
    ]

    def pretty(console: Any) -> None:
        from rich.table import Table

        from topics_cli.commands._render import seq_range

        table = Table(box=None, padding=(0, 2))
        for col in ("topic", "seqs", "records", "bytes", "durable"):
            table.add_column(col, justify="left" if col == "topic" else "right")
        for t in items:
            table.add_row(
                str(t["topic"]),
                seq_range(t["earliest_seq"], t["head_seq"]),
                f"{t['count']:,}",
                f"{t['bytes']:,}",
                "yes" if t["durable"] else "",
            )
        console.print(table if items else "[dim]no topics[/]")

    if app.sink.mode in ("data", "template"):
        app.sink.lines(str(t["topic"]) for t in items)
        return
    app.sink.result(items, pretty)


@app.command("rm", help=HELP_RM)
def rm(
    ctx: typer.Context,
    topic: TopicArg,
    yes: YesOpt = False,
    if_empty: Annotated[
        bool, typer.Option("--if-empty", help="Refuse (exit 1) if it still holds records.")
    ] = False,
    missing_ok: Annotated[
        bool, typer.Option("--missing-ok", help="A TOPIC that does not exist is not an error.")
    ] = False,
) -> None:
    import sys

    app = get_app(ctx)
    if not yes and sys.stdin.isatty() and sys.stderr.isatty():
        typer.confirm(f"Delete topic {topic!r}, its records and its routers?", abort=True, err=True)
    result = app.client().topics.delete(topic, if_empty=if_empty)
    if not result.deleted and not missing_ok:
        from topics_cli.errors import EXIT_NOT_FOUND, CliError

        raise CliError(
            f"no such topic {topic!r} (nothing deleted)",
            code=EXIT_NOT_FOUND,
            hint="list topics with: topics ls; --missing-ok accepts an absent topic",
        )
    value = {
        "topic": result.topic,
        "deleted": result.deleted,
        "routers_removed": list(result.routers_removed),
    }

    def pretty(console: Any) -> None:
        if not result.deleted:
            console.print(f"[dim]{topic}: already absent (nothing deleted)[/]")
            return
        extra = (
            f" and routers {', '.join(result.routers_removed)}" if result.routers_removed else ""
        )
        console.print(f"deleted [bold]{topic}[/]{extra}")

    app.sink.result(value, pretty)
