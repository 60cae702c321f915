"""What ``topics watch`` and ``topics lease run`` show (issue 14, items 1, 3 and 17).

Item 1: a bare topic name tails from the end even when another topic carries ``@SEQ``.
Item 3: on a terminal, the live status line and records / job output never share a line;
the pseudo-terminal's raw bytes are replayed through a tiny line model (``\\r``, ``\\n``,
erase-line) and every state a line goes through is checked.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from tests.cli.conftest import Run

Topics = Callable[..., Run]


def _seed(topics: Topics, orders: str, audit: str) -> None:
    assert topics("put", orders, input="".join(f"{i}\n" for i in range(1, 8))).code == 0
    assert topics("put", audit, input="".join(f"{i}\n" for i in range(1, 51))).code == 0


def _seqs(run: Run) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for line in run.jsonl():
        out.setdefault(line["topic"], []).append(line["$seq"])
    return out


def test_watch_bare_name_tails_next_to_topic_at_seq(topics: Topics, topic: str) -> None:
    orders, audit = topic + "-orders", topic + "-audit"
    _seed(topics, orders, audit)
    for extra in ([], ["--from", "end"]):
        r = topics("watch", orders, f"{audit}@41", *extra, "--until-caught-up", "-o", "jsonl")
        assert r.code == 0, r.err
        assert _seqs(r) == {audit: list(range(42, 51))}, extra


def test_watch_from_applies_to_the_topics_without_seq(topics: Topics, topic: str) -> None:
    orders, audit = topic + "-orders", topic + "-audit"
    _seed(topics, orders, audit)
    r = topics("watch", orders, f"{audit}@47", "--from", "-2", "--until-caught-up", "-o", "jsonl")
    assert r.code == 0, r.err
    assert _seqs(r) == {orders: [6, 7], audit: [48, 49, 50]}
    r = topics("watch", f"{orders}@5", audit, "--from", "start", "--until-caught-up")
    assert _seqs(r) == {orders: [6, 7], audit: list(range(1, 51))}


# -- item 3: the status line and the output above it

_TOKEN = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r|\n|[^\x1b\r\n]+|\x1b")


def screen_lines(raw: str) -> list[str]:
    """Every state a terminal line goes through while ``raw`` is played onto it: a line
    is recorded before each ``\\r``, ``\\n`` and erase-line, and at the end. Printable
    text overwrites from the cursor, ``\\r`` returns it to column 0, ``ESC[2K`` blanks the
    line (the cursor stays), other escape sequences draw nothing."""
    states: list[str] = []
    line: list[str] = []
    col = 0
    for token in _TOKEN.findall(raw):
        if token in ("\r", "\n", "\x1b[2K"):
            states.append("".join(line).strip())
            if token == "\r":
                col = 0
            elif token == "\n":
                line, col = [], 0
            else:
                line = [" "] * len(line)
        elif not token.startswith("\x1b"):
            for ch in token:
                if col < len(line):
                    line[col] = ch
                else:
                    line.extend(" " * (col - len(line)))
                    line.append(ch)
                col += 1
    states.append("".join(line).strip())
    return [s for i, s in enumerate(states) if s and (i == 0 or states[i - 1] != s)]


def test_screen_lines_model() -> None:
    raw = "a\r\n\r\x1b[2Kwatching x | 1\rrec-1\n\r\x1b[2Kwatching\r\x1b[2Kok\r\n"
    assert screen_lines(raw) == ["a", "watching x | 1", "rec-1ing x | 1", "watching", "ok"]


def _mixed(lines: list[str], status: str, output: str) -> list[str]:
    return [s for s in lines if re.search(status, s) and re.search(output, s)]


def test_watch_records_never_share_a_line_with_the_status_line(
    topics: Topics, topic: str, base_url: str, tmp_path: Path
) -> None:
    """Records arrive one by one while the status line keeps being redrawn."""
    import threading
    import time

    import httpx

    from tests.cli.conftest import cli_env, run_in_pty

    n = 12
    topics("create", topic)

    def produce() -> None:
        for i in range(1, n + 1):
            body = {"records": [{"data": {"m": f"rec-{i}"}}]}
            httpx.post(f"{base_url}/v0/topics/{topic}", json=body).raise_for_status()
            time.sleep(0.15)

    writer = threading.Thread(target=produce)
    writer.start()
    try:
        code, text = run_in_pty(
            ["watch", topic, "--from", "start", "--count", str(n), "--idle-timeout", "20s"],
            cli_env(base_url, tmp_path),
        )
    finally:
        writer.join()
    assert code == 0, text
    lines = screen_lines(text)
    assert any(s.startswith("watching ") for s in lines), text  # the status line was up
    for i in range(1, n + 1):
        assert any(s.endswith(f'{{"m":"rec-{i}"}}') for s in lines), (i, text)
    assert _mixed(lines, r"watching .*\|", r"rec-\d") == [], text


def test_lease_run_job_output_never_shares_a_line_with_the_status_line(
    topics: Topics, topic: str, base_url: str, tmp_path: Path
) -> None:
    """Jobs write half a line, pause while the status line ticks, finish it, and write to
    stderr too; every job's line arrives whole, and never on the status line's row."""
    from tests.cli.conftest import cli_env, run_in_pty

    assert topics("create", topic, "--type", "queue").code == 0
    n = 6
    assert topics("put", topic, *(str(i) for i in range(1, n + 1))).code == 0
    job = (
        'printf "job-out-%s" "$TOPICS_JOB_SEQ"; sleep 0.3; echo " job-end-$TOPICS_JOB_SEQ"; '
        'echo "job-err-$TOPICS_JOB_SEQ" >&2'
    )
    code, text = run_in_pty(
        ["lease", "run", topic, "--node", "tty", "-j", "2", "--exec", job, "--once"],
        cli_env(base_url, tmp_path),
        timeout=60,
    )
    assert code == 0, text
    lines = screen_lines(text)
    assert any(s.startswith(f"lease run {topic} @tty |") for s in lines), text
    for i in range(1, n + 1):
        assert f"job-out-{i} job-end-{i}" in lines, (i, text)
        assert f"job-err-{i}" in lines, (i, text)
    assert _mixed(lines, r"lease run .* @tty \|", r"job-(out|end|err)-") == [], text
    assert f"lease run {topic}: {n} done, 0 failed" in text


# -- item 17: the lease run summary names the dead-letter topic


def test_lease_run_summary_names_the_dead_letter_topic(topics: Topics, topic: str) -> None:
    dlq = topic + ".dlq"
    assert topics("create", topic, "--type", "queue", "--max-deliveries", "2",
                  "--dead-letter", dlq).code == 0  # fmt: skip
    assert topics("put", topic, '"a"', '"b"').code == 0
    run = ["lease", "run", topic, "--exec", "exit 1", "--once", "--backoff-base-ms", "10"]
    r = topics(*run, "-o", "pretty")
    assert r.code == 0, r.err
    assert f"0 done, 4 failed (2 out of deliveries, sent to dead-letter topic {dlq})" in r.err
    assert topics("put", topic, '"c"').code == 0
    r = topics(*run, "-o", "jsonl")
    assert r.code == 0, r.err
    summary = next(e["$summary"] for e in r.err_jsonl() if "$summary" in e)
    assert (summary["dead_letter"], summary["dead_lettered"], summary["failed"]) == (dlq, 1, 2)
    assert len(topics("diff", dlq).jsonl()) == 3
