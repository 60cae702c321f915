"""The ``topics lease run`` worker loop (imported only by that command: it loads asyncio).

One event loop drives the ``/work`` stream, the child processes, the lease heartbeat, the
status line and the signals. A child's stdout and stderr are pipes read by the loop and
written on, a whole line at a time, through the run's :class:`~topics_cli.terminal.Screen`:
concurrent jobs never interleave mid-line, and on a terminal no line lands on the status
line's row.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from topics_cli.errors import EXIT_API, CliError

if TYPE_CHECKING:
    from topics_cli.output import Sink
    from topics_cli.terminal import Screen
    from topics_client import AsyncClient, Job

__all__ = ["Runner", "Settings"]

RELAY_GRACE = 2.0
"""Seconds a job's output pipes may stay open after CMD exited (a background child)."""
RELAY_MAX_LINE = 1 << 20
"""Bytes of one output line held back before it is written in pieces."""


@dataclass
class Settings:
    queue: str
    node: str
    command: str
    concurrency: int
    lease_ms: int
    max_deliveries: int
    dead_letter: str | None
    backoff_base_ms: int
    backoff_max_ms: int
    grace: float
    once: bool
    idle_ms: int | None


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    received: int = 0
    done: int = 0
    failed: int = 0
    exhausted: int = 0
    lost: int = 0
    killed: int = 0
    finished: list[float] = field(default_factory=list)

    def rate(self) -> float:
        now = time.monotonic()
        self.finished = [t for t in self.finished if now - t <= 5.0]
        span = max(0.5, min(5.0, now - self.started))
        return len(self.finished) / span


