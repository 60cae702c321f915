"""Queue workers against a real server, and the job-queue recipe for both models."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from topics_client import (
    AsyncClient,
    AsyncWorker,
    Client,
    Job,
    NewRecord,
    TopicNotFoundError,
    Worker,
    load_checkpoint,
    save_checkpoint,
)
from topics_client._worker import backoff_ms

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")


def poll(fn: Callable[[], T], until: Callable[[T], bool], timeout: float = 10.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if until(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not met within {timeout}s; last value {value!r}")
        time.sleep(0.02)


def records_of(client: Client, topic: str) -> tuple[Any, ...]:
    """The topic's records, or none while it does not exist yet."""
    try:
        return client.topics.diff(topic, include_tags=True).records
    except TopicNotFoundError:
        return ()


def make_queue(client: Client, name: str, n: int, **config: Any) -> str:
    client.topics.put(name, type="queue", **config)
    if n:
        client.topics.write(name, [NewRecord(i) for i in range(n)])
    return name


def run_in_thread(worker: Worker, **kwargs: Any) -> threading.Thread:
    errors: list[BaseException] = []

    def target() -> None:
        try:
            worker.run(**kwargs)
        except BaseException as exc:  # surfaced by join_worker
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.errors = errors  # type: ignore[attr-defined]
    thread.start()
    return thread


def join_worker(thread: threading.Thread, timeout: float = 20.0) -> None:
    thread.join(timeout)
    assert not thread.is_alive(), "worker did not stop"
    errors = thread.errors  # type: ignore[attr-defined]
    assert not errors, errors


def test_backoff_policy() -> None:
    assert [backoff_ms(n, 100, 1000) for n in (1, 2, 3, 4, 5, 9)] == [
        100,
        200,
        400,
        800,
        1000,
        1000,
    ]
    assert backoff_ms(10**6, 1, 5) == 5


def test_worker_drains_a_queue_in_batches(client: Client, topic: str) -> None:
    make_queue(client, topic, 250)
    seen: list[int] = []
    worker = Worker(client, topic, lambda job: seen.append(job.data), batch=100, lease_ms=10_000)
    stats = worker.run(until_idle=True)
    assert sorted(seen) == list(range(250))
    assert (stats.claimed, stats.acked, stats.failed, stats.lost) == (250, 250, 0, 0)
    state = client.topics.get(topic)
    assert state.count == 0 and state.queue is not None and state.queue.ready == 0


def test_worker_reads_the_topic_lease_ms(client: Client, topic: str) -> None:
    make_queue(client, topic, 1, lease_ms=4321)
    worker = Worker(client, topic, lambda job: None)
    assert worker.run(until_idle=True).acked == 1


def test_failures_are_nacked_with_backoff(client: Client, topic: str) -> None:
    make_queue(client, topic, 3)
    attempts: dict[int, int] = {}
    done: set[int] = set()
    worker: Worker

    def handler(job: Job) -> None:
        attempts[job.seq] = attempts.get(job.seq, 0) + 1
        if job.seq == 2 and job.deliveries < 3:
            raise RuntimeError("flaky")
        done.add(job.seq)
        if len(done) == 3:
            worker.stop()

    worker = Worker(
        client, topic, handler, lease_ms=10_000, poll_interval=0.05, backoff_base_ms=100
    )
    started = time.monotonic()
    thread = run_in_thread(worker)
    join_worker(thread)
    assert attempts == {1: 1, 2: 3, 3: 1}
    assert worker.stats.failed == 2 and worker.stats.acked == 3
    assert time.monotonic() - started >= 0.3  # 100 ms then 200 ms of backoff
    assert client.topics.get(topic).count == 0


def test_poison_job_is_dead_lettered(client: Client, topic: str) -> None:
    dlq = f"{topic}-dlq"
    make_queue(client, topic, 0, max_deliveries=2, dead_letter=dlq)
    client.topics.write(topic, [NewRecord({"poison": True}, tag="p", meta={"trace": "x"})])

    def handler(job: Job) -> None:
        raise ValueError("cannot process")

    worker = Worker(client, topic, handler, lease_ms=10_000, poll_interval=0.05, backoff_base_ms=20)
    thread = run_in_thread(worker)
    copy = poll(lambda: records_of(client, dlq), bool)
    worker.stop()
    join_worker(thread)
    (record,) = copy
    assert record.data == {"poison": True} and record.tag == "p"
    assert record.meta == {
        "trace": "x",
        "$dead_letter_from": topic,
        "$dead_letter_deliveries": "2",
        "$dead_letter_src_seq": "1",
    }
    state = client.topics.get(topic)
    assert state.count == 0 and state.queue is not None and state.queue.dead_lettered == 1
    assert worker.stats.failed == 2


