"""``topics demo``: the recipes, live, against a private reference server.

Every ``$ topics …`` line the demo prints is run as printed: the real ``topics`` program
(``python -m topics_cli``, a child process) with ``TOPICS_URL`` pointing at the private
server, in the demo's working directory. The line is the argv joined with shell quoting, so
pasting it into bash runs the same argv. The child writes straight to the demo's stdout,
so it picks its own output format as it would in the user's shell (pretty on a terminal,
jsonl in a pipe); its stderr (gaps, summaries, receipts) goes to the same place, in order,
because the transcript is what the user asked to see: the demo's stderr carries only the
demo's own errors. Each step is a function taking a :class:`Demo`, so a new step is one
function and one entry in :data:`STEPS`.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated

import typer

from topics_cli.completions import choices
from topics_cli.context import get_app
from topics_cli.errors import EXIT_API, EXIT_GAP, CliError
from topics_cli.group import typer_app

if TYPE_CHECKING:
    from topics_cli.output import Sink

HELP = """Walk through the topics recipes live: starts a private reference server in this
process (free port, temporary data directory) and runs each step's `topics` commands
against it, printing each command line before its output. Each line pastes into bash
as printed (with TOPICS_URL exported as the demo shows). The commands print as they
would in your shell (pretty on a terminal, jsonl in a pipe), their gaps and summaries
included, all on stdout.

\b
Steps:
  stream   a durable stream replayed from a cursor
  fanout   a small cap_records topic is overrun: a slow reader's forced gap and
           its tombstone report
  queue    a cursor job queue: workers advancing a shared checkpoint
  mirror   a two-node mirror that stays echo-free (routers a->b, b->a with
           allow_cycle, writes with --node, reads with the node filter)
  lease    a lease queue: two workers claim, ack, nack; a failing job is
           dead-lettered after max_deliveries; `lease run` drains the rest

Needs the server extra: pip install 'topics-py[server]' (without it: one line naming
it, exit 1). A command that does not end as the step expects stops the demo (exit 1).

\b
Examples:
  topics demo
  topics demo --fast                 # no pauses (CI)
  topics demo --step fanout --step mirror
