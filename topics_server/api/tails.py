"""Caught-up one-topic watch streams served together: a write is read, rendered and sent once.

A watch stream caught up on its only topic (the live tail: ``topics watch t``, a
dashboard, a fan-out of subscribers) would wake for every write, read the batch,
render it and send it: the same work once per watcher, each in its own task. Here
such streams park in a :class:`_Group` per topic, cursor and read shape. A group
waits on its topic once; when the topic publishes, one task reads the batch (a
shared read), takes its shared frames (:meth:`Rendered.share_live`) and writes them
to every member, moving each session's cursor first, as the stream itself would.

A member is handed back to its own stream, which then does exactly what it did
before it parked, whenever delivering for it is not plainly right:

- its connection has bytes queued (a slow client must never hold up the others,
  and the server's backpressure applies in its own task);
- the batch is anything but plain records that end at the head: a gap, a read the
  node filter emptied, a page cut short, a batch too big to share whole;
- the topic is gone or replaced, a router into it is behind, the server is stopping;
- its session's cursor moved through another stream of the same session;
- its heartbeat is due.

Only a stream whose server tells how much its connection has queued is delivered
to here (the scope's ``BACKLOG``, which :mod:`topics_server.connections` sets);
any other stream waits and sends for itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from topics_server.api.eventstream import Write
from topics_server.engine.log import TopicLog
from topics_server.engine.watch import Deadline, WatchOptions, WatchSession

if TYPE_CHECKING:
    from topics_server.api.render import StreamReads
    from topics_server.engine.engine import Engine

__all__ = ["TailMember", "Tails"]

log = logging.getLogger("topics_server")


class TailMember:
    """One stream's seat in the tails; :meth:`park` is its engine's ``park``."""

    __slots__ = (
        "backlog",
        "deadline",
        "future",
        "group",
        "heartbeat",
        "last",
        "reads",
        "session",
        "tails",
        "topic",
        "write",
    )

    def __init__(
        self,
        tails: Tails,
        session: WatchSession,
        reads: StreamReads,
        write: Write,
        backlog: Callable[[], int],
    ) -> None:
        self.tails = tails
        self.session = session
        self.topic = next(iter(session.cursors))
        self.reads = reads
        self.write = write
        self.backlog = backlog
        self.heartbeat = session.options.heartbeat_ms / 1000
        self.future: asyncio.Future[None] | None = None
        self.group: _Group | None = None
        self.deadline = Deadline(self.wake)  # when a heartbeat is due; deliveries move it
        self.last: float | None = None  # when this park last delivered

    async def park(self, topic_log: TopicLog, cursor: int, deadline: float) -> float | None:
        """Wait at ``cursor`` (the head) until handed back; when this park last delivered."""
        future = self.future = asyncio.get_running_loop().create_future()
        self.last = None
        group = self.group = self.tails.join(self, topic_log, cursor)
        self.deadline.arm(deadline)
        try:
            await future
        finally:
            self.future = None
            self.group = None
            group.leave(self)
        return self.last

    def wake(self) -> None:
        future = self.future
        if future is not None and not future.done():
            future.set_result(None)

    def close(self) -> None:
        self.deadline.cancel()


class _Group:
    """Members parked at one cursor of one topic with one read shape; one wait for all."""

    __slots__ = ("busy", "cursor", "key", "log", "members", "options", "tails", "task", "waiter")

    def __init__(
        self,
        tails: Tails,
        key: tuple[str, Any],
        topic_log: TopicLog,
        cursor: int,
        options: WatchOptions,
    ) -> None:
        self.tails = tails
        self.key = key
        self.log = topic_log
        self.cursor = cursor
        self.options = options  # the members' read shape (they share its read_key)
        self.members: dict[TailMember, None] = {}  # in parking order
        self.busy = False  # a delivery is under way
        self.waiter: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None  # the delivery under way (kept referenced)

    def wait(self) -> None:
        waiter = self.waiter = asyncio.get_running_loop().create_future()
        self.log.waiters.append(waiter)
        waiter.add_done_callback(self._woken)

    def _woken(self, waiter: asyncio.Future[None]) -> None:
        if waiter is not self.waiter:
            return
        self.waiter = None
        if not self.members:
            self.tails.drop(self)
            return
        self.busy = True
        self.task = asyncio.get_running_loop().create_task(self._deliver())

    def leave(self, member: TailMember) -> None:
        self.members.pop(member, None)
        if not self.members and not self.busy:
            self.tails.drop(self)

    def unwait(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None:
            if waiter in self.log.waiters:
                self.log.waiters.remove(waiter)
            waiter.cancel()

    def hand_back(self) -> None:
        for member in list(self.members):
            member.wake()

    async def _deliver(self) -> None:
        try:
            while await self._deliver_one():
                pass
        except Exception:  # never leave members parked on a failure: they read for themselves
            log.exception("a tail delivery failed; its streams read for themselves")
            self.hand_back()
        finally:
            self.busy = False
            self.task = None
            if not self.members:
                self.tails.drop(self)
            elif self.waiter is None:
                self.hand_back()

    async def _deliver_one(self) -> bool:
        """Deliver the next batch; True when there is another one to deliver now."""
        topic_log = self.log
        topic = topic_log.name
        engine = self.tails.engine
        if (
            engine.shutting_down
            or engine.topics.get(topic) is not topic_log
            or topic_log.head == self.cursor
            or engine.routers.lagging(topic)
        ):
            self.hand_back()
            return False
        first = next(iter(self.members), None)
        if first is None:
            return False
        batch = await first.reads.read(topic_log, self.cursor, self.options)
        rendered = batch.records
        if (
            batch.tombstone is not None
            or rendered is None
            or not batch.caught_up
            or len(rendered.body) >= self.tails.share_bytes
        ):
            self.hand_back()
            return False
        chunk = rendered.live or rendered.share_live(topic, batch)
        size = len(rendered.body)
        tails = self.tails
        now = time.monotonic()
        for member in list(self.members):
            future = member.future
            if future is None or future.done():
                continue  # awake already: it leaves the group itself
            if member.backlog() or member.session.cursors.get(topic) != self.cursor:
                # backed up (it sends, and waits, in its own task), or its session moved
                # on through another of its streams: it reads from the session cursor
                member.wake()
                continue
            member.session.cursors[topic] = batch.next_from_seq
            member.deadline.at = now + member.heartbeat
            member.last = now
            member.reads.rendered += size
            tails.delivered += 1
            await member.write(chunk)
        self.cursor = batch.next_from_seq
        if topic_log.head != self.cursor:
            return True
        self.wait()
        return False


class Tails:
    """The groups of parked tails, by topic and read shape."""

    def __init__(self, engine: Engine, share_bytes: int) -> None:
        self.engine = engine
        self.share_bytes = share_bytes  # a batch this big or bigger is not shared whole
        self.delivered = 0  # batches written to a stream from here
        self._groups: dict[tuple[str, Any], list[_Group]] = {}

    def __len__(self) -> int:
        return sum(len(groups) for groups in self._groups.values())

    def member(
        self, session: WatchSession, reads: StreamReads, write: Write, backlog: Callable[[], int]
    ) -> TailMember:
        return TailMember(self, session, reads, write, backlog)

    def join(self, member: TailMember, topic_log: TopicLog, cursor: int) -> _Group:
        options = member.session.options
        key = (topic_log.name, options.read_key)
        groups = self._groups.setdefault(key, [])
        for group in groups:  # one waiting at this cursor (not delivering, not ending)
            if group.waiter is not None and group.cursor == cursor and group.log is topic_log:
                break
        else:
            group = _Group(self, key, topic_log, cursor, options)
            groups.append(group)
            group.wait()
        group.members[member] = None
        return group

    def drop(self, group: _Group) -> None:
        group.unwait()
        groups = self._groups.get(group.key)
        if groups is not None and group in groups:
            groups.remove(group)
            if not groups:
                del self._groups[group.key]
