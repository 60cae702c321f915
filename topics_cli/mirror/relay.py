"""The relay engine: copies topics from one ``/v0`` server to another, both ways if asked.

Built on the async client: one event loop carries every direction's watch streams, their
writers, the topic re-listing, the status ticker and the metrics endpoint, and a SIGTERM
only sets a flag the writers check between batches (a batch in flight always completes
and is checkpointed; a reader waiting on the network is simply cancelled).

Per direction, readers put watch events on a small queue and one writer takes them in
order: it plans the batch (:mod:`topics_cli.mirror.plan`), writes it to the destination
under an idempotency key named after the batch's first source seq, then saves the
checkpoint. After a crash between the write and the save, the re-sent batch is answered
``deduped``; the destination record at the answer's ``last_seq`` says which source seq
that earlier write reached, so exactly the records after it are sent on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from topics_cli.mirror.plan import (
    MAX_FRAME_RECORDS,
    MAX_HOPS,
    META_KEY,
    Copy,
    Endpoint,
    backoff,
    batch_key,
    checkpoint_key,
    gap_key,
    gap_marker,
    literal_prefix,
    matches,
    plan_batch,
)
from topics_cli.mirror.stats import DirectionStats, TopicStats

__all__ = ["GapExit", "MirrorOptions", "Relay", "Side"]

WATCH_MAX_TOPICS = 256
KILL_AFTER_WRITES_ENV = "TOPICS_MIRROR_KILL_AFTER_WRITES"
"""Fault injection for the crash tests: SIGKILL the relay itself after this many
acknowledged writes, before their checkpoint (the window idempotency keys exist for)."""
EXIT_GAP = 3
EXIT_INTERRUPTED = 130

Report = Callable[[str, dict[str, Any], str], None]
"""``report(kind, payload, text)``: an event for the operator (a gap, a retry, a topic)."""


class GapExit(Exception):
    """``--fail-on-gap``: a gap was met; the checkpoint stays before it."""


class _Stopped(Exception):
    """The relay is stopping while a write was being retried: leave it unacknowledged."""


@dataclass(frozen=True)
class MirrorOptions:
    patterns: tuple[str, ...]
    checkpoint: str | None = None
    start: str = "earliest"  # or "latest": where a topic without a checkpoint entry starts
    once: bool = False
    fail_on_gap: bool = False
    gap_marker: bool = False
    node: str = "topics-mirror"
    relist_s: float = 10.0
    max_hops: int = MAX_HOPS
    batch: int = MAX_FRAME_RECORDS  # records per watch frame and destination write
    give_up_after: int | None = None  # consecutive failures; None = retry forever


@dataclass
class Side:
    endpoint: Endpoint
    client: Any  # topics_client.AsyncClient


@dataclass
class _Failure:
    side: str
    error: BaseException
    attempt: int


class Relay:
    """Every direction of one ``topics mirror`` run, with their shared checkpoint."""

    def __init__(self, options: MirrorOptions, report: Report) -> None:
        self.options = options
        self.report = report
        self.directions: list[Direction] = []
        self.cursors: dict[str, int] = {}
        self.stop_event = asyncio.Event()
        self.exit_code = 0
        self.writes = 0
        kill_after = os.environ.get(KILL_AFTER_WRITES_ENV, "")
        self.kill_after = int(kill_after) if kill_after.isdigit() else None
        if options.checkpoint:
            from topics_client import load_checkpoint

            self.cursors = load_checkpoint(options.checkpoint)

    def add(self, source: Side, dest: Side, rename: tuple[str, str] | None = None) -> Direction:
        direction = Direction(self, source, dest, rename)
        self.directions.append(direction)
        return direction

    def stop(self, code: int = 0) -> None:
        if not self.stop_event.is_set():
            self.exit_code = self.exit_code or code
            self.stop_event.set()

    @property
    def stopping(self) -> bool:
        return self.stop_event.is_set()

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` or until the relay stops."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop_event.wait(), seconds)

    def save(self, direction: Direction) -> None:
        if self.options.checkpoint:
            from topics_client import save_checkpoint

            save_checkpoint(self.options.checkpoint, self.cursors)
        direction.stats.last_checkpoint = time.time()

    async def run(self) -> int:
        tasks = [asyncio.ensure_future(d.run()) for d in self.directions]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                exc = task.exception()
                if isinstance(exc, GapExit):
                    self.exit_code = EXIT_GAP
                elif exc is not None:
                    raise exc
        finally:
            self.stop_event.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        return self.exit_code


class Direction:
    """One source server → one destination server."""

    def __init__(
        self, relay: Relay, source: Side, dest: Side, rename: tuple[str, str] | None
    ) -> None:
        self.relay = relay
        self.source = source
        self.dest = dest
        self.rename = rename
        self.stats = DirectionStats(source.endpoint.name, dest.endpoint.name)
        self.topics: list[str] = []
        self.caught_up: set[str] = set()
        self.restart = asyncio.Event()
        self.done = False
        self._held: Any = None  # an event taken off the queue while coalescing
        self.listed = False

    @property
    def name(self) -> str:
        return f"{self.source.endpoint.name}->{self.dest.endpoint.name}"

    # -- topics

    def dest_topic(self, topic: str) -> str:
        if self.rename is not None and topic == self.rename[0]:
            return self.rename[1]
        return topic

    def _key(self, topic: str) -> str:
        return checkpoint_key(self.source.endpoint.name, topic)

    def cursor(self, topic: str) -> int:
        return self.relay.cursors.get(self._key(topic), 0)

    def commit(self, topic: str, seq: int) -> None:
        self.relay.cursors[self._key(topic)] = seq
        self.topic_stats(topic).cursor = seq
        self.relay.save(self)

    def topic_stats(self, topic: str) -> TopicStats:
        return self.stats.topic(topic)

    async def discover(self) -> list[str]:
        """Source topics matching the patterns (the renamed one alone with a rename)."""
        patterns = (self.rename[0],) if self.rename else self.relay.options.patterns
        found: set[str] = set()
        client = self.source.client
        for prefix in sorted({literal_prefix(p) for p in patterns}):
            async for summary in client.topics.list(prefix=prefix or None, page_size=1000):
                if matches(summary.topic, patterns):
                    found.add(summary.topic)
        if self.source.endpoint.url == self.dest.endpoint.url:
            found = {t for t in found if self.dest_topic(t) != t}
        return sorted(found)

    async def _resolve_starts(self, topics: Sequence[str]) -> None:
        """Topics new to the checkpoint start at 0, or at their head with ``--start latest``."""
        for topic in topics:
            key = self._key(topic)
            if key in self.relay.cursors:
                self.topic_stats(topic).cursor = self.relay.cursors[key]
                continue
            seq = 0
            if self.relay.options.start == "latest" and not self.listed:
                seq = (await self.source.client.topics.get(topic, touch=False)).head_seq
            self.relay.cursors[key] = seq
            self.topic_stats(topic).cursor = seq
            self.report("topic", {"topic": topic, "from_seq": seq}, f"mirroring {topic} from {seq}")
        self.listed = True  # topics that appear later are new: copied from their start

    def report(self, kind: str, payload: dict[str, Any], text: str) -> None:
        self.relay.report(
            kind,
            {"source": self.source.endpoint.name, "dest": self.dest.endpoint.name, **payload},
            f"{self.name}: {text}",
        )

    # -- the loop

    async def run(self) -> None:
        options = self.relay.options
        failures = 0
        while not self.relay.stopping and not self.done:
            try:
                topics = await self.discover()
                await self._resolve_starts(topics)
            except _io_errors() as exc:
                failures += 1
                self._failed("source", exc, failures)
                await self.relay.sleep(backoff(failures - 1))
                continue
            failures = 0
            if not topics:
                if options.once:
                    self.done = True
                    return
                await self.relay.sleep(options.relist_s)
                continue
            self.topics = topics
            await self.pump(topics)

    def _failed(self, side: str, exc: BaseException, failures: int) -> None:
        if side == "source":
            self.stats.retries_source += 1
        else:
            self.stats.retries_dest += 1
        limit = self.relay.options.give_up_after
        fatal = _fatal(exc)
        if fatal or (limit is not None and failures > limit):
            server = (self.source if side == "source" else self.dest).endpoint
            what = "refused" if fatal else f"failed {failures} times in a row, giving up"
            self.report(
                "error",
                {"side": side, "error": _describe(exc)},
                f"{side} server {server.name} ({server.url}) {what}: {_describe(exc)}",
            )
            raise exc
        self.report(
            "retry",
            {"side": side, "error": _describe(exc), "attempt": failures},
            f"{side} failed ({_describe(exc)}); retrying",
        )

    async def pump(self, topics: list[str]) -> None:
        """Copy ``topics`` until stopped, done (``--once``) or the topic set changes."""
        self.restart.clear()
        self.caught_up.clear()
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=64)
        self._held = None
        chunks = [topics[i : i + WATCH_MAX_TOPICS] for i in range(0, len(topics), WATCH_MAX_TOPICS)]
        tasks = [asyncio.ensure_future(self.read(chunk, queue)) for chunk in chunks]
        if not self.relay.options.once:
            tasks.append(asyncio.ensure_future(self.relist(topics)))
        try:
            while not self.relay.stopping and not self.restart.is_set():
                item = await self._next(queue)
                if item is None:
                    return
                await self.handle(self._coalesce(item, queue))
                if self.relay.options.once and self.caught_up >= set(topics):
                    self.done = True
                    return
        except _Stopped:
            return
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _coalesce(self, item: Any, queue: asyncio.Queue[Any]) -> Any:
        """``item`` plus the record frames of the same topic already queued behind it, up
        to ``--batch`` records: one destination write and one checkpoint for all of them
        when the relay runs behind."""
        from topics_client import RecordsEvent

        if not isinstance(item, RecordsEvent):
            return item
        records = list(item.records)
        to_seq, head_seq = item.to_seq, item.head_seq
        while not queue.empty():
            following = queue.get_nowait()
            if (
                not isinstance(following, RecordsEvent)
                or following.topic != item.topic
                or len(records) + len(following.records) > self.relay.options.batch
            ):
                self._held = following
                break
            records.extend(following.records)
            to_seq, head_seq = max(to_seq, following.to_seq), max(head_seq, following.head_seq)
        if to_seq == item.to_seq:
            return item
        return RecordsEvent(item.topic, item.from_seq, to_seq, head_seq, tuple(records))

    async def _next(self, queue: asyncio.Queue[Any]) -> Any:
        """The next event, or ``None`` once the relay stops or the topic set changed."""
        if self._held is not None:
            held, self._held = self._held, None
            return held
        get = asyncio.ensure_future(queue.get())
        stop = asyncio.ensure_future(self.relay.stop_event.wait())
        restart = asyncio.ensure_future(self.restart.wait())
        try:
            await asyncio.wait({get, stop, restart}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            restart.cancel()
        if get.done():
            return get.result()
        get.cancel()
        return None

    async def relist(self, current: list[str]) -> None:
        failures = 0
        while True:
            await asyncio.sleep(self.relay.options.relist_s)
            try:
                found = await self.discover()
            except _io_errors() as exc:
                failures += 1
                self.stats.retries_source += 1
                self.report(
                    "retry",
                    {"side": "source", "error": _describe(exc), "attempt": failures},
                    f"listing topics failed ({_describe(exc)}); retrying",
                )
                continue
            failures = 0
            if set(found) - set(current):
                self.restart.set()
                return

    async def read(self, topics: list[str], queue: asyncio.Queue[Any]) -> None:
        """Watch ``topics`` from the committed cursors, reconnecting after a backoff."""
        from topics_client import APIConnectionError, APIError

        failures = 0
        while True:
            starts = {t: self.cursor(t) for t in topics}
            stream = self.source.client.watch.stream(
                starts,
                include_tags=True,
                limit=self.relay.options.batch,
                lenient=True,
                max_reconnects=0,  # every reconnect is ours: counted, reported, backed off
            )
            try:
                async with stream:
                    async for event in stream:
                        failures = 0
                        await queue.put(event)
                raise APIConnectionError("the watch stream ended")
            except (APIConnectionError, APIError) as exc:
                failures += 1
                await queue.put(_Failure("source", exc, failures))
                await asyncio.sleep(backoff(failures - 1))

    # -- events

    async def handle(self, item: Any) -> None:
        from topics_client import (
            CaughtUpEvent,
            Gap,
            RecordsEvent,
            StreamErrorEvent,
            TopicDeletedEvent,
        )

        if isinstance(item, _Failure):
            self._failed(item.side, item.error, item.attempt)
        elif isinstance(item, RecordsEvent):
            await self.copy(item)
        elif isinstance(item, Gap):
            await self.gap(item)
        elif isinstance(item, CaughtUpEvent):
            # every seq up to the head was examined: commit past trailing deleted records
            stats = self.topic_stats(item.topic)
            stats.head = item.head_seq
            if self.cursor(item.topic) < item.head_seq:
                self.commit(item.topic, item.head_seq)
            self.caught_up.add(item.topic)
        elif isinstance(item, TopicDeletedEvent):
            self.caught_up.add(item.topic)
            if item.topic in self.topics:  # a re-created topic is new to the next listing
                self.topics.remove(item.topic)
            if item.reason == "deleted":  # any later instance is read from its start
                self.commit(item.topic, 0)
            self.report(
                "topic_deleted", {"topic": item.topic}, f"source topic {item.topic} is gone"
            )
        elif isinstance(item, StreamErrorEvent) and item.terminal:
            self.stats.retries_source += 1
            self.report(
                "retry",
                {"side": "source", "error": item.message},
                f"source stream error ({item.code}: {item.message}); reconnecting",
            )
            self.restart.set()

    async def copy(self, event: Any) -> None:
        topic = event.topic
        cursor = self.cursor(topic)
        records = []
        last = cursor
        for record in event.records:  # a reconnect's re-sent records may follow the originals
            if record.seq > last:
                records.append(record)
                last = record.seq
        stats = self.topic_stats(topic)
        stats.head = max(stats.head, event.head_seq)
        if not records and event.to_seq <= cursor:
            return
        self.caught_up.discard(topic)
        plan = plan_batch(
            records,
            source=self.source.endpoint.name,
            dest=self.dest.endpoint.name,
            topic=topic,
            max_hops=self.relay.options.max_hops,
        )
        stats.skipped_loop += plan.skipped_loop
        stats.skipped_hops += plan.skipped_hops
        written_through = await self.write(topic, list(plan.writes))
        self.relay.writes += 1
        if self.relay.kill_after is not None and self.relay.writes >= self.relay.kill_after:
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        self.stats.batches += 1
        self.commit(topic, max(cursor, event.to_seq, written_through))

    async def write(self, topic: str, writes: list[Copy]) -> int:
        """Append ``writes`` to the destination, retrying with the same key until they are
        acknowledged; returns the last source seq the destination holds (0 if none)."""
        stats = self.topic_stats(topic)
        dest_topic = self.dest_topic(topic)
        through = 0
        failures = 0
        while writes:
            key = batch_key(self.source.endpoint.name, topic, writes[0].seq, writes[0].ts)
            try:
                result = await self.dest.client.topics.write(
                    dest_topic, [w.record for w in writes], idempotency_key=key, return_seqs=False
                )
            except _io_errors() as exc:
                failures += 1
                self._failed("dest", exc, failures)
                if self.relay.stopping:
                    raise _Stopped from exc
                await self.relay.sleep(backoff(failures - 1))
                if self.relay.stopping:
                    raise _Stopped from exc
                continue
            failures = 0
            if not result.deduped:
                stats.copied += len(writes)
                through = writes[-1].seq
                break
            stats.deduped += 1
            end = await self._original_end(dest_topic, result.last_seq)
            if end is None:  # that copy is gone: trust the count
                end = writes[min(result.count, len(writes)) - 1].seq
            through = max(through, end)
            writes = [w for w in writes if w.seq > end]
        return through

    async def _original_end(self, dest_topic: str, last_seq: int) -> int | None:
        """The source seq of the destination record ``last_seq`` (a batch's last copy)."""
        try:
            page = await self.dest.client.topics.diff(
                dest_topic, from_seq=max(0, last_seq - 1), limit=1
            )
        except _io_errors():
            return None
        for record in page.records:
            if record.seq == last_seq and isinstance(record.meta, dict):
                entry = record.meta.get(META_KEY)
                if isinstance(entry, dict) and isinstance(entry.get("seq"), int):
                    return int(entry["seq"])
        return None

    async def gap(self, gap: Any) -> None:
        stats = self.topic_stats(gap.topic)
        stats.gaps += 1
        stats.gap_records += max(0, gap.missed_estimate)
        payload = {
            "topic": gap.topic,
            "gap_from": gap.gap_from,
            "gap_to": gap.gap_to,
            "reason": gap.reason,
            "missed_estimate": gap.missed_estimate,
        }
        self.report(
            "gap",
            payload,
            f"GAP in {gap.topic}: source seqs {gap.gap_from}..{gap.gap_to} were lost before "
            f"the mirror read them ({gap.reason}, ~{gap.missed_estimate} records)",
        )
        options = self.relay.options
        if options.gap_marker:
            marker = gap_marker(
                source=self.source.endpoint.name, topic=gap.topic, gap=gap, node=options.node
            )
            await self._write_one(gap.topic, marker, gap)
            stats.markers += 1
        if options.fail_on_gap:
            raise GapExit(f"gap in {gap.topic}: seqs {gap.gap_from}..{gap.gap_to}")
        if gap.reason == "recreated":
            resume = max(0, gap.earliest_seq - 1)
        else:
            resume = max(self.cursor(gap.topic), gap.gap_to)
        self.commit(gap.topic, resume)

    async def _write_one(self, topic: str, record: dict[str, Any], gap: Any) -> None:
        key = gap_key(self.source.endpoint.name, topic, gap.gap_from, gap.gap_to)
        failures = 0
        while True:
            try:
                await self.dest.client.topics.write(
                    self.dest_topic(topic), [record], idempotency_key=key, return_seqs=False
                )
                return
            except _io_errors() as exc:
                failures += 1
                self._failed("dest", exc, failures)
                if self.relay.stopping:
                    raise _Stopped from exc
                await self.relay.sleep(backoff(failures - 1))


def _io_errors() -> tuple[type[BaseException], ...]:
    from topics_client import APIConnectionError, APIError

    return (APIConnectionError, APIError)


def _fatal(exc: BaseException) -> bool:
    """Retry what time can fix (connections, 5xx, 429, a full topic); not the rest."""
    from topics_client import APIError

    if not isinstance(exc, APIError):
        return False
    if exc.status in (429, 503, 507) or exc.status >= 500 or exc.code == "topic_full":
        return False
    # a watch session collected, a topic deleted meanwhile
    return not (exc.status == 404 and exc.code in ("not_found", "topic_not_found"))


def _describe(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{code}: {text}" if code else text
