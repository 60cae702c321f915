"""``topics demo``: the recipes, live, against an in-process reference server.

Each step is its own function taking a :class:`Demo` (client, output, pacing), so a new step
is one function and one entry in :data:`STEPS`.
"""

from __future__ import annotations

import shlex
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from topics_cli.context import get_app
from topics_cli.group import typer_app

if TYPE_CHECKING:
    from topics_cli.output import Sink
    from topics_client import Client

HELP = """Walk through the topics recipes live: starts a private reference server in this
process (free port, temporary data directory) and shows each step's command and result.

\b
Steps:
  stream   a durable stream replayed from a cursor
  fanout   pub/sub fan-out; a small cap_records topic is overrun: a forced gap and
           its tombstone report
  queue    a cursor job queue: workers advancing a shared checkpoint
  mirror   a two-node mirror that stays echo-free (routers a->b, b->a with
           allow_cycle, writes with node, reads with the node filter)
  lease    a lease queue: two workers claim, ack, nack; a failing job is
           dead-lettered after max_deliveries, with its $dead_letter_* stamps

\b
Examples:
  topics demo
  topics demo --fast                 # no pauses (CI)
  topics demo --step fanout --step mirror
"""


class Demo:
    def __init__(self, client: Client, sink: Sink, fast: bool, workdir: Path) -> None:
        self.client = client
        self.sink = sink
        self.fast = fast
        self.workdir = workdir

    def pause(self, seconds: float = 0.8) -> None:
        if not self.fast:
            time.sleep(seconds)

    def title(self, text: str) -> None:
        self.sink.out.write(f"\n== {text}\n")
        self.sink.out.flush()

    def say(self, text: str) -> None:
        self.sink.out.write(f"   {text}\n")
        self.sink.out.flush()

    def cmd(self, *argv: str) -> None:
        self.pause(0.4)
        self.sink.out.write("$ topics " + " ".join(shlex.quote(a) for a in argv) + "\n")
        self.sink.out.flush()

    def show(self, records: Any, topic: str) -> None:
        from topics_cli.output import Sink

        Sink("data" if self.sink.mode == "data" else "jsonl", out=self.sink.out).records(
            records, topic
        )


def step_stream(d: Demo) -> None:
    d.title("1. A durable stream, replayed from a cursor")
    c = d.client
    d.cmd("create", "orders", "--durability", "disk", "--cap-records", "100000")
    c.topics.put("orders", durability="disk", cap_records=100_000)
    d.cmd("put", "orders", '{"id":1}', '{"id":2}', '{"id":3}', '{"id":4}', "--tag", "order")
    w = c.topics.write("orders", [{"data": {"id": i}, "tag": "order"} for i in range(1, 5)])
    d.say(f"appended seqs {w.first_seq}..{w.last_seq}")
    d.say("a consumer that processed seq 2 saved the cursor 2 in its checkpoint; it resumes:")
    d.cmd("diff", "orders", "--from", "2", "-o", "jsonl")
    d.show(c.topics.diff("orders", from_seq=2, include_tags=True).records, "orders")


def step_fanout(d: Demo) -> None:
    from topics_cli.consume import Tracker

    d.title("2. Pub/sub fan-out, and a forced gap with its tombstone")
    c = d.client
    d.cmd("create", "news", "--cap-records", "5")
    c.topics.put("news", cap_records=5)
    c.topics.write("news", [{"data": f"headline {i}"} for i in range(1, 4)])
    d.say("two readers, fast and slow, each with its own cursor; both read seqs 1..3")
    fast = slow = 3
    d.say("then 10 more records arrive; the fast reader keeps up, the slow one sleeps")
    d.cmd("put", "news", "--raw", "<", "ten-headlines.txt")
    for i in range(4, 14):
        c.topics.write("news", [{"data": f"headline {i}"}])
        fast = c.topics.diff("news", from_seq=fast).next_from_seq
    d.say(f"fast reader at cursor {fast}; the cap keeps only the last 5 records")
    d.cmd("tombstone", "check", "news", "--from", str(slow))
    probe = c.topics.diff("news", from_seq=slow, limit=1)
    if probe.tombstone is not None:
        t = probe.tombstone
        d.say(f"cursor {slow}: GAP seqs {t.gap_from}..{t.gap_to} already lost ({t.reason})")
    d.cmd("diff", "news", "--from", str(slow))
    tracker = Tracker(d.sink, "warn", command="diff news")
    for batch in c.topics.replay("news", from_seq=slow).batches():
        if batch.gap is not None:
            tracker.gap(batch.gap)
        d.show(batch.records, "news")
        tracker.records("news", batch.records)
    tracker.summary()
    d.say("the slow reader is told exactly what it missed instead of silently skipping it")


