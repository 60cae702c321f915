"""Runs one bench step in this process or spread over ``--procs`` generator processes.

With ``procs > 1`` each generator is a ``multiprocessing`` *spawn* child running
:func:`child_main`: it measures its share of the step and sends back its histogram (bucket
counts, not percentiles) over a queue, with progress counts and a "ready" message on the
way. The parent merges the histograms bucket-wise, so the percentiles are those of every
sample together. Children ignore SIGINT: on Ctrl-C the parent stops them, then cleans up.
"""

from __future__ import annotations

import asyncio
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from topics_cli.bench.histogram import Histogram
from topics_cli.bench.workloads import Options, Part, Step, drive, preload, setup, shard

__all__ = ["StepResult", "child_main", "run_step"]

_PROGRESS_EVERY_S = 0.1


@dataclass
class StepResult:
    step: Step
    latency: Histogram
    ops: int
    records: int
    expected: int
    seconds: float
    cpu_seconds: float
    procs: int

    @property
    def throughput(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_cores(self) -> float:
        """The generator's CPU time over the step's wall time (1.0 = one core busy)."""
        return self.cpu_seconds / self.seconds if self.seconds > 0 else 0.0


class _LocalControl:
    def __init__(self, progress: Callable[[int], None]) -> None:
        self._progress = progress
        self.readies = 0

    def progress(self, n: int) -> None:
        self._progress(n)

    def ready(self) -> None:
        self.readies += 1

    async def go(self) -> None:
        return None


class _QueueControl:
    """A child's control: progress counts batched to a few messages a second."""

    def __init__(self, out: Any, index: int, start: Any) -> None:
        self.out, self.index, self.start = out, index, start
        self.pending = 0
        self.sent_at = time.monotonic()

    def progress(self, n: int) -> None:
        self.pending += n
        now = time.monotonic()
        if now - self.sent_at >= _PROGRESS_EVERY_S:
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        if self.pending:
            self.out.put(("progress", self.index, self.pending))
            self.pending = 0
        self.sent_at = time.monotonic() if now is None else now

    def ready(self) -> None:
        self.out.put(("ready", self.index, None))

    async def go(self) -> None:
        self.ready()
        await asyncio.to_thread(self.start.wait)


def child_main(
    opts: Options,
    step: Step,
    state: dict[str, Any],
    index: int,
    procs: int,
    out: Any,
    start: Any,
) -> None:
    """One generator process (the target of a spawn child); ``start`` is the event the
    parent sets once every generator is ready."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ctl = _QueueControl(out, index, start)

    async def run() -> Part:
        await preload()
        return await shard(opts, step, state, index, procs, ctl)

    try:
        part = asyncio.run(run())
    except BaseException as exc:  # reported to the parent, which raises it as one line
        out.put(("error", index, f"{type(exc).__name__}: {exc}"))
        return
    ctl.flush()
    out.put(("part", index, part.to_wire()))


def run_step(opts: Options, step: Step, procs: int, progress: Callable[[int], None]) -> StepResult:
    state = asyncio.run(setup(opts, step))
    procs = procs if step.multiproc else 1
    if procs == 1:
        return _in_process(opts, step, state, progress)
    return _spread(opts, step, state, procs, progress)


def _in_process(
    opts: Options, step: Step, state: dict[str, Any], progress: Callable[[int], None]
) -> StepResult:
    ctl = _LocalControl(progress)

    async def both() -> Part:
        work = asyncio.create_task(shard(opts, step, state, 0, 1, ctl))
        driver = asyncio.create_task(drive(opts, step, state, lambda: ctl.readies >= 1))
        done, _ = await asyncio.wait([work, driver], return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                work.cancel()
                driver.cancel()
                await asyncio.gather(work, driver, return_exceptions=True)
                task.result()
        await driver
        return await work

    asyncio.run(preload())
    cpu = time.process_time()
    part = asyncio.run(both())
    cpu = time.process_time() - cpu
    return _result(step, [part], cpu, 1)


def _spread(
    opts: Options,
    step: Step,
    state: dict[str, Any],
    procs: int,
    progress: Callable[[int], None],
) -> StepResult:
    import multiprocessing

    from topics_cli.errors import EXIT_API, CliError

    ctx = multiprocessing.get_context("spawn")
    inbox: Any = ctx.Queue()
    start = ctx.Event()
    children = [
        ctx.Process(
            target=child_main, args=(opts, step, state, i, procs, inbox, start), daemon=True
        )
        for i in range(procs)
    ]
    parts: dict[int, Part] = {}
    errors: list[str] = []
    readies: set[int] = set()
    stop = threading.Event()

    def collect() -> None:
        """Until every part is in or one generator failed (then the rest are stopped)."""
        while len(parts) < procs and not errors and not stop.is_set():
            try:
                kind, index, body = inbox.get(timeout=0.1)
            except queue.Empty:
                dead = [i for i, c in enumerate(children) if c.exitcode not in (None, 0)]
                lost = [i for i in dead if i not in parts]
                if lost:
                    errors.append(f"generator process {lost[0]} died")
                continue
            if kind == "progress":
                progress(body)
            elif kind == "ready":
                readies.add(index)
                if len(readies) == procs:
                    start.set()
            elif kind == "part":
                parts[index] = Part.from_wire(body)
            else:
                errors.append(f"generator process {index}: {body}")

    cpu = time.process_time()
    collector = threading.Thread(target=collect, daemon=True)
    try:
        for child in children:
            child.start()
        collector.start()
        asyncio.run(drive(opts, step, state, lambda: len(readies) >= procs or bool(errors)))
        while collector.is_alive():
            collector.join(0.1)
    finally:
        stop.set()
        for child in children:
            if child.is_alive():
                child.terminate()
        for child in children:
            child.join(5)
        inbox.close()
    cpu = time.process_time() - cpu
    if errors:
        raise CliError(f"{step.name}: {errors[0]}", code=EXIT_API)
    ordered = [parts[i] for i in range(procs)]
    return _result(step, ordered, cpu + sum(p.cpu_seconds for p in ordered), procs)


def _result(step: Step, parts: list[Part], cpu_seconds: float, procs: int) -> StepResult:
    return StepResult(
        step=step,
        latency=Histogram.merged(p.latency for p in parts),
        ops=sum(p.ops for p in parts),
        records=sum(p.records for p in parts),
        expected=sum(p.expected for p in parts),
        seconds=max((p.seconds for p in parts), default=0.0),
        cpu_seconds=cpu_seconds,
        procs=procs,
    )
