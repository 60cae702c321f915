"""The embedded store: one SQLite database in WAL mode inside ``TOPICS_DATA_DIR``.

One writer thread owns the write connection and applies operations in the
order they were submitted. It drains everything queued into one transaction
(**group commit**): concurrent writers share one commit, and one fsync when any
of them needs it. ``synchronous`` is switched per transaction: ``FULL`` when an
``fsync``-class operation is in the group, ``NORMAL`` otherwise. In WAL mode a
``NORMAL`` commit is in the OS's hands once ``COMMIT`` returns, so a killed
process loses nothing acknowledged; only an OS crash can take the unsynced tail.

Reads of cold payloads, tag look-ups and recovery use a second connection; WAL
readers never block the writer.
"""

from __future__ import annotations

import asyncio
import functools
import os
import queue
import sqlite3
import threading
import time
from array import array
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson

from topics_server.engine.chunks import Chunk, Payload, decode_payload, encode_payload
from topics_server.engine.predicates import TagPredicate

__all__ = ["DB_NAME", "RecoveredTopic", "SqliteStore", "StoreCorrupt"]

DB_NAME = "topics.db"
SCHEMA_VERSION = 1
_T = TypeVar("_T")
READERS = 2  # threads (each with its own WAL reader connection) serving cold reads
MAX_GROUP = 1024  # operations folded into one transaction at most

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


class StoreCorrupt(RuntimeError):
    """The database file cannot be read; start-up stops and names the file."""


@dataclass(slots=True)
class RecoveredTopic:
    name: str
    instance: int
    config: dict[str, Any]
    head: int
    reserved: int
    front: int
    evict_floor: int
    cap_hi: int
    ttl_hi: int
    trim_hi: int
    last_ts: int
    last_write_ts: int | None
    chunks: list[Chunk] = field(default_factory=list)
    deleted: set[int] = field(default_factory=set)
    idempotency: list[tuple[str, int, int, int, int]] = field(default_factory=list)


Operation = Callable[[sqlite3.Connection], None]


