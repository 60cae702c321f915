"""Power-loss rounds under LazyFS (issue 18, SPEC §14, §8.3).

The server's data directory is a LazyFS mount: every byte the server has not fsynced lives
only in LazyFS's cache. One round is: start the server, concurrent writers on ``fsync``,
``disk``, ``memory`` and ``ephemeral`` topics plus an ``exactly_once`` router (``disk``
source into an ``fsync`` destination), SIGKILL at a random point, ``lazyfs::clear-cache``
(every unsynced byte is gone, as after a power cut), unmount, remount, restart, and compare
what the server has with what it acknowledged. The test first proves, on the same mount,
that LazyFS really keeps an fsynced file and drops an unsynced one.

Promises checked over all rounds (``TOPICS_POWER_LOSS_ROUNDS``, default 20):

- the server starts after every power loss;
- ``fsync``: no acknowledged record is lost;
- ``disk``: only a tail is lost: a lost record never sits below a record that survived, and
  nothing that survived one power loss is lost in a later one (either is a *hole*);
- no class acknowledges a seq twice for different records, and no recovered record sits under
  a seq acknowledged for other data (*seqs reused*);
- ``fsync``, ``disk`` and ``ephemeral``: the recovered ``head_seq`` is never below a head the
  server published before the power loss (*head moved back*; reported for ``memory``);
- no source record is copied twice into the ``exactly_once`` destination (counted by the
  copies' ``_topics_router`` stamp and by their data).

A summary table per class is printed (run with ``-s`` to see it when the test passes) and
written to ``$TOPICS_POWER_LOSS_REPORT`` when that is set. ``TOPICS_POWER_LOSS_SEED`` picks
the random kill points.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e import lazyfs
from tests.serverproc import ServerProcess

ROUNDS = int(os.environ.get("TOPICS_POWER_LOSS_ROUNDS", "20"))
SEED = int(os.environ.get("TOPICS_POWER_LOSS_SEED", "18"))

# topic -> (durability, batch size of each of its writers)
TOPICS: dict[str, tuple[str, tuple[int, ...]]] = {
    "pl-fsync": ("fsync", (1, 20)),
    "pl-disk": ("disk", (1, 20)),
    "pl-memory": ("memory", (10,)),
    "pl-ephemeral": ("ephemeral", (10,)),
    "pl-source": ("disk", (5,)),  # the router's source
}
CLASSES = ("fsync", "disk", "memory", "ephemeral")
ROUTER, ROUTER_SOURCE, ROUTER_DEST = "pl-route", "pl-source", "pl-copies"
MIN_ACKS = 20  # per topic and round before the power can go
EXTRA_ACKS = (100, 600)  # then this many more acknowledged records in all, chosen at random
QUIET_TAIL_CHANCE = 0.75  # then, in most rounds, only the unsynced classes keep writing
QUIET_TAIL_ACKS = (10, 300)  # for this many more acknowledged pl-disk records

pytestmark = pytest.mark.timeout(120 + 15 * ROUNDS)


# -- the rig: a LazyFS mount and the servers on it, always torn down ----------------------------


@dataclass
class Rig:
    fs: lazyfs.LazyFS
    servers: list[ServerProcess] = field(default_factory=list)

    def server(self) -> ServerProcess:
        # data_dir is the mount itself, so the server's log and port file (kept beside the
        # data dir) stay outside LazyFS and survive the power loss.
        proc = ServerProcess(data_dir=self.fs.mount_point, startup_timeout=60)
        self.servers.append(proc)
        return proc


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    reason = lazyfs.unavailable()
    if reason:
        pytest.skip(reason)
    fs = lazyfs.LazyFS(tmp_path_factory.mktemp("powerloss"))
    out = Rig(fs)
    try:
        fs.mount()
        yield out
    finally:
        for proc in out.servers:  # nothing may hold the mount when it goes
            proc.kill()
            proc.stop()
        fs.unmount()


def prove_lazyfs_drops_unsynced_data(fs: lazyfs.LazyFS) -> None:
    probe = fs.mount_point / "probe"
    probe.mkdir()
    synced, unsynced = b"synced " * 3000, b"unsynced " * 3000
    with open(probe / "synced", "wb") as f:
        f.write(synced)
        f.flush()
        os.fsync(f.fileno())
    with open(probe / "unsynced", "wb") as f:
        f.write(unsynced)
    assert (probe / "unsynced").read_bytes() == unsynced  # readable before the power loss
    fs.clear_cache()
    fs.remount()
    assert (probe / "synced").read_bytes() == synced, "LazyFS lost an fsynced file"
    assert (probe / "unsynced").read_bytes() != unsynced, "LazyFS kept unsynced data"
    for child in probe.iterdir():
        child.unlink()
    probe.rmdir()


# -- writers and the ledger of what was acknowledged --------------------------------------------


class Writer(threading.Thread):
    """Appends unique records until the server dies; keeps every acknowledgement."""

    def __init__(self, url: str, topic: str, name: str, batch: int) -> None:
        super().__init__(daemon=True)
        self.url, self.topic, self.wname, self.batch = url, topic, name, batch
        self.acks: list[tuple[int, Any]] = []  # (seq, data), in order
        self.head = 0  # highest head_seq the server published to this writer
        self.error: str | None = None
        self.halt = threading.Event()  # stop cleanly before the next write

    def run(self) -> None:
        n = 0
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.halt.is_set():
                datas = [{"w": self.wname, "n": n + i} for i in range(self.batch)]
                try:
                    r = client.post(
                        f"/v0/topics/{self.topic}", json={"records": [{"data": d} for d in datas]}
                    )
                except httpx.HTTPError:
                    return  # the server is gone
                if r.status_code != 200:
                    self.error = f"{self.topic}: {r.status_code} {r.text[:200]}"
                    return
                body = r.json()
                self.acks.extend(zip(body["seqs"], datas, strict=True))
                self.head = max(self.head, body["head_seq"])
                n += self.batch


@dataclass
class Ledger:
    """One topic: what the server acknowledged and what it lost, reused or moved back."""

    durability: str
    acked: dict[int, Any] = field(default_factory=dict)  # seq -> data, latest acknowledgement
    acknowledged: int = 0
    expected: dict[int, Any] = field(default_factory=dict)  # acked and not yet found lost
    survived: set[int] = field(default_factory=set)  # found after some power loss
    lost: set[int] = field(default_factory=set)
    holes: set[int] = field(default_factory=set)
    reused: set[int] = field(default_factory=set)
    head_seen: int = 0
    head_back: set[int] = field(default_factory=set)  # restarts (numbered) it moved back in
    restarts: int = 0

    def ack(self, seq: int, data: Any) -> None:
        self.acknowledged += 1
        if seq in self.acked and self.acked[seq] != data:
            self.reused.add(seq)
        self.acked[seq] = data
        if self.durability != "ephemeral":
            self.expected[seq] = data

    def recovered(self, stored: dict[int, Any], head: int) -> None:
        """Compare what a restarted server holds with what it acknowledged."""
        self.restarts += 1
        if head < self.head_seen:
            self.head_back.add(self.restarts)
        self.reused |= {s for s, d in stored.items() if s in self.acked and self.acked[s] != d}
        top = max(stored, default=0)
        for seq, data in list(self.expected.items()):
            if stored.get(seq) == data:
                self.survived.add(seq)
                continue
            del self.expected[seq]
            self.lost.add(seq)
            if seq < top or seq in self.survived:
                self.holes.add(seq)


def replay(client: httpx.Client, topic: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    cursor = 0
    while True:
        r = client.post(f"/v0/topics/{topic}/diff", json={"from_seq": cursor, "limit": 1000})
        assert r.status_code == 200, r.text
        page = r.json()
        records.extend(page["records"])
        cursor = page["next_from_seq"]
        if page["caught_up"]:
            return records


def router_duplicates(copies: list[dict[str, Any]]) -> tuple[int, int]:
    """(source seqs copied more than once, source records copied more than once)."""
    by_stamp = Counter(
        (s["source_topic_id"], s["source_epoch"], s["source_seq"])
        for s in (c["meta"]["_topics_router"] for c in copies)
    )
    by_data = Counter((c["data"]["w"], c["data"]["n"]) for c in copies)
    return (
        sum(1 for n in by_stamp.values() if n > 1),
        sum(1 for n in by_data.values() if n > 1),
    )


# -- the test -----------------------------------------------------------------------------------


def setup_topics(url: str) -> None:
    with httpx.Client(base_url=url, timeout=30) as c:
        for topic, (durability, _) in TOPICS.items():
            assert c.put(f"/v0/topics/{topic}", json={"durability": durability}).is_success
        assert c.put(f"/v0/topics/{ROUTER_DEST}", json={"durability": "fsync"}).is_success
        r = c.put(
            f"/v0/routers/{ROUTER}",
            json={"source": ROUTER_SOURCE, "dest": ROUTER_DEST, "guarantee": "exactly_once"},
        )
        assert r.status_code == 201, r.text


def write_until_power_loss(
    server: ServerProcess, ledgers: dict[str, Ledger], rnd: int, rng: random.Random
) -> list[str]:
    """Run the writers, SIGKILL the server at a random point; returns problems seen."""
    writers = [
        Writer(server.url, topic, f"r{rnd}-{topic}-{i}", batch)
        for topic, (_, batches) in TOPICS.items()
        for i, batch in enumerate(batches)
    ]
    for w in writers:
        w.start()
    problems: list[str] = []

    def acked() -> Counter[str]:
        per_topic = Counter[str]()
        for w in writers:
            per_topic[w.topic] += len(w.acks)
        return per_topic

    def wait_for(done: Callable[[Counter[str]], bool], what: str) -> bool:
        deadline = time.monotonic() + 60
        while not done(acked()):
            stopped = [w.error for w in writers if w.error]
            if stopped or time.monotonic() > deadline:
                problems.append(f"round {rnd}: writers stalled {what}: {stopped or acked()}")
                return False
            time.sleep(0.01)
        return True

    target = rng.randint(*EXTRA_ACKS)
    ok = wait_for(lambda n: all(n[t] >= MIN_ACKS for t in TOPICS) and n.total() >= target, "(all)")
    if ok and rng.random() < QUIET_TAIL_CHANCE:
        # A quiet spell for everything that syncs (fsync writes, router copies into the fsync
        # destination sync the whole WAL, and with it every disk write before them): the power
        # goes while only unsynced classes are being written.
        for w in writers:
            if TOPICS[w.topic][0] == "fsync" or w.topic == ROUTER_SOURCE:
                w.halt.set()
                w.join(30)
        disk_target = acked()["pl-disk"] + rng.randint(*QUIET_TAIL_ACKS)
        wait_for(lambda n: n["pl-disk"] >= disk_target, "(quiet tail)")
    server.kill()
    for w in writers:
        w.join(30)
        if w.is_alive():
            problems.append(f"round {rnd}: writer {w.wname} still running after the kill")
        if w.error:
            problems.append(f"round {rnd}: {w.error}")
        ledger = ledgers[w.topic]
        for seq, data in w.acks:
            ledger.ack(seq, data)
        ledger.head_seen = max(ledger.head_seen, w.head)
    return problems


def check_recovery(url: str, ledgers: dict[str, Ledger]) -> tuple[int, int, int]:
    """Feed the recovered state to the ledgers; returns the router's copy counts."""
    with httpx.Client(base_url=url, timeout=60) as c:
        for topic, ledger in ledgers.items():
            state = c.get(f"/v0/topics/{topic}", params={"touch": "false"})
            assert state.status_code == 200, f"{topic} is gone after a power loss: {state.text}"
            stored = {r["$seq"]: r["data"] for r in replay(c, topic)}
            ledger.recovered(stored, state.json()["head_seq"])
        router = c.get(f"/v0/routers/{ROUTER}")
        assert router.status_code == 200, f"router gone after a power loss: {router.text}"
        copies = replay(c, ROUTER_DEST)
    return (len(copies), *router_duplicates(copies))