class Runner:
    """The ``lease run`` loop. Everything runs on one event loop; ``inflight`` holds every
    job leased on the stream and not yet settled (running, waiting for a slot, or received
    after the stop), so the heartbeat keeps all their leases alive until the end."""

    def __init__(self, client: AsyncClient, sink: Sink, settings: Settings) -> None:
        from topics_cli.terminal import Screen

        self.client = client
        self.sink = sink
        live = sink.mode == "pretty" and sink.err_is_tty() and not sink.quiet
        self.screen: Screen = Screen(sink, live=live)
        self.s = settings
        self.stats = Stats()
        self.inflight: dict[int, Job] = {}
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.slots = asyncio.Semaphore(settings.concurrency)
        self.stop = asyncio.Event()
        self.kill_now = asyncio.Event()
        self.stop_reason: str | None = None
        self.killing = False
        self.last_job = time.monotonic()
        self.base_env = dict(os.environ)
        self.to_ack: list[tuple[Job, asyncio.Future[bool]]] = []
        self.ack_wanted = asyncio.Event()

    # -- signals

    def signalled(self, name: str) -> None:
        if self.stop.is_set():
            if name == "SIGINT" or self.stop_reason == name:
                self.kill_now.set()
            return
        self.stop_reason = name
        self.stop.set()
        running = len(self.procs)
        if running and not self.sink.quiet:
            self.sink.info(
                f"topics: {name}: no new jobs; waiting up to {self.s.grace:g} s for "
                f"{running} running ({'Ctrl-C' if name == 'SIGINT' else name} again: "
                "kill them now)"
            )

    # -- the stream

    async def read(self) -> None:
        """Hand each job pushed over ``/work`` to :meth:`one`. The stream reconnects by
        itself (dropped connection, a server draining for a restart) up to the client's
        ``max_reconnects`` failures in a row; a terminal error frame ends the run."""
        from topics_client import Job

        stream = self.client.queues.work(
            self.s.queue, node=self.s.node, max=self.s.concurrency, lease_ms=self.s.lease_ms
        )
        async with stream:
            async for event in stream:
                if not isinstance(event, Job):
                    if event.terminal:
                        raise CliError(
                            f"/work stream ended: {event.code}: {event.message}", code=EXIT_API
                        )
                    continue
                self.stats.received += 1
                self.last_job = time.monotonic()
                self.inflight[event.seq] = event
                if self.stop.is_set():
                    continue  # handed back when the stream closes
                task = asyncio.create_task(self.one(event))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

    # -- one job

    async def one(self, job: Job) -> None:
        async with self.slots:
            if self.stop.is_set():
                return  # never started: handed back when the stream closes
            try:
                code = await self.execute(job)
            except OSError as exc:
                self.sink.warn(f"cannot run --exec: {exc}")
                code = 127
            try:
                await self.settle(job, code)
            finally:
                self.inflight.pop(job.seq, None)

    async def execute(self, job: Job) -> int | None:
        """CMD's exit status; ``None`` when it was killed at the end of the grace period."""
        import orjson

        env = {
            **self.base_env,
            "TOPICS_JOB_SEQ": str(job.seq),
            "TOPICS_JOB_DELIVERIES": str(job.deliveries),
            "TOPICS_JOB_TAG": job.tag or "",
            "TOPICS_JOB_TOPIC": job.topic or self.s.queue,
            "TOPICS_JOB_LEASE_ID": job.lease_id,
            "TOPICS_JOB_MAX_DELIVERIES": str(self.s.max_deliveries),
        }
        pipe = asyncio.subprocess.PIPE
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            self.s.command,
            stdin=pipe,
            stdout=pipe,
            stderr=pipe,
            env=env,
            start_new_session=True,  # a terminal's Ctrl-C reaches us only; we drain
        )
        self.procs[job.seq] = proc
        assert proc.stdout is not None and proc.stderr is not None
        relays = {
            asyncio.create_task(self.relay(proc.stdout, "out")),
            asyncio.create_task(self.relay(proc.stderr, "err")),
        }
        try:
            await self.feed(proc, orjson.dumps(job.data) + b"\n")
            await proc.wait()
            # a background grandchild may hold the pipes open: its later output is dropped
            _, stuck = await asyncio.wait(relays, timeout=RELAY_GRACE)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*relays, return_exceptions=True)
        finally:
            for task in relays:
                task.cancel()
            self.procs.pop(job.seq, None)
        if self.killing:
            return None
        return proc.returncode

    @staticmethod
    async def feed(proc: asyncio.subprocess.Process, data: bytes) -> None:
        """The job's data on CMD's stdin, then EOF (a CMD that never reads it is fine)."""
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.write(data)
            await proc.stdin.drain()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.close()
            await proc.stdin.wait_closed()

    async def relay(self, pipe: asyncio.StreamReader, to: Literal["out", "err"]) -> None:
        """Copy a child's output to ours, whole lines at a time. A line longer than
        ``RELAY_MAX_LINE`` goes out in pieces; a last line without a newline gets one
        on a terminal (or the status line would overwrite it). Once our side is closed
        (``| head``), the child's output is read and dropped, so the child never blocks."""
        screen = self.screen
        held = b""
        open_ = True

        def write(data: bytes) -> None:
            nonlocal open_
            if open_:
                try:
                    screen.write(to, data)
                except OSError:
                    open_ = False

        try:
            while chunk := await pipe.read(65536):
                held += chunk
                cut = held.rfind(b"\n") + 1
                if cut:
                    write(held[:cut])
                    held = held[cut:]
                elif len(held) >= RELAY_MAX_LINE:
                    write(held)
                    held = b""
        finally:
            if held:
                write(held + b"\n" if screen.is_tty(to) else held)

    async def settle(self, job: Job, code: int | None) -> None:
        from topics_client import TopicsError, backoff_ms

        s = self.s
        queues = self.client.queues
        try:
            if code is None:
                await queues.nack(s.queue, [job], node=s.node, delay_ms=0)
                self.stats.killed += 1
                return
            if code == 0:
                if await self.ack(job):
                    self.stats.done += 1
                else:
                    self.lost(job, "acking")
                self.stats.finished.append(time.monotonic())
                return
            last = s.dead_letter is not None and 0 < s.max_deliveries <= job.deliveries
            delay = 0 if last else backoff_ms(job.deliveries, s.backoff_base_ms, s.backoff_max_ms)
            nacked = await queues.nack(s.queue, [job], node=s.node, delay_ms=delay)
            self.stats.failed += 1
            self.stats.exhausted += bool(last)
            self.stats.finished.append(time.monotonic())
            if not nacked.nacked:
                self.lost(job, "nacking")
            elif not self.sink.quiet:
                then = "dead-lettered at the next claim" if last else f"retry in {delay} ms"
                self.sink.event(
                    "job_failed",
                    {"seq": job.seq, "deliveries": job.deliveries, "exit": code, "delay_ms": delay},
                    f"job {job.seq} failed (exit {code}, delivery {job.deliveries}): {then}",
                    style="yellow",
                )
        except TopicsError as exc:
            self.sink.warn(f"job {job.seq}: settling failed: {exc}")
            self.stats.lost += 1

    async def ack(self, job: Job) -> bool:
        """Queue ``job`` for :meth:`acker`; True when the server acked it."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.to_ack.append((job, done))
        self.ack_wanted.set()
        return await done

    async def acker(self) -> None:
        """Acks go out one request at a time; jobs finishing meanwhile share the next one
        (a request costs about the same for 1 seq as for 100)."""
        while True:
            await self.ack_wanted.wait()
            self.ack_wanted.clear()
            batch, self.to_ack = self.to_ack[:1000], self.to_ack[1000:]
            if self.to_ack:
                self.ack_wanted.set()
            if not batch:
                continue
            jobs = [job for job, _ in batch]
            try:
                result = await self.client.queues.ack(self.s.queue, jobs, node=self.s.node)
            except Exception as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            skipped = set(result.skipped)
            for job, done in batch:
                if not done.done():
                    done.set_result(job.seq not in skipped)

    def lost(self, job: Job, doing: str) -> None:
        self.stats.lost += 1
        self.sink.warn(
            f"job {job.seq}: lease lost before {doing} (expired or stream reconnected); "
            "it will run again"
        )

    # -- leases

    async def heartbeat(self) -> None:
        from topics_client import TopicsError

        every = self.s.lease_ms / 3000
        while True:
            await asyncio.sleep(every)
            jobs = list(self.inflight.values())
            for i in range(0, len(jobs), 1000):
                chunk = jobs[i : i + 1000]
                try:
                    await self.client.queues.extend(
                        self.s.queue, chunk, node=self.s.node, lease_ms=self.s.lease_ms
                    )
                except TopicsError as exc:  # the next beat retries; expiry is the fallback
                    self.sink.warn(f"extending {len(chunk)} leases failed: {exc}")

    # -- the whole run

    def status_line(self) -> str:
        st = self.stats
        return (
            f"lease run {self.s.queue} @{self.s.node} | running {len(self.procs)}/"
            f"{self.s.concurrency} | done {st.done:,} | failed {st.failed:,} | "
            f"{st.rate():,.1f} jobs/s" + (" | stopping" if self.stop.is_set() else "")
        )

    async def drained(self) -> bool:
        """``--once``: nothing here and nothing left in the queue (ready, leased, delayed)."""
        if self.inflight:
            return False
        state = await self.client.topics.get(self.s.queue, touch=False)
        return state.count == 0 and not self.inflight

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.signalled, sig.name)
        live = self.screen.live
        reader = asyncio.create_task(self.read())
        beat = asyncio.create_task(self.heartbeat())
        acker = asyncio.create_task(self.acker())
        stopped = asyncio.create_task(self.stop.wait())
        tick = 0.5 if live else 1.0
        if self.s.once or self.s.idle_ms is not None:
            tick = min(tick, 0.2)
        try:
            while not self.stop.is_set():
                if reader.done():
                    self.stop.set()
                    break
                if live:
                    self.screen.status(self.status_line())
                idle = not self.inflight and not self.tasks
                quiet_ms = (time.monotonic() - self.last_job) * 1000
                if idle and self.s.idle_ms is not None and quiet_ms >= self.s.idle_ms:
                    self.stop_reason = self.stop_reason or "idle"
                    self.stop.set()
                if idle and self.s.once and not self.stop.is_set() and await self.drained():
                    self.stop_reason = "drained"
                    self.stop.set()
                if not self.stop.is_set():
                    await asyncio.wait({reader, stopped}, timeout=tick)
            await self.drain(live)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            stopped.cancel()
            beat.cancel()
            acker.cancel()
            if not reader.done():
                reader.cancel()  # closing the stream hands back every lease still on it
            results = await asyncio.gather(reader, beat, acker, stopped, return_exceptions=True)
            self.screen.close()
        error = results[0]
        if isinstance(error, BaseException) and not isinstance(error, asyncio.CancelledError):
            raise error

    async def drain(self, live: bool) -> None:
        """Let started jobs finish for ``grace`` s (or until a second signal), then kill."""
        deadline = time.monotonic() + self.s.grace
        killer = asyncio.create_task(self.kill_now.wait())
        try:
            while self.tasks:
                left = deadline - time.monotonic()
                if left <= 0 or self.kill_now.is_set():
                    break
                await asyncio.wait({*self.tasks, killer}, timeout=min(left, 0.5))
                if live:
                    self.screen.status(self.status_line())
            if self.tasks:
                await self.kill()
        finally:
            killer.cancel()

    async def kill(self) -> None:
        self.killing = True
        procs = list(self.procs.values())
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for proc in procs:
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(proc.pid, sig)
            if sig == signal.SIGTERM:
                _, pending = await asyncio.wait(
                    {asyncio.create_task(p.wait()) for p in procs}, timeout=2.0
                )
                if not pending:
                    break
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=10.0)

    def summary(self) -> None:
        st = self.stats
        seconds = time.monotonic() - st.started
        payload = {
            "command": "lease run",
            "queue": self.s.queue,
            "node": self.s.node,
            "received": st.received,
            "done": st.done,
            "failed": st.failed,
            "exhausted": st.exhausted,
            "dead_letter": self.s.dead_letter,
            "dead_lettered": st.exhausted,
            "lost": st.lost,
            "killed": st.killed,
            "stopped_by": self.stop_reason,
            "seconds": round(seconds, 3),
        }
        settled = st.done + st.failed
        text = (
            f"lease run {self.s.queue}: {st.done:,} done, {st.failed:,} failed"
            + (
                f" ({st.exhausted:,} out of deliveries, sent to dead-letter topic "
                f"{self.s.dead_letter})"
                if st.exhausted
                else ""
            )
            + (f", {st.lost:,} lost leases" if st.lost else "")
            + (f", {st.killed:,} killed" if st.killed else "")
            + f" in {seconds:.1f} s ({settled / seconds if seconds else 0:,.1f} jobs/s)"
            + (f"; stopped by {self.stop_reason}" if self.stop_reason else "")
        )
        style = "yellow" if st.failed or st.lost or st.killed else "dim"
        self.sink.event("summary", payload, text, style=style)