def test_leases_are_extended_while_a_handler_runs(
    client: Client, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_queue(client, topic, 1)
    release = threading.Event()
    running = threading.Event()
    extended = threading.Condition()
    extends: list[int] = []

    def handler(job: Job) -> None:
        running.set()
        assert release.wait(20)

    worker = Worker(client, topic, handler, lease_ms=300)
    real_extend = client.queues.extend

    def counting_extend(*args: Any, **kwargs: Any) -> Any:
        result = real_extend(*args, **kwargs)
        with extended:
            extends.append(result.extended)
            extended.notify_all()
        return result

    monkeypatch.setattr(client.queues, "extend", counting_extend)
    thread = run_in_thread(worker, until_idle=True)
    assert running.wait(10)
    started = time.monotonic()
    # Four extensions, each a third of a lease apart: the job is held past its first
    # lease, and a thief's claim finds nothing after every one of them.
    for beat in range(1, 5):
        with extended:
            assert extended.wait_for(lambda n=beat: len(extends) >= n, 10)  # type: ignore[misc]
        assert client.queues.claim(topic, node="thief").count == 0
    assert time.monotonic() - started > 0.3 and set(extends) == {1}
    release.set()
    join_worker(thread)
    assert worker.stats.acked == 1 and worker.stats.lost == 0


def test_stop_finishes_the_running_job_and_releases_the_rest(client: Client, topic: str) -> None:
    make_queue(client, topic, 10)
    worker: Worker

    def handler(job: Job) -> None:
        worker.stop()  # the job in hand still completes

    worker = Worker(client, topic, handler, batch=10, lease_ms=60_000)
    stats = worker.run()
    assert (stats.acked, stats.released) == (1, 9)
    queue = client.topics.get(topic).queue
    assert queue is not None and (queue.ready, queue.in_flight) == (9, 0)


def test_concurrent_handlers_in_a_pool(client: Client, topic: str) -> None:
    make_queue(client, topic, 40)
    active = 0
    peak = 0
    lock = threading.Lock()

    together = threading.Barrier(4, timeout=10)  # four handlers in flight at once, or fail

    def handler(job: Job) -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        together.wait()
        with lock:
            active -= 1

    stats = Worker(client, topic, handler, concurrency=4, batch=20, lease_ms=10_000).run(
        until_idle=True
    )
    assert stats.acked == 40 and stats.failed == 0 and peak == 4


def test_competing_workers_never_hold_the_same_job(base_url: str, topic: str) -> None:
    with Client(base_url) as client:
        make_queue(client, topic, 300)
    holding: set[int] = set()
    done: list[int] = []
    lock = threading.Lock()
    clash: list[int] = []

    both = threading.Condition(lock)  # held jobs overlap across the two workers

    def handler(job: Job) -> None:
        with lock:
            if job.seq in holding:
                clash.append(job.seq)
            holding.add(job.seq)
            both.notify_all()
            # hold the job while the other worker holds one too (or briefly, at the tail)
            both.wait_for(lambda: len(holding) > 1, 0.05)
            holding.discard(job.seq)
            done.append(job.seq)

    clients = [Client(base_url) for _ in range(2)]
    try:
        workers = [
            Worker(c, topic, handler, node=f"w{i}", batch=25, concurrency=2, lease_ms=30_000)
            for i, c in enumerate(clients)
        ]
        threads = [run_in_thread(w, until_idle=True) for w in workers]
        for t in threads:
            join_worker(t)
    finally:
        for c in clients:
            c.close()
    assert not clash
    assert sorted(done) == list(range(1, 301))  # long leases: each job exactly once
    assert all(w.stats.acked > 0 for w in workers)


def test_stream_worker(client: Client, topic: str) -> None:
    make_queue(client, topic, 30)
    done: list[int] = []
    worker: Worker

    def handler(job: Job) -> None:
        done.append(job.seq)
        if len(done) == 30:
            worker.stop()

    worker = Worker(client, topic, handler, stream=True, concurrency=3, lease_ms=10_000)
    thread = run_in_thread(worker)
    join_worker(thread)
    assert sorted(done) == list(range(1, 31))
    poll(lambda: client.topics.get(topic).count, lambda c: c == 0, 5.0)


def test_stream_worker_stop_releases_unstarted_jobs(client: Client, topic: str) -> None:
    make_queue(client, topic, 5)
    started = threading.Event()
    finish = threading.Event()

    def handler(job: Job) -> None:
        started.set()
        assert finish.wait(10)

    worker = Worker(client, topic, handler, stream=True, concurrency=1, lease_ms=60_000)
    thread = run_in_thread(worker)
    assert started.wait(10)
    worker.stop()
    finish.set()
    join_worker(thread)
    assert worker.stats.acked == 1
    queue = poll(
        lambda: client.topics.get(topic).queue,
        lambda q: q is not None and q.in_flight == 0,
        5.0,
    )
    assert queue is not None and queue.ready == 4


# -- killed workers --------------------------------------------------------------------


WORKER_SCRIPT = """
import sys, time
from topics_client import Client, Worker
client = Client(sys.argv[1])
worker = Worker(client, sys.argv[2], lambda job: time.sleep(3600), node="doomed",
                batch=3, concurrency=3, lease_ms=int(sys.argv[3]), stream=sys.argv[4] == "1")
worker.run()
"""


def spawn_worker(base_url: str, topic: str, lease_ms: int, stream: bool) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(WORKER_SCRIPT),
            base_url,
            topic,
            str(lease_ms),
            "1" if stream else "0",
        ],
        env=env,
    )