def summary(
    ledgers: dict[str, Ledger], restarts: int, router: tuple[int, int, int], losses: int
) -> str:
    lines = [
        f"power loss: {losses} rounds, {restarts} restarts",
        "| class | acknowledged | lost | holes | seqs reused | head moved back |",
        "|---|---|---|---|---|---|",
    ]
    for durability in CLASSES:
        group = [g for g in ledgers.values() if g.durability == durability]
        acked = sum(g.acknowledged for g in group)
        lost = sum(len(g.lost) for g in group)
        holes = sum(len(g.holes) for g in group)
        reused = sum(len(g.reused) for g in group)
        back = len(set().union(*(g.head_back for g in group)))
        lost_text = f"{lost:,}"
        if durability == "ephemeral":
            lost_text = "all (by design)"
        elif lost and not holes:
            lost_text += " (all in a tail)"
        lines.append(
            f"| `{durability}` | {acked:,} | {lost_text} | {holes:,} | {reused:,} "
            f"| {back} of {restarts} restarts |"
        )
    copies, dup_seqs, dup_data = router
    lines.append(
        f"router `exactly_once` (disk -> fsync): {copies:,} copies, "
        f"{dup_seqs} source seqs copied twice, {dup_data} records copied twice"
    )
    return "\n".join(lines)


