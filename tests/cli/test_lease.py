"""``topics lease``: claim/ack/nack/extend and the ``run`` worker, against the real server."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.cli.conftest import Run, cli_env, run_in_pty
from tests.serverproc import ServerProcess, free_port

Topics = Callable[..., Run]


def _queue(topics: Topics, name: str, *flags: str) -> None:
    r = topics("create", name, "--type", "queue", *flags)
    assert r.code == 0, r.err


def _state(base_url: str, name: str) -> dict[str, Any]:
    return httpx.get(f"{base_url}/v0/topics/{name}").json()


def _until(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _popen(base_url: str, tmp_path: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "topics_cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(base_url, tmp_path),
        cwd=tmp_path,
    )


def test_claim_ack_nack_extend(topics: Topics, topic: str, base_url: str) -> None:
    _queue(topics, topic)
    assert topics("put", topic, '{"n": 1}', '"two"', "3", "--tag", "t").code == 0

    r = topics("lease", "claim", topic, "--node", "w1", "--max", "2", "-o", "jsonl")
    assert r.code == 0, r.err
    jobs = r.jsonl()
    assert [(j["topic"], j["$seq"], j["data"], j["deliveries"]) for j in jobs] == [
        (topic, 1, {"n": 1}, 1),
        (topic, 2, "two", 1),
    ]
    assert all(j["lease_id"].startswith("lease_") and j["$tag"] == "t" for j in jobs)
    assert all(j["deadline"] > j["$ts"] for j in jobs)

    r = topics("info", topic, "-o", "json")
    assert orjson.loads(r.out)["queue"] == {"ready": 1, "in_flight": 2, "dead_lettered": 0}

    # ack, fenced by lease id; a second ack (and a never-claimed seq) are skipped, exit 0
    r = topics("lease", "ack", topic, "--node", "w1", "1", "--lease-id", jobs[0]["lease_id"])
    assert r.code == 0, r.err
    assert r.jsonl() == [{"topic": topic, "acked": 1, "skipped": [], "ready": 1, "in_flight": 1}]
    r = topics("lease", "ack", topic, "--node", "w1", "1", "3")
    assert r.jsonl()[0]["acked"] == 0 and r.jsonl()[0]["skipped"] == [1, 3]
    # a stale fence, a wrong node
    r = topics("lease", "ack", topic, "--node", "w1", "2", "--lease-id", "lease_ffff")
    assert (r.code, r.jsonl()[0]["skipped"]) == (0, [2])
    r = topics("lease", "ack", topic, "--node", "w2", "2")
    assert r.jsonl()[0]["skipped"] == [2]

    # extend: --lease-ms is required; deadlines per seq
    assert topics("lease", "extend", topic, "--node", "w1", "2").code == 2
    before = jobs[1]["deadline"]
    r = topics("lease", "extend", topic, "--node", "w1", "2", "--lease-ms", "600000")
    assert r.code == 0, r.err
    out = r.jsonl()[0]
    assert (out["extended"], out["skipped"]) == (1, [])
    assert out["deadlines"]["2"] > before

    # nack with a delay: neither ready nor in flight until it is due
    r = topics("lease", "nack", topic, "--node", "w1", "2", "--delay-ms", "600000")
    assert r.code == 0, r.err
    assert r.jsonl()[0] | {"ready": None} == {
        "topic": topic,
        "nacked": 1,
        "skipped": [],
        "ready": None,
        "in_flight": 0,
    }
    assert _state(base_url, topic)["queue"] == {"ready": 1, "in_flight": 0, "dead_lettered": 0}

    # the next claim gets job 3 (job 2 is delayed); a plain nack makes it ready again
    r = topics("lease", "claim", topic, "--node", "w1", "-o", "jsonl")
    assert [j["$seq"] for j in r.jsonl()] == [3]
    assert topics("lease", "nack", topic, "--node", "w1", "3").jsonl()[0]["nacked"] == 1
    r = topics("lease", "claim", topic, "--node", "w2", "-o", "jsonl")
    assert [(j["$seq"], j["deliveries"]) for j in r.jsonl()] == [(3, 2)]

    # an empty claim prints nothing and exits 0
    r = topics("lease", "claim", topic, "--node", "w2", "-o", "jsonl")
    assert (r.code, r.out) == (0, "")


def test_claim_pretty_json_and_data(topics: Topics, topic: str) -> None:
    _queue(topics, topic)
    topics("put", topic, '{"n": 1}', '"two"')
    r = topics("lease", "claim", topic, "--node", "w1", "-o", "json")
    doc = orjson.loads(r.out)
    assert (doc["topic"], doc["count"], doc["ready"]) == (topic, 1, 1)
    assert doc["claimed"][0]["data"] == {"n": 1}
    r = topics("lease", "claim", topic, "--node", "w1", "-o", "data")
    assert r.out == "two\n"
    r = topics("lease", "claim", topic, "--node", "w1", "-o", "pretty")
    assert "no job claimed" in r.out


def test_usage_and_api_errors(topics: Topics, topic: str) -> None:
    r = topics("lease", "claim", topic + "-absent", "--node", "w1")
    assert r.code == 4 and "topic_not_found" in r.err
    r = topics("lease", "ack", topic + "-absent", "--node", "w1", "1")
    assert r.code == 4
    r = topics("lease", "run", topic + "-absent", "--exec", "true")
    assert r.code == 4
    topics("put", topic, "1")  # a log topic
    r = topics("lease", "claim", topic, "--node", "w1")
    assert r.code == 1 and "not_a_queue" in r.err
    r = topics("lease", "nack", topic, "--node", "w1", "1")
    assert r.code == 1 and "not_a_queue" in r.err
    r = topics("lease", "run", topic, "--exec", "true")
    assert r.code == 1 and "not a queue" in r.err
    # usage
    assert topics("lease", "claim", topic).code == 2  # --node missing
    r = topics("lease", "ack", topic, "--node", "w", "1", "2", "--lease-id", "lease_1")
    assert r.code == 2 and "one per SEQ" in r.err
    assert topics("lease", "run", topic, "--exec", "true", "--idle-timeout", "x").code == 2
    for sub in ("claim", "ack", "nack", "extend", "run"):
        r = topics("lease", sub, "--help")
        assert r.code == 0 and "Examples:" in r.out, sub


def test_run_backlog_exactly_once(
    topics: Topics, topic: str, base_url: str, tmp_path: Path
) -> None:
    _queue(topics, topic)
    topics("put", topic, input="".join(f'{{"n": {i}}}\n' for i in range(1, 51)))
    cmd = 'printf "%s %s %s %s\\n" "$TOPICS_JOB_SEQ" "$TOPICS_JOB_DELIVERIES" '
    cmd += '"$TOPICS_JOB_TOPIC" "$(cat)" >> ran.txt'
    r = topics(
        "lease", "run", topic, "--exec", cmd, "-j", "8", "--once", "--node", "w", "-o", "jsonl"
    )
    assert r.code == 0, r.err
    lines = [ln.split(" ", 3) for ln in (tmp_path / "ran.txt").read_text().splitlines()]
    seqs = Counter(int(seq) for seq, *_ in lines)
    assert sorted(seqs) == list(range(1, 51)) and set(seqs.values()) == {1}
    assert {(d, t) for _, d, t, _ in lines} == {("1", topic)}
    assert sorted(orjson.loads(data)["n"] for *_, data in lines) == list(range(1, 51))
    summary = next(e["$summary"] for e in r.err_jsonl() if "$summary" in e)
    assert (summary["done"], summary["failed"], summary["stopped_by"]) == (50, 0, "drained")
    assert _state(base_url, topic)["count"] == 0


def test_run_retries_then_dead_letters(
    topics: Topics, topic: str, base_url: str, tmp_path: Path
) -> None:
    dlq = topic + ".dlq"
    _queue(topics, topic, "--max-deliveries", "3", "--dead-letter", dlq)
    topics("put", topic, *(str(i) for i in range(1, 11)), '"poison"')
    # even jobs fail their first delivery; "poison" fails every time
    cmd = (
        'data=$(cat); echo "$TOPICS_JOB_SEQ $TOPICS_JOB_DELIVERIES $TOPICS_JOB_MAX_DELIVERIES" '
        '>> tried.txt; [ "$data" != \'"poison"\' ] || exit 3; '
        '[ $((data % 2)) = 1 ] || [ "$TOPICS_JOB_DELIVERIES" -gt 1 ] || exit 1; '
        'echo "$TOPICS_JOB_SEQ" >> ok.txt'
    )
    r = topics(
        "lease", "run", topic, "--exec", cmd, "-j", "4", "--once",
        "--backoff-base-ms", "20", "--backoff-max-ms", "50", "-o", "jsonl",
    )  # fmt: skip
    assert r.code == 0, r.err
    ok = Counter(int(x) for x in (tmp_path / "ok.txt").read_text().split())
    assert sorted(ok) == list(range(1, 11)) and set(ok.values()) == {1}
    tried = Counter(int(x.split()[0]) for x in (tmp_path / "tried.txt").read_text().splitlines())
    assert tried == {**{i: 1 if i % 2 else 2 for i in range(1, 11)}, 11: 3}
    assert {x.split()[2] for x in (tmp_path / "tried.txt").read_text().splitlines()} == {"3"}
    failed = [e["$job_failed"] for e in r.err_jsonl() if "$job_failed" in e]
    assert [(f["seq"], f["exit"], f["delay_ms"]) for f in failed if f["seq"] == 11] == [
        (11, 3, 20),
        (11, 3, 40),
        (11, 3, 0),  # the last delivery: no backoff, the next claim dead-letters it
    ]
    summary = next(e["$summary"] for e in r.err_jsonl() if "$summary" in e)
    assert (summary["done"], summary["failed"], summary["exhausted"]) == (10, 8, 1)
    state = _state(base_url, topic)
    assert (state["count"], state["queue"]["dead_lettered"]) == (0, 1)
    dead = httpx.post(f"{base_url}/v0/topics/{dlq}/diff", json={}).json()["records"]
    assert len(dead) == 1 and dead[0]["data"] == "poison"
    assert dead[0]["meta"] == {
        "$dead_letter_from": topic,
        "$dead_letter_deliveries": "3",
        "$dead_letter_src_seq": "11",
    }


def test_run_sigterm_lets_the_running_job_finish(
    topics: Topics, topic: str, base_url: str, tmp_path: Path
) -> None:
    _queue(topics, topic)
    topics("put", topic, "1")
    proc = _popen(
        base_url,
        tmp_path,
        "lease", "run", topic, "--node", "w", "-o", "jsonl",
        "--exec", "touch started; sleep 0.5; touch finished",
    )  # fmt: skip
    try:
        _until(lambda: (tmp_path / "started").exists(), what="the job to start")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert (tmp_path / "finished").exists()
    summary = next(
        orjson.loads(x)["$summary"] for x in err.splitlines() if x.startswith(b'{"$summary')
    )
    assert (summary["done"], summary["killed"], summary["stopped_by"]) == (1, 0, "SIGTERM")
    assert _state(base_url, topic)["count"] == 0  # acked


def test_run_ctrl_c_kills_after_grace_and_hands_the_job_back(
    topics: Topics, topic: str, base_url: str, tmp_path: Path
) -> None:
    _queue(topics, topic)
    topics("put", topic, "1")
    proc = _popen(
        base_url,
        tmp_path,
        "lease", "run", topic, "--node", "w", "--grace", "0.2", "-o", "jsonl",
        "--exec", "touch started; sleep 60; touch finished",
    )  # fmt: skip
    try:
        _until(lambda: (tmp_path / "started").exists(), what="the job to start")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert b"interrupted" in err
    assert not (tmp_path / "finished").exists()
    # released (nacked without delay / the stream closed): ready again, no lease held
    assert _state(base_url, topic)["queue"] == {"ready": 1, "in_flight": 0, "dead_lettered": 0}


def test_run_idle_timeout(topics: Topics, topic: str, tmp_path: Path) -> None:
    _queue(topics, topic)
    topics("put", topic, "1", "2")
    start = time.monotonic()
    r = topics("lease", "run", topic, "--exec", "cat >> seen.txt", "--idle-timeout", "0.5s")
    assert r.code == 0, r.err
    assert time.monotonic() - start < 20
    assert (tmp_path / "seen.txt").read_text() == "1\n2\n"
    assert "stopped by idle" in r.err or '"stopped_by":"idle"' in r.err


def test_run_help_documents_the_job_contract(topics: Topics) -> None:
    r = topics("lease", "run", "--help")
    for name in ("TOPICS_JOB_SEQ", "TOPICS_JOB_LEASE_ID", "--concurrency", "--grace", "--once"):
        assert name in r.out


def test_run_status_line_on_a_terminal(
    topics: Topics, topic: str, base_url: str, tmp_path: Path
) -> None:
    """The live status line and the summary, through a pseudo-terminal."""
    _queue(topics, topic)
    topics("put", topic, "1", "2", "3")
    code, text = run_in_pty(
        ["lease", "run", topic, "--node", "tty", "--exec", "sleep 0.4", "--once"],
        cli_env(base_url, tmp_path),
    )
    assert code == 0, text
    assert f"lease run {topic} @tty | running 1/1 | done" in text
    assert "jobs/s" in text
    assert f"lease run {topic}: 3 done, 0 failed" in text


def test_run_rides_out_a_server_restart(topic: str, tmp_path: Path) -> None:
    """A draining server ends the /work stream (its ``server_shutting_down`` frame is the
    client's business, not a job); the worker reconnects to the restarted server and runs
    the next job, and the run ends cleanly."""
    server = ServerProcess(data_dir=tmp_path / "data", port=free_port()).start()
    try:
        env = cli_env(server.url, tmp_path)
        cli = [sys.executable, "-m", "topics_cli"]
        made = subprocess.run([*cli, "create", topic, "--type", "queue"], env=env, check=False)
        assert made.returncode == 0
        proc = _popen(server.url, tmp_path, "lease", "run", topic, "--node", "w", "-o", "jsonl",
                      "--exec", "cat >> ran.txt")  # fmt: skip
        ran = tmp_path / "ran.txt"
        try:
            httpx.post(f"{server.url}/v0/topics/{topic}", json={"records": [{"data": 1}]})
            _until(lambda: ran.exists() and ran.read_text() == "1\n", what="job 1")
            # job 1's ack must land before the restart, or it is (rightly) delivered again
            _until(lambda: _state(server.url, topic)["count"] == 0, what="job 1 acked")
            server.restart()
            assert proc.poll() is None, proc.communicate(timeout=5)
            httpx.post(f"{server.url}/v0/topics/{topic}", json={"records": [{"data": 2}]})
            _until(lambda: ran.read_text() == "1\n2\n", timeout=60, what="job 2 after the restart")
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
            proc.wait(10)
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
        assert proc.returncode == 0, err
        summary = next(
            orjson.loads(x)["$summary"] for x in err.splitlines() if x.startswith(b'{"$summary')
        )
        assert (summary["done"], summary["failed"], summary["lost"]) == (2, 0, 0), err
        assert _state(server.url, topic)["count"] == 0
    finally:
        server.stop()
