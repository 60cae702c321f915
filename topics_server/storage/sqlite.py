"""The embedded store: one SQLite database in WAL mode inside ``TOPICS_DATA_DIR``.

Operations commit in the order they were submitted, on one write connection.
A small operation that needs no fsync and is waited for (a ``disk``-class
write), submitted while nothing is queued, commits **inline** on the event
loop: a ``NORMAL`` commit in WAL mode costs ~0.1 ms of CPU here, less than
handing it to a thread and back (two wake-ups and GIL hand-offs, which also
slowed every other request). Everything else (fsync, big batches, range
deletes, background commits such as ``memory``-class records, and whatever
arrives while the thread is busy) goes to the writer thread, which drains the
queue into one transaction (**group commit**): concurrent writers share one
commit, and one fsync when any of them needs it. ``synchronous`` is switched
per transaction: ``FULL`` when an ``fsync``-class operation is in the group,
``NORMAL`` otherwise. In WAL mode a ``NORMAL`` commit is in the OS's hands once
``COMMIT`` returns, so a killed process loses nothing acknowledged; only an OS
crash can take the unsynced tail.

Either way an operation's future resolves through the loop's ready queue, in
commit order, so a writer never publishes ahead of an earlier one. Automatic
checkpoints are off (one inside an inline commit would stall the loop for
milliseconds); the writer thread checkpoints once the WAL has grown past
:data:`CHECKPOINT_BYTES`.

Reads of cold payloads and tag look-ups run on reader threads with their own
connections (WAL readers never block the writer); recovery uses one more.

Out of space: a ``RESERVE`` file of :data:`RESERVE_BYTES` sits in the data
directory. When a commit fails with ``SQLITE_FULL`` the file is released, so
freeing changes (deletes) can still commit and give space back; growing changes
fail fast with :class:`StorageFull` until the reserve can be re-created.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import os
import queue
import sqlite3
import threading
import time
from array import array
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import orjson

from topics_server.storage.base import (
    AppendChunk,
    Change,
    DiscardRecords,
    DropLeases,
    DropRouter,
    DropTopic,
    MarkDeleted,
    MoveFront,
    PruneIdempotency,
    RaiseHead,
    RecoveredRouter,
    RecoveredTopic,
    Reserve,
    RouterCursor,
    SaveLeases,
    SaveRouter,
    SaveTopic,
    StorageFull,
    StoreCorrupt,
    StoreError,
    StoreFailed,
    Timing,
    TopicGone,
)
from topics_server.storage.failpoints import STALL, STALL_S, Failpoints
from topics_server.storage.records import (
    Chunk,
    Payload,
    TagPredicate,
    decode_payload,
    encode_payload,
)

__all__ = [
    "DB_NAME",
    "RESERVE_BYTES",
    "DataDirLocked",
    "SqliteStore",
    "StoreCorrupt",
    "data_dir_lock",
]

DB_NAME = "topics.db"
SCHEMA_VERSION = 1
_T = TypeVar("_T")
log = logging.getLogger("topics.store")
MAX_INT64 = (1 << 63) - 1
READER_CACHE_KIB = 2048
READERS = 2  # threads (each with its own WAL reader connection) serving cold reads
MAX_GROUP = 1024  # operations folded into one transaction at most
RESERVE_NAME = "RESERVE"
RESERVE_BYTES = 8 << 20  # released on a full disk so deletes can still commit
FULL_PROBE_S = 1.0  # while full, how often the writer tries to take the reserve back
FREE_RESUME = 1 << 20  # bytes freed inside the file (by deletes) that let writes resume
SQLITE_FULL = 13
INLINE_RECORDS = 256  # an append this small may commit on the loop (and no bigger)
INLINE_BYTES = 64 << 10
INLINE_SLOW_S = 0.005  # an inline commit this slow (a stalling disk) ...
INLINE_PAUSE_S = 1.0  # ... sends every commit to the thread for this long
INLINE_READ_BYTES = 64 << 10  # a cold range this small is read on the loop
CHECKPOINT_BYTES = 4 << 20  # WAL size that makes the writer thread checkpoint
WAL_KEEP_BYTES = 1 << 20  # what a WAL starting over keeps of its file
CHECKPOINT_LOOK = 256 << 10  # bytes committed (about) between looks at the WAL's size
_CHECKPOINT = object()  # queue sentinel: checkpoint the WAL (not an operation)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS topics (
    name TEXT PRIMARY KEY,
    instance INTEGER NOT NULL UNIQUE,
    config TEXT NOT NULL,
    head INTEGER NOT NULL DEFAULT 0,
    reserved INTEGER NOT NULL DEFAULT 0,
    front INTEGER NOT NULL DEFAULT 1,
    evict_floor INTEGER NOT NULL DEFAULT 1,
    cap_hi INTEGER NOT NULL DEFAULT 0,
    ttl_hi INTEGER NOT NULL DEFAULT 0,
    trim_hi INTEGER NOT NULL DEFAULT 0,
    last_ts INTEGER NOT NULL DEFAULT 0,
    last_write_ts INTEGER
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    topic INTEGER NOT NULL,
    first INTEGER NOT NULL,
    last INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    sizes BLOB NOT NULL,
    datas TEXT NOT NULL,
    metas TEXT,
    nodes TEXT,
    tags TEXT,
    hops TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS chunks_by_seq ON chunks (topic, first);
CREATE TABLE IF NOT EXISTS deletes (
    topic INTEGER NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (topic, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tags (
    topic INTEGER NOT NULL, seq INTEGER NOT NULL, tag TEXT NOT NULL, PRIMARY KEY (topic, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tags_by_tag ON tags (topic, tag, seq);
CREATE TABLE IF NOT EXISTS routers (
    name TEXT PRIMARY KEY, spec TEXT NOT NULL, cursor INTEGER NOT NULL,
    source_instance INTEGER NOT NULL, forwarded_total INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS idempotency (
    topic INTEGER NOT NULL, key TEXT NOT NULL, first INTEGER NOT NULL, last INTEGER NOT NULL,
    head INTEGER NOT NULL, expires INTEGER NOT NULL, PRIMARY KEY (topic, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    topic INTEGER NOT NULL, seq INTEGER NOT NULL, lease_id INTEGER NOT NULL, node TEXT NOT NULL,
    deadline INTEGER NOT NULL, deliveries INTEGER NOT NULL, PRIMARY KEY (topic, seq)
) WITHOUT ROWID;
"""