def step_queue(d: Demo) -> None:
    from topics_cli.consume import Checkpoint

    d.title("3. A cursor job queue: workers advancing a shared checkpoint")
    c = d.client
    d.cmd("put", "jobs", *(f'{{"job":{i}}}' for i in range(1, 7)))
    c.topics.write("jobs", [{"data": {"job": i}} for i in range(1, 7)])
    path = d.workdir / "jobs.cp"
    for worker in ("worker-1", "worker-2", "worker-1"):
        cp = Checkpoint(path)
        cursor = cp.get("jobs") or 0
        d.cmd("diff", "jobs", "--checkpoint", "jobs.cp", "--count", "2")
        page = c.topics.diff("jobs", from_seq=cursor, limit=2)
        done = ", ".join(str(r.data["job"]) for r in page.records)
        cp.set("jobs", page.next_from_seq)
        cp.save()
        d.say(f"{worker} ran jobs {done}; checkpoint jobs.cp now {page.next_from_seq}")
    d.say("a crashed worker loses nothing: the next one resumes from the saved cursor")


def step_mirror(d: Demo) -> None:
    d.title("4. A two-node mirror that stays echo-free")
    c = d.client
    d.cmd("router", "put", "a->b", "--source", "a", "--dest", "b", "--allow-cycle")
    c.routers.put("a->b", source="a", dest="b", allow_cycle=True)
    d.cmd("router", "put", "b->a", "--source", "b", "--dest", "a", "--allow-cycle")
    c.routers.put("b->a", source="b", dest="a", allow_cycle=True)
    d.cmd("put", "a", "--node", "edge-a", '"written at A"')
    c.topics.append("a", "written at A", node="edge-a")
    d.cmd("put", "b", "--node", "edge-b", '"written at B"')
    c.topics.append("b", "written at B", node="edge-b")
    for node, topic in (("edge-a", "a"), ("edge-b", "b")):
        d.cmd("diff", topic, "--node", node, "-o", "data")
        seen = [r.data for r in c.topics.diff(topic, node=node).records]
        d.say(f"{node} never sees its own writes echoed back: {sorted(set(seen))}")
        if len(seen) > len(set(seen)):
            d.say(
                f"({len(seen)} copies arrived: the cycle re-forwards until the hop cap; "
                "consumers dedupe by content or key)"
            )
    forwarded = {r.router: r.forwarded_total for r in c.routers.list()}
    d.say(f"forwarded: {forwarded}; the hop cap stops any copy from bouncing forever")


def step_lease(d: Demo) -> None:
    import orjson

    from topics_cli.commands.lease import job_to_wire

    d.title("5. A lease queue: claim, ack, nack, and a dead letter")
    c = d.client
    d.cmd(
        "create", "render", "--type", "queue", "--max-deliveries", "2",
        "--dead-letter", "render.dlq",
    )  # fmt: skip
    c.topics.put("render", type="queue", max_deliveries=2, dead_letter="render.dlq")
    d.cmd("put", "render", *(f'{{"clip":{i}}}' for i in range(1, 5)))
    c.topics.write("render", [{"data": {"clip": i}} for i in range(1, 5)])
    d.say("clip 3 is corrupt: rendering it always fails")
    held = {}
    for node in ("w1", "w2"):
        d.cmd("lease", "claim", "render", "--node", node, "--max", "2", "-o", "jsonl")
        held[node] = list(c.queues.claim("render", node=node, max=2).jobs)
        for job in held[node]:
            d.sink.out.write(orjson.dumps(job_to_wire(job)).decode() + "\n")
    for node, jobs in held.items():
        ok = [j for j in jobs if j.data != {"clip": 3}]
        bad = [j for j in jobs if j.data == {"clip": 3}]
        d.cmd("lease", "ack", "render", "--node", node, *(str(j.seq) for j in ok))
        r = c.queues.ack("render", ok, node=node)
        d.say(f"{node} rendered clips {[j.data['clip'] for j in ok]}: acked {r.acked}")
        if bad:
            d.cmd("lease", "nack", "render", "--node", node, str(bad[0].seq))
            c.queues.nack("render", bad, node=node)
            d.say(f"{node} failed clip 3 (delivery {bad[0].deliveries} of 2): nacked, ready again")
    d.cmd("lease", "claim", "render", "--node", "w1")
    again = list(c.queues.claim("render", node="w1").jobs)
    for job in again:
        d.say(f"w1 got clip {job.data['clip']} again, delivery {job.deliveries}; fails again: nack")
        c.queues.nack("render", [job], node="w1")
    d.cmd("lease", "claim", "render", "--node", "w2")
    third = c.queues.claim("render", node="w2")
    d.say(
        f"w2 claimed {third.count} jobs: a 3rd delivery would exceed max_deliveries, "
        "so the claim moved the job to render.dlq instead"
    )
    d.cmd("diff", "render.dlq", "-o", "jsonl")
    d.show(c.topics.diff("render.dlq").records, "render.dlq")
    d.cmd("info", "render")
    q = c.topics.get("render", touch=False).queue
    if q is not None:
        d.say(f"queue: {q.ready} ready, {q.in_flight} in flight, {q.dead_lettered} dead-lettered")
    d.say("hands-off: topics lease run render --exec './render.sh' --concurrency 8")