"""


class Demo:
    """One run: where the commands go (``url``), where they run (``workdir``), pacing."""

    def __init__(self, url: str, sink: Sink, fast: bool, workdir: Path) -> None:
        self.url = url
        self.sink = sink
        self.fast = fast
        self.workdir = workdir
        self.env = {**os.environ, "TOPICS_URL": url}

    def pause(self, seconds: float = 0.8) -> None:
        if not self.fast:
            time.sleep(seconds)

    def title(self, text: str) -> None:
        self.sink.out.write(f"\n== {text}\n")
        self.sink.out.flush()

    def say(self, text: str) -> None:
        self.sink.out.write(f"   {text}\n")
        self.sink.out.flush()

    def run(self, *argv: str, expect: int = 0) -> None:
        """Print ``$ topics ARGV`` and run exactly that; its exit code must be ``expect``."""
        self.pause(0.4)
        line = "$ topics " + " ".join(shlex.quote(a) for a in argv)
        self.sink.out.write(line + "\n")
        self.sink.out.flush()
        sys.stderr.flush()
        done = subprocess.run(
            [sys.executable, "-m", "topics_cli", *argv],
            stdin=subprocess.DEVNULL,
            stdout=self._fd(self.sink.out),
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env=self.env,
            check=False,
        )
        if done.stdout:
            self.sink.out.write(done.stdout.decode())
            self.sink.out.flush()
        if done.returncode != expect:
            raise CliError(
                f"demo: `{line[2:]}` exited {done.returncode}, expected {expect}", code=EXIT_API
            )

    @staticmethod
    def _fd(stream: IO[str]) -> int:
        """The stream's file descriptor (the child writes there itself), or PIPE when it
        has none (a test's in-memory stream): the output is then copied over."""
        try:
            return stream.fileno()
        except (AttributeError, OSError, ValueError):
            return subprocess.PIPE


def step_stream(d: Demo) -> None:
    d.title("1. A durable stream, replayed from a cursor")
    d.run("create", "orders", "--durability", "disk", "--cap-records", "100000")
    d.run("put", "orders", '{"id":1}', '{"id":2}', '{"id":3}', '{"id":4}', "--tag", "order")
    d.say("a consumer that processed seq 2 saved the cursor 2 in its checkpoint; it resumes:")
    d.run("diff", "orders", "--from", "2")


def step_fanout(d: Demo) -> None:
    d.title("2. A capped topic overruns a slow reader: a forced gap and its tombstone")
    d.run("create", "news", "--cap-records", "5")
    d.run("put", "news", '"headline 1"', '"headline 2"', '"headline 3"')
    d.say("a slow reader has read seqs 1..3 (its cursor is 3), then sleeps;")
    d.say("10 more headlines arrive, and the cap keeps only the last 5 records")
    d.run("put", "news", "--raw", *(f"headline {i}" for i in range(4, 14)))
    d.say("would the slow reader hit a gap? (exit 3: yes)")
    d.run("tombstone", "check", "news", "--from", "3", expect=EXIT_GAP)
    d.run("diff", "news", "--from", "3")
    d.say("the slow reader is told exactly what it missed instead of silently skipping it")


def step_queue(d: Demo) -> None:
    d.title("3. A cursor job queue: workers advancing a shared checkpoint")
    d.run("put", "jobs", *(f'{{"job":{i}}}' for i in range(1, 7)))
    for worker in ("worker-1", "worker-2", "worker-1"):
        d.say(f"{worker} takes the next two jobs and saves its cursor in jobs.cp:")
        d.run("diff", "jobs", "--checkpoint", "jobs.cp", "--count", "2", "-q")
    d.say("a crashed worker loses nothing: the next one resumes from the saved cursor")


def step_mirror(d: Demo) -> None:
    d.title("4. A two-node mirror that stays echo-free")
    d.run("router", "put", "a->b", "--source", "a", "--dest", "b", "--allow-cycle")
    d.run("router", "put", "b->a", "--source", "b", "--dest", "a", "--allow-cycle")
    d.run("put", "a", "--node", "edge-a", '"written at A"')
    d.run("put", "b", "--node", "edge-b", '"written at B"')
    for node, topic in (("edge-a", "a"), ("edge-b", "b")):
        d.say(f"{node} reads {topic} with its own node filter: never its own writes echoed back")
        d.run("diff", topic, "--node", node, "-o", "data", "-q")
    d.say("the cycle re-forwards a copy until the hop cap (8 hops): consumers dedupe by key")
    d.run("router", "ls")


def step_lease(d: Demo) -> None:
    d.title("5. A lease queue: claim, ack, nack, and a dead letter")
    d.run(
        "create", "render", "--type", "queue", "--max-deliveries", "2",
        "--dead-letter", "render.dlq",
    )  # fmt: skip
    d.run("put", "render", *(f'{{"clip":{i}}}' for i in range(1, 5)))
    d.say("two workers lease two jobs each; clip 3 is corrupt: rendering it always fails")
    d.run("lease", "claim", "render", "--node", "w1", "--max", "2")
    d.run("lease", "claim", "render", "--node", "w2", "--max", "2")
    d.run("lease", "ack", "render", "--node", "w1", "1", "2")
    d.run("lease", "ack", "render", "--node", "w2", "4")
    d.say("w2 failed clip 3 (delivery 1 of 2): it hands the job back")
    d.run("lease", "nack", "render", "--node", "w2", "3")
    d.run("lease", "claim", "render", "--node", "w1")
    d.say("w1 got clip 3 again (delivery 2 of 2) and fails too")
    d.run("lease", "nack", "render", "--node", "w1", "3")
    d.say("a 3rd delivery would exceed max_deliveries: the claim moves it to render.dlq")
    d.run("lease", "claim", "render", "--node", "w2")
    d.run("diff", "render.dlq", "-q")
    d.run("info", "render")
    d.say("hands-off: a worker runs a shell command per job (its data on stdin) and acks it")
    d.run("put", "render", '{"clip":5}', '{"clip":6}')
    d.run(
        "lease", "run", "render", "--node", "w3",
        "--exec", "echo rendered job $TOPICS_JOB_SEQ", "--once",
    )  # fmt: skip


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
            "--step",
            help=f"Run only these steps: {', '.join(STEPS)}.",
            show_default=False,
            autocompletion=choices(*STEPS),
        ),
    ] = None,
) -> None:
    from topics_cli.commands._server import require_server

    app = get_app(ctx)
    chosen = step or list(STEPS)
    unknown = [s for s in chosen if s not in STEPS]
    if unknown:
        raise typer.BadParameter(f"unknown step {unknown[0]!r}; steps: {', '.join(STEPS)}")
    require_server("demo")
    sink = app.sink
    with tempfile.TemporaryDirectory(prefix="topics-demo-") as tmp:
        server = InProcessServer(Path(tmp) / "data")
        url = server.start()
        sink.out.write(f"topics demo: a reference server is running at {url} (data in {tmp})\n")
        sink.out.write(f"   try the commands yourself meanwhile: export TOPICS_URL={url}\n")
        try:
            d = Demo(url, sink, fast, Path(tmp))
            for name in chosen:
                STEPS[name](d)
                d.pause(1.0)
        finally:
            server.stop()
        sink.out.write("\ndone: the server and its data are gone.\n")
        sink.out.flush()