def test_power_loss_rounds(rig: Rig) -> None:
    prove_lazyfs_drops_unsynced_data(rig.fs)
    rng = random.Random(SEED)
    ledgers = {topic: Ledger(durability) for topic, (durability, _) in TOPICS.items()}
    problems: list[str] = []
    router = (0, 0, 0)
    restarts = 0
    losses = 0
    server = rig.server()
    for rnd in range(ROUNDS + 1):
        try:
            server.start()
        except RuntimeError as exc:
            problems.append(f"the server did not start after power loss {rnd}: {exc}")
            break
        if rnd == 0:
            setup_topics(server.url)
        else:
            restarts += 1
            router = check_recovery(server.url, ledgers)
        if rnd == ROUNDS:
            # one more write per topic: a seq handed out again shows up here too
            with httpx.Client(base_url=server.url, timeout=30) as c:
                for topic, ledger in ledgers.items():
                    data = {"w": "final", "n": 0}
                    r = c.post(f"/v0/topics/{topic}", json={"records": [{"data": data}]})
                    assert r.status_code == 200, r.text
                    ledger.ack(r.json()["first_seq"], data)
            server.stop()
            break
        problems += write_until_power_loss(server, ledgers, rnd, rng)
        rig.fs.clear_cache()
        rig.fs.remount()
        losses += 1

    table = summary(ledgers, restarts, router, losses)
    print("\n" + table)
    report = os.environ.get("TOPICS_POWER_LOSS_REPORT")
    if report:
        Path(report).write_text(table + "\n")
    by_class: dict[str, list[Ledger]] = {d: [] for d in CLASSES}
    for ledger in ledgers.values():
        by_class[ledger.durability].append(ledger)

    def total(durability: str, attr: str) -> int:
        return sum(len(getattr(g, attr)) for g in by_class[durability])

    if total("fsync", "lost"):
        problems.append(f"fsync lost {total('fsync', 'lost')} acknowledged records")
    if total("disk", "holes"):
        problems.append(f"disk lost {total('disk', 'holes')} records that were not a tail")
    for durability in CLASSES:
        if total(durability, "reused"):
            problems.append(f"{durability}: {total(durability, 'reused')} seqs reused")
    for durability in ("fsync", "disk", "ephemeral"):
        back = len(set().union(*(g.head_back for g in by_class[durability])))
        if back:
            problems.append(f"{durability}: head moved back in {back} of {restarts} restarts")
    copies, dup_seqs, dup_data = router
    if dup_seqs or dup_data:
        problems.append(f"exactly_once router copied twice ({dup_seqs} seqs, {dup_data} records)")
    if restarts and not copies:
        problems.append("the router made no copies: its check proved nothing")
    assert not problems, "\n".join([*problems, table])


