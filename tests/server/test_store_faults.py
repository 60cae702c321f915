"""Storage faults (SPEC §14): a failed commit changes nothing, before or after a restart.

Every mutating operation runs once with a failpoint armed (through
``TOPICS_FAILPOINTS_FILE``) so that its commit fails inside the real SQLite
transaction, as an I/O error and as a full disk. For each: the answer is an
error (500 / 507 with Retry-After), the state the server shows is exactly the
state before the call, the same holds after a SIGKILL and restart (no
acknowledged record missing, no unacknowledged change present), and the
server still serves the operation once the fault is gone.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server._helpers import poll
from tests.serverproc import ServerProcess

Op = Callable[[httpx.Client], httpx.Response]


def _snapshot(c: httpx.Client) -> dict[str, Any]:
    """Everything a client can observe that a mutation could change (heads excluded:
    a crash moves them up to the synced reservation, by design)."""
    out: dict[str, Any] = {"topics": {}, "routers": {}}
    for topic in c.get("/v0/topics").json()["topics"]:
        name = topic["topic"] if isinstance(topic, dict) else topic
        state = c.get(f"/v0/topics/{name}").json()
        records, cursor = [], 0
        while True:
            page = c.post(
                f"/v0/topics/{name}/diff",
                json={"from_seq": cursor, "limit": 1000, "include_tags": True},
            ).json()
            records += [(r["$seq"], r["data"], r.get("$tag")) for r in page["records"]]
            cursor = page["next_from_seq"]
            if page["caught_up"]:
                break
        keep = ("type", "durability", "cap_records", "count", "earliest_seq", "in_flight")
        out["topics"][name] = {
            "state": {k: state.get(k) for k in keep},
            "records": records,
        }
    for router in c.get("/v0/routers").json()["routers"]:
        name = router["router"] if isinstance(router, dict) else router
        out["routers"][name] = c.get(f"/v0/routers/{name}").json()["source"]
    return out


def _setup(c: httpx.Client) -> None:
    c.put("/v0/topics/logs", json={"durability": "disk"}).raise_for_status()
    c.post(
        "/v0/topics/logs",
        json={"records": [{"data": i, "tag": f"t{i % 3}"} for i in range(30)]},
    ).raise_for_status()
    c.put("/v0/topics/sync", json={"durability": "fsync"}).raise_for_status()
    c.post("/v0/topics/sync", json={"records": [{"data": "s"}]}).raise_for_status()
    c.put("/v0/topics/eph", json={"durability": "ephemeral"}).raise_for_status()
    c.put("/v0/topics/gone", json={}).raise_for_status()
    c.post("/v0/topics/gone", json={"records": [{"data": "g"}]}).raise_for_status()
    c.put(
        "/v0/topics/jobs", json={"type": "queue", "leases_durable": True, "durability": "disk"}
    ).raise_for_status()
    c.post("/v0/topics/jobs", json={"records": [{"data": j} for j in range(4)]}).raise_for_status()
    c.put("/v0/routers/r1", json={"source": "gone", "dest": "copy"}).raise_for_status()


def _claimed(c: httpx.Client) -> list[dict[str, Any]]:
    r = c.post("/v0/topics/jobs/claim", json={"node": "w", "max": 2, "lease_ms": 60_000})
    r.raise_for_status()
    jobs: list[dict[str, Any]] = r.json()["claimed"]
    return jobs


def _settle(action: str) -> Callable[[httpx.Client, list[dict[str, Any]]], httpx.Response]:
    def op(c: httpx.Client, jobs: list[dict[str, Any]]) -> httpx.Response:
        body: dict[str, Any] = {"node": "w", "seqs": [j["$seq"] for j in jobs]}
        if action == "extend":
            body["lease_ms"] = 120_000
        return c.post(f"/v0/topics/jobs/{action}", json=body)

    return op


OPS: dict[str, Op] = {
    "create_topic": lambda c: c.put("/v0/topics/fresh", json={"durability": "disk"}),
    "config_put": lambda c: c.put("/v0/topics/logs", json={"cap_records": 10}),
    "ephemeral_to_disk": lambda c: c.put("/v0/topics/eph", json={"durability": "disk"}),
    "delete_topic": lambda c: c.delete("/v0/topics/gone"),
    "write_disk": lambda c: c.post("/v0/topics/logs", json={"records": [{"data": "x"}]}),
    "write_fsync": lambda c: c.post("/v0/topics/sync", json={"records": [{"data": "y"}]}),
    "write_keyed": lambda c: c.post(
        "/v0/topics/logs", json={"records": [{"data": "k"}], "idempotency_key": "k1"}
    ),
    "lazy_create_write": lambda c: c.post("/v0/topics/lazy", json={"records": [{"data": 1}]}),
    "delete_prefix": lambda c: c.post("/v0/topics/logs/delete", json={"before_seq": 11}),
    "delete_by_tag": lambda c: c.post(
        "/v0/topics/logs/delete", json={"match": ["tag", "Eq", "t1"]}
    ),
    "router_put": lambda c: c.put("/v0/routers/r2", json={"source": "logs", "dest": "mirror"}),
    "router_delete": lambda c: c.delete("/v0/routers/r1"),
    "claim": lambda c: c.post(
        "/v0/topics/jobs/claim", json={"node": "w", "max": 2, "lease_ms": 60_000}
    ),
}
SETTLE = ("ack", "nack", "extend")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    base = tmp_path_factory.mktemp("faults")
    armed = base / "failpoints"
    armed.write_text("")
    proc = ServerProcess(data_dir=base / "data", env={"TOPICS_FAILPOINTS_FILE": str(armed)}).start()
    yield proc, armed
    proc.stop()


def _arm(path: Path, spec: str) -> None:
    path.write_text(f"{spec}\n")
    # the store notices a change by (mtime, size): make each arming distinct
    stamp = time.time_ns()
    os.utime(path, ns=(stamp, stamp))


def _fresh(proc: ServerProcess) -> httpx.Client:
    """Wipe the data directory and restart, so every case starts from the same state."""
    proc.stop()
    for child in sorted(proc.data_dir.rglob("*"), reverse=True):
        if child.is_file():
            child.unlink()
    proc.start()
    c = httpx.Client(base_url=proc.url, timeout=30)
    _setup(c)
    return c


def _check_failed(r: httpx.Response, action: str) -> None:
    assert r.status_code == (507 if action == "full" else 500), r.text
    assert r.json()["error"]["code"] == ("insufficient_storage" if action == "full" else "internal")
    if action == "full":
        assert int(r.headers["retry-after"]) > 0


@pytest.mark.parametrize("action", ["error", "full"])
@pytest.mark.parametrize("name", [*OPS, *SETTLE])
def test_failed_commit_changes_nothing(
    server: tuple[ServerProcess, Path], name: str, action: str
) -> None:
    proc, armed = server
    _arm(armed, "")
    c = _fresh(proc)
    try:
        jobs = _claimed(c) if name in SETTLE else []
        before = _snapshot(c)
        _arm(armed, f"*={action}")
        r = _settle(name)(c, jobs) if name in SETTLE else OPS[name](c)
        _arm(armed, "")
        _check_failed(r, action)
        assert _snapshot(c) == before, "memory changed although the commit failed"
        proc.kill()
        proc.start()
        c.close()
        c = httpx.Client(base_url=proc.url, timeout=30)
        after = _snapshot(c)
        assert after == before, "a restart recovered a change nobody was told about"
        # still serving: the same operation goes through once the fault is gone (for
        # ack/nack/extend: the durable leases it failed to settle are still held)
        r = _settle(name)(c, jobs) if name in SETTLE else OPS[name](c)
        assert r.status_code < 300, r.text
        if name in SETTLE:
            assert r.json().get("skipped", []) == [], r.text
    finally:
        c.close()


def test_failpoint_on_a_named_change_fails_only_that_operation(
    server: tuple[ServerProcess, Path],
) -> None:
    proc, armed = server
    _arm(armed, "")
    c = _fresh(proc)
    try:
        _arm(armed, "append=1+1*error")  # skip one append, fail the next
        ok = c.post("/v0/topics/logs", json={"records": [{"data": "a"}]})
        bad = c.post("/v0/topics/logs", json={"records": [{"data": "b"}]})
        again = c.post("/v0/topics/logs", json={"records": [{"data": "c"}]})
        assert (ok.status_code, bad.status_code, again.status_code) == (200, 500, 200)
        datas = [rec[1] for rec in _snapshot(c)["topics"]["logs"]["records"]]
        assert datas[-2:] == ["a", "c"]
        proc.kill()
        proc.start()
        c.close()
        c = httpx.Client(base_url=proc.url, timeout=30)
        datas = [rec[1] for rec in _snapshot(c)["topics"]["logs"]["records"]]
        assert datas[-2:] == ["a", "c"]
    finally:
        c.close()


def test_full_store_still_deletes_and_reports_it(server: tuple[ServerProcess, Path]) -> None:
    proc, armed = server
    _arm(armed, "")
    c = _fresh(proc)
    try:
        _arm(armed, "append=full")
        r = c.post("/v0/topics/logs", json={"records": [{"data": "z"}]})
        failed_at = time.monotonic()
        assert r.status_code == 507
        ready = c.get("/v0/ready")
        assert ready.status_code == 200
        # the reserve was released; the store re-takes it at most once a second, so
        # a probe within that second must still say full
        if time.monotonic() - failed_at < 0.8:
            assert ready.json()["storage"] == "full"
        deadline = time.monotonic() + 10
        # deletes still commit (they only free space)
        d = c.post("/v0/topics/logs/delete", json={"before_seq": 5})
        assert d.status_code == 200 and d.json()["deleted"] == 4
        # space is really there (nothing fills it): writes resume without a restart
        while time.monotonic() < deadline:
            w = c.post("/v0/topics/logs", json={"records": [{"data": "back"}]})
            if w.status_code == 200:
                break
            assert w.status_code == 507
            time.sleep(0.05)
        else:
            pytest.fail("writes did not resume after the fault was gone")
        assert c.get("/v0/ready").json()["storage"] == "ok"
        metrics = c.get("/v0/metrics").text
        assert "topics_storage_full 0" in metrics
    finally:
        c.close()


def test_router_that_cannot_forward_stalls_visibly_and_resumes(
    server: tuple[ServerProcess, Path],
) -> None:
    proc, armed = server
    _arm(armed, "")
    c = _fresh(proc)
    try:
        # the router's copies commit with its cursor: failing the cursor fails the copy
        _arm(armed, "router_cursor=inf*error")
        assert c.post("/v0/topics/gone", json={"records": [{"data": "x"}]}).status_code == 200
        router = poll(
            lambda: c.get("/v0/routers/r1").json(), lambda r: r["state"] == "stalled", timeout=10
        )
        assert "failpoint router_cursor" in router["reason"]
        assert "topics_routers_stalled 1" in c.get("/v0/metrics").text
        assert _snapshot(c)["topics"].get("copy", {}).get("records", []) == []
        _arm(armed, "")
        poll(lambda: c.get("/v0/routers/r1").json(), lambda r: r["state"] == "running", timeout=15)
        copies = [rec[1] for rec in _snapshot(c)["topics"]["copy"]["records"]]
        assert copies == ["x"], "each record is copied exactly once after the stall"
        assert "topics_routers_stalled 0" in c.get("/v0/metrics").text
    finally:
        c.close()


def test_dead_lettering_that_fails_to_commit_keeps_the_job(
    server: tuple[ServerProcess, Path],
) -> None:
    proc, armed = server
    _arm(armed, "")
    c = _fresh(proc)
    try:
        c.put(
            "/v0/topics/q1",
            json={"type": "queue", "max_deliveries": 1, "dead_letter": "dlq"},
        ).raise_for_status()
        c.post("/v0/topics/q1", json={"records": [{"data": "job"}]}).raise_for_status()
        first = c.post("/v0/topics/q1/claim", json={"node": "w", "max": 1}).json()["claimed"]
        assert [j["data"] for j in first] == ["job"]
        c.post("/v0/topics/q1/nack", json={"node": "w", "seqs": [first[0]["$seq"]]})
        before = _snapshot(c)
        _arm(armed, "append=error")  # the copy into the dead-letter topic fails
        second = c.post("/v0/topics/q1/claim", json={"node": "w", "max": 1})
        assert second.status_code == 200 and second.json()["claimed"] == []
        _arm(armed, "")
        assert _snapshot(c) == before, "a failed dead-letter move changed something"
        # the next claim moves it for real
        c.post("/v0/topics/q1/claim", json={"node": "w", "max": 1}).raise_for_status()
        moved = poll(
            lambda: _snapshot(c)["topics"].get("dlq", {}).get("records", []),
            lambda recs: len(recs) == 1,
            timeout=10,
        )
        assert moved[0][1] == "job"
        assert _snapshot(c)["topics"]["q1"]["records"] == []
    finally:
        c.close()


def test_a_stalling_disk_stalls_the_loop_once_not_every_commit(tmp_path: Path) -> None:
    """Small commits run on the event loop; one that takes too long (the disk stopped
    answering) sends the next ones to the writer thread for a while, so probes and
    reads keep being answered while the disk is slow. Each stall holds its commit
    for 0.3 s; three stalled writes may hold the loop once, never three times."""
    from topics_server.storage.failpoints import STALL_S

    armed = tmp_path / "failpoints"
    armed.write_text("")
    env = {"TOPICS_FAILPOINTS_FILE": str(armed)}
    with (
        ServerProcess(data_dir=tmp_path / "data", env=env) as server,
        httpx.Client(base_url=server.url, timeout=30) as c,
    ):
        c.put("/v0/topics/slow", json={"durability": "disk"}).raise_for_status()
        c.post("/v0/topics/slow", json={"records": [{"data": 0}]}).raise_for_status()
        _arm(armed, "append=3*stall")
        acked: list[int] = []

        def writer() -> None:
            with httpx.Client(base_url=server.url, timeout=30) as w:
                for i in range(1, 4):
                    r = w.post("/v0/topics/slow", json={"records": [{"data": i}]})
                    r.raise_for_status()
                    acked.append(i)

        thread = threading.Thread(target=writer)
        thread.start()
        slow = 0
        while thread.is_alive():
            started = time.monotonic()
            assert c.get("/v0/health").status_code == 200
            if time.monotonic() - started > STALL_S * 0.8:
                slow += 1
        thread.join()
        assert acked == [1, 2, 3]
        assert slow <= 1, f"the loop stalled {slow} times"
        page = c.post("/v0/topics/slow/diff", json={"from_seq": 0}).json()
        assert [r["data"] for r in page["records"]] == [0, 1, 2, 3]
