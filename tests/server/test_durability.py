"""Durability classes (SPEC §14) on the embedded store, hot and cold reads."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tests.serverproc import ServerProcess
from topics_server.app import create_app
from topics_server.engine.engine import Engine
from topics_server.engine.log import HOT_RECORDS
from topics_server.settings import Settings
from topics_server.storage.sqlite import SqliteStore


def replay(client: httpx.Client, topic: str, **options: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = 0
    while True:
        page = client.post(
            f"/v0/topics/{topic}/diff", json={"from_seq": cursor, "limit": 1000, **options}
        ).json()
        assert page["tombstone"] is None
        out.extend(page["records"])
        cursor = page["next_from_seq"]
        if page["caught_up"]:
            return out


@pytest.fixture
def private(tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess(data_dir=tmp_path / "data") as server:
        yield server


def test_write_performance_reports_fsync_wait_only_for_fsync(
    http: httpx.Client, topic: str
) -> None:
    for durability in ("ephemeral", "memory", "disk", "fsync"):
        name = f"{topic}-{durability}"
        http.put(f"/v0/topics/{name}", json={"durability": durability})
        perf = http.post(f"/v0/topics/{name}", json={"records": [{"data": 1}]}).json()[
            "performance"
        ]
        assert set(perf) >= {"server_total_ms", "wal_append_ms", "fsync_ms"}
        if durability == "fsync":
            assert perf["fsync_ms"] > 0
        else:
            assert perf["fsync_ms"] == 0.0


def test_durable_alias_resolves_and_survives_restart(private: ServerProcess) -> None:
    with httpx.Client(base_url=private.url) as c:
        c.put("/v0/topics/d", json={"durable": True})
        assert c.get("/v0/topics/d").json()["config"]["durability"] == "fsync"
    private.kill()
    private.start()
    with httpx.Client(base_url=private.url) as c:
        config = c.get("/v0/topics/d").json()["config"]
        assert config["durability"] == "fsync"
        assert config["durable"] is True


def test_cold_records_read_back_exactly(private: ServerProcess) -> None:
    """More records than the hot window: older ones come from the store, unchanged."""
    n = HOT_RECORDS * 2 + 500
    with httpx.Client(base_url=private.url, timeout=30) as c:
        c.put("/v0/topics/big", json={"durability": "disk"})
        sent = []
        for start in range(0, n, 1000):
            batch = [
                {
                    "data": {"i": i, "text": "é" * (i % 5)},
                    **({"tag": f"t:{i % 7}"} if i % 2 else {}),
                    **({"node": "n1"} if i % 3 == 0 else {}),
                    **({"meta": {"m": i}} if i % 4 == 0 else {}),
                }
                for i in range(start, min(start + 1000, n))
            ]
            sent.extend(batch)
            c.post("/v0/topics/big", json={"records": batch})
        got = replay(c, "big", include_tags=True)
        assert len(got) == n
        for rec, want in zip(got, sent, strict=True):
            assert rec["data"] == want["data"]
            assert rec.get("$tag") == want.get("tag")
            assert rec.get("$node") == want.get("node")
            assert rec.get("meta") == want.get("meta")
        # node filter across cold and hot chunks
        filtered = replay(c, "big", node="n1")
        assert len(filtered) == n - len(range(0, n, 3))
        # a tag delete reaches cold records through the store's index
        r = c.post("/v0/topics/big/delete", json={"match": ["tag", "Eq", "t:1"]}).json()
        expected = sum(1 for w in sent if w.get("tag") == "t:1")
        assert r["deleted"] == expected
        state = c.get("/v0/topics/big").json()
        assert state["count"] == n - expected
    private.kill()
    private.start()
    with httpx.Client(base_url=private.url, timeout=30) as c:
        after = replay(c, "big", include_tags=True)
        assert len(after) == n - expected
        assert all(rec.get("$tag") != "t:1" for rec in after)
        assert [r["data"]["i"] for r in after] == [
            w["data"]["i"] for w in sent if w.get("tag") != "t:1"
        ]


def test_cap_eviction_and_floor_survive_restart(private: ServerProcess) -> None:
    with httpx.Client(base_url=private.url) as c:
        c.put("/v0/topics/capped", json={"cap_records": 100, "durability": "fsync"})
        for _ in range(5):
            c.post("/v0/topics/capped", json={"records": [{"data": i} for i in range(60)]})
        before = c.post("/v0/topics/capped/diff", json={"from_seq": 10}).json()
        assert before["tombstone"]["reason"] == "cap"
    private.kill()
    private.start()
    with httpx.Client(base_url=private.url) as c:
        after = c.post("/v0/topics/capped/diff", json={"from_seq": 10}).json()
        # after a crash the head moves up to the synced seq reservation; the loss stays
        assert after["tombstone"]["head_seq"] >= before["tombstone"]["head_seq"]
        del after["tombstone"]["head_seq"], before["tombstone"]["head_seq"]
        assert after["tombstone"] == before["tombstone"]
        state = c.get("/v0/topics/capped").json()
        assert state["count"] == 100
        assert state["earliest_seq"] == 201
        assert state["head_seq"] >= 300  # never below what was acknowledged


def test_head_and_write_times_survive_a_crash_even_with_every_record_gone(
    private: ServerProcess,
) -> None:
    """Appends leave the stored topic row alone (its head and times follow from the
    newest chunk at recovery); a delete that removes every chunk writes them first."""
    with httpx.Client(base_url=private.url) as c:
        for name in ("kept", "emptied"):
            c.put(f"/v0/topics/{name}", json={"durability": "disk"}).raise_for_status()
            for i in range(3):
                c.post(f"/v0/topics/{name}", json={"records": [{"data": i}]}).raise_for_status()
        before = {name: c.get(f"/v0/topics/{name}").json() for name in ("kept", "emptied")}
        last_ts = replay(c, "kept")[-1]["$ts"]
        c.post("/v0/topics/emptied/delete", json={"before_seq": 4}).raise_for_status()
        assert c.get("/v0/topics/emptied").json()["count"] == 0
    private.kill()
    private.start()
    with httpx.Client(base_url=private.url) as c:
        for name in ("kept", "emptied"):
            after = c.get(f"/v0/topics/{name}").json()
            assert after["last_write_ts"] == before[name]["last_write_ts"], name
            assert after["head_seq"] >= before[name]["head_seq"] == 3, name
            r = c.post(f"/v0/topics/{name}", json={"records": [{"data": "next"}]}).json()
            assert r["first_seq"] > 3, name
        assert c.get("/v0/topics/emptied").json()["earliest_seq"] > 3
        assert replay(c, "kept")[-1]["$ts"] >= last_ts


def test_wal_stays_bounded_under_a_steady_stream_of_small_writes(
    private: ServerProcess, tmp_path: Path
) -> None:
    """Small writes commit on the loop with automatic checkpoints off; the writer
    thread's checkpoints must still catch up with the WAL, or it grows forever."""
    from topics_server.storage.sqlite import CHECKPOINT_BYTES

    wal = tmp_path / "data" / "topics.db-wal"
    with httpx.Client(base_url=private.url) as c:
        c.put("/v0/topics/steady", json={"durability": "disk"}).raise_for_status()
        for i in range(1500):  # ~8 KB of WAL each: 12 MB if it were never reset
            c.post("/v0/topics/steady", json={"records": [{"data": i}]}).raise_for_status()
        assert wal.stat().st_size < 2 * CHECKPOINT_BYTES + (1 << 20)
        assert [r["data"] for r in replay(c, "steady")] == list(range(1500))