STEPS: dict[str, Callable[[Demo], None]] = {
    "stream": step_stream,
    "fanout": step_fanout,
    "queue": step_queue,
    "mirror": step_mirror,
    "lease": step_lease,
}


class InProcessServer:
    """The reference server on a free port in a background thread (imported lazily)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.url = ""
        self._thread: threading.Thread | None = None
        self._stop: Callable[[], object] | None = None
        self._error: list[BaseException] = []

    def start(self, timeout: float = 20.0) -> str:
        import asyncio

        from topics_server.server import serve
        from topics_server.settings import Settings

        port_file = self.data_dir.parent / "port"
        settings = Settings.from_env(
            env={},
            host="127.0.0.1",
            port=0,
            data_dir=self.data_dir,
            port_file=port_file,
            log_level="warning",
            access_log=False,
        )
        loop = asyncio.new_event_loop()
        task = loop.create_task(serve(settings, announce=False))

        def run() -> None:
            try:
                loop.run_until_complete(task)
            except BaseException as exc:  # cancelled on stop; anything else is reported
                if not task.cancelled():
                    self._error.append(exc)

        self._stop = lambda: loop.call_soon_threadsafe(task.cancel)
        self._thread = threading.Thread(target=run, daemon=True, name="topics-demo-server")
        self._thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._error:
                raise RuntimeError(f"demo server failed: {self._error[0]}")
            if port_file.exists() and port_file.read_text().strip():
                self.url = "http://" + port_file.read_text().strip()
                return self.url
            time.sleep(0.01)
        raise RuntimeError("demo server did not start")

    def stop(self) -> None:
        if self._stop is not None and self._thread is not None:
            self._stop()
            self._thread.join(10)


app = typer_app()


@app.command("demo", help=HELP)
def demo(
    ctx: typer.Context,
    fast: Annotated[bool, typer.Option("--fast", help="No pauses (tests, CI).")] = False,
    step: Annotated[
        list[str] | None,
        typer.Option(
            "--step", help=f"Run only these steps: {', '.join(STEPS)}.", show_default=False
        ),
    ] = None,
) -> None:
    from topics_client import Client

    app = get_app(ctx)
    chosen = step or list(STEPS)
    unknown = [s for s in chosen if s not in STEPS]
    if unknown:
        raise typer.BadParameter(f"unknown step {unknown[0]!r}; steps: {', '.join(STEPS)}")
    sink = app.sink
    with tempfile.TemporaryDirectory(prefix="topics-demo-") as tmp:
        server = InProcessServer(Path(tmp) / "data")
        url = server.start()
        sink.out.write(f"topics demo: a reference server is running at {url} (data in {tmp})\n")
        sink.out.write(f"   try the commands yourself meanwhile: export TOPICS_URL={url}\n")
        try:
            with Client(url) as client:
                d = Demo(client, sink, fast, Path(tmp))
                for name in chosen:
                    STEPS[name](d)
                    d.pause(1.0)
        finally:
            server.stop()
        sink.out.write("\ndone: the server and its data are gone.\n")
        sink.out.flush()