class _Op:
    __slots__ = ("changes", "doomed", "fsync", "future", "on_commit")

    def __init__(
        self,
        changes: tuple[Change, ...],
        fsync: bool,
        future: asyncio.Future[Timing] | None,
        on_commit: Callable[[], None] | None,
    ) -> None:
        self.changes = changes
        self.fsync = fsync
        self.future = future
        self.on_commit = on_commit
        self.doomed: StoreError | None = None  # failed by a failpoint: stays failed

    @property
    def freeing(self) -> bool:
        return all(change.freeing for change in self.changes)

    @property
    def small(self) -> bool:
        """Cheap enough to commit on the event loop: bounded rows, no range delete."""
        for change in self.changes:
            if isinstance(change, AppendChunk):
                chunk = change.chunk
                if len(chunk) > INLINE_RECORDS or sum(chunk.sizes) > INLINE_BYTES:
                    return False
            elif isinstance(change, SaveLeases):
                if len(change.rows) > INLINE_RECORDS:
                    return False
            elif isinstance(change, (MarkDeleted, DropLeases)):
                if change.seqs is None or len(change.seqs) > INLINE_RECORDS:
                    return False
            elif not isinstance(change, _INLINE_KINDS):
                return False  # range deletes (front moves, drops, prunes) take the thread
        return True


_INLINE_KINDS = (SaveTopic, Reserve, RaiseHead, SaveRouter, RouterCursor, DropRouter)


def _connect(path: Path, cache_kib: int = 16384) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=OFF")
    # zero deleted content only where it costs no extra I/O: a delete on a full disk must
    # not write every freed page again (some SQLite builds default to secure_delete=ON)
    conn.execute("PRAGMA secure_delete=FAST")
    conn.execute(f"PRAGMA cache_size=-{cache_kib}")  # the writer's 16 MiB holds hot pages
    # the writer thread checkpoints (SqliteStore._checkpoint), never inside a commit
    conn.execute("PRAGMA wal_autocheckpoint=0")
    return conn


