"""``topics lease claim | ack | nack | extend | run``: lease queues (SPEC §10).

``claim``/``ack``/``nack``/``extend`` are one request each, for scripts and debugging.
``run`` is a worker: it keeps a ``/work`` push stream open and runs a shell command once
per job (the loop lives in :mod:`topics_cli.commands._lease_run`, loaded only by ``run``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from topics_cli.completions import topic_names
from topics_cli.context import get_app
from topics_cli.errors import EXIT_API, EXIT_CODES_HELP, CliError
from topics_cli.group import typer_app
from topics_cli.options import duration_ms
from topics_client import DEFAULT_BACKOFF_BASE_MS, DEFAULT_BACKOFF_MAX_MS

if TYPE_CHECKING:
    from topics_cli.commands._lease_run import Runner, Settings
    from topics_client import Job, TopicConfig

__all__ = ["app", "job_to_wire"]

app = typer_app(
    help="""Lease queues: claim jobs, settle them, or run a command per job.

A queue is a topic created with --type queue. Jobs are normal writes (topics put); a
claim leases them to a node until a deadline; ack deletes a job, nack hands it back
(optionally after a delay), extend pushes the deadline. Delivery is at least once.

\b
Examples:
  topics create jobs --type queue --max-deliveries 5 --dead-letter jobs.dlq
  topics put jobs '{"clip": 9}' '{"clip": 10}'
  topics lease claim jobs --node w1 --max 10
  topics lease ack jobs --node w1 31 32
  topics lease run jobs --exec './render.sh' --concurrency 8
""",
)

QueueArg = Annotated[
    str,
    typer.Argument(
        help="Queue (a topic of type queue).", show_default=False, autocompletion=topic_names
    ),
]
NodeOpt = Annotated[
    str,
    typer.Option(
        "--node", help="The worker's node name (leases belong to it).", show_default=False
    ),
]
SeqsArg = Annotated[list[int], typer.Argument(help="Job seqs.", show_default=False, min=1)]
LeaseIdOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--lease-id",
        help="Fence: one per SEQ, in order (repeat the flag); a seq whose lease has moved "
        "on is skipped. Empty string = no fence for that seq.",
        show_default=False,
    ),
]
LEASE_MS_MIN, LEASE_MS_MAX = 100, 86_400_000


def job_to_wire(job: Job) -> dict[str, Any]:
    """The job as the server sent it (``/work`` frame order), plus ``topic``."""
    out: dict[str, Any] = {
        "topic": job.topic,
        "$seq": job.seq,
        "lease_id": job.lease_id,
        "deadline": job.deadline,
        "$ts": job.ts,
    }
    if job.tag is not None:
        out["$tag"] = job.tag
    out["deliveries"] = job.deliveries
    out["data"] = job.data
    if job.meta is not None:
        out["meta"] = job.meta
    if job.extra:
        out.update(job.extra)
    return out


def _in(deadline_ms: int) -> str:
    left = deadline_ms / 1000 - time.time()
    return f"in {left:.1f} s" if left >= 0 else f"{-left:.1f} s ago"


# ---------------------------------------------------------------------------- claim


@app.command(
    "claim",
    epilog=EXIT_CODES_HELP,
    help="""Lease up to --max ready jobs of QUEUE to --node and print them.

jsonl: one job per line as the server returns it (topic, $seq, lease_id, deadline, $ts,
$tag, deliveries, data, meta). Fewer than --max (even none) is normal; the exit code is 0.

\b
Examples:
  topics lease claim jobs --node w1
  topics lease claim jobs --node w1 --max 10 --lease-ms 60000 -o jsonl
  topics lease claim jobs --node w1 -o jsonl | jq -r '."$seq"' \\
      | xargs topics lease ack jobs --node w1
