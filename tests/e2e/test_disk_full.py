"""A really full disk (SPEC §14): a small tmpfs under the data directory.

Writes fill it until the store answers ``507 insufficient_storage``; readiness
stays up and says so; a delete still commits and frees space inside the
store; writes resume without a restart; and after a SIGKILL every
acknowledged record is there. Needs root and a kernel that lets us mount
tmpfs (skips with the reason otherwise).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serverproc import ServerProcess

SIZE = "24m"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _replay(c: httpx.Client, topic: str) -> list[int]:
    seqs: list[int] = []
    cursor = 0
    while True:
        page = c.post(f"/v0/topics/{topic}/diff", json={"from_seq": cursor, "limit": 1000})
        body = page.json()
        seqs += [r["$seq"] for r in body["records"]]
        cursor = body["next_from_seq"]
        if body["caught_up"]:
            return seqs


def test_full_disk_answers_507_keeps_deletes_and_recovers(small_disk: Path) -> None:
    blob = "x" * 4000
    acked: list[int] = []
    with ServerProcess(data_dir=small_disk / "data") as server:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            c.put("/v0/topics/fill", json={"durability": "disk"}).raise_for_status()
            full = None
            for _ in range(2_000):  # 24 MiB holds far fewer than 2,000 × 200 KB batches
                r = c.post("/v0/topics/fill", json={"records": [{"data": blob}] * 50})
                if r.status_code == 200:
                    body = r.json()
                    acked += range(body["first_seq"], body["last_seq"] + 1)
                    continue
                full = r
                break
            assert full is not None, "the disk never filled"
            assert full.status_code == 507, full.text
            assert full.json()["error"]["code"] == "insufficient_storage"
            assert int(full.headers["retry-after"]) > 0
            ready = c.get("/v0/ready")
            assert ready.status_code == 200 and ready.json()["storage"] == "full"
            assert "topics_storage_full 1" in c.get("/v0/metrics").text
            # reads keep working, and a delete still commits (the reserve made room)
            assert _replay(c, "fill") == acked
            cut = acked[len(acked) // 2]
            r = c.post("/v0/topics/fill/delete", json={"before_seq": cut})
            assert r.status_code == 200, r.text
            kept = [s for s in acked if s >= cut]
            # the freed pages are reused: writes resume without a restart
            deadline = time.monotonic() + 15
            while True:
                r = c.post("/v0/topics/fill", json={"records": [{"data": "after"}]})
                if r.status_code == 200:
                    kept.append(r.json()["first_seq"])
                    break
                assert r.status_code == 507, r.text
                assert time.monotonic() < deadline, "writes did not resume after space was freed"
                time.sleep(0.1)
            assert c.get("/v0/ready").json()["storage"] == "ok"
        server.kill()
        server.start()
        with httpx.Client(base_url=server.url, timeout=30) as c:
            assert _replay(c, "fill") == kept, "an acknowledged record was lost"