def test_ephemeral_to_disk_flushes_what_memory_held(private: ServerProcess) -> None:
    with httpx.Client(base_url=private.url) as c:
        c.put("/v0/topics/flip", json={"durability": "ephemeral"})
        c.post("/v0/topics/flip", json={"records": [{"data": i} for i in range(10)]})
        c.post("/v0/topics/flip/delete", json={"before_seq": 3})
        c.put("/v0/topics/flip", json={"durability": "disk"})
        c.post("/v0/topics/flip", json={"records": [{"data": "disk"}]})
    private.kill()
    private.start()
    with httpx.Client(base_url=private.url) as c:
        records = replay(c, "flip")
        assert [r["data"] for r in records] == [2, 3, 4, 5, 6, 7, 8, 9, "disk"]


def test_memory_class_survives_clean_restart(private: ServerProcess) -> None:
    with httpx.Client(base_url=private.url) as c:
        c.put("/v0/topics/mem", json={"durability": "memory"})
        r = c.post("/v0/topics/mem", json={"records": [{"data": i} for i in range(50)]})
        assert r.status_code == 201 or r.status_code == 200
    private.stop()  # SIGTERM: the writer drains its queue before exiting
    private.start()
    with httpx.Client(base_url=private.url) as c:
        assert [r["data"] for r in replay(c, "mem")] == list(range(50))