""",
)
def claim(
    ctx: typer.Context,
    queue: QueueArg,
    node: NodeOpt,
    max_: Annotated[
        int, typer.Option("--max", "-n", min=1, max=1000, help="Jobs to lease at most.")
    ] = 1,
    lease_ms: Annotated[
        int | None,
        typer.Option(
            "--lease-ms",
            min=LEASE_MS_MIN,
            max=LEASE_MS_MAX,
            help="Lease length (default: the queue's lease_ms).",
            show_default=False,
        ),
    ] = None,
) -> None:
    ap = get_app(ctx)
    result = ap.client().queues.claim(queue, node=node, max=max_, lease_ms=lease_ms)
    jobs = list(result.jobs)
    sink = ap.sink
    if sink.mode == "jsonl":
        import orjson

        sink.write_bytes(b"".join(orjson.dumps(job_to_wire(j)) + b"\n" for j in jobs))
        return
    if sink.mode in ("data", "template"):
        from topics_client import Record

        records = [Record(j.seq, j.ts, j.data, None, j.tag, j.meta) for j in jobs]
        sink.records(records, queue, with_topic=True)
        return
    value = {
        "topic": result.topic,
        "count": result.count,
        "ready": result.ready,
        "claimed": [job_to_wire(j) for j in jobs],
    }

    def pretty(console: Any) -> None:
        import orjson
        from rich.table import Table

        if not jobs:
            console.print(f"[dim]no job claimed ({result.ready:,} ready)[/]")
            return
        table = Table(box=None, padding=(0, 2))
        for col in ("seq", "lease_id", "deliveries", "deadline", "tag", "data"):
            table.add_column(col, justify="right" if col in ("seq", "deliveries") else "left")
        for j in jobs:
            data = j.data if isinstance(j.data, str) else orjson.dumps(j.data).decode()
            table.add_row(
                str(j.seq), j.lease_id, str(j.deliveries), _in(j.deadline), j.tag or "", data
            )
        console.print(table)
        console.print(f"[dim]{len(jobs)} claimed by {node}, {result.ready:,} still ready[/]")

    sink.result(value, pretty)


# ---------------------------------------------------------------------------- settle


def _fences(seqs: Sequence[int], lease_ids: Sequence[str] | None) -> list[str] | None:
    if not lease_ids:
        return None
    if len(lease_ids) != len(seqs):
        raise typer.BadParameter(
            f"{len(lease_ids)} lease ids for {len(seqs)} seqs: give one per SEQ, in order",
            param_hint="--lease-id",
        )
    return list(lease_ids)


def _counts(
    topic: str, verb: str, done: int, skipped: Sequence[int], ready: int, in_flight: int
) -> dict[str, Any]:
    """The printed result of an ack or nack: the counts the server returned."""
    return {
        "topic": topic,
        verb: done,
        "skipped": list(skipped),
        "ready": ready,
        "in_flight": in_flight,
    }


def _settled(ctx: typer.Context, value: dict[str, Any], verb: str, extra: str = "") -> None:
    sink = get_app(ctx).sink
    n = value[verb]
    skipped = value["skipped"]

    def pretty(console: Any) -> None:
        line = f"{verb} {n} on [bold]{value['topic']}[/]"
        if "ready" in value:
            line += f" ({value['ready']:,} ready, {value['in_flight']:,} in flight)"
        console.print(line + extra)
        if skipped:
            shown = ", ".join(str(s) for s in skipped[:20]) + (" …" if len(skipped) > 20 else "")
            console.print(
                f"[yellow]skipped {len(skipped)}: {shown}[/] "
                "[dim](not leased to this node, expired, gone, or a stale --lease-id)[/]"
            )

    sink.result(value, pretty)


_SETTLE_EXAMPLES = """

\b
Examples:
  topics lease {verb} jobs --node w1 31 32{flag}
  topics lease {verb} jobs --node w1 31 --lease-id lease_1f{flag}