@pytest.mark.parametrize("stream", [False, True])
def test_killed_worker_jobs_come_back(
    client: Client, base_url: str, topic: str, stream: bool
) -> None:
    make_queue(client, topic, 3)
    lease_ms = 60_000 if stream else 800
    proc = spawn_worker(base_url, topic, lease_ms, stream)
    try:
        poll(
            lambda: client.topics.get(topic).queue,
            lambda q: q is not None and q.in_flight == 3,
            15.0,
        )
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    killed = time.monotonic()
    # a dropped /work stream frees its jobs at once; a batch worker's after lease expiry
    back = poll(
        lambda: client.queues.claim(topic, node="survivor", max=3),
        lambda r: r.count == 3,
        10.0,
    )
    if stream:
        assert time.monotonic() - killed < 5.0  # far below the 60 s lease
    assert sorted(j.seq for j in back.jobs) == [1, 2, 3]
    assert all(j.deliveries == 2 for j in back.jobs)
    assert client.queues.ack(topic, back.jobs, node="survivor").acked == 3


# -- the job-queue recipe, both models ----------------------------------------------------


def test_recipe_cursor_queue(client: Client, topic: str, tmp_path: Path) -> None:
    """A log topic consumed with diff + a checkpointed cursor: at-least-once, in order."""
    client.topics.write(topic, [NewRecord({"job": i}) for i in range(20)])
    checkpoint = tmp_path / "cursor.json"
    processed: list[int] = []

    def consume(crash_after: int | None = None) -> None:
        cursor = load_checkpoint(checkpoint).get(topic, 0)
        handled = 0
        while True:
            page = client.topics.diff(topic, from_seq=cursor, limit=7)
            for record in page.records:
                if crash_after is not None and handled == crash_after:
                    return  # crash: the cursor of this page was never saved
                processed.append(record.data["job"])  # type: ignore[index]
                handled += 1
            cursor = page.next_from_seq
            save_checkpoint(checkpoint, {topic: cursor})
            if page.caught_up:
                return

    consume(crash_after=10)
    consume()
    assert sorted(set(processed)) == list(range(20))
    assert processed[:7] == list(range(7))  # in order
    assert len(processed) > 20  # the crashed page ran again: consumers must be idempotent
    assert load_checkpoint(checkpoint) == {topic: 20}
    # jobs stay in the log for other consumers (a cursor queue never deletes)
    assert client.topics.get(topic).count == 20


