"""Queue workers: claim (or receive) jobs, run a handler per job, settle each one.

::

    def handle(job: Job) -> None:
        render(job.data)                       # raise to retry later

    with Client() as client:
        worker = Worker(client, "render", handle, concurrency=4)
        worker.run()                           # until worker.stop() (any thread)

A worker leases jobs in batches (``POST …/claim``, ``batch`` per call) or keeps a
``/work`` stream open (``stream=True``). While a handler runs, its lease is extended
every ``lease_ms / 3``; a handler that returns acks its job, one that raises nacks it
with an exponential backoff delay (``backoff_ms × 2^(deliveries-1)``, capped).
:meth:`Worker.stop` is graceful: running handlers finish and settle, jobs not yet
started are released at once (nacked, or freed by closing the stream). Delivery is
at least once: handlers must be idempotent (SPEC §10.1).

The policy (backoff, grouping, what to do with each outcome) is shared; the sync and
async workers differ only in how they wait and run handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import socket
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ._base import path
from ._config import (
    DEFAULT_BACKOFF_BASE_MS,
    DEFAULT_BACKOFF_MAX_MS,
    DEFAULT_MAX_RECONNECTS,
    backoff_ms,
)
from ._exceptions import StreamError
from ._http import httpx
from ._models.queues import Job
from ._twins import twin_of
from .resources._streaming import aiter_stream, iter_stream
from .resources.queues import work_spec

if TYPE_CHECKING:
    from ._client import AsyncClient, Client

__all__ = ["AsyncWorker", "Worker", "WorkerStats", "backoff_ms"]

logger = logging.getLogger("topics_client.worker")

MAX_SETTLE = 1000  # seqs per ack/nack/extend (SPEC §10.3)


def default_node() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass
class WorkerStats:
    """What a worker did: ``acked`` handlers succeeded, ``failed`` raised (nacked with
    backoff), ``released`` were handed back unstarted on stop, ``lost`` lost their lease
    before settling (the ack was skipped: the job will run again elsewhere)."""

    claimed: int = 0
    acked: int = 0
    failed: int = 0
    released: int = 0
    lost: int = 0


@dataclass
class _Settlement:
    """The outcome of one batch: which jobs to ack, nack (per delay) and release."""

    ok: list[Job] = field(default_factory=list)
    failed: list[Job] = field(default_factory=list)
    unstarted: list[Job] = field(default_factory=list)


def _chunks(jobs: Sequence[Job]) -> Iterable[Sequence[Job]]:
    for i in range(0, len(jobs), MAX_SETTLE):
        yield jobs[i : i + MAX_SETTLE]


def _by_delay(jobs: Sequence[Job], base_ms: int, max_ms: int) -> dict[int, list[Job]]:
    groups: dict[int, list[Job]] = {}
    for job in jobs:
        groups.setdefault(backoff_ms(job.deliveries, base_ms, max_ms), []).append(job)
    return groups


class _Options:
    """Settings shared by both workers (validated once)."""

    def __init__(
        self,
        topic: str,
        node: str | None,
        batch: int,
        concurrency: int,
        lease_ms: int | None,
        stream: bool,
        poll_interval: float,
        backoff_base_ms: int,
        backoff_max_ms: int,
    ) -> None:
        if batch < 1 or concurrency < 1:
            raise ValueError("batch and concurrency must be at least 1")
        path("topics", topic)  # validates the name
        self.topic = topic
        self.node = node or default_node()
        self.batch = min(batch, MAX_SETTLE)
        self.concurrency = concurrency
        self.lease_ms = lease_ms
        self.stream = stream
        self.poll_interval = poll_interval
        self.backoff_base_ms = backoff_base_ms
        self.backoff_max_ms = backoff_max_ms

    def work_params(self, lease_ms: int) -> dict[str, str | int]:
        return {"node": self.node, "max": self.concurrency, "lease_ms": lease_ms}


class _InFlight:
    """Jobs leased and not yet settled, for the lease-extending heartbeat (thread-safe)."""

    def __init__(self) -> None:
        self._jobs: dict[int, Job] = {}
        self._lock = threading.Lock()

    def add(self, jobs: Iterable[Job]) -> None:
        with self._lock:
            for job in jobs:
                self._jobs[job.seq] = job

    def discard(self, jobs: Iterable[Job]) -> None:
        with self._lock:
            for job in jobs:
                if self._jobs.get(job.seq) is job:
                    del self._jobs[job.seq]

    def snapshot(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())


def _wake(response: httpx.Response | None) -> None:
    """Unblock a thread reading ``response`` by shutting its socket down."""
    if response is None:
        return
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


# ---------------------------------------------------------------------------- sync


class Worker:
    """Process a queue with a sync handler on a thread pool of ``concurrency`` threads."""

    def __init__(
        self,
        client: Client,
        topic: str,
        handler: Callable[[Job], object],
        *,
        node: str | None = None,
        batch: int = 100,
        concurrency: int = 1,
        lease_ms: int | None = None,
        stream: bool = False,
        poll_interval: float = 0.5,
        backoff_base_ms: int = DEFAULT_BACKOFF_BASE_MS,
        backoff_max_ms: int = DEFAULT_BACKOFF_MAX_MS,
        max_reconnects: int = DEFAULT_MAX_RECONNECTS,
    ) -> None:
        self.client = client
        self.handler = handler
        self.options = _Options(
            topic,
            node,
            batch,
            concurrency,
            lease_ms,
            stream,
            poll_interval,
            backoff_base_ms,
            backoff_max_ms,
        )
        self.max_reconnects = max_reconnects
        self.stats = WorkerStats()
        self._stop = threading.Event()
        self._finished = threading.Event()  # ends the heartbeat once everything settled
        self._inflight = _InFlight()
        self._stats_lock = threading.Lock()

    @property
    def node(self) -> str:
        return self.options.node

    def stop(self) -> None:
        """Stop gracefully: running handlers finish and settle, unstarted jobs are released.

        ``Worker``: safe from any thread, a signal handler or a handler; ``AsyncWorker``:
        call it from the worker's event loop (a handler may).
        """
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, *, until_idle: bool = False) -> WorkerStats:
        """Work until :meth:`stop`; with ``until_idle`` also return once the queue is empty
        (a claim comes back empty; batch mode only)."""
        lease_ms = self._lease_ms()
        beat = threading.Thread(target=self._heartbeat, args=(lease_ms,), daemon=True)
        beat.start()
        pool = ThreadPoolExecutor(self.options.concurrency, thread_name_prefix="topics-worker")
        try:
            if self.options.stream:
                self._run_stream(pool, lease_ms)
            else:
                self._run_batches(pool, lease_ms, until_idle)
        finally:
            self._stop.set()
            pool.shutdown(wait=True)
            self._finished.set()
            beat.join()
        return self.stats

    def _lease_ms(self) -> int:
        if self.options.lease_ms is not None:
            return self.options.lease_ms
        return self.client.topics.get(self.options.topic, touch=False).config.lease_ms

    # -- batch mode

    def _run_batches(self, pool: ThreadPoolExecutor, lease_ms: int, until_idle: bool) -> None:
        opts = self.options
        while not self._stop.is_set():
            claimed = self.client.queues.claim(
                opts.topic, node=opts.node, max=opts.batch, lease_ms=lease_ms
            )
            jobs = list(claimed.jobs)
            if not jobs:
                if until_idle:
                    return
                self._stop.wait(opts.poll_interval)
                continue
            self._count("claimed", len(jobs))
            self._inflight.add(jobs)
            try:
                self._settle(self._process(pool, jobs))
            finally:
                self._inflight.discard(jobs)

    def _process(self, pool: ThreadPoolExecutor, jobs: list[Job]) -> _Settlement:
        out = _Settlement()
        if self.options.concurrency == 1:
            for job in jobs:
                if self._stop.is_set():
                    out.unstarted.append(job)
                elif self._call(job):
                    out.ok.append(job)
                else:
                    out.failed.append(job)
            return out
        futures = [(job, pool.submit(self._call_unless_stopped, job)) for job in jobs]
        for job, future in futures:
            result = future.result()
            if result is None:
                out.unstarted.append(job)
            elif result:
                out.ok.append(job)
            else:
                out.failed.append(job)
        return out

    def _call_unless_stopped(self, job: Job) -> bool | None:
        return None if self._stop.is_set() else self._call(job)

    def _call(self, job: Job) -> bool:
        try:
            self.handler(job)
        except Exception:
            logger.exception("handler failed on %s seq %d", job.topic, job.seq)
            return False
        return True

    def _settle(self, out: _Settlement) -> None:
        opts = self.options
        queues = self.client.queues
        for chunk in _chunks(out.ok):
            result = queues.ack(opts.topic, chunk, node=opts.node)
            self._count("acked", result.acked)
            self._count("lost", len(chunk) - result.acked)
        delays = _by_delay(out.failed, opts.backoff_base_ms, opts.backoff_max_ms)
        for delay, jobs in delays.items():
            for chunk in _chunks(jobs):
                queues.nack(opts.topic, chunk, node=opts.node, delay_ms=delay)
                self._count("failed", len(chunk))
        for chunk in _chunks(out.unstarted):
            queues.nack(opts.topic, chunk, node=opts.node, delay_ms=0)
            self._count("released", len(chunk))

    def _count(self, name: str, n: int) -> None:
        with self._stats_lock:
            setattr(self.stats, name, getattr(self.stats, name) + n)

    def _heartbeat(self, lease_ms: int) -> None:
        opts = self.options
        while not self._finished.wait(lease_ms / 3000):
            jobs = self._inflight.snapshot()
            for chunk in _chunks(jobs):
                try:
                    self.client.queues.extend(opts.topic, chunk, node=opts.node, lease_ms=lease_ms)
                except Exception:  # the next beat retries; expiry is the fallback
                    logger.warning("extending leases on %s failed", opts.topic, exc_info=True)

    # -- stream mode

    def _run_stream(self, pool: ThreadPoolExecutor, lease_ms: int) -> None:
        """Jobs pushed on ``/work`` run on the pool; the reader stays on this thread.

        :meth:`stop` wakes the reader by shutting its socket down once running handlers
        have settled; the server then releases every lease still held by the stream.
        """
        opts = self.options
        # Set once the stop is requested *and* running handlers have settled: closing the
        # stream earlier would release leases whose acks are still on their way.
        closing = threading.Event()
        spec = work_spec(
            opts.topic, opts.node, opts.concurrency, lease_ms, self.max_reconnects, closing.is_set
        )
        running: set[Future[None]] = set()
        lock = threading.Lock()  # a job is either submitted before the stop or released

        def done(future: Future[None]) -> None:
            with lock:
                running.discard(future)

        def closer() -> None:
            self._stop.wait()
            while True:
                with lock:
                    if not running:
                        break
                    pending = list(running)
                for future in pending:
                    future.exception()
            closing.set()
            _wake(spec.response)

        def pause(delay: float) -> None:
            # Between connections: once stopping there is nothing left to hold open.
            closing.wait(None if self._stop.is_set() else delay)

        watcher = threading.Thread(target=closer, daemon=True)
        watcher.start()
        try:
            for event in iter_stream(self.client, spec, sleep=pause):
                if not isinstance(event, Job):
                    if event.terminal:
                        raise StreamError(f"/work stream ended: {event.message}")
                    continue
                with lock:
                    if self._stop.is_set():
                        continue  # released when the stream closes
                    self._count("claimed", 1)
                    self._inflight.add([event])
                    future = pool.submit(self._one, event)
                    running.add(future)
                future.add_done_callback(done)
        finally:
            self._stop.set()
            watcher.join()

    def _one(self, job: Job) -> None:
        try:
            ok = self._call(job)
            self._settle(_Settlement(ok=[job]) if ok else _Settlement(failed=[job]))
        finally:
            self._inflight.discard([job])

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------- async


@twin_of(Worker)
class AsyncWorker:
    """Process a queue with an async handler, ``concurrency`` jobs at a time."""

    def __init__(
        self,
        client: AsyncClient,
        topic: str,
        handler: Callable[[Job], Awaitable[object] | object],
        *,
        node: str | None = None,
        batch: int = 100,
        concurrency: int = 1,
        lease_ms: int | None = None,
        stream: bool = False,
        poll_interval: float = 0.5,
        backoff_base_ms: int = DEFAULT_BACKOFF_BASE_MS,
        backoff_max_ms: int = DEFAULT_BACKOFF_MAX_MS,
        max_reconnects: int = DEFAULT_MAX_RECONNECTS,
    ) -> None:
        self.client = client
        self.handler = handler
        self.options = _Options(
            topic,
            node,
            batch,
            concurrency,
            lease_ms,
            stream,
            poll_interval,
            backoff_base_ms,
            backoff_max_ms,
        )
        self.max_reconnects = max_reconnects
        self.stats = WorkerStats()
        self._stop = asyncio.Event()
        self._finished = asyncio.Event()
        self._inflight = _InFlight()

    @property
    def node(self) -> str:
        return self.options.node

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def run(self, *, until_idle: bool = False) -> WorkerStats:
        lease_ms = await self._lease_ms()
        beat = asyncio.create_task(self._heartbeat(lease_ms))
        try:
            if self.options.stream:
                await self._run_stream(lease_ms)
            else:
                await self._run_batches(lease_ms, until_idle)
        finally:
            self._stop.set()
            self._finished.set()
            await beat
        return self.stats

    async def _lease_ms(self) -> int:
        if self.options.lease_ms is not None:
            return self.options.lease_ms
        state = await self.client.topics.get(self.options.topic, touch=False)
        return state.config.lease_ms

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _call(self, job: Job) -> bool:
        try:
            result = self.handler(job)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("handler failed on %s seq %d", job.topic, job.seq)
            return False
        return True

    async def _run_batches(self, lease_ms: int, until_idle: bool) -> None:
        opts = self.options
        limit = asyncio.Semaphore(opts.concurrency)
        while not self._stop.is_set():
            claimed = await self.client.queues.claim(
                opts.topic, node=opts.node, max=opts.batch, lease_ms=lease_ms
            )
            jobs = list(claimed.jobs)
            if not jobs:
                if until_idle:
                    return
                await self._sleep(opts.poll_interval)
                continue
            self.stats.claimed += len(jobs)
            self._inflight.add(jobs)
            try:

                async def one(job: Job) -> bool | None:
                    async with limit:
                        if self._stop.is_set():
                            return None
                        return await self._call(job)

                results = await asyncio.gather(*(one(job) for job in jobs))
                out = _Settlement()
                for job, result in zip(jobs, results, strict=True):
                    if result is None:
                        out.unstarted.append(job)
                    elif result:
                        out.ok.append(job)
                    else:
                        out.failed.append(job)
                await self._settle(out)
            finally:
                self._inflight.discard(jobs)

    async def _settle(self, out: _Settlement) -> None:
        opts = self.options
        queues = self.client.queues
        for chunk in _chunks(out.ok):
            result = await queues.ack(opts.topic, chunk, node=opts.node)
            self.stats.acked += result.acked
            self.stats.lost += len(chunk) - result.acked
        delays = _by_delay(out.failed, opts.backoff_base_ms, opts.backoff_max_ms)
        for delay, jobs in delays.items():
            for chunk in _chunks(jobs):
                await queues.nack(opts.topic, chunk, node=opts.node, delay_ms=delay)
                self.stats.failed += len(chunk)
        for chunk in _chunks(out.unstarted):
            await queues.nack(opts.topic, chunk, node=opts.node, delay_ms=0)
            self.stats.released += len(chunk)

    async def _heartbeat(self, lease_ms: int) -> None:
        opts = self.options
        while not self._finished.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._finished.wait(), lease_ms / 3000)
            if self._finished.is_set():
                return
            for chunk in _chunks(self._inflight.snapshot()):
                try:
                    await self.client.queues.extend(
                        opts.topic, chunk, node=opts.node, lease_ms=lease_ms
                    )
                except Exception:
                    logger.warning("extending leases on %s failed", opts.topic, exc_info=True)

    async def _run_stream(self, lease_ms: int) -> None:
        """Read ``/work`` in a task; on stop, let running handlers settle, then close it."""
        running: set[asyncio.Task[None]] = set()

        async def one(job: Job) -> None:
            try:
                ok = await self._call(job)
                await self._settle(_Settlement(ok=[job]) if ok else _Settlement(failed=[job]))
            finally:
                self._inflight.discard([job])

        async def pause(delay: float) -> None:
            # Between connections: once stopping there is nothing left to hold open, so
            # wait to be cancelled rather than reconnect.
            if self._stop.is_set():
                await asyncio.Event().wait()
            await self._sleep(delay)

        async def read() -> None:
            opts = self.options
            # No stop predicate: the stream stays open until running handlers have
            # settled, then this task is cancelled (which closes it).
            spec = work_spec(opts.topic, opts.node, opts.concurrency, lease_ms, self.max_reconnects)
            async for event in aiter_stream(self.client, spec, sleep=pause):
                if not isinstance(event, Job):
                    if event.terminal:
                        raise StreamError(f"/work stream ended: {event.message}")
                    continue
                if self._stop.is_set():
                    continue  # released when the stream closes
                self.stats.claimed += 1
                self._inflight.add([event])
                task = asyncio.create_task(one(event))
                running.add(task)
                task.add_done_callback(running.discard)

        reader = asyncio.create_task(read())
        stopper = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
            self._stop.set()
            while running:
                await asyncio.gather(*running, return_exceptions=True)
        finally:
            stopper.cancel()
            if not reader.done():
                reader.cancel()
            results = await asyncio.gather(reader, stopper, return_exceptions=True)
        error = results[0]
        if isinstance(error, BaseException) and not isinstance(error, asyncio.CancelledError):
            raise error

    async def __aenter__(self) -> AsyncWorker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()