"""

_SKIPPED = (
    "Seqs not leased to --node (never claimed, expired, gone, held by another node, or a "
    "stale --lease-id) are listed under skipped; that is not an error (exit 0)."
)


@app.command(
    "ack",
    epilog=EXIT_CODES_HELP,
    short_help="Done: delete jobs leased to --node.",
    help="Done: delete the jobs SEQ... leased to --node.\n\n"
    + _SKIPPED
    + _SETTLE_EXAMPLES.format(verb="ack", flag=""),
)
def ack(
    ctx: typer.Context, queue: QueueArg, seqs: SeqsArg, node: NodeOpt, lease_id: LeaseIdOpt = None
) -> None:
    client = get_app(ctx).client()
    r = client.queues.ack(queue, seqs, node=node, lease_ids=_fences(seqs, lease_id))
    _settled(ctx, _counts(r.topic, "acked", r.acked, r.skipped, r.ready, r.in_flight), "acked")


@app.command(
    "nack",
    epilog=EXIT_CODES_HELP,
    short_help="Hand jobs back, now or after --delay-ms.",
    help="Hand the jobs SEQ... back: claimable again now, or after --delay-ms.\n\n"
    + _SKIPPED
    + _SETTLE_EXAMPLES.format(verb="nack", flag=" --delay-ms 5000"),
)
def nack(
    ctx: typer.Context,
    queue: QueueArg,
    seqs: SeqsArg,
    node: NodeOpt,
    lease_id: LeaseIdOpt = None,
    delay_ms: Annotated[
        int,
        typer.Option(
            "--delay-ms", min=0, max=LEASE_MS_MAX, help="Claimable again only after this long."
        ),
    ] = 0,
) -> None:
    client = get_app(ctx).client()
    r = client.queues.nack(
        queue, seqs, node=node, delay_ms=delay_ms, lease_ids=_fences(seqs, lease_id)
    )
    value = _counts(r.topic, "nacked", r.nacked, r.skipped, r.ready, r.in_flight)
    _settled(ctx, value, "nacked", f", back in {delay_ms} ms" if delay_ms else "")


@app.command(
    "extend",
    epilog=EXIT_CODES_HELP,
    short_help="Keep working: push the deadline of leased jobs.",
    help="Keep working: set the deadline of the jobs SEQ... to now + --lease-ms.\n\n"
    + _SKIPPED
    + _SETTLE_EXAMPLES.format(verb="extend", flag=" --lease-ms 60000"),
)
def extend(
    ctx: typer.Context,
    queue: QueueArg,
    seqs: SeqsArg,
    node: NodeOpt,
    lease_ms: Annotated[
        int,
        typer.Option(
            "--lease-ms",
            min=LEASE_MS_MIN,
            max=LEASE_MS_MAX,
            help="New lease length from now (required).",
            show_default=False,
        ),
    ],
    lease_id: LeaseIdOpt = None,
) -> None:
    client = get_app(ctx).client()
    r = client.queues.extend(
        queue, seqs, node=node, lease_ms=lease_ms, lease_ids=_fences(seqs, lease_id)
    )
    value = {
        "topic": r.topic,
        "extended": r.extended,
        "skipped": list(r.skipped),
        "deadlines": {str(k): v for k, v in r.deadlines.items()},
    }
    until = max(r.deadlines.values(), default=None)
    _settled(ctx, value, "extended", f", deadline {_in(until)}" if until is not None else "")


# ---------------------------------------------------------------------------- run

RUN_HELP = """Run CMD once per job of QUEUE, as jobs are pushed over a /work stream.

CMD runs through /bin/sh -c with the job's data as compact JSON plus a newline on stdin (a
string job arrives quoted: use `jq -r .` for its raw text) and in its environment
TOPICS_JOB_SEQ, TOPICS_JOB_DELIVERIES, TOPICS_JOB_TAG (empty if none), TOPICS_JOB_TOPIC,
TOPICS_JOB_LEASE_ID and TOPICS_JOB_MAX_DELIVERIES (0 = unlimited). Its stdout and stderr
are pipes, copied to this command's a whole line at a time (jobs never interleave mid-line;
on a terminal, above the status line). Up to --concurrency jobs run at once; each lease is
extended every lease_ms/3 while CMD runs. Exit 0 acks the job; anything else nacks it with
a delay of backoff-base x 2^(deliveries-1), at most --backoff-max-ms (no delay on the last
delivery of a queue with max_deliveries and a dead_letter: the next claim dead-letters it).
Jobs run at least once: CMD must be idempotent.

Ctrl-C or SIGTERM stops taking jobs and lets running ones finish, for at most --grace
seconds (a second Ctrl-C: at once); then they are killed and their jobs handed back. Exit
130 after Ctrl-C, 0 after SIGTERM (1 if jobs had to be killed). A live status line shows
on a terminal, a summary on stderr at the end (with the dead-letter topic jobs went to).

\b
Examples:
  topics lease run jobs --exec './render.sh' --concurrency 8
  topics lease run jobs --exec 'jq -r .url | xargs curl -fsS' --node edge-1
  topics lease run jobs --exec 'python handle.py' --once             # drain, exit 0 (CI)
  topics lease run jobs --exec 'make -s job' --idle-timeout 30s --grace 120