def test_recipe_lease_queue(client: Client, topic: str) -> None:
    """Produce, work with a Worker, retry a flaky job, dead-letter a poison one."""
    dlq = f"{topic}.dlq"
    client.topics.put(topic, type="queue", max_deliveries=3, dead_letter=dlq, lease_ms=5000)
    client.topics.write(
        topic,
        [NewRecord({"clip": i}, tag=f"clip:{i}") for i in range(10)]
        + [NewRecord({"clip": "poison"}, tag="clip:poison")],
    )
    results: dict[Any, int] = {}
    flaky = {3}

    def handle(job: Job) -> None:
        clip = job.data["clip"]  # type: ignore[index]
        if clip == "poison":
            raise RuntimeError("corrupt input")
        if clip in flaky:
            flaky.discard(clip)
            raise RuntimeError("transient")
        results[clip] = results.get(clip, 0) + 1

    worker = Worker(client, topic, handle, poll_interval=0.05, backoff_base_ms=20)
    thread = run_in_thread(worker)
    poll(lambda: client.topics.get(topic).count, lambda c: c == 0, 15.0)
    worker.stop()
    join_worker(thread)
    assert results == dict.fromkeys(range(10), 1)
    (dead,) = client.topics.diff(dlq, include_tags=True).records
    assert dead.tag == "clip:poison" and dead.meta is not None
    assert dead.meta["$dead_letter_deliveries"] == "3"


# -- async -------------------------------------------------------------------------------


def test_async_worker_batches_and_failures(base_url: str, topic: str) -> None:
    async def main() -> None:
        async with AsyncClient(base_url) as client:
            await client.topics.put(topic, type="queue")
            await client.topics.write(topic, [NewRecord(i) for i in range(60)])
            seen: list[int] = []
            failed_once: set[int] = set()
            worker: AsyncWorker

            async def handler(job: Job) -> None:
                if job.seq % 10 == 0 and job.seq not in failed_once:
                    failed_once.add(job.seq)
                    raise RuntimeError("retry me")
                await asyncio.sleep(0)
                seen.append(job.seq)
                if len(seen) == 60:
                    worker.stop()

            worker = AsyncWorker(
                client,
                topic,
                handler,
                batch=25,
                concurrency=5,
                lease_ms=10_000,
                poll_interval=0.05,
                backoff_base_ms=50,
            )
            stats = await asyncio.wait_for(worker.run(), 20)
            assert sorted(seen) == list(range(1, 61))
            assert stats.failed == 6 and stats.acked == 60
            assert (await client.topics.get(topic)).count == 0

    asyncio.run(main())


def test_async_stream_worker_and_graceful_stop(base_url: str, topic: str) -> None:
    async def main() -> None:
        async with AsyncClient(base_url) as client:
            await client.topics.put(topic, type="queue", lease_ms=60_000)
            await client.topics.write(topic, [NewRecord(i) for i in range(12)])
            done: list[int] = []
            gate = asyncio.Event()
            worker: AsyncWorker

            held = asyncio.Event()

            async def handler(job: Job) -> None:
                if len(done) == 8:
                    worker.stop()
                    held.set()
                    await gate.wait()  # stop waits for the running handler
                done.append(job.seq)

            worker = AsyncWorker(
                client, topic, handler, stream=True, concurrency=1, lease_ms=60_000
            )
            run = asyncio.create_task(worker.run())
            await asyncio.wait_for(held.wait(), 20)
            assert not run.done()  # stopped, yet waiting for the handler in hand
            gate.set()
            stats = await asyncio.wait_for(run, 20)
            assert stats.acked == len(done) == 9
            for _ in range(250):
                queue = (await client.topics.get(topic)).queue
                assert queue is not None
                if queue.in_flight == 0:
                    break
                await asyncio.sleep(0.02)
            assert (queue.ready, queue.in_flight) == (3, 0)

    asyncio.run(main())


def test_async_worker_sync_handler_until_idle(base_url: str) -> None:
    name = f"t-{uuid.uuid4().hex[:12]}"

    async def main() -> None:
        async with AsyncClient(base_url) as client:
            await client.topics.put(name, type="queue")
            await client.topics.write(name, [NewRecord(i) for i in range(5)])
            seen: list[int] = []
            stats = await AsyncWorker(client, name, lambda job: seen.append(job.seq)).run(
                until_idle=True
            )
            assert stats.acked == 5 and sorted(seen) == [1, 2, 3, 4, 5]

    asyncio.run(main())