def _prefix_successor(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix``."""
    chars = list(prefix)
    while chars:
        last = ord(chars[-1])
        if last < 0x10FFFF:
            chars[-1] = chr(last + 1)
            return "".join(chars)
        chars.pop()
    return None


class SqliteStore:
    """Persistence for every class but ``ephemeral`` records (SPEC §14)."""

    def __init__(self, data_dir: Path, failpoints: Failpoints | None = None) -> None:
        self.path = data_dir / DB_NAME
        self.failpoints = failpoints or Failpoints()
        self._reserve_path = data_dir / RESERVE_NAME
        self._queue: queue.SimpleQueue[_Op | object | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None  # the write connection
        self._conn_lock = threading.Lock()  # held by whoever commits on it
        self._handed = 0  # operations queued for the thread (the loop counts)
        self._done = 0  # of those, done and their resolution queued (the thread counts)
        self._batch: list[_Op] = []  # small operations waiting for this loop turn's commit
        self._inline_paused = 0.0  # monotonic time until which nothing commits inline
        self._since_look = 0  # bytes committed (about) since the WAL's size was looked at
        self._checkpoint_asked = False
        self._wal_path = self.path.with_name(DB_NAME + "-wal")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sync_full = False
        self._commit_started = 0.0
        self._full = False
        self.full_events = 0  # times the store ran out of space
        self.commits = 0  # transactions committed (one per group)
        self.fsyncs = 0  # of which synchronous=FULL
        self.operations = 0  # operations committed across all groups
        self.failures = 0  # operations that failed to commit
        self._last_error = ""  # the last background failure logged, and its repeats since
        self._repeats = 0
        self._readers = ThreadPoolExecutor(READERS, thread_name_prefix="topics-store-reader")
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._apply_change: dict[type[Change], Callable[[sqlite3.Connection, Any], None]] = {
            SaveTopic: self._save_topic,
            DropTopic: self._drop_topic,
            AppendChunk: self._append,
            Reserve: self._reserve,
            MarkDeleted: self._mark_deleted,
            MoveFront: self._move_front,
            RaiseHead: self._raise_head,
            SaveRouter: self._save_router,
            RouterCursor: self._router_cursor,
            DropRouter: self._drop_router,
            SaveLeases: self._save_leases,
            DropLeases: self._drop_leases,
            PruneIdempotency: self._prune_idempotency,
            DiscardRecords: self._discard_records,
        }
        try:
            self._reader = _connect(self.path)
            self._reader.executescript(SCHEMA)
            version = self._reader.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                self._reader.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            elif version != SCHEMA_VERSION:
                raise StoreCorrupt(
                    f"{self.path}: store format {version} is not the supported {SCHEMA_VERSION}"
                )
        except sqlite3.DatabaseError as exc:
            raise StoreCorrupt(f"{self.path}: cannot open the store: {exc}") from None
        self._has_reserve = self._take_reserve()
        self._full = not self._has_reserve

    @property
    def full(self) -> bool:
        return self._full

    # -- the reserve ------------------------------------------------------------

    def _take_reserve(self) -> bool:
        """Make sure the reserve file exists at full size; False when there is no room."""
        try:
            if self._reserve_path.stat().st_size >= RESERVE_BYTES:
                return True
        except OSError:
            pass
        try:
            fd = os.open(self._reserve_path, os.O_WRONLY | os.O_CREAT, 0o644)
        except OSError:
            return False
        try:
            block = bytes(1 << 20)
            for offset in range(0, RESERVE_BYTES, len(block)):
                os.pwrite(fd, block, offset)
            os.fsync(fd)
            return True
        except OSError:
            with suppress(OSError):
                os.ftruncate(fd, 0)
            return False
        finally:
            os.close(fd)

    def _free_bytes(self, conn: sqlite3.Connection) -> int:
        """Space freed inside the file by deletes: new writes reuse it first."""
        try:
            pages = conn.execute("PRAGMA freelist_count").fetchone()[0]
            size = conn.execute("PRAGMA page_size").fetchone()[0]
        except sqlite3.Error:
            return 0
        return int(pages) * int(size)

    def _release_reserve(self) -> None:
        if not self._full:
            self.full_events += 1
            log.warning("store out of space: writes answer 507 until space is freed")
        self._full = True
        self._has_reserve = False
        with suppress(OSError):
            self._reserve_path.unlink()

    # -- writer thread ---------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._conn = _connect(self.path)
        # a WAL that starts over is cut back to this size, so its size on disk tells
        # how much a checkpoint would have to copy (see _look_at_wal)
        self._conn.execute(f"PRAGMA journal_size_limit={WAL_KEEP_BYTES}")
        self._thread = threading.Thread(target=self._run, name="topics-store-writer", daemon=True)
        self._thread.start()

    def commit(
        self,
        *changes: Change,
        fsync: bool = False,
        wait: bool = True,
        on_commit: Callable[[], None] | None = None,
    ) -> asyncio.Future[Timing] | None:
        """Commit ``changes`` as one transaction (see :class:`~topics_server.storage.base.Store`).

        On the loop when someone waits for it, the thread has nothing queued or in
        hand (so submission order is commit order), and the operation is small and
        needs no fsync.
        """
        assert self._loop is not None and self._conn is not None, "store not started"
        future = self._loop.create_future() if wait else None
        op = _Op(changes, fsync, future, on_commit)
        if self._full and not op.freeing:
            self.failures += 1
            if future is not None:
                future.set_exception(StorageFull("the store is out of space"))
            return future
        # nobody waits for a background commit (memory-class records, cursors): it
        # costs the loop nothing on the writer thread, which runs beside it
        if (
            wait
            and not fsync
            and self._handed == self._done
            and op.small
            and (not self._inline_paused or time.monotonic() >= self._inline_paused)
        ):
            if not self._batch:
                self._loop.call_soon(self._flush)
            self._batch.append(op)
            return future
        self._flush()  # what the loop holds commits first
        self._handed += 1
        self._queue.put(op)
        return future

    def _flush(self) -> None:
        """Commit the operations gathered on the loop since the last flush, together.

        Gathered for one turn of the loop: writers that arrive in the same turn share
        the commit.
        """
        ops, self._batch = self._batch, []
        if not ops:
            return
        assert self._conn is not None
        if self._conn_lock.acquire(blocking=False):
            started = time.monotonic()
            try:
                self._commit_group(self._conn, ops, inline=True)
            finally:
                self._conn_lock.release()
            ended = time.monotonic()
            # a disk that stalls must not stall the loop again and again: the thread
            # takes every commit for a while (reads, probes and streams go on meanwhile)
            self._inline_paused = ended + INLINE_PAUSE_S if ended - started > INLINE_SLOW_S else 0.0
            return
        for op in ops:  # the thread holds the connection (a space probe): it takes them
            self._handed += 1
            self._queue.put(op)

    def _run(self) -> None:
        conn = self._conn
        assert conn is not None
        checkpointer = _connect(self.path, READER_CACHE_KIB)
        stop = False
        while not stop:
            try:
                probing = self._full or not self._has_reserve
                item = self._queue.get(timeout=FULL_PROBE_S) if probing else self._queue.get()
            except queue.Empty:
                # move the WAL into the file (deletes freed pages there) and give its
                # space back to the file system, then try to take the reserve again
                with self._conn_lock, suppress(sqlite3.Error):
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self._has_reserve = self._take_reserve()
                if self._full and (self._has_reserve or self._free_bytes(conn) >= FREE_RESUME):
                    self._full = False
                    log.warning("store has space again: writes resume")
                continue
            if item is None:
                break
            if item is _CHECKPOINT:
                self._checkpoint(checkpointer, conn)
                continue
            assert isinstance(item, _Op)
            ops = [item]
            checkpoint = False
            while len(ops) < MAX_GROUP:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                if nxt is _CHECKPOINT:
                    checkpoint = True
                    continue
                assert isinstance(nxt, _Op)
                ops.append(nxt)
            with self._conn_lock:
                self._commit_group(conn, ops)
            # after the resolutions were queued: an inline commit now resolves after them
            self._done += len(ops)
            if checkpoint:
                self._checkpoint(checkpointer, conn)
        checkpointer.close()
        try:
            with self._conn_lock:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            log.warning("final checkpoint failed (the WAL is replayed at next start): %s", exc)
        finally:
            conn.close()

    def _checkpoint(self, checkpointer: sqlite3.Connection, conn: sqlite3.Connection) -> None:
        """Copy the WAL into the database file, in two steps.

        The bulk runs on a connection of its own beside the commits (PASSIVE never
        blocks a writer): syncing megabytes of WAL takes tens of milliseconds here.
        Then, holding the write connection (commits queue for this thread meanwhile;
        the loop keeps serving), the few frames committed during the bulk: the
        checkpoint is then complete, and the next commit starts the WAL over from its
        top. Without that second step a busy WAL would never start over.
        """
        self._checkpoint_asked = False
        try:
            checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")
            with self._conn_lock:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            log.warning("WAL checkpoint failed (retried as the WAL grows): %s", exc)

    def _look_at_wal(self, ops: list[_Op]) -> None:
        """Every :data:`CHECKPOINT_LOOK` bytes committed: ask the thread for a
        checkpoint once the WAL has outgrown :data:`CHECKPOINT_BYTES`."""
        written = 4096  # a commit writes a page or more whatever it holds
        for op in ops:
            for change in op.changes:
                if isinstance(change, AppendChunk):
                    written += sum(change.chunk.sizes)
        self._since_look += written
        if self._since_look < CHECKPOINT_LOOK or self._checkpoint_asked:
            return
        self._since_look = 0
        try:
            size = os.stat(self._wal_path).st_size
        except OSError:
            return
        if size >= CHECKPOINT_BYTES:
            self._checkpoint_asked = True
            self._queue.put(_CHECKPOINT)

    def _commit_group(self, conn: sqlite3.Connection, ops: list[_Op], inline: bool = False) -> None:
        full = any(op.fsync for op in ops)
        started = time.perf_counter()
        try:
            self._apply(conn, ops, full)
        except Exception as exc:
            error = _classify(exc)
            if isinstance(error, StorageFull) or any(
                isinstance(op.doomed, StorageFull) for op in ops
            ):
                self._release_reserve()
            # isolate the failing operation: the others still commit
            for op in ops:
                if op.doomed is not None or (self._full and not op.freeing):
                    self._fail(op, op.doomed or StorageFull("the store is out of space"), inline)
                    continue
                try:
                    self._apply(conn, [op], op.fsync)
                except Exception as one:
                    problem = op.doomed or _classify(one)
                    if isinstance(problem, StorageFull):
                        self._release_reserve()
                    self._fail(op, problem, inline)
                    continue
                self._complete([op], None, started, time.perf_counter(), op.fsync, inline)
            return
        if self._full and not any(op.freeing for op in ops):
            self._has_reserve = self._take_reserve()
            self._full = not self._has_reserve
        self._complete(ops, None, started, time.perf_counter(), full, inline)
        self._look_at_wal(ops)

    def _fail(self, op: _Op, error: StoreError, inline: bool) -> None:
        self.failures += 1
        self._complete([op], error, 0.0, 0.0, False, inline)

    def _apply(self, conn: sqlite3.Connection, ops: list[_Op], full: bool) -> None:
        if full != self._sync_full:
            conn.execute("PRAGMA synchronous=FULL" if full else "PRAGMA synchronous=NORMAL")
            self._sync_full = full
        conn.execute("BEGIN IMMEDIATE")
        try:
            apply = self._apply_change
            failpoints = self.failpoints
            for op in ops:
                if op.doomed is not None:
                    raise op.doomed
                for change in op.changes:
                    if failpoints.armed:
                        _inject(failpoints, op, change)
                    apply[type(change)](conn, change)
            self._commit_started = time.perf_counter()
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self.commits += 1
        self.fsyncs += full
        self.operations += len(ops)

    def _complete(
        self,
        ops: list[_Op],
        error: StoreError | None,
        started: float,
        ended: float,
        full: bool,
        inline: bool,
    ) -> None:
        commit_ms = (ended - self._commit_started) * 1000 if error is None else 0.0
        timing = ((ended - started) * 1000, commit_ms if full else 0.0)
        if error is not None and all(op.future is None for op in ops):
            self._log_background(error)
        assert self._loop is not None
        if inline:  # behind every resolution already queued: commit order is resolve order
            self._loop.call_soon(_resolve, ops, error, timing)
            return
        with suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            self._loop.call_soon_threadsafe(_resolve, ops, error, timing)

    def _log_background(self, error: StoreError) -> None:
        """A failed commit nobody waits for (retention, router pass-overs): logged once
        per distinct failure, with a count of repeats, never once per commit."""
        text = str(error)
        if text == self._last_error:
            self._repeats += 1
            return
        if self._repeats:
            log.error("the last store failure repeated %d more times", self._repeats)
        self._last_error, self._repeats = text, 0
        log.error("a background store commit failed: %s", text)

    @property
    def queue_depth(self) -> int:
        return self._handed - self._done

    def stats(self) -> dict[str, int]:
        """WAL-equivalent counters for ``/v0/metrics``."""
        return {
            "frames_total": self.operations,
            "batches_total": self.commits,
            "fsyncs_total": self.fsyncs,
            "queue_depth": self.queue_depth,
            "failures_total": self.failures,
            "storage_full": int(self._full),
            "full_events_total": self.full_events,
        }

    async def close(self) -> None:
        self._flush()
        if self._thread is not None:
            self._queue.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        self._readers.shutdown(wait=True)
        for conn in self._reader_conns:
            conn.close()
        self._reader.close()

    # -- changes (writer thread, inside a transaction) ---------------------------

    def _save_topic(self, conn: sqlite3.Connection, c: SaveTopic) -> None:
        text = orjson.dumps(c.config).decode()
        # a row left by an older instance of the name is stale: the new one replaces it
        conn.execute("DELETE FROM topics WHERE name = ? AND instance <> ?", (c.name, c.instance))
        conn.execute(
            "INSERT INTO topics (name, instance, config) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET config = excluded.config",
            (c.name, c.instance, text),
        )
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('next_instance', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
            (c.next_instance,),
        )

    def _drop_topic(self, conn: sqlite3.Connection, c: DropTopic) -> None:
        conn.execute("DELETE FROM topics WHERE instance = ?", (c.instance,))
        for table in ("chunks", "deletes", "tags", "idempotency", "leases"):
            conn.execute(f"DELETE FROM {table} WHERE topic = ?", (c.instance,))

    def _append(self, conn: sqlite3.Connection, c: AppendChunk) -> None:
        chunk, instance = c.chunk, c.instance
        payload = chunk.payload
        assert payload is not None
        first, last, ts = chunk.first, chunk.last, chunk.ts
        # the topics row is only read here: its head, last_ts and last_write_ts follow
        # from the newest chunk at recovery (one page less to write per append)
        if conn.execute("SELECT 1 FROM topics WHERE instance = ?", (instance,)).fetchone() is None:
            raise TopicGone(f"topic instance {instance} is no longer stored")
        datas, metas, nodes, tags, hops = encode_payload(payload)
        conn.execute(
            "INSERT OR IGNORE INTO chunks "
            "(topic, first, last, ts, sizes, datas, metas, nodes, tags, hops) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (instance, first, last, ts, chunk.sizes.tobytes(), datas, metas, nodes, tags, hops),
        )
        if payload.tags is not None:
            conn.executemany(
                "INSERT OR IGNORE INTO tags (topic, seq, tag) VALUES (?, ?, ?)",
                [
                    (instance, first + i, tag)
                    for i, tag in enumerate(payload.tags)
                    if tag is not None
                ],
            )
        if c.idempotency is not None:
            key, expires = c.idempotency
            conn.execute(
                "INSERT OR REPLACE INTO idempotency VALUES (?, ?, ?, ?, ?, ?)",
                (instance, key, first, last, last, min(expires, MAX_INT64)),
            )

    def _reserve(self, conn: sqlite3.Connection, c: Reserve) -> None:
        sql = "reserved = ?" if c.exact else "reserved = max(reserved, ?)"
        cur = conn.execute(f"UPDATE topics SET {sql} WHERE instance = ?", (c.reserved, c.instance))
        if cur.rowcount == 0:
            raise TopicGone(f"topic instance {c.instance} is no longer stored")

    def _mark_deleted(self, conn: sqlite3.Connection, c: MarkDeleted) -> None:
        rows = [(c.instance, seq) for seq in c.seqs]
        conn.executemany("INSERT OR IGNORE INTO deletes (topic, seq) VALUES (?, ?)", rows)
        conn.executemany("DELETE FROM tags WHERE topic = ? AND seq = ?", rows)

    def _fold_newest(self, conn: sqlite3.Connection, instance: int) -> None:
        """Write the newest chunk's head and times into the topics row: before chunks
        are deleted, so recovery still knows them when no chunk is left."""
        newest = conn.execute(
            "SELECT last, ts FROM chunks WHERE topic = ? ORDER BY first DESC LIMIT 1",
            (instance,),
        ).fetchone()
        if newest is not None:
            last, ts = newest
            conn.execute(
                "UPDATE topics SET head = max(head, ?), last_ts = max(last_ts, ?), "
                "last_write_ts = max(coalesce(last_write_ts, 0), ?) WHERE instance = ?",
                (last, ts, ts, instance),
            )

    def _move_front(self, conn: sqlite3.Connection, c: MoveFront) -> None:
        instance, front = c.instance, c.front
        self._fold_newest(conn, instance)
        conn.execute(
            "UPDATE topics SET front = max(front, ?), evict_floor = max(evict_floor, ?), "
            "cap_hi = max(cap_hi, ?), ttl_hi = max(ttl_hi, ?), trim_hi = max(trim_hi, ?) "
            "WHERE instance = ?",
            (front, c.evict_floor, *c.his, instance),
        )
        conn.execute("DELETE FROM chunks WHERE topic = ? AND last < ?", (instance, front))
        conn.execute("DELETE FROM deletes WHERE topic = ? AND seq < ?", (instance, front))
        conn.execute("DELETE FROM tags WHERE topic = ? AND seq < ?", (instance, front))

    def _raise_head(self, conn: sqlite3.Connection, c: RaiseHead) -> None:
        conn.execute(
            "UPDATE topics SET head = max(head, ?), reserved = max(reserved, ?), "
            "evict_floor = max(evict_floor, ?), cap_hi = max(cap_hi, ?), "
            "ttl_hi = max(ttl_hi, ?), trim_hi = max(trim_hi, ?) WHERE instance = ?",
            (c.head, c.head, c.evict_floor, *c.his, c.instance),
        )

    def _save_router(self, conn: sqlite3.Connection, c: SaveRouter) -> None:
        conn.execute(
            "INSERT INTO routers (name, spec, cursor, source_instance, forwarded_total) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET spec = excluded.spec",
            (c.name, orjson.dumps(c.spec).decode(), c.cursor, c.source_instance, c.forwarded_total),
        )

    def _router_cursor(self, conn: sqlite3.Connection, c: RouterCursor) -> None:
        conn.execute(
            "UPDATE routers SET cursor = max(cursor, ?), forwarded_total = forwarded_total + ? "
            "WHERE name = ?",
            (c.cursor, c.forwarded, c.name),
        )

    def _drop_router(self, conn: sqlite3.Connection, c: DropRouter) -> None:
        conn.execute("DELETE FROM routers WHERE name = ?", (c.name,))

    def _save_leases(self, conn: sqlite3.Connection, c: SaveLeases) -> None:
        conn.executemany(
            "INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?, ?, ?)",
            [(c.instance, *row) for row in c.rows],
        )

    def _drop_leases(self, conn: sqlite3.Connection, c: DropLeases) -> None:
        if c.seqs is None:
            conn.execute("DELETE FROM leases WHERE topic = ?", (c.instance,))
        else:
            conn.executemany(
                "DELETE FROM leases WHERE topic = ? AND seq = ?",
                [(c.instance, seq) for seq in c.seqs],
            )

    def _prune_idempotency(self, conn: sqlite3.Connection, c: PruneIdempotency) -> None:
        conn.execute("DELETE FROM idempotency WHERE expires < ?", (c.now,))

    def _discard_records(self, conn: sqlite3.Connection, c: DiscardRecords) -> None:
        self._fold_newest(conn, c.instance)
        for table in ("chunks", "deletes", "tags", "idempotency"):
            conn.execute(f"DELETE FROM {table} WHERE topic = ?", (c.instance,))

    # -- reads (reader threads) -------------------------------------------------

    async def read_payloads(
        self, instance: int, first_from: int, first_to: int, size: int = 0
    ) -> dict[int, Payload]:
        """Cold payloads of the chunks starting in ``first_from..first_to``.

        A range known to be small (a page of ``limit`` 1 from the distant past) is
        read right here, on the loop's own reader connection: one indexed row costs
        less than the two thread hand-offs. Anything bigger goes to a reader thread,
        so a long replay never stalls the loop.
        """
        if 0 < size <= INLINE_READ_BYTES:
            return self._load_payloads(instance, first_from, first_to)
        return await self._read(self._load_payloads, instance, first_from, first_to)

    async def tag_matches(self, instance: int, predicate: TagPredicate, bound: int) -> list[int]:
        """Stored seqs ``< bound`` whose tag matches, through the tag index."""
        return await self._read(self._tag_matches, instance, predicate, bound)

    async def _read(self, fn: Callable[..., _T], *args: Any) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, functools.partial(fn, *args))

    def _reader_conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # cold reads stream through once: a small cache keeps their memory small
            conn = self._local.conn = _connect(self.path, READER_CACHE_KIB)
            self._reader_conns.append(conn)
        return conn

    def _load_payloads(self, instance: int, first_from: int, first_to: int) -> dict[int, Payload]:
        rows = self._reader_conn().execute(
            "SELECT first, datas, metas, nodes, tags, hops FROM chunks "
            "WHERE topic = ? AND first >= ? AND first <= ? ORDER BY first",
            (instance, first_from, first_to),
        )
        return {row[0]: decode_payload(*row[1:]) for row in rows}

    def _tag_matches(self, instance: int, predicate: TagPredicate, bound: int) -> list[int]:
        db = self._reader_conn()
        if predicate.op == "Eq":
            rows = db.execute(
                "SELECT seq FROM tags WHERE topic = ? AND tag = ? AND seq < ?",
                (instance, predicate.value, bound),
            )
        else:
            upper = _prefix_successor(predicate.value)
            if upper is None:
                rows = db.execute(
                    "SELECT seq FROM tags WHERE topic = ? AND tag >= ? AND seq < ?",
                    (instance, predicate.value, bound),
                )
            else:
                rows = db.execute(
                    "SELECT seq FROM tags WHERE topic = ? AND tag >= ? AND tag < ? AND seq < ?",
                    (instance, predicate.value, upper, bound),
                )
        return [row[0] for row in rows]

    # -- recovery --------------------------------------------------------------

    def next_instance(self) -> int:
        with self._damage("the meta table"):
            row = self._reader.execute(
                "SELECT value FROM meta WHERE key = 'next_instance'"
            ).fetchone()
            top = self._reader.execute("SELECT max(instance) FROM topics").fetchone()[0] or 0
            return max(int(row[0]) if row else 1, int(top) + 1)

    def topic_count(self) -> int:
        with self._damage("the topics table"):
            count: int = self._reader.execute("SELECT count(*) FROM topics").fetchone()[0]
            return count

    @contextmanager
    def _damage(self, where: str) -> Iterator[None]:
        """Any failure while reading ``where`` is a damaged store, named precisely."""
        try:
            yield
        except StoreCorrupt:
            raise
        except Exception as exc:
            raise StoreCorrupt(f"{self.path}: cannot read {where}: {exc}") from None

    def recover(self, now: int) -> Iterator[RecoveredTopic]:
        """Every stored topic with its chunk index (cold), deletes, idempotency and leases."""
        db = self._reader
        with self._damage("the topics table"):
            rows = db.execute(
                "SELECT name, instance, config, head, reserved, front, evict_floor, cap_hi, "
                "ttl_hi, trim_hi, last_ts, last_write_ts FROM topics ORDER BY name"
            ).fetchall()
        for row in rows:
            with self._damage(f"topics row {row[0]!r}"):
                config = orjson.loads(row[2])
                if not isinstance(config, dict):
                    raise ValueError("config is not a JSON object")
                if not all(isinstance(v, int) for v in row[3:11]) or not isinstance(row[1], int):
                    raise ValueError("a counter column is not an integer")
                head, reserved, front, floor, cap_hi, ttl_hi, trim_hi, last_ts = row[3:11]
                topic = RecoveredTopic(
                    row[0],
                    row[1],
                    config,
                    head,
                    reserved,
                    front,
                    floor,
                    cap_hi,
                    ttl_hi,
                    trim_hi,
                    last_ts,
                    row[11],
                )
            instance = topic.instance
            with self._damage(f"the chunks of topic {topic.name!r}"):
                for first, last, ts, sizes in db.execute(
                    "SELECT first, last, ts, sizes FROM chunks WHERE topic = ? ORDER BY first",
                    (instance,),
                ):
                    chunk_sizes: array[int] = array("I")
                    chunk_sizes.frombytes(sizes)
                    if len(chunk_sizes) != last - first + 1:
                        raise ValueError(
                            f"chunk {first}..{last} holds {len(chunk_sizes)} record sizes"
                        )
                    topic.chunks.append(Chunk(first, ts, chunk_sizes, None, stored=True))
            if topic.chunks:  # appends leave the topics row alone: the newest chunk rules
                newest = topic.chunks[-1]
                topic.head = max(topic.head, newest.last)
                topic.last_ts = max(topic.last_ts, newest.ts)
                topic.last_write_ts = max(topic.last_write_ts or 0, newest.ts)
            with self._damage(f"the deletes of topic {topic.name!r}"):
                topic.deleted = {
                    int(seq)
                    for (seq,) in db.execute(
                        "SELECT seq FROM deletes WHERE topic = ? AND seq >= ?",
                        (instance, topic.front),
                    )
                }
            with self._damage(f"the idempotency keys of topic {topic.name!r}"):
                topic.idempotency = db.execute(
                    "SELECT key, first, last, head, expires FROM idempotency "
                    "WHERE topic = ? AND expires >= ?",
                    (instance, now),
                ).fetchall()
            with self._damage(f"the leases of topic {topic.name!r}"):
                topic.leases = db.execute(
                    "SELECT seq, lease_id, node, deadline, deliveries FROM leases WHERE topic = ?",
                    (instance,),
                ).fetchall()
            yield topic

    def recover_routers(self) -> list[RecoveredRouter]:
        with self._damage("the routers table"):
            rows = self._reader.execute(
                "SELECT name, spec, cursor, source_instance, forwarded_total FROM routers "
                "ORDER BY name"
            ).fetchall()
        routers = []
        for name, spec, *rest in rows:
            with self._damage(f"routers row {name!r}"):
                parsed = orjson.loads(spec)
                if not isinstance(parsed, dict):
                    raise ValueError("spec is not a JSON object")
                routers.append(RecoveredRouter(name, parsed, *rest))
        return routers


def _inject(failpoints: Failpoints, op: _Op, change: Change) -> None:
    action = failpoints.hit(change.kind)
    if action is None:
        return
    if action == STALL:
        time.sleep(STALL_S)  # a disk that stops answering for a moment, then recovers
        return
    if action == "full":
        op.doomed = StorageFull(f"failpoint {change.kind}: out of space")
        raise sqlite3.OperationalError("database or disk is full (failpoint)")
    op.doomed = StoreFailed(f"failpoint {change.kind}: injected I/O error")
    raise sqlite3.OperationalError("disk I/O error (failpoint)")


def _classify(exc: BaseException) -> StoreError:
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", None) == SQLITE_FULL:
        return StorageFull(f"the store is out of space: {exc}")
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return StorageFull(f"the store is out of space: {exc}")
    return StoreFailed(f"the store could not commit: {exc}")


def _resolve(ops: list[_Op], error: StoreError | None, timing: Timing) -> None:
    for op in ops:
        if error is None and op.on_commit is not None:
            op.on_commit()
        future = op.future
        if future is None or future.done():
            continue
        if error is None:
            future.set_result(timing)
        else:
            future.set_exception(error)


@contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``data_dir`` for the life of the server."""
    import fcntl

    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataDirLocked(
                f"{data_dir} is in use by another topics server (its LOCK file is held)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


class DataDirLocked(RuntimeError):
    """Another server holds the data directory."""