"""


def _default_node() -> str:
    import socket

    return f"{socket.gethostname()}-{os.getpid()}"


ExecOpt = Annotated[
    str,
    typer.Option(
        "--exec", "-e", help="Shell command to run per job (/bin/sh -c).", show_default=False
    ),
]
WorkerNodeOpt = Annotated[
    str | None,
    typer.Option("--node", help="The worker's node name (default: HOST-PID).", show_default=False),
]
ConcurrencyOpt = Annotated[
    int, typer.Option("--concurrency", "-j", min=1, max=1000, help="Jobs running at once.")
]
RunLeaseOpt = Annotated[
    int | None,
    typer.Option(
        "--lease-ms",
        min=LEASE_MS_MIN,
        max=LEASE_MS_MAX,
        help="Lease length, renewed every third of it (default: the queue's lease_ms).",
        show_default=False,
    ),
]
BackoffBaseOpt = Annotated[
    int, typer.Option("--backoff-base-ms", min=0, help="First retry delay after a failure.")
]
BackoffMaxOpt = Annotated[
    int, typer.Option("--backoff-max-ms", min=0, max=LEASE_MS_MAX, help="Longest retry delay.")
]
MaxDeliveriesHintOpt = Annotated[
    int | None,
    typer.Option(
        "--max-deliveries-hint",
        min=0,
        help="Value of TOPICS_JOB_MAX_DELIVERIES (default: the queue's max_deliveries).",
        show_default=False,
    ),
]
GraceOpt = Annotated[
    str,
    typer.Option("--grace", help="How long running jobs get to finish after a stop, e.g. 30s, 2m."),
]
OnceOpt = Annotated[
    bool,
    typer.Option(
        "--once", help="Exit 0 once the queue is empty (nothing ready, leased or waiting to retry)."
    ),
]
RunIdleOpt = Annotated[
    str | None,
    typer.Option(
        "--idle-timeout",
        help="Exit 0 after this long with no job running or arriving, e.g. 30s, 5m.",
        show_default=False,
    ),
]


@app.command(
    "run",
    help=RUN_HELP,
    epilog=EXIT_CODES_HELP,
    short_help="Run a command per job (a /work worker).",
)
def run(
    ctx: typer.Context,
    queue: QueueArg,
    exec_: ExecOpt,
    node: WorkerNodeOpt = None,
    concurrency: ConcurrencyOpt = 1,
    lease_ms: RunLeaseOpt = None,
    backoff_base_ms: BackoffBaseOpt = DEFAULT_BACKOFF_BASE_MS,
    backoff_max_ms: BackoffMaxOpt = DEFAULT_BACKOFF_MAX_MS,
    max_deliveries_hint: MaxDeliveriesHintOpt = None,
    grace: GraceOpt = "30s",
    once: OnceOpt = False,
    idle_timeout: RunIdleOpt = None,
) -> None:
    import asyncio

    from topics_cli.commands._lease_run import Settings

    idle_ms = duration_ms(idle_timeout, "--idle-timeout") if idle_timeout else None
    grace_s = duration_ms(grace, "--grace") / 1000
    if not exec_.strip():
        raise typer.BadParameter("empty command", param_hint="--exec")

    def settings(config: TopicConfig) -> Settings:
        """The run's settings; what no flag gave comes from the queue's config."""
        return Settings(
            queue=queue,
            node=node or _default_node(),
            command=exec_,
            concurrency=concurrency,
            lease_ms=lease_ms or config.lease_ms,
            max_deliveries=(
                config.max_deliveries if max_deliveries_hint is None else max_deliveries_hint
            ),
            dead_letter=config.dead_letter or None,
            backoff_base_ms=backoff_base_ms,
            backoff_max_ms=backoff_max_ms,
            grace=grace_s,
            once=once,
            idle_ms=idle_ms,
        )

    runner = asyncio.run(_work(get_app(ctx), queue, settings))
    if runner.stop_reason == "SIGINT":
        raise KeyboardInterrupt
    if runner.stats.killed:
        raise CliError(
            f"{runner.stats.killed} running jobs killed after --grace {grace_s:g} s "
            "(handed back for another delivery)",
            code=EXIT_API,
        )


async def _work(ap: Any, queue: str, settings: Callable[[TopicConfig], Settings]) -> Runner:
    """Check that ``queue`` is one and run the worker loop on it until it stops."""
    from topics_cli.commands._lease_run import Runner
    from topics_client import AsyncClient

    sink = ap.sink
    async with AsyncClient(ap.base_url, api_key=ap.settings.api_key) as client:
        state = await client.topics.get(queue, touch=False)
        if state.type != "queue":
            raise CliError(
                f"{queue} is a {state.type} topic, not a queue",
                code=EXIT_API,
                hint="a queue is created with: topics create NAME --type queue",
            )
        runner = Runner(client, sink, settings(state.config))
        try:
            await runner.run()
        finally:
            if not sink.quiet:
                runner.summary()
        return runner
