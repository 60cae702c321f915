"""Recovery never hangs (SPEC §14): a store it cannot read ends start-up at once.

Each case damages one thing in a real store the server wrote, then starts the
server: it must exit with code 2 within seconds, print one line naming what is
damaged (table and key), and leave the store file byte for byte as it was.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.serverproc import ServerProcess

DAMAGE = {
    "config_not_json": (
        "UPDATE topics SET config = '{bad' WHERE name = 'orders'",
        "topics row 'orders'",
    ),
    "config_not_a_config": (
        """UPDATE topics SET config = '{"durability":"forever"}' WHERE name = 'orders'""",
        "topic 'orders'",
    ),
    "sizes_wrong_length": (
        "UPDATE chunks SET sizes = x'01000000' WHERE first = 1 AND topic = "
        "(SELECT instance FROM topics WHERE name = 'orders')",
        "chunks of topic 'orders'",
    ),
    "counter_not_integer": (
        "UPDATE topics SET head = 'many' WHERE name = 'orders'",
        "topics row 'orders'",
    ),
    "router_spec_not_json": ("UPDATE routers SET spec = '[1' WHERE name = 'fan'", "router"),
    "router_spec_invalid": (
        """UPDATE routers SET spec = '{"source": 5}' WHERE name = 'fan'""",
        "router 'fan'",
    ),
}


def _build(data_dir: Path) -> None:
    with ServerProcess(data_dir=data_dir) as server, httpx.Client(base_url=server.url) as c:
        c.put("/v0/topics/orders", json={"durability": "disk"}).raise_for_status()
        c.post("/v0/topics/orders", json={"records": [{"data": i} for i in range(3)]})
        c.put("/v0/routers/fan", json={"source": "orders", "dest": "copy"}).raise_for_status()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _problems(stderr: str) -> list[str]:
    """stderr without the start-up announcement (probes answer while recovery runs)."""
    return [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("topics serving")]


def _start(data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "TOPICS_HOST": "127.0.0.1",
        "TOPICS_PORT": "0",
        "TOPICS_DATA_DIR": str(data_dir),
    }
    return subprocess.run(
        [sys.executable, "-m", "topics_server"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,  # "never hangs": a hang fails the test here
    )


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damage_stops_startup_naming_it(tmp_path: Path, case: str) -> None:
    data_dir = tmp_path / "data"
    _build(data_dir)
    sql, where = DAMAGE[case]
    db = sqlite3.connect(data_dir / "topics.db")
    db.execute(sql)
    db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    store = data_dir / "topics.db"
    before = _digest(store)
    done = _start(data_dir)
    assert done.returncode == 2, done.stderr
    lines = _problems(done.stderr)
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("topics serve: ")
    assert where in lines[0], lines[0]
    assert "Traceback" not in done.stderr
    assert _digest(store) == before, "the damaged store must not be touched"


def test_garbage_in_a_page_stops_startup(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    _build(data_dir)
    store = data_dir / "topics.db"
    raw = bytearray(store.read_bytes())
    page = int.from_bytes(raw[16:18], "big") or 65536
    raw[page : page * 2] = b"\xa5" * page  # page 2: the first table's root
    store.write_bytes(bytes(raw))
    before = _digest(store)
    done = _start(data_dir)
    assert done.returncode == 2, done.stderr
    lines = _problems(done.stderr)
    assert len(lines) == 1 and lines[0].startswith("topics serve: "), done.stderr
    assert str(store) in lines[0]
    assert _digest(store) == before


def test_an_empty_store_file_is_a_fresh_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "topics.db").write_bytes(b"")
    with ServerProcess(data_dir=data_dir) as server, httpx.Client(base_url=server.url) as c:
        assert c.get("/v0/topics").json()["topics"] == []
