"""The bench workloads, on :class:`topics_client.AsyncClient` and public ``/v0`` endpoints only.

Each workload is split into steps (``replay`` has one per page limit, ``fanout`` one per
watcher count). A step has three parts:

* ``setup`` (once, in the parent process): create the topics, fill what is read back;
* ``shard`` (in each generator process, or in-process when ``--procs 1``): the measured
  load, one share of it per process; returns a :class:`Part` (a latency histogram in
  nanoseconds, counts, the process's CPU time);
* ``drive`` (only ``fanout`` and ``router``, in the parent, alongside the shards): the one
  writer whose records the shards' watchers time. Each record carries its send time from
  ``time.monotonic_ns()`` (``CLOCK_MONOTONIC``: one clock for every process on the machine).

Every name a step creates starts with the run's prefix, so cleanup is "delete every router
and topic under the prefix", whichever process created it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from topics_cli.bench.histogram import Histogram

if TYPE_CHECKING:
    from topics_client import AsyncClient

__all__ = [
    "WORKLOADS",
    "Control",
    "Options",
    "Part",
    "Step",
    "cleanup",
    "plan",
]

WORKLOADS = ("write", "replay", "fanout", "router", "queue")
DEFAULT_RECORDS = {"write": 20_000, "replay": 20_000, "fanout": 500, "router": 500, "queue": 5_000}
DEFAULT_LIMITS = (1, 256, 1000)
DEFAULT_WATCHERS = (1, 10, 100)
FILL_BATCH = 1000
DELIVERY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Options:
    """What the command line asked for (picklable: it goes to every generator process)."""

    url: str
    api_key: str | None
    prefix: str
    records: int | None = None
    size: int = 100
    clients: int = 16
    batch: int = 1
    write_batches: tuple[int, ...] = (1,)  # a write row per batch size
    durability: str | None = None
    duration: float | None = None
    watchers: tuple[int, ...] = DEFAULT_WATCHERS
    limits: tuple[int, ...] = DEFAULT_LIMITS

    def count(self, workload: str) -> int:
        return self.records if self.records is not None else DEFAULT_RECORDS[workload]


@dataclass(frozen=True)
class Step:
    """One measured row of the report."""

    workload: str
    name: str
    params: dict[str, Any]
    total: int  # operations the progress bar counts to
    multiproc: bool = True  # may be spread over --procs processes


@dataclass
class Part:
    """What one generator process measured in one step."""

    latency: Histogram = field(default_factory=Histogram)
    ops: int = 0
    records: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    expected: int = 0

    def to_wire(self) -> dict[str, Any]:
        return {
            "latency": self.latency.to_wire(),
            "ops": self.ops,
            "records": self.records,
            "seconds": self.seconds,
            "cpu_seconds": self.cpu_seconds,
            "expected": self.expected,
        }

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> Part:
        return cls(
            Histogram.from_wire(wire["latency"]),
            int(wire["ops"]),
            int(wire["records"]),
            float(wire["seconds"]),
            float(wire["cpu_seconds"]),
            int(wire["expected"]),
        )


class Control(Protocol):
    """How a shard talks to the parent: progress counts and "my watchers are live"."""

    def progress(self, n: int) -> None: ...

    def ready(self) -> None: ...

    async def go(self) -> None:
        """Return when every generator process is ready to start: their measured phases
        then overlap, and none is timed while another is still starting up."""


def plan(workloads: list[str], opts: Options) -> list[Step]:
    steps: list[Step] = []
    for workload in workloads:
        n = opts.count(workload)
        if workload == "write":
            for batch in opts.write_batches:
                name = "write" if batch == 1 else f"write batch={batch}"
                params = {"clients": opts.clients, "batch": batch, "size": opts.size}
                steps.append(Step("write", name, params, n))
        elif workload == "replay":
            for limit in opts.limits:
                params = {"limit": limit, "clients": opts.clients, "records": n}
                steps.append(Step("replay", f"replay limit={limit}", params, n))
        elif workload == "fanout":
            for watchers in opts.watchers:
                params = {"watchers": watchers, "writes": n, "size": opts.size}
                steps.append(Step("fanout", f"fanout watchers={watchers}", params, n * watchers))
        elif workload == "router":
            # both watchers count their arrivals
            steps.append(Step("router", "router", {"writes": n}, 2 * n, multiproc=False))
        elif workload == "queue":
            params = {"workers": opts.clients, "batch": opts.batch, "jobs": n}
            steps.append(Step("queue", "queue", params, n))
    return steps


# ------------------------------------------------------------------ helpers


def client(opts: Options, connections: int = 1) -> AsyncClient:
    """An async client with ``connections`` pooled keep-alive connections. It keeps the
    client's retries (a keep-alive connection the server closed as a request went out is
    retried, as any application's would be); a retried request is timed whole."""
    import httpx

    from topics_client import AsyncClient

    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return AsyncClient(opts.url, api_key=opts.api_key, timeout=60.0, limits=limits)


