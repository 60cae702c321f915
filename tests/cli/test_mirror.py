"""``topics mirror`` end to end: real servers and real relay processes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.cli.conftest import cli_env, run_in_pty
from tests.serverproc import ServerProcess, free_port
from topics_cli.mirror.plan import (
    META_KEY,
    batch_key,
    hop_info,
    parse_endpoint,
    plan_batch,
)
from topics_client import Client, Record, TopicNotFoundError


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Callable[[str], ServerProcess]]:
    started: list[ServerProcess] = []

    def start(name: str, port: int = 0, run: bool = True, **env: str) -> ServerProcess:
        server = ServerProcess(data_dir=tmp_path / name, port=port, env=env)
        started.append(server)
        return server.start() if run else server

    yield start
    for server in started:
        server.stop()


def relay(tmp_path: Path, *args: str, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "topics_cli", "mirror", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env("http://127.0.0.1:9", tmp_path, **env),
        cwd=tmp_path,
    )


def finish(proc: subprocess.Popen[bytes], timeout: float) -> tuple[bytes, bytes]:
    """``communicate``, and a relay that outlives ``timeout`` is killed, never left behind."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise


def run_relay(tmp_path: Path, *args: str, timeout: float = 60) -> tuple[int, str, str]:
    proc = relay(tmp_path, *args)
    out, err = finish(proc, timeout)
    return proc.returncode, out.decode(), err.decode()


def stop(proc: subprocess.Popen[bytes]) -> tuple[int, str, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = finish(proc, 30)
    return proc.returncode, out.decode(), err.decode()


def read_all(url: str, topic: str, node: str | None = None) -> list[Record]:
    with Client(url) as client:
        try:
            return list(client.topics.replay(topic, node=node))
        except TopicNotFoundError:
            return []


def wait_until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.05)


def write(url: str, topic: str, node: str, ids: list[str], meta: Any = None) -> None:
    records = [{"data": {"id": i}, **({"meta": meta} if meta else {})} for i in ids]
    with Client(url) as client:
        client.topics.write(topic, records, node=node)


# -- pure decisions


def test_plan_skips_records_already_on_the_destination_path_and_at_the_hop_cap() -> None:
    home = Record(seq=1, ts=0, data=1, node="api-fra")
    echo = Record(seq=2, ts=0, data=2, meta={META_KEY: {"hops": 1, "path": ["iad"]}})
    tired = Record(seq=3, ts=0, data=3, meta={META_KEY: {"hops": 8, "path": list("abcdefgh")}})
    seven = Record(seq=4, ts=0, data=4, tag="t", meta={"k": 1, META_KEY: {"hops": 7, "path": []}})
    plan = plan_batch([home, echo, tired, seven], source="fra", dest="iad", topic="chat")
    assert (plan.skipped_loop, plan.skipped_hops) == (1, 1)
    (c1, c4) = plan.writes
    s1, w1, s4, w4 = c1.seq, c1.record, c4.seq, c4.record
    assert (s1, w1["node"], w1["meta"][META_KEY]) == (
        1,
        "api-fra",
        {"hops": 1, "path": ["fra"], "topic": "chat", "seq": 1},
    )
    assert (s4, w4["tag"], w4["meta"]["k"], hop_info(w4["meta"])[0]) == (4, "t", 1, 8)
    full = Record(seq=5, ts=0, data=5, meta={f"k{i}": i for i in range(64)})
    wrapped = plan_batch([full], source="a", dest="b", topic="t").writes[0].record["meta"]
    assert wrapped["_topics_original_meta"] == full.meta and hop_info(wrapped)[0] == 1


def test_keys_and_endpoints() -> None:
    assert batch_key("fra", "orders", 41, 1760000000123) == "mirror:fra:orders:41@1760000000123"
    assert len(batch_key("fra", "x" * 255, 41, 1760000000123).encode()) <= 256
    assert parse_endpoint("fra=http://h:4000", with_topic=False).name == "fra"
    e = parse_endpoint("http://h:4000/orders.fra", with_topic=True)
    assert (e.name, e.url, e.topic) == ("h:4000", "http://h:4000", "orders.fra")
    with pytest.raises(ValueError):
        parse_endpoint("h:4000", with_topic=False)


