"""Server configuration and lifecycle (SPEC §15)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.server._helpers import unique, write
from tests.serverproc import ServerProcess


def test_port_file_reports_bound_address(server: ServerProcess) -> None:
    """§15: TOPICS_PORT=0 binds an ephemeral port; the port file holds host:port."""
    port_file = Path(server.data_dir.parent / f"{server.data_dir.name}.port")
    text = port_file.read_text().strip()
    assert text == f"127.0.0.1:{server.port}"
    assert server.port > 0


def test_host_may_carry_the_port(server_factory: Callable[..., ServerProcess]) -> None:
    """§15: a TOPICS_HOST containing `:` is a full host:port; TOPICS_PORT is then ignored."""
    proc = server_factory(env={"TOPICS_HOST": "127.0.0.1:0", "TOPICS_PORT": "1"})
    assert proc.port not in (0, 1)
    with httpx.Client(base_url=proc.url, timeout=30.0) as http:
        assert http.get("/v0/health").json()["status"] == "ok"


def test_unwritable_port_file_aborts_startup(tmp_path: Path) -> None:
    """§15: failing to write TOPICS_PORT_FILE aborts startup."""
    bad = tmp_path / "no-such-dir" / "port"
    proc = ServerProcess(data_dir=tmp_path / "data", env={"TOPICS_PORT_FILE": str(bad)})
    proc.startup_timeout = 10.0
    try:
        with pytest.raises(RuntimeError, match="exited early"):
            proc.start()
    finally:
        proc.stop()
    assert proc.proc is not None
    assert proc.proc.returncode not in (0, None)


def test_sigterm_with_a_parked_long_poll_exits_in_bounded_time(
    server_factory: Callable[..., ServerProcess],
) -> None:
    proc = server_factory()
    topic = unique()
    with httpx.Client(base_url=proc.url, timeout=30.0) as http:
        write(http, topic, [{"data": 1}])
    outcome: dict[str, object] = {}

    def long_poll() -> None:
        try:
            with httpx.Client(base_url=proc.url, timeout=40.0) as client:
                outcome["resp"] = client.post(
                    f"/v0/topics/{topic}/diff", json={"from_seq": 1, "wait_ms": 30000}
                )
        except httpx.HTTPError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=long_poll)
    thread.start()
    # parked: the poll has read the topic (its last_read_ts is set) and waits for a write
    with httpx.Client(base_url=proc.url, timeout=30.0) as http:
        deadline = time.monotonic() + 20
        while (
            http.get(f"/v0/topics/{topic}", params={"touch": "false"}).json()["last_read_ts"]
            is None
        ):
            assert time.monotonic() < deadline, "the long-poll never reached the server"
            time.sleep(0.01)
    started = time.monotonic()
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.proc.wait(20) == 0
    # released at once, not after the 10 s grace period for open connections
    assert time.monotonic() - started < 5.0
    thread.join(20)
    assert not thread.is_alive()
    resp = outcome.get("resp")
    assert isinstance(resp, httpx.Response), outcome.get("error")
    assert resp.status_code in (200, 503), resp.text
    if resp.status_code == 200:
        assert resp.json()["records"] == []


def test_idempotency_survives_restart_for_disk_topics(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """§16: idempotency entries persist with disk/fsync topics for their window."""
    proc = server_factory(data_dir=tmp_path / "data")
    topic = unique()
    with httpx.Client(base_url=proc.url, timeout=30.0) as http:
        write(http, topic, [{"data": 1}, {"data": 2}], idempotency_key="k")
        write(http, topic, [{"data": 3}])
    proc.restart()
    with httpx.Client(base_url=proc.url, timeout=30.0) as http:
        repeat = write(http, topic, [{"data": "again"}], idempotency_key="k")
        assert repeat["deduped"] is True
        assert (repeat["seqs"], repeat["head_seq"], repeat["count"]) == ([1, 2], 2, 2)
        fresh = write(http, topic, [{"data": 4}])
        assert fresh["seqs"] == [4]