def test_topic_delete_survives_restart(private: ServerProcess) -> None:
    with httpx.Client(base_url=private.url) as c:
        c.post("/v0/topics/gone", json={"records": [{"data": 1}]})
        assert c.delete("/v0/topics/gone").json()["deleted"] is True
        c.post("/v0/topics/gone", json={"records": [{"data": "new instance"}]})
    private.kill()
    private.start()
    with httpx.Client(base_url=private.url) as c:
        records = replay(c, "gone")
        assert [(r["$seq"], r["data"]) for r in records] == [(1, "new instance")]


def test_not_ready_until_recovered(tmp_path: Path) -> None:
    """While the store is being read, probes answer and everything else is 503.

    The app runs under a real uvicorn in a thread so the recovery can be held.
    """
    release = threading.Event()
    settings = Settings(data_dir=tmp_path)
    engine = Engine(settings, SqliteStore(tmp_path))
    recover = engine.recover

    def slow_recover() -> None:
        release.wait(10)
        recover()

    engine.recover = slow_recover  # type: ignore[method-assign]
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, engine), log_level="error", lifespan="on")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with httpx.Client(base_url=url) as client:
            ready = client.get("/v0/ready")
            assert ready.status_code == 503
            assert ready.headers["retry-after"] == "1"
            error = ready.json()["error"]
            assert error["code"] == "not_ready"
            assert 0.0 <= error["detail"]["replay_progress"] <= 1.0
            assert client.get("/v0/health").status_code == 200
            blocked = client.get("/v0/topics")
            assert blocked.status_code == 503
            assert blocked.json()["error"]["code"] == "not_ready"
            release.set()
            while client.get("/v0/ready").status_code != 200:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            assert client.get("/v0/ready").json()["status"] == "ready"
            assert client.get("/v0/topics").status_code == 200
    finally:
        release.set()
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_watch_sessions_are_collected_only_when_idle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SPEC §9.1: a session with no open stream for session_ttl_ms is deleted (shortened
    here in-process, since the contract fixes it at five minutes)."""
    import topics_server.engine.watch as watch_module

    monkeypatch.setattr(watch_module, "SESSION_TTL_MS", 200)
    settings = Settings(data_dir=tmp_path)
    engine = Engine(settings, SqliteStore(tmp_path))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, engine), log_level="error", lifespan="on")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with httpx.Client(base_url=url, timeout=10) as client:
            while client.get("/v0/ready").status_code != 200:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            client.post("/v0/topics/gc", json={"records": [{"data": 1}]})
            idle = client.post("/v0/watch", json={"topics": {"gc": {}}}).json()["wid"]
            busy = client.post("/v0/watch", json={"topics": {"gc": {}}}).json()["wid"]
            with client.stream("GET", f"/v0/watch/{busy}") as open_stream:
                assert open_stream.status_code == 200
                time.sleep(0.3)  # both sessions are now past their 200 ms TTL
                client.post("/v0/watch", json={"topics": {"gc": {}}})  # a POST runs the GC
                assert client.get(f"/v0/watch/{idle}").status_code == 404
                assert engine.watches.sessions.get(busy) is not None
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