class _Op:
    __slots__ = ("fn", "fsync", "future", "on_commit")

    def __init__(
        self,
        fn: Operation,
        fsync: bool,
        future: asyncio.Future[tuple[float, float]] | None,
        on_commit: Callable[[], None] | None,
    ) -> None:
        self.fn = fn
        self.fsync = fsync
        self.future = future
        self.on_commit = on_commit


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.execute("PRAGMA cache_size=-16384")  # 16 MiB page cache per connection
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

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / DB_NAME
        self._queue: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sync_full = False
        self._commit_started = 0.0
        self.commits = 0  # transactions committed (one per group)
        self.fsyncs = 0  # of which synchronous=FULL
        self.operations = 0  # operations committed across all groups
        self._readers = ThreadPoolExecutor(READERS, thread_name_prefix="topics-store-reader")
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
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

    # -- writer thread ---------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="topics-store-writer", daemon=True)
        self._thread.start()

    def submit(
        self,
        fn: Operation,
        *,
        fsync: bool = False,
        wait: bool = True,
        on_commit: Callable[[], None] | None = None,
    ) -> asyncio.Future[tuple[float, float]] | None:
        """Queue ``fn`` for the writer; with ``wait`` a future resolves on commit.

        The future's result is (time applying the group in ms, fsync wait in ms).
        """
        assert self._loop is not None, "store not started"
        future = self._loop.create_future() if wait else None
        self._queue.put(_Op(fn, fsync, future, on_commit))
        return future

    def _run(self) -> None:
        conn = _connect(self.path)
        stop = False
        while not stop:
            op = self._queue.get()
            if op is None:
                break
            ops = [op]
            while len(ops) < MAX_GROUP:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                ops.append(nxt)
            self._commit_group(conn, ops)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()

    def _commit_group(self, conn: sqlite3.Connection, ops: list[_Op]) -> None:
        full = any(op.fsync for op in ops)
        started = time.perf_counter()
        try:
            self._apply(conn, ops, full)
        except Exception:
            # isolate the failing operation: the others still commit
            for op in ops:
                try:
                    self._apply(conn, [op], op.fsync)
                    self._complete([op], None, started, time.perf_counter(), op.fsync)
                except Exception as exc:
                    self._complete([op], exc, started, time.perf_counter(), op.fsync)
            return
        self._complete(ops, None, started, time.perf_counter(), full)

    def _apply(self, conn: sqlite3.Connection, ops: list[_Op], full: bool) -> None:
        if full != self._sync_full:
            conn.execute("PRAGMA synchronous=FULL" if full else "PRAGMA synchronous=NORMAL")
            self._sync_full = full
        conn.execute("BEGIN IMMEDIATE")
        try:
            for op in ops:
                op.fn(conn)
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
        self, ops: list[_Op], error: Exception | None, started: float, ended: float, full: bool
    ) -> None:
        commit_ms = (ended - self._commit_started) * 1000 if error is None else 0.0
        timing = ((ended - started) * 1000, commit_ms if full else 0.0)
        assert self._loop is not None
        with suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            self._loop.call_soon_threadsafe(_resolve, ops, error, timing)

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def stats(self) -> dict[str, int]:
        """WAL-equivalent counters for ``/v0/metrics``."""
        return {
            "frames_total": self.operations,
            "batches_total": self.commits,
            "fsyncs_total": self.fsyncs,
            "queue_depth": self.queue_depth,
        }

    async def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        self._readers.shutdown(wait=True)
        for conn in self._reader_conns:
            conn.close()
        self._reader.close()

    # -- operations ------------------------------------------------------------

    def save_topic(
        self, name: str, instance: int, config: dict[str, Any], next_instance: int
    ) -> asyncio.Future[tuple[float, float]] | None:
        text = orjson.dumps(config).decode()

        def fn(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO topics (name, instance, config) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET config = excluded.config "
                "WHERE instance = excluded.instance",
                (name, instance, text),
            )
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('next_instance', ?)",
                (next_instance,),
            )

        return self.submit(fn, fsync=True)

    def drop_topic(self, instance: int) -> asyncio.Future[tuple[float, float]] | None:
        def fn(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM topics WHERE instance = ?", (instance,))
            for table in ("chunks", "deletes", "tags", "idempotency"):
                conn.execute(f"DELETE FROM {table} WHERE topic = ?", (instance,))

        return self.submit(fn, fsync=True)

    def append(
        self,
        instance: int,
        chunk: Chunk,
        idempotency: tuple[str, int] | None,
        fsync: bool,
        wait: bool,
        also: Operation | None = None,
    ) -> asyncio.Future[tuple[float, float]] | None:
        """Persist a chunk; ``also`` runs in the same transaction."""
        payload = chunk.payload
        assert payload is not None
        first, last, ts = chunk.first, chunk.last, chunk.ts
        sizes = chunk.sizes.tobytes()

        def fn(conn: sqlite3.Connection) -> None:
            datas, metas, nodes, tags, hops = encode_payload(payload)
            conn.execute(
                "INSERT OR IGNORE INTO chunks "
                "(topic, first, last, ts, sizes, datas, metas, nodes, tags, hops) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (instance, first, last, ts, sizes, datas, metas, nodes, tags, hops),
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
            conn.execute(
                "UPDATE topics SET head = max(head, ?), last_ts = max(last_ts, ?), "
                "last_write_ts = ? WHERE instance = ?",
                (last, ts, ts, instance),
            )
            if idempotency is not None:
                key, expires = idempotency
                conn.execute(
                    "INSERT OR REPLACE INTO idempotency VALUES (?, ?, ?, ?, ?, ?)",
                    (instance, key, first, last, last, expires),
                )
            if also is not None:
                also(conn)

        def committed() -> None:
            chunk.stored = True

        return self.submit(fn, fsync=fsync, wait=wait, on_commit=committed)

    def reserve(self, instance: int, reserved: int) -> asyncio.Future[tuple[float, float]] | None:
        """Persist an ephemeral topic's seq reservation: seqs below it are never reused."""

        def fn(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE topics SET reserved = max(reserved, ?) WHERE instance = ?",
                (reserved, instance),
            )

        return self.submit(fn, fsync=True)

    def mark_deleted(
        self, instance: int, seqs: list[int], fsync: bool, wait: bool
    ) -> asyncio.Future[tuple[float, float]] | None:
        rows = [(instance, seq) for seq in seqs]

        def fn(conn: sqlite3.Connection) -> None:
            conn.executemany("INSERT OR IGNORE INTO deletes (topic, seq) VALUES (?, ?)", rows)
            conn.executemany("DELETE FROM tags WHERE topic = ? AND seq = ?", rows)

        return self.submit(fn, fsync=fsync, wait=wait)

    def move_front(
        self,
        instance: int,
        front: int,
        evict_floor: int,
        his: tuple[int, int, int],
        fsync: bool,
        wait: bool,
    ) -> asyncio.Future[tuple[float, float]] | None:
        """Everything below ``front`` is gone: drop it and persist the watermarks."""

        def fn(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE topics SET front = max(front, ?), evict_floor = max(evict_floor, ?), "
                "cap_hi = ?, ttl_hi = ?, trim_hi = ? WHERE instance = ?",
                (front, evict_floor, *his, instance),
            )
            conn.execute("DELETE FROM chunks WHERE topic = ? AND last < ?", (instance, front))
            conn.execute("DELETE FROM deletes WHERE topic = ? AND seq < ?", (instance, front))
            conn.execute("DELETE FROM tags WHERE topic = ? AND seq < ?", (instance, front))

        return self.submit(fn, fsync=fsync, wait=wait)

    def raise_head(
        self, instance: int, head: int, evict_floor: int, his: tuple[int, int, int]
    ) -> None:
        """Seqs reserved as holes (router source trim): persist head and floor."""

        def fn(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE topics SET head = max(head, ?), reserved = max(reserved, ?), "
                "evict_floor = max(evict_floor, ?), cap_hi = ?, ttl_hi = ?, trim_hi = ? "
                "WHERE instance = ?",
                (head, head, evict_floor, *his, instance),
            )

        self.submit(fn, wait=False)

    def prune_idempotency(self, now: int) -> None:
        def fn(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM idempotency WHERE expires < ?", (now,))

        self.submit(fn, wait=False)

    # -- lease events of leases_durable queues (SPEC §10.10) -----------------

    def save_leases(
        self, instance: int, rows: list[tuple[int, int, str, int, int]], fsync: bool, wait: bool
    ) -> asyncio.Future[tuple[float, float]] | None:
        """Claimed or extended: ``(seq, lease_id, node, deadline, deliveries)`` rows."""
        params = [(instance, *row) for row in rows]

        def fn(conn: sqlite3.Connection) -> None:
            conn.executemany("INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?, ?, ?)", params)

        return self.submit(fn, fsync=fsync, wait=wait)

    def drop_leases(
        self, instance: int, seqs: list[int] | None, fsync: bool, wait: bool
    ) -> asyncio.Future[tuple[float, float]] | None:
        """Released or acked (``seqs``), or every lease of the instance (``None``)."""

        def fn(conn: sqlite3.Connection) -> None:
            if seqs is None:
                conn.execute("DELETE FROM leases WHERE topic = ?", (instance,))
            else:
                conn.executemany(
                    "DELETE FROM leases WHERE topic = ? AND seq = ?",
                    [(instance, seq) for seq in seqs],
                )

        return self.submit(fn, fsync=fsync, wait=wait)

    def load_leases(self, instance: int) -> list[tuple[int, int, str, int, int]]:
        """Recovery: the persisted leases of one queue instance."""
        rows: list[tuple[int, int, str, int, int]] = self._reader.execute(
            "SELECT seq, lease_id, node, deadline, deliveries FROM leases WHERE topic = ?",
            (instance,),
        ).fetchall()
        return rows

    # -- reads (reader threads) -------------------------------------------------

    async def read_payloads(
        self, instance: int, first_from: int, first_to: int
    ) -> dict[int, Payload]:
        """Cold payloads of the chunks starting in ``first_from..first_to``."""
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
            conn = self._local.conn = _connect(self.path)
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
        row = self._reader.execute("SELECT value FROM meta WHERE key = 'next_instance'").fetchone()
        top = self._reader.execute("SELECT max(instance) FROM topics").fetchone()[0] or 0
        return max(row[0] if row else 1, top + 1)

    def topic_count(self) -> int:
        count: int = self._reader.execute("SELECT count(*) FROM topics").fetchone()[0]
        return count

    def recover(self, now: int) -> Iterator[RecoveredTopic]:
        """Every stored topic with its chunk index (cold), deletes and idempotency."""
        try:
            yield from self._recover(now)
        except sqlite3.DatabaseError as exc:
            raise StoreCorrupt(f"{self.path}: the store is damaged: {exc}") from None

    def _recover(self, now: int) -> Iterator[RecoveredTopic]:
        db = self._reader
        topics = db.execute(
            "SELECT name, instance, config, head, reserved, front, evict_floor, cap_hi, ttl_hi, "
            "trim_hi, last_ts, last_write_ts FROM topics ORDER BY name"
        ).fetchall()
        for row in topics:
            topic = RecoveredTopic(row[0], row[1], orjson.loads(row[2]), *row[3:])
            instance = topic.instance
            for first, ts, sizes in db.execute(
                "SELECT first, ts, sizes FROM chunks WHERE topic = ? ORDER BY first", (instance,)
            ):
                chunk_sizes: array[int] = array("I")
                chunk_sizes.frombytes(sizes)
                topic.chunks.append(Chunk(first, ts, chunk_sizes, None, stored=True))
            topic.deleted = {
                seq
                for (seq,) in db.execute(
                    "SELECT seq FROM deletes WHERE topic = ? AND seq >= ?", (instance, topic.front)
                )
            }
            topic.idempotency = db.execute(
                "SELECT key, first, last, head, expires FROM idempotency "
                "WHERE topic = ? AND expires >= ?",
                (instance, now),
            ).fetchall()
            yield topic

    def recover_routers(self) -> list[tuple[str, dict[str, Any], int, int, int]]:
        try:
            rows = self._reader.execute(
                "SELECT name, spec, cursor, source_instance, forwarded_total FROM routers"
            ).fetchall()
        except sqlite3.DatabaseError as exc:
            raise StoreCorrupt(f"{self.path}: the store is damaged: {exc}") from None
        return [(name, orjson.loads(spec), *rest) for name, spec, *rest in rows]

    def discard_records(self, instance: int) -> None:
        """Recovery of an ephemeral topic: whatever it had stored is gone too."""

        def fn(conn: sqlite3.Connection) -> None:
            for table in ("chunks", "deletes", "tags", "idempotency"):
                conn.execute(f"DELETE FROM {table} WHERE topic = ?", (instance,))

        self.submit(fn, wait=False)


def _resolve(ops: list[_Op], error: Exception | None, timing: tuple[float, float]) -> None:
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