def topic_name(opts: Options, step: Step, suffix: str = "") -> str:
    base = step.name.replace(" ", "-").replace("=", "")
    return f"{opts.prefix}{base}{suffix}"


def share(total: int, index: int, parts: int) -> int:
    """``index``'s share when ``total`` is split ``parts`` ways (shares differ by ≤ 1)."""
    return total // parts + (1 if index < total % parts else 0)


def payload(size: int) -> str:
    """A string whose JSON encoding is ``size`` bytes (at least 2)."""
    return "x" * max(0, size - 2)


def timed_data(i: int, size: int) -> dict[str, Any]:
    """A record stamped with its send time; padded to about ``size`` bytes of JSON."""
    now = time.monotonic_ns()
    base = len(f'{{"i":{i},"t":{now},"p":""}}')
    return {"i": i, "t": now, "p": "x" * max(0, size - base)}


def config(opts: Options, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = dict(extra)
    if opts.durability is not None:
        body["durability"] = opts.durability
    return body


class _Deadline:
    def __init__(self, seconds: float | None) -> None:
        self.at = None if seconds is None else time.monotonic() + seconds

    def passed(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at


async def _fill(api: AsyncClient, topic: str, count: int, size: int) -> None:
    from topics_client import NewRecord

    record = NewRecord(payload(size))
    sem = asyncio.Semaphore(4)

    async def one(n: int) -> None:
        async with sem:
            await api.topics.write(topic, [record] * n, return_seqs=False)

    await asyncio.gather(
        *(one(min(FILL_BATCH, count - start)) for start in range(0, count, FILL_BATCH))
    )


async def _pool(workers: int, body: Callable[[int], Awaitable[None]], ctl: Control) -> float:
    await ctl.go()
    started = time.perf_counter()
    await asyncio.gather(*(body(w) for w in range(workers)))
    return time.perf_counter() - started


async def preload() -> None:
    """Import what the shards use (the client, its resources, httpx) before any CPU time is
    counted: a generator's figure is its load, not its start-up."""
    from topics_client import AsyncClient, RecordsEvent

    api = AsyncClient("http://127.0.0.1:9")
    for resource in (api.topics, api.queues, api.watch, api.routers):
        assert resource is not None
    assert api.with_raw_response.topics is not None and RecordsEvent is not None
    await api.close()


# ------------------------------------------------------------------ setup (parent)


async def setup(opts: Options, step: Step) -> dict[str, Any]:
    api = client(opts, 4)
    try:
        topic = topic_name(opts, step)
        if step.workload in ("write", "fanout"):
            await api.topics.put(topic, config(opts))
            return {"topic": topic}
        if step.workload == "replay":
            await api.topics.put(topic, config(opts))
            await _fill(api, topic, step.params["records"], opts.size)
            state = await api.topics.get(topic)
            return {"topic": topic, "head": state.head_seq, "first": state.earliest_seq}
        if step.workload == "queue":
            await api.topics.put(topic, config(opts, type="queue", lease_ms=60_000))
            await _fill(api, topic, step.params["jobs"], opts.size)
            return {"topic": topic}
        if step.workload == "router":
            source, dest = topic_name(opts, step, "-src"), topic_name(opts, step, "-dst")
            await api.topics.put(source, config(opts))
            await api.topics.put(dest, config(opts))
            router = topic_name(opts, step, "-r")
            await api.routers.put(router, source=source, dest=dest)
            return {"source": source, "dest": dest, "router": router}
        raise ValueError(f"unknown workload {step.workload!r}")
    finally:
        await api.close()


# ------------------------------------------------------------------ shards (generators)


async def shard(
    opts: Options, step: Step, state: dict[str, Any], index: int, shards: int, ctl: Control
) -> Part:
    """This process's share of ``step``; CPU time is counted from here to the return."""
    cpu = time.process_time()
    runner = _SHARDS[step.workload]
    part = await runner(opts, step, state, index, shards, ctl)
    part.cpu_seconds = time.process_time() - cpu
    return part


async def _write(
    opts: Options, step: Step, state: dict[str, Any], index: int, shards: int, ctl: Control
) -> Part:
    from topics_client import NewRecord

    topic, batch = state["topic"], step.params["batch"]
    requests = share(math.ceil(step.total / batch), index, shards)
    workers = max(1, share(opts.clients, index, shards))
    records = [NewRecord(payload(opts.size))] * batch
    part = Part(expected=requests * batch)
    remaining = [requests]
    deadline = _Deadline(opts.duration)
    api = client(opts, workers)
    hist = part.latency

    async def writer(_: int) -> None:
        while remaining[0] > 0 and not deadline.passed():
            remaining[0] -= 1
            started = time.perf_counter_ns()
            await api.topics.write(topic, records, return_seqs=False)
            hist.record(time.perf_counter_ns() - started)
            part.ops += 1
            part.records += batch
            ctl.progress(batch)

    try:
        part.seconds = await _pool(workers, writer, ctl)
    finally:
        await api.close()
    if opts.duration is not None:
        part.expected = part.records
    return part


async def _replay(
    opts: Options, step: Step, state: dict[str, Any], index: int, shards: int, ctl: Control
) -> Part:
    topic, limit = state["topic"], step.params["limit"]
    first, head = state["first"] - 1, state["head"]
    workers = max(1, share(opts.clients, index, shards))
    # the log (first, head] split into shards × workers contiguous ranges
    ranges = shards * workers
    span = head - first
    bounds = [first + span * k // ranges for k in range(ranges + 1)]
    part = Part(expected=share_range(bounds, index, workers))
    deadline = _Deadline(opts.duration)
    api = client(opts, workers)
    # pages come back raw and are parsed with orjson, not decoded into typed records: the
    # generator's cost per record stays far below the server's
    pages = api.with_raw_response.topics
    hist = part.latency

    async def reader(w: int) -> None:
        k = index * workers + w
        cursor, end = bounds[k], bounds[k + 1]
        while cursor < end and not deadline.passed():
            started = time.perf_counter_ns()
            raw = await pages.diff(topic, from_seq=cursor, limit=min(limit, end - cursor))
            hist.record(time.perf_counter_ns() - started)
            page = orjson.loads(raw.content)
            got = len(page["records"])
            part.ops += 1
            part.records += got
            ctl.progress(got)
            if not got:
                break
            cursor = int(page["next_from_seq"])

    try:
        part.seconds = await _pool(workers, reader, ctl)
    finally:
        await api.close()
    if opts.duration is not None:
        part.expected = part.records
    return part


def share_range(bounds: list[int], index: int, workers: int) -> int:
    return bounds[(index + 1) * workers] - bounds[index * workers]


async def _queue(
    opts: Options, step: Step, state: dict[str, Any], index: int, shards: int, ctl: Control
) -> Part:
    topic = state["topic"]
    workers = max(1, share(opts.clients, index, shards))
    part = Part()
    deadline = _Deadline(opts.duration)
    api = client(opts, workers)
    hist = part.latency

    async def worker(w: int) -> None:
        node = f"bench-{index}-{w}"
        while not deadline.passed():
            started = time.perf_counter_ns()
            claim = await api.queues.claim(topic, node=node, max=opts.batch)
            if not claim.jobs:
                return
            await api.queues.ack(topic, list(claim.jobs), node=node)
            hist.record(time.perf_counter_ns() - started)
            part.ops += 1
            part.records += claim.count
            ctl.progress(claim.count)

    try:
        part.seconds = await _pool(workers, worker, ctl)
    finally:
        await api.close()
    # jobs are claimed from one shared queue: the shares are only known afterwards
    part.expected = part.records
    return part


class _Watcher:
    """One SSE watch (its own connection) timing the measured records it receives."""

    def __init__(self, api: AsyncClient, topic: str, hist: Histogram, want: int) -> None:
        self.api, self.topic, self.hist, self.want = api, topic, hist, want
        self.live = asyncio.Event()
        self.got = 0
        self.arrivals: dict[int, int] = {}
        self.keep_arrivals = False

    async def run(self, ctl: Control, done: asyncio.Event) -> None:
        from topics_client import RecordsEvent

        async with self.api.watch.stream([self.topic], tail=True) as stream:
            async for event in stream:
                if not isinstance(event, RecordsEvent):
                    continue
                now = time.monotonic_ns()
                self.live.set()
                measured = 0
                for record in event.records:
                    data = record.data
                    if isinstance(data, dict) and data.get("i", -1) >= 0:
                        self.hist.record(max(0, now - int(data["t"])))
                        if self.keep_arrivals:
                            self.arrivals[int(data["i"])] = now
                        measured += 1
                if measured:
                    self.got += measured
                    ctl.progress(measured)
                if self.got >= self.want:
                    done.set()
                    return


async def _watch_shard(
    opts: Options, topics: list[str], watchers: int, want: int, ctl: Control, keep: bool = False
) -> tuple[Part, list[_Watcher]]:
    part = Part(expected=watchers * want)
    # one client (own pool) per watcher: every stream holds its own connection
    apis = [client(opts, 1) for _ in range(watchers)]
    pool = [_Watcher(api, topics[k % len(topics)], Histogram(), want) for k, api in enumerate(apis)]
    for w in pool:
        w.keep_arrivals = keep
    dones = [asyncio.Event() for _ in pool]
    tasks = [asyncio.create_task(w.run(ctl, d)) for w, d in zip(pool, dones, strict=True)]
    started = time.perf_counter()
    try:
        live = _all_set([w.live for w in pool])
        await _until(live, tasks, DELIVERY_TIMEOUT_S)
        ctl.ready()
        started = time.perf_counter()
        everything = _all_set(dones)
        await _until(everything, tasks, DELIVERY_TIMEOUT_S, lambda: sum(w.got for w in pool))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for api in apis:
            await api.close()
    part.seconds = time.perf_counter() - started
    part.latency = Histogram.merged(w.hist for w in pool)
    part.ops = part.records = sum(w.got for w in pool)
    return part, pool


async def _all_set(events: list[asyncio.Event]) -> None:
    for event in events:
        await event.wait()


async def _until(
    waiter: Awaitable[Any],
    tasks: list[asyncio.Task[None]],
    timeout: float,
    moving: Callable[[], int] | None = None,
) -> None:
    """Wait for ``waiter``; a watcher task that failed raises its error. Without ``moving``
    a wait longer than ``timeout`` raises; with it, the wait ends (the counts then show what
    never arrived) once ``moving()`` has not changed for ``timeout``."""
    guard = asyncio.ensure_future(waiter)  # a plain coroutine: cancelling it leaves no warning
    try:
        deadline = time.monotonic() + timeout
        seen = moving() if moving is not None else 0
        while not guard.done():
            left = deadline - time.monotonic()
            if left <= 0:
                if moving is None:
                    raise TimeoutError(f"the watchers did not go live within {timeout:.0f} s")
                if moving() == seen:
                    return
                seen, deadline = moving(), time.monotonic() + timeout
                continue
            await asyncio.wait([guard, *tasks], timeout=left, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
    finally:
        guard.cancel()


async def _fanout(
    opts: Options, step: Step, state: dict[str, Any], index: int, shards: int, ctl: Control
) -> Part:
    watchers = share(step.params["watchers"], index, shards)
    if watchers == 0:
        ctl.ready()
        return Part()
    part, _ = await _watch_shard(opts, [state["topic"]], watchers, step.params["writes"], ctl)
    return part


async def _router(
    opts: Options, step: Step, state: dict[str, Any], index: int, shards: int, ctl: Control
) -> Part:
    """Times the copy: its arrival at the dest watcher minus the original's at the source
    watcher (both in this process)."""
    topics = [state["source"], state["dest"]]
    part, (source, dest) = await _watch_shard(
        opts, topics, 2, step.params["writes"], ctl, keep=True
    )
    added = Histogram()
    for i, at in dest.arrivals.items():
        if i in source.arrivals:
            added.record(max(0, at - source.arrivals[i]))
    part.latency = added
    part.ops = part.records = added.total
    part.expected = step.params["writes"]
    return part


_Shard = Callable[[Options, Step, dict[str, Any], int, int, Control], Awaitable[Part]]
_SHARDS: dict[str, _Shard] = {
    "write": _write,
    "replay": _replay,
    "queue": _queue,
    "fanout": _fanout,
    "router": _router,
}


# ------------------------------------------------------------------ drivers (parent)


async def drive(
    opts: Options, step: Step, state: dict[str, Any], all_ready: Callable[[], bool]
) -> None:
    """The writer of ``fanout``/``router``: warm-up records until every shard's watchers
    are live, then the measured records, one at a time, each sent after the last's ack."""
    from topics_client import NewRecord

    if step.workload not in ("fanout", "router"):
        return
    topic = state.get("topic") or state["source"]
    api = client(opts, 1)
    try:
        deadline = time.monotonic() + DELIVERY_TIMEOUT_S
        while not all_ready():
            if time.monotonic() > deadline:
                raise TimeoutError("the watchers did not go live within 30 s")
            await api.topics.write(topic, [NewRecord({"i": -1, "t": 0})], return_seqs=False)
            await asyncio.sleep(0.05)
        for i in range(step.params["writes"]):
            await api.topics.write(topic, [NewRecord(timed_data(i, opts.size))], return_seqs=False)
    finally:
        await api.close()


# ------------------------------------------------------------------ cleanup


def cleanup(url: str, api_key: str | None, prefix: str) -> list[str]:
    """Delete every router and topic whose name starts with ``prefix``; the problems met."""
    from topics_client import Client, TopicsError

    problems: list[str] = []
    with Client(url, api_key=api_key, timeout=30.0) as api:
        try:
            for router in list(api.routers.list(prefix=prefix)):
                try:
                    api.routers.delete(router.router)
                except TopicsError as exc:
                    problems.append(f"router {router.router}: {exc}")
            for topic in list(api.topics.list(prefix=prefix)):
                try:
                    api.topics.delete(topic.topic)
                except TopicsError as exc:
                    problems.append(f"topic {topic.topic}: {exc}")
        except TopicsError as exc:
            problems.append(f"listing {prefix}*: {exc}")
    return problems
