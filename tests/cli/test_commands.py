"""End-to-end runs of every command against the real server (subprocesses)."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson

from tests.cli.conftest import Run

Topics = Callable[..., Run]


def test_put_arguments_and_diff_roundtrip(topics: Topics, topic: str) -> None:
    r = topics("put", topic, '{"id": 1}', '"two"', "3", "--tag", "t:1", "--meta", "trace=t9")
    assert r.code == 0, r.err
    assert r.jsonl() == [
        {
            "topic": topic,
            "first_seq": 1,
            "last_seq": 3,
            "count": 3,
            "seqs": [1, 2, 3],
            "created": True,
            "deduped": False,
        }
    ]
    d = topics("diff", topic, "-o", "jsonl")
    assert d.code == 0, d.err
    recs = d.jsonl()
    assert [x["data"] for x in recs] == [{"id": 1}, "two", 3]
    assert all(x["$tag"] == "t:1" and x["meta"] == {"trace": "t9"} for x in recs)
    assert [x["$seq"] for x in recs] == [1, 2, 3]
    summary = d.err_jsonl()[-1]["$summary"]
    assert summary["topics"][topic] == {
        "records": 3,
        "first_seq": 1,
        "last_seq": 3,
        "gaps": 0,
        "missed": 0,
    }
    assert "3 records, seqs 1..3; 0 gaps" in topics("diff", topic, "-o", "data").err


def test_jsonl_is_lossless(topics: Topics, topic: str, base_url: str) -> None:
    httpx.post(
        f"{base_url}/v0/topics/{topic}",
        json={
            "records": [
                {"data": {"a": [1, None]}, "tag": "x", "node": "n1", "meta": {"m": 1}},
                {"data": None},
            ]
        },
    ).raise_for_status()
    server = httpx.post(f"{base_url}/v0/topics/{topic}/diff", json={"include_tags": True}).json()[
        "records"
    ]
    assert topics("diff", topic, "-o", "jsonl").jsonl() == server


def test_output_modes(topics: Topics, topic: str) -> None:
    topics("put", topic, '{"a": 1}', '"s"', "--tag", "k")
    assert topics("diff", topic, "-o", "data").out == '{"a":1}\ns\n'
    t = topics("diff", topic, "--template", r"{seq}\t{tag}\t{data}|{data[a]}")
    assert t.out == '1\tk\t{"a":1}|1\n2\tk\ts|\n'
    j = topics("diff", topic, "-o", "json")
    assert j.code == 0
    assert '\n  "$seq": 1,' in j.out
    p = topics("diff", topic, "-o", "pretty")
    assert "#k" in p.out and '{"a":1}' in p.out


def test_put_stdin_invalid_line_names_it_and_sends_nothing_of_its_batch(
    topics: Topics, topic: str
) -> None:
    lines = "".join(f'{{"i": {i}}}\n' for i in range(1, 8)) + "{oops\n" + '{"i": 9}\n'
    r = topics("put", topic, "--batch-size", "5", input=lines)
    assert r.code == 2
    assert "line 8" in r.err and "nothing of its batch" in r.err
    assert "Traceback" not in r.err
    # lines 1-5 (first batch) were appended; 6-9 (the bad batch) were not
    assert [x["data"]["i"] for x in topics("diff", topic).jsonl()] == [1, 2, 3, 4, 5]


def test_put_skip_invalid_and_raw(topics: Topics, topic: str) -> None:
    r = topics("put", topic, "--skip-invalid", input="1\nnope\n\n2\n")
    assert r.code == 0
    assert "skipped 1 invalid lines (2)" in r.err
    r = topics("put", topic, "--raw", input="hello world\nnope\n")
    assert r.code == 0
    assert [x["data"] for x in topics("diff", topic).jsonl()] == [1, 2, "hello world", "nope"]


def test_put_key_is_idempotent(topics: Topics, topic: str) -> None:
    data = "".join(f"{i}\n" for i in range(10))
    first = topics("put", topic, "--key", "imp-1", "--batch-size", "4", input=data)
    again = topics("put", topic, "--key", "imp-1", "--batch-size", "4", input=data)
    assert first.code == again.code == 0
    assert [x["deduped"] for x in again.jsonl()] == [True, True, True]
    assert len(topics("diff", topic).jsonl()) == 10


def test_put_no_create_and_config(topics: Topics, topic: str) -> None:
    r = topics("put", topic, "1", "--no-create")
    assert r.code == 4
    assert "topic_not_found" in r.err
    r = topics("put", topic, "1", "--config", "cap_records=7", "--config", "durability=memory")
    assert r.code == 0
    info = json.loads(topics("info", topic, "-o", "json").out)
    assert info["config"]["cap_records"] == 7
    assert info["config"]["durability"] == "memory"


def test_envelope_copies_a_topic(topics: Topics, topic: str) -> None:
    src, dst = topic, topic + "-copy"
    topics("put", src, '{"x": 1}', "--tag", "a", "--node", "n1", "--meta", "k=v")
    topics("put", src, '"plain"')
    copy = topics("diff", src, "-o", "jsonl")
    r = topics("put", dst, "--envelope", input=copy.out)
    assert r.code == 0, r.err
    strip = [{k: v for k, v in x.items() if k != "$ts"} for x in copy.jsonl()]
    got = [{k: v for k, v in x.items() if k != "$ts"} for x in topics("diff", dst).jsonl()]
    assert got == strip


def test_pipeline_100k(topics: Topics, topic: str, tmp_path: Path, base_url: str) -> None:
    """`topics put` from 100,000 stdin lines, then `topics diff -o jsonl | wc -l`."""
    import subprocess
    import sys

    from tests.cli.conftest import cli_env

    data = "".join(f'{{"n": {i}}}\n' for i in range(100_000))
    r = topics("put", topic, "-q", input=data, timeout=120)
    assert r.code == 0, r.err
    env = cli_env(base_url, tmp_path)
    pipe = subprocess.run(
        f"{sys.executable} -m topics_cli diff {topic} --from start -o jsonl | wc -l",
        shell=True,
        capture_output=True,
        env=env,
        timeout=120,
        check=True,
    )
    assert int(pipe.stdout.strip()) == 100_000


def test_positions_end_to_end(topics: Topics, topic: str) -> None:
    topics("put", topic, input="".join(f"{i}\n" for i in range(1, 21)))
    seqs = lambda r: [x["$seq"] for x in r.jsonl()]  # noqa: E731
    assert seqs(topics("diff", topic, "--from", "15")) == [16, 17, 18, 19, 20]
    assert seqs(topics("diff", topic, "--from", "-3")) == [18, 19, 20]
    assert seqs(topics("diff", topic, "--from", "5", "--until", "8")) == [6, 7, 8]
    assert seqs(topics("diff", topic, "--from", "start", "--count", "2")) == [1, 2]
    assert seqs(topics("diff", topic, "--from", "end")) == []
    assert len(seqs(topics("diff", topic, "--from", "@-1h"))) == 20
    assert seqs(topics("diff", topic, "--from", "@-0s")) == []
    bad = topics("diff", topic, "--from", "sometime")
    assert bad.code == 2 and "bad position" in bad.err


def test_follow_idle_timeout_and_count(topics: Topics, topic: str) -> None:
    topics("put", topic, "1", "2")
    r = topics("diff", topic, "--follow", "--idle-timeout", "300ms")
    assert r.code == 0
    assert [x["data"] for x in r.jsonl()] == [1, 2]
    r = topics("diff", topic, "--follow", "--count", "1")
    assert r.code == 0 and [x["data"] for x in r.jsonl()] == [1]


def test_checkpoint_resume_and_atomic_file(topics: Topics, topic: str, tmp_path: Path) -> None:
    cp = tmp_path / "cp.json"
    topics("put", topic, "1", "2", "3")
    r = topics("diff", topic, "-c", str(cp), "--count", "2")
    assert [x["data"] for x in r.jsonl()] == [1, 2]
    assert orjson.loads(cp.read_bytes()) == {topic: 2}
    r = topics("diff", topic, "-c", str(cp))
    assert [x["data"] for x in r.jsonl()] == [3]
    assert orjson.loads(cp.read_bytes()) == {topic: 3}
    topics("put", topic, "4")
    assert [x["data"] for x in topics("diff", topic, "-c", str(cp)).jsonl()] == [4]
    # no temp files are left behind; other topics in the file are kept
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".cp")) == []
    cp.write_text(json.dumps({"other": 9, topic: 4}))
    topics("diff", topic, "-c", str(cp))
    assert orjson.loads(cp.read_bytes()) == {"other": 9, topic: 4}
    cp.write_text("[1, 2]")
    bad = topics("diff", topic, "-c", str(cp))
    assert bad.code == 2 and "not a checkpoint" in bad.err


def _overrun(topics: Topics, topic: str) -> None:
    topics("create", topic, "--cap-records", "5")
    topics("put", topic, input="".join(f"{i}\n" for i in range(1, 21)))


def test_gap_reported_on_stderr_every_mode(topics: Topics, topic: str) -> None:
    _overrun(topics, topic)
    for mode in ("jsonl", "json"):
        r = topics("diff", topic, "-o", mode)
        assert r.code == 0
        gaps = [e["$gap"] for e in r.err_jsonl() if "$gap" in e]
        assert gaps == [
            {
                "topic": topic,
                "gap_from": 1,
                "gap_to": 15,
                "reason": "cap",
                "missed_estimate": 15,
                "earliest_seq": 16,
                "head_seq": 20,
                "cursor": 0,
                "resume_from": 15,
            }
        ]
        summary = next(e["$summary"] for e in r.err_jsonl() if "$summary" in e)
        assert summary["gaps"] == 1 and summary["missed"] == 15 and summary["records"] == 5
    for mode in ("pretty", "data"):
        r = topics("diff", topic, "-o", mode)
        assert r.code == 0
        assert f"GAP {topic}: seqs 1..15 lost (cap), ~15 missed; cursor 0 hit it" in r.err
        assert "1 gap, 15 missed" in r.err
    r = topics("diff", topic, "--template", "{seq}")
    assert "GAP" in r.err and r.out.split() == ["16", "17", "18", "19", "20"]


def test_gap_inline_and_fail(topics: Topics, topic: str, tmp_path: Path) -> None:
    _overrun(topics, topic)
    r = topics("diff", topic, "--on-gap", "inline")
    lines = r.jsonl()
    assert "$gap" in lines[0] and lines[0]["$gap"]["gap_to"] == 15
    assert [x["$seq"] for x in lines[1:]] == [16, 17, 18, 19, 20]
    cp = tmp_path / "c.json"
    r = topics("diff", topic, "--fail-on-gap", "-c", str(cp))
    assert r.code == 3
    assert r.out == ""
    assert "GAP" in r.err or "$gap" in r.err
    assert not cp.exists()  # the cursor never moved past an unreported gap
    assert topics("diff", topic, "--on-gap", "fail", "--from", "15").code == 0
    bad = topics("diff", topic, "--on-gap", "sometimes")
    assert bad.code == 2


def test_tombstone_check(topics: Topics, topic: str, tmp_path: Path) -> None:
    _overrun(topics, topic)
    cp = tmp_path / "cp.json"
    cp.write_text(json.dumps({topic: 17}))
    r = topics(
        "tombstone",
        "check",
        topic,
        "--from",
        "3",
        "--checkpoint",
        str(cp),
        "--sample",
        "0",
        "-o",
        "json",
    )
    assert r.code == 3
    report = json.loads(r.out)
    first, second = report["cursors"]
    assert (
        first["gap"]["gap_from"] == 4 and first["gap"]["gap_to"] == 15 and first["status"] == "gap"
    )
    assert second == {
        "cursor": 17,
        "source": str(cp),
        "gap": None,
        "lag": 3,
        "headroom": 2,
        "writes_until_eviction": 3,
        "evicted_in_ms": None,
        "evicted_by": None,
        "status": "ok",
    }
    ok = topics("gaps", "check", topic, "--from", "18", "--sample", "0", "-o", "pretty")
    assert ok.code == 0, ok.out + ok.err
    assert "lag 2" in ok.out


def test_tombstone_check_eta_and_warn_before(topics: Topics, topic: str) -> None:
    topics("create", topic, "--ttl", "1h")
    topics("put", topic, "1", "2")
    r = topics("tombstone", "check", topic, "--from", "0", "--sample", "0", "-o", "json")
    assert r.code == 0
    c = json.loads(r.out)["cursors"][0]
    assert c["evicted_by"] == "ttl" and 3_500_000 < c["evicted_in_ms"] <= 3_600_000
    pretty = topics("tombstone", "check", topic, "--from", "0", "--sample", "0", "-o", "pretty")
    assert "this cursor is evicted in ~60 min (ttl)" in pretty.out
    r = topics("tombstone", "check", topic, "--from", "0", "--sample", "0", "--warn-before", "2h")
    assert r.code == 3


def test_tombstone_scan(topics: Topics, topic: str) -> None:
    topics("put", topic, input="".join(f"{i}\n" for i in range(1, 11)))
    topics("delete", topic, "--before-seq", "4", "--yes")
    r = topics("tombstone", "scan", topic, "--from", "0", "-o", "json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["complete"] is True
    assert json.loads(r.out)["records"] == 7
    gappy = topic + "-g"
    _overrun(topics, gappy)
    r = topics("tombstone", "scan", gappy, "--from", "0", "-o", "json")
    assert r.code == 3
    rep = json.loads(r.out)
    assert rep["complete"] is False and rep["gaps"][0]["gap_to"] == 15 and rep["missed"] == 15
    assert topics("gaps", "scan", gappy, "--from", "15").code == 0


def test_gaps_topic_is_a_scan(topics: Topics, topic: str) -> None:
    topics("put", topic, "1", "2")
    for group in ("gaps", "tombstone"):
        r = topics(group, topic, "-o", "json")
        assert r.code == 0, r.err
        assert json.loads(r.out)["complete"] is True and json.loads(r.out)["records"] == 2
    gappy = topic + "-g"
    _overrun(topics, gappy)
    r = topics("gaps", gappy, "-o", "json")
    assert r.code == 3 and json.loads(r.out)["gaps"][0]["gap_to"] == 15
    assert topics("gaps", gappy, "--from", "15").code == 0
    r = topics("gaps", "no-such-" + topic)
    assert r.code == 4 and "No such command" not in r.err


def test_delete_records(topics: Topics, topic: str) -> None:
    topics("put", topic, "1", "--tag", "cart:1")
    topics("put", topic, "2", "--tag", "cart:2")
    topics("put", topic, "3", "--tag", "other")
    r = topics("delete", topic, "--tag", "cart:1", "-o", "json")
    assert r.code == 0 and json.loads(r.out)["deleted"] == 1
    r = topics("delete", topic, "--tag-prefix", "cart:")
    assert r.jsonl()[0]["deleted"] == 1
    assert [x["data"] for x in topics("diff", topic).jsonl()] == [3]
    assert topics("delete", topic).code == 2


def test_topic_lifecycle(topics: Topics, topic: str) -> None:
    r = topics(
        "create",
        topic,
        "--cap-records",
        "10",
        "--ttl",
        "15m",
        "--discard",
        "reject",
        "--durability",
        "fsync",
        "-o",
        "json",
    )
    assert r.code == 0, r.err
    cfg = json.loads(r.out)["config"]
    assert (cfg["cap_records"], cfg["ttl_ms"], cfg["discard"], cfg["durability"]) == (
        10,
        900_000,
        "reject",
        "fsync",
    )
    r = topics("create", topic, "--cap-bytes", "999", "--merge", "-o", "json")
    cfg = json.loads(r.out)["config"]
    assert cfg["cap_records"] == 10 and cfg["cap_bytes"] == 999
    q = topics(
        "create",
        topic + "-q",
        "--type",
        "queue",
        "--lease-ms",
        "5000",
        "--max-deliveries",
        "3",
        "--dead-letter",
        topic + "-dlq",
        "-o",
        "json",
    )
    assert q.code == 0, q.err
    info = json.loads(topics("info", topic + "-q", "-o", "json").out)
    assert info["type"] == "queue" and info["config"]["max_deliveries"] == 3
    assert "queue" in info
    names = [x["topic"] for x in topics("ls", "--prefix", topic, "--page-size", "1").jsonl()]
    assert names == [topic, topic + "-q"]
    assert topics("ls", "--prefix", topic, "-o", "data").out.split() == names
    assert topics("rm", topic, "--yes").jsonl()[0]["deleted"] is True
    assert topics("info", topic).code == 4
    assert topics("rm", topic, "--yes", "--missing-ok").jsonl()[0]["deleted"] is False


def test_rm_of_a_missing_topic_or_router_exits_4_unless_missing_ok(
    topics: Topics, topic: str
) -> None:
    for args in (["rm", "no-such-" + topic, "--yes"], ["router", "rm", "no-such-" + topic, "-y"]):
        r = topics(*args)
        assert r.code == 4, (args, r)
        assert r.err.startswith("topics: error: no such ") and "Traceback" not in r.err
        assert r.err.splitlines()[0].endswith("(nothing deleted)") and r.out == ""
        ok = topics(*args, "--missing-ok")
        assert ok.code == 0, ok.err
        assert ok.jsonl()[0]["deleted"] is False and ok.err == ""
        assert "already absent" in topics(*args, "--missing-ok", "-o", "pretty").out


def test_pretty_output_never_shows_an_inverted_seq_range(topics: Topics, topic: str) -> None:
    empty = topic + "-new"
    assert topics("create", empty).code == 0
    info = topics("info", empty, "-o", "pretty")
    assert "empty (next seq 1)" in info.out and "1..0" not in info.out, info.out
    # a drained queue: earliest_seq 11, head_seq 10
    q = topic + "-q"
    assert topics("create", q, "--type", "queue").code == 0
    topics("put", q, input="".join(f"{i}\n" for i in range(10)))
    jobs = topics("lease", "claim", q, "--node", "w", "--max", "10", "-o", "jsonl").jsonl()
    seqs = [str(j["$seq"]) for j in jobs]
    assert topics("lease", "ack", q, "--node", "w", *seqs).code == 0
    state = json.loads(topics("info", q, "-o", "json").out)
    assert (state["earliest_seq"], state["head_seq"]) == (11, 10)
    info = topics("info", q, "-o", "pretty")
    assert "empty (next seq 11)" in info.out and "11..10" not in info.out, info.out
    ls = topics("ls", "--prefix", topic, "-o", "pretty")
    assert "11..10" not in ls.out and "1..0" not in ls.out and "empty (next seq 11)" in ls.out
    check = topics("tombstone", "check", q, "--from", "end", "--sample", "0", "-o", "pretty")
    assert "11..10" not in check.out and "empty (next seq 11)" in check.out, check.out
    log = topic + "-log"
    topics("put", log, "1", "2", "3")
    deleted = topics("delete", log, "--before-seq", "4", "--yes", "-o", "pretty")
    assert "4..3" not in deleted.out and "empty (next seq 4)" in deleted.out, deleted.out


def test_router_put_warns_about_a_name_cut_at_a_redirect(topics: Topics, topic: str) -> None:
    src, dst = topic + "-src", topic + "-dst"
    # what bash passes for `topics router put SRC->DST …` unquoted: the name ends at '-'
    r = topics("router", "put", f"{src}-", "--source", src, "--dest", dst)
    assert r.code == 0, r.err
    assert r.err.startswith("topics: warning: ") and f"'{src}->{dst}'" in r.err, r.err
    assert len(r.err.splitlines()) == 1
    for name in (f"{src}->{dst}", f"{src}-to-{dst}-"):
        r = topics("router", "put", name, "--source", src, "--dest", dst)
        assert r.code == 0 and r.err == "", r.err


def test_status_and_wait(topics: Topics) -> None:
    r = topics("status", "-o", "json")
    assert r.code == 0
    st = json.loads(r.out)
    assert st["health"]["status"] == "ok" and st["ready"]["status"] == "ready"
    assert "records_live" in st["metrics"]
    r = topics("status", "--wait", "--timeout", "5s")
    assert r.code == 0


def test_status_wait_times_out_when_nothing_listens(topics: Topics) -> None:
    r = topics("-u", "http://127.0.0.1:9", "status", "--wait", "--timeout", "300ms")
    assert r.code == 6
    assert "cannot connect" in r.err


def test_exit_codes_and_one_line_errors(topics: Topics, topic: str) -> None:
    r = topics("info", "no-such-" + topic)
    assert r.code == 4
    assert r.err.startswith("topics: error: topic_not_found:")
    assert "Traceback" not in r.err
    r = topics("--debug", "info", "no-such-" + topic)
    assert r.code == 4 and "Traceback" in r.err
    assert topics("-u", "http://127.0.0.1:9", "ls").code == 6
    assert topics("diff").code == 2
    assert topics("nonsense").code == 2
    assert topics("put", topic, "{bad json").code == 2


def test_auth_exit_code(server_factory: Callable[..., object], tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.cli.conftest import cli_env

    srv = server_factory(env={"TOPICS_API_KEYS": "sekret"})
    env = cli_env(srv.url, tmp_path)  # type: ignore[attr-defined]
    run = lambda *a, **kw: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "topics_cli", *a], capture_output=True, env={**env, **kw}
    )
    denied = run("ls")
    assert denied.returncode == 5
    assert b"unauthorized" in denied.stderr and b"TOPICS_API_KEY" in denied.stderr
    assert run("ls", TOPICS_API_KEY="sekret").returncode == 0
    assert run("--api-key", "sekret", "ls").returncode == 0


def test_profiles(topics: Topics, tmp_path: Path, base_url: str) -> None:
    env = {"TOPICS_URL": ""}
    assert topics("config", "set", "url", base_url, "--profile", "local", env=env).code == 0
    assert (
        topics("config", "set", "url", "http://127.0.0.1:9", "--profile", "dead", env=env).code == 0
    )
    path = tmp_path / "xdg" / "topics" / "config.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # the first profile written became current
    assert topics("status", env=env).code == 0
    assert topics("--profile", "dead", "status", env=env).code == 6
    assert topics("config", "use", "dead", env=env).code == 0
    assert topics("status", env=env).code == 6
    # env beats the profile, the flag beats env
    assert topics("status", env={"TOPICS_URL": base_url}).code == 0
    assert topics("-u", "http://127.0.0.1:9", "status", env={"TOPICS_URL": base_url}).code == 6
    assert topics("status", env={"TOPICS_URL": "", "TOPICS": base_url}).code == 0
    assert topics("config", "get", "url", "--profile", "local", env=env).out.strip() == base_url
    listing = topics("config", "list", "-o", "json", env=env)
    assert {p["profile"]: p["current"] for p in json.loads(listing.out)} == {
        "local": False,
        "dead": True,
    }
    assert topics("--profile", "nope", "status", env=env).code == 2


def test_global_options_after_the_command(topics: Topics, topic: str) -> None:
    topics("put", topic, '"x"', "-q")
    assert topics("diff", topic, "-o", "data", "-q").out == "x\n"
    assert topics("diff", topic, "--output=data").out == "x\n"


def test_diff_raw_pages_agree_with_decoded_records(topics: Topics, topic: str) -> None:
    """jsonl/json/data/template replay raw pages; pretty decodes ``Record``s. Positions,
    --until (seq and time), --count and --limit must select the same records either way."""
    import re
    import time
    from datetime import UTC, datetime

    topics("put", topic, input="".join(f'{{"i": {i}}}\n' for i in range(1, 8)))
    time.sleep(0.05)
    topics("put", topic, input="".join(f'{{"i": {i}}}\n' for i in range(8, 13)))
    lines = topics("diff", topic, "-o", "jsonl").jsonl()
    assert [x["$seq"] for x in lines] == list(range(1, 13))
    cut = datetime.fromtimestamp(lines[6]["$ts"] / 1000, UTC).isoformat(timespec="milliseconds")
    for args in (
        (),
        ("--from", "3", "--until", "9"),
        ("--from", "-4"),
        ("--count", "5", "--limit", "2"),
        ("--until", f"@{cut}"),
        ("--from", "2", "--count", "3", "--limit", "1"),
    ):
        raw = [x["$seq"] for x in topics("diff", topic, *args, "-o", "jsonl").jsonl()]
        data = topics("diff", topic, *args, "-o", "data").out.splitlines()
        assert data == [json.dumps({"i": s}, separators=(",", ":")) for s in raw], args
        pretty = topics("diff", topic, *args, "-o", "pretty").out
        seqs = [int(m) for m in re.findall(r"^\s*(\d+)\s", pretty, flags=re.M)]
        assert seqs == raw, (args, pretty)
    assert [x["$seq"] for x in topics("diff", topic, "--until", f"@{cut}").jsonl()] == list(
        range(1, 8)
    )


def test_commands_leave_process_settings_alone(base_url: str, topic: str) -> None:
    """Running ``diff`` in-process (as an embedding program would) leaves the GC thresholds
    and the GIL switch interval as they were; only ``main()`` tunes them, and restores them."""
    import gc
    import sys
    from unittest import mock

    from typer.testing import CliRunner

    from topics_cli.app import app, main

    httpx.post(f"{base_url}/v0/topics/{topic}", json={"records": [{"data": i} for i in range(5)]})
    before = gc.get_threshold(), sys.getswitchinterval()
    r = CliRunner().invoke(app, ["diff", topic, "-o", "jsonl", "-q"], env={"TOPICS_URL": base_url})
    assert r.exit_code == 0, r.output
    assert len(r.output.splitlines()) == 5
    assert (gc.get_threshold(), sys.getswitchinterval()) == before
    seen: list[tuple[tuple[int, int, int], float]] = []

    def probe(**kwargs: object) -> None:
        seen.append((gc.get_threshold(), sys.getswitchinterval()))

    with mock.patch("topics_cli.app.app", side_effect=probe):
        main()
    assert len(seen) == 1 and seen[0][0] == (50_000, 20, 20)
    assert abs(seen[0][1] - min(before[1], 0.0002)) < 1e-6
    assert (gc.get_threshold(), sys.getswitchinterval()) == before