# -- done-when tests


def test_two_way_mirror_each_side_sees_the_other_exactly_once(
    servers: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    fra, iad = servers("fra"), servers("iad")
    write(fra.url, "chat:general", "api-fra", ["f1", "f2"])
    write(iad.url, "chat:general", "api-iad", ["i1"])
    proc = relay(
        tmp_path,
        f"fra={fra.url}",
        f"iad={iad.url}",
        "--topic",
        "chat:*",
        "--both-ways",
        "-c",
        str(tmp_path / "mirror.cp"),
        "--relist",
        "0.3s",
    )
    try:
        write(fra.url, "chat:general", "api-fra", ["f3"])
        write(iad.url, "chat:general", "api-iad", ["i2", "i3"])
        write(iad.url, "chat:late", "api-iad", ["late1"])  # created after start: re-listed
        wait_until(lambda: len(read_all(fra.url, "chat:general", "api-fra")) == 3)
        wait_until(lambda: len(read_all(iad.url, "chat:general", "api-iad")) == 3)
        wait_until(lambda: len(read_all(fra.url, "chat:late")) == 1)
        write(fra.url, "chat:general", "api-fra", ["f4"])  # live, after catch-up
        wait_until(lambda: len(read_all(iad.url, "chat:general", "api-iad")) == 4)
    finally:
        code, out, err = stop(proc)
    assert code == 0, err
    ids = lambda rs: sorted(r.data["id"] for r in rs)  # noqa: E731
    assert ids(read_all(fra.url, "chat:general", "api-fra")) == ["i1", "i2", "i3"]
    assert ids(read_all(iad.url, "chat:general", "api-iad")) == ["f1", "f2", "f3", "f4"]
    # no echoes at all: each side holds its own records once and the other's once
    assert ids(read_all(fra.url, "chat:general")) == ["f1", "f2", "f3", "f4", "i1", "i2", "i3"]
    assert ids(read_all(iad.url, "chat:general")) == ["f1", "f2", "f3", "f4", "i1", "i2", "i3"]
    assert {r.node for r in read_all(iad.url, "chat:general", "api-iad")} == {"api-fra"}
    events = [orjson.loads(line) for line in out.splitlines()]
    assert events[-1]["event"] == "stop" and "lag" in events[-1]
    saved = orjson.loads((tmp_path / "mirror.cp").read_bytes())
    assert saved["fra/chat:general"] >= 4 and saved["iad/chat:late"] == 1


def test_triangle_terminates_and_delivers_each_record_once(
    servers: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    a, b, c = servers("a"), servers("b"), servers("c")
    for s, n in ((a, "A"), (b, "B"), (c, "C")):
        write(s.url, "t", f"node-{n}", [f"{n}{i}" for i in range(3)])
    # one record already at the hop cap: copied nowhere
    write(a.url, "t", "node-A", ["tired"], meta={META_KEY: {"hops": 8, "path": ["x"] * 8}})
    ring = [("a", a, "b", b), ("b", b, "c", c), ("c", c, "a", a)]
    procs = [relay(tmp_path, f"{x}={sx.url}", f"{y}={sy.url}", "-t", "t") for x, sx, y, sy in ring]
    try:
        for s, n in ((a, 10), (b, 9), (c, 9)):
            wait_until(lambda s=s, n=n: len(read_all(s.url, "t")) == n)
    finally:
        results = [stop(p) for p in procs]
    assert all(code == 0 for code, _, _ in results), results
    for s in (a, b, c):
        ids = Counter(r.data["id"] for r in read_all(s.url, "t"))
        assert set(ids.values()) == {1}, ids  # every record once, nothing circulating
        assert ("tired" in ids) == (s is a) and len(ids) == (10 if s is a else 9)


def test_full_mesh_of_two_way_relays_terminates_with_two_routes_per_record(
    servers: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    a, b, c = servers("a"), servers("b"), servers("c")
    named = {"A": a, "B": b, "C": c}
    for n, s in named.items():
        write(s.url, "t", f"node-{n}", [f"{n}{i}" for i in range(2)])
    pairs = [("A", "B"), ("B", "C"), ("C", "A")]
    procs = [
        relay(tmp_path, f"{x}={named[x].url}", f"{y}={named[y].url}", "-t", "t", "--both-ways")
        for x, y in pairs
    ]
    try:
        # own records once, each other server's twice (directly, and through the third)
        for s in named.values():
            wait_until(lambda s=s: len(read_all(s.url, "t")) == 10)
    finally:
        results = [stop(p) for p in procs]
    assert all(code == 0 for code, _, _ in results), results
    for n, s in named.items():
        ids = Counter(r.data["id"] for r in read_all(s.url, "t"))
        assert {i: k for i, k in ids.items() if i.startswith(n)} == {f"{n}0": 1, f"{n}1": 1}
        assert {k for i, k in ids.items() if not i.startswith(n)} == {2}
        hops = {hop_info(r.meta)[0] for r in read_all(s.url, "t")}
        assert hops == {0, 1, 2}


def test_a_source_topic_deleted_and_recreated_is_copied_again_from_its_start(
    servers: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    src, dst = servers("src"), servers("dst")
    write(src.url, "t", "n", ["old1", "old2"])
    cp = tmp_path / "cp"
    proc = relay(
        tmp_path, f"s={src.url}", f"d={dst.url}", "-t", "t", "-c", str(cp), "--relist", "0.3s"
    )
    try:
        wait_until(lambda: len(read_all(dst.url, "t")) == 2)
        with Client(src.url) as client:
            client.topics.delete("t")
        wait_until(lambda: orjson.loads(cp.read_bytes()).get("s/t") == 0)
        # the new instance passes the old cursor: only the deletion tells them apart, and
        # its seqs 1.. must not be taken for the old instance's batches by the idempotency keys
        write(src.url, "t", "n", ["new1", "new2", "new3"])
        wait_until(lambda: len(read_all(dst.url, "t")) == 5)
    finally:
        code, _, err = stop(proc)
    assert code == 0, err
    assert [r.data["id"] for r in read_all(dst.url, "t")] == [
        "old1",
        "old2",
        "new1",
        "new2",
        "new3",
    ]


def test_sigkill_at_random_points_loses_and_doubles_nothing(
    servers: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    src, dst = servers("src"), servers("dst")
    total = 20_000
    with Client(src.url) as client:
        for start in range(0, total, 5000):
            client.topics.write("orders", [{"data": start + i} for i in range(5000)])
    cp = str(tmp_path / "orders.cp")
    args = (f"--from=src={src.url}/orders", f"--to=dst={dst.url}/orders", "-c", cp)
    rng = random.Random(17)
    began = time.monotonic()
    kills = Counter[str]()
    for round_ in range(20):
        if round_ < 10:
            # first, after a random write, before its checkpoint (the re-send must be deduped);
            # these ten rounds copy at most 10 x 8 writes x 200 records < total, so each has a
            # write left to die after, however fast the machine.
            after = str(rng.randint(1, 8))
            proc = relay(tmp_path, *args, "--batch", "200", TOPICS_MIRROR_KILL_AFTER_WRITES=after)
        else:  # at a random moment (the copy may be done by then: the relay is still killed)
            proc = relay(tmp_path, *args, "--batch", "200")
            time.sleep(rng.uniform(0.4, 1.2))
            proc.kill()
        finish(proc, 30)
        kills[str(proc.returncode)] += 1
    assert kills == Counter({str(-signal.SIGKILL): 20})
    code, _, err = run_relay(tmp_path, *args, "--once")
    assert code == 0, err
    assert time.monotonic() - began < 90
    copies = read_all(dst.url, "orders")
    seqs = Counter(r.meta[META_KEY]["seq"] for r in copies if r.meta)
    assert len(copies) == total and set(seqs) == set(range(1, total + 1))
    assert max(seqs.values()) == 1
    assert [r.data for r in copies] == list(range(total))  # and in source order


def test_capped_source_that_evicted_reports_the_gap_and_writes_a_marker(
    servers: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    src, dst = servers("src"), servers("dst")
    with Client(src.url) as client:
        client.topics.put("capped", cap_records=10)
        client.topics.write("capped", [{"data": i} for i in range(50)])
    cp = str(tmp_path / "cp")
    args = (f"s={src.url}", f"d={dst.url}", "-t", "capped", "-c", cp, "--once")
    code, out, err = run_relay(tmp_path, *args, "--fail-on-gap")
    assert code == 3, err
    assert "GAP in capped: source seqs 1..40" in err
    assert not os.path.exists(cp) or "s/capped" not in orjson.loads(Path(cp).read_bytes())
    code, out, err = run_relay(tmp_path, *args, "--gap-marker")
    assert code == 0, err
    gap = next(e for e in map(orjson.loads, out.splitlines()) if e["event"] == "gap")
    assert (gap["gap_from"], gap["gap_to"], gap["missed_estimate"]) == (1, 40, 40)
    stopped = [e for e in map(orjson.loads, out.splitlines()) if e["event"] == "stop"]
    assert stopped[0]["gaps"] == 1
    with Client(dst.url) as client:
        copies = list(client.topics.replay("capped", include_tags=True))
    marker = copies[0]
    assert marker.tag == "mirror-gap"
    assert marker.data["mirror_gap"]["gap_to"] == 40 and marker.node == "topics-mirror"
    assert [r.data for r in copies[1:]] == list(range(40, 50))


def test_metrics_endpoint_and_pipe_status(
    servers: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    import httpx

    src, dst = servers("src"), servers("dst")
    write(src.url, "m", "n1", ["a", "b"])
    proc = relay(
        tmp_path,
        f"s={src.url}",
        f"d={dst.url}",
        "-t",
        "m",
        "--metrics-port",
        "0",
        "--status-every",
        "0.2s",
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline().decode()
        url = line.split("metrics on ", 1)[1].strip()
        wait_until(lambda: len(read_all(dst.url, "m")) == 2)
        text = httpx.get(url).text
        assert 'topics_mirror_copied_records_total{source="s",dest="d",topic="m"} 2' in text
        assert 'topics_mirror_lag_records{source="s",dest="d",topic="m"} 0' in text
        assert 'topics_mirror_retries_total{source="s",dest="d",side="dest"} 0' in text
    finally:
        code, out, _ = stop(proc)
    assert code == 0
    assert any(orjson.loads(x)["event"] == "status" for x in out.splitlines())


def test_usage_errors_are_one_line(tmp_path: Path) -> None:
    code, _, err = run_relay(tmp_path, "a=http://h:1", "-t", "x")
    assert code == 2 and "expected two servers" in err
    code, _, err = run_relay(tmp_path, "a=http://h:1", "b=http://h:2")
    assert code == 2 and "--topic" in err
    code, _, err = run_relay(tmp_path, "--from", "http://h:1/x", "--to", "http://h:1/x")
    assert code == 2 and "same topics on one server" in err


def test_once_gives_up_on_an_unreachable_server_with_one_line(tmp_path: Path) -> None:
    a, b = (f"http://127.0.0.1:{free_port()}" for _ in "ab")
    code, _, err = run_relay(
        tmp_path, f"a={a}", f"b={b}", "-t", "x", "--once", "--give-up-after", "1"
    )
    assert code == 6, err
    assert "Traceback" not in err and err.count("topics: error:") == 1
    assert f"source server a ({a}) failed 2 times in a row, giving up" in err


def metric(url: str, series: str) -> float:
    import httpx

    for line in httpx.get(url).text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return float("nan")


def test_reconnects_with_backoff_on_both_sides(
    servers: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    src = servers("src", port=free_port())
    dst = servers("dst", port=free_port(), run=False)  # not up yet
    write(src.url, "r", "n", ["a", "b"])
    dst_url = f"http://127.0.0.1:{dst.fixed_port}"
    proc = relay(tmp_path, f"s={src.url}", f"d={dst_url}", "-t", "r", "--metrics-port", "0")
    try:
        assert proc.stderr is not None
        url = proc.stderr.readline().decode().split("metrics on ", 1)[1].strip()
        labels = 'source="s",dest="d"'
        wait_until(lambda: metric(url, f'topics_mirror_retries_total{{{labels},side="dest"}}') >= 1)
        dst.start()
        wait_until(lambda: len(read_all(dst.url, "r")) == 2)
        src.restart()  # the watch stream drops; the relay reconnects from its cursor
        write(src.url, "r", "n", ["c"])
        wait_until(lambda: len(read_all(dst.url, "r")) == 3)
        assert metric(url, f'topics_mirror_retries_total{{{labels},side="source"}}') >= 1
    finally:
        code, _, err = stop(proc)
    assert code == 0, err
    assert [r.data["id"] for r in read_all(dst.url, "r")] == ["a", "b", "c"]
    assert "retrying" in err


def test_sigterm_finishes_the_batch_in_flight_and_saves_the_checkpoint(
    servers: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    src, dst = servers("src"), servers("dst")
    with Client(src.url) as client:
        client.topics.write("big", [{"data": i} for i in range(10_000)])
    cp = tmp_path / "big.cp"
    proc = relay(
        tmp_path, f"s={src.url}", f"d={dst.url}", "-t", "big", "-c", str(cp), "--batch", "50"
    )
    wait_until(lambda: len(read_all(dst.url, "big")) > 0)
    code, _, err = stop(proc)
    assert code == 0, err
    copies = read_all(dst.url, "big")
    saved = orjson.loads(cp.read_bytes())["s/big"]
    assert 0 < saved < 10_000  # stopped mid-copy...
    assert copies[-1].meta is not None and copies[-1].meta[META_KEY]["seq"] == saved  # ...in step
    assert [r.data for r in copies] == list(range(saved))


def test_terminal_gets_a_status_line_not_json(
    servers: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    src, dst = servers("src"), servers("dst")
    write(src.url, "p", "n", ["a", "b", "c"])
    code, text = run_in_pty(
        ["mirror", f"s={src.url}", f"d={dst.url}", "-t", "p", "--once"],
        cli_env("http://127.0.0.1:9", tmp_path),
    )
    assert code == 0, text
    assert "s->d 3 copied" in text and "lag p=0" in text and "checkpoint" in text
    assert '"event"' not in text


def test_each_server_gets_its_own_key_and_a_refused_key_exits_5(
    servers: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    src = servers("src", TOPICS_API_KEYS="fra-secret")
    dst = servers("dst", TOPICS_API_KEYS="iad-secret")
    with Client(src.url, api_key="fra-secret") as client:
        client.topics.write("k", [{"data": 1}, {"data": 2}])
    args = (f"fra={src.url}", f"iad={dst.url}", "-t", "k", "--once")
    code, _, err = run_relay(tmp_path, *args, "--source-key", "fra-secret", "--dest-key", "nope")
    assert code == 5, err
    assert err.count("topics: error:") == 1 and "Traceback" not in err
    assert f"dest server iad ({dst.url}) refused" in err
    code, _, err = run_relay(
        tmp_path, *args, "--source-key", "fra-secret", "--dest-key", "iad-secret"
    )
    assert code == 0, err
    with Client(dst.url, api_key="iad-secret") as client:
        assert [r.data for r in client.topics.replay("k")] == [1, 2]