# -- the checker itself (no LazyFS needed) ------------------------------------------------------


def test_ledger_tells_a_lost_tail_from_a_hole_and_a_reused_seq() -> None:
    tail = Ledger("disk")
    for seq in range(1, 11):
        tail.ack(seq, {"n": seq})
    tail.head_seen = 10
    tail.recovered({seq: {"n": seq} for seq in range(1, 8)}, head=10)
    assert (len(tail.lost), tail.holes, tail.reused, tail.head_back) == (3, set(), set(), set())

    hole = Ledger("disk")
    for seq in range(1, 11):
        hole.ack(seq, {"n": seq})
    hole.recovered({seq: {"n": seq} for seq in range(1, 11) if seq != 4}, head=10)
    assert hole.holes == {4}
    # a record that survived one power loss and is gone after the next is a hole too
    hole.recovered({seq: {"n": seq} for seq in range(1, 3)}, head=10)
    assert hole.holes == {3, 4, 5, 6, 7, 8, 9, 10}

    reuse = Ledger("disk")
    for seq in range(1, 4):
        reuse.ack(seq, {"n": seq})
    reuse.head_seen = 3
    reuse.recovered({}, head=0)  # the head went back to 0 ...
    assert reuse.head_back == {1}
    reuse.ack(1, {"n": "other"})  # ... and seq 1 is handed out again
    assert reuse.reused == {1}
    reuse.recovered({2: {"n": "other"}}, head=3)  # a recovered record under an acked seq
    assert reuse.reused == {1, 2}


def test_router_duplicates_counts_by_stamp_and_by_data() -> None:
    def copy(seq: int, n: int) -> dict[str, Any]:
        stamp = {"source_topic_id": 1, "source_epoch": 1, "source_seq": seq}
        return {"data": {"w": "a", "n": n}, "meta": {"_topics_router": stamp}}

    assert router_duplicates([copy(1, 1), copy(2, 2)]) == (0, 0)
    assert router_duplicates([copy(1, 1), copy(1, 1), copy(2, 2)]) == (1, 1)
    assert router_duplicates([copy(1, 1), copy(2, 1)]) == (0, 1)


def test_a_mount_left_by_a_killed_run_is_reaped(tmp_path: Path) -> None:
    reason = lazyfs.unavailable()
    if reason:
        pytest.skip(reason)
    crashed = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from tests.e2e import lazyfs\n"
        "fs = lazyfs.LazyFS(Path(sys.argv[1])).mount()\n"
        "(fs.mount_point / 'left').write_bytes(b'x')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    repo = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]),
    }
    run = subprocess.run(
        [sys.executable, "-c", crashed, str(tmp_path)], cwd=repo, env=env, timeout=60, check=False
    )
    assert run.returncode == -9
    fs = lazyfs.LazyFS(tmp_path)
    try:
        assert lazyfs.is_mounted(fs.mount_point), "the killed run left no mount to reap"
        assert str(fs.mount_point) in lazyfs.reap_stale()
        assert not lazyfs.is_mounted(fs.mount_point)
        fs.mount()  # the same place mounts again
        assert (fs.mount_point / "left").exists()
        fs.clear_cache()
    finally:
        fs.unmount()
    assert not lazyfs.is_mounted(fs.mount_point)
