"""``topics demo``: in a pipe, on a terminal, and every command line it prints pasted into bash.

The demo starts its own reference server; ``TOPICS_URL`` in the environment points nowhere
(port 9), so a command that escaped the demo's server would fail.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import cli_env, run_in_pty
from tests.serverproc import ServerProcess

NOWHERE = "http://127.0.0.1:9"

# every `topics` command a newcomer might copy from the transcript
_COMMAND = re.compile(
    r"\btopics (?:create|put|diff|watch|lease|router|tombstone|info|ls|rm|gaps|serve|config)\b"
)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# values that differ between two runs of the same command
_VOLATILE = re.compile(
    r'"(\$ts|deadline|lease_id|last_write_ts|seconds|write_rate|jobs_per_s)":("[^"]*"|[\d.]+)'
)


def _demo(tmp: Path, *steps: str) -> subprocess.CompletedProcess[str]:
    args = [a for step in steps for a in ("--step", step)]
    return subprocess.run(
        [sys.executable, "-m", "topics_cli", "demo", "--fast", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=cli_env(NOWHERE, tmp),
    )


def _transcript(stdout: str) -> list[tuple[str, list[str]]]:
    """``(command line, output lines)`` for each ``$ topics …`` line the demo printed."""
    runs: list[tuple[str, list[str]]] = []
    for line in stdout.splitlines():
        if line.startswith("$ topics "):
            runs.append((line[2:], []))
        elif runs and line and not line.startswith(("   ", "==", "done:")):
            runs[-1][1].append(line)
    return runs


@pytest.fixture(scope="module")
def piped(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    """The whole demo, once, with stdout and stderr pipes."""
    return _demo(tmp_path_factory.mktemp("demo-pipe"))


def test_demo_in_a_pipe_keeps_stderr_clean(piped: subprocess.CompletedProcess[str]) -> None:
    """Piped, every command prints jsonl, and its gaps and summaries come with it in the
    transcript on stdout: the demo's stderr stays empty."""
    assert piped.returncode == 0, piped.stdout + piped.stderr
    assert piped.stderr == ""
    for title in ("durable stream", "slow reader", "job queue", "two-node mirror", "lease queue"):
        assert title in piped.stdout
    runs = dict(_transcript(piped.stdout))
    assert set(runs["topics diff a --node edge-a -o data -q"]) == {"written at B"}  # no echo
    assert set(runs["topics diff b --node edge-b -o data -q"]) == {"written at A"}
    dead = json.loads(runs["topics diff render.dlq -q"][0])
    assert dead["data"] == {"clip": 3} and dead["meta"]["$dead_letter_from"] == "render"
    info = json.loads(runs["topics info render"][0])
    assert info["queue"] == {"ready": 0, "in_flight": 0, "dead_lettered": 1}
    # the slow reader's gap and summary, in order, right under its diff
    slow = [json.loads(line) for line in runs["topics diff news --from 3"]]
    assert list(slow[0]) == ["$gap"] and slow[0]["$gap"]["gap_from"] == 4
    assert [r["$seq"] for r in slow[1:-1]] == [9, 10, 11, 12, 13]
    assert slow[-1]["$summary"]["gaps"] == 1
    claims = runs["topics lease claim render --node w1 --max 2"]
    assert [json.loads(line)["$seq"] for line in claims] == [1, 2]  # jsonl, not forced
    ran = runs[
        "topics lease run render --node w3 --exec 'echo rendered job $TOPICS_JOB_SEQ' --once"
    ]
    assert ran[:2] == ["rendered job 5", "rendered job 6"]


def test_demo_suggests_no_command_it_does_not_run(
    piped: subprocess.CompletedProcess[str],
) -> None:
    """A `topics …` command shown anywhere in the transcript is one the demo ran (a ``$``
    line): nothing to paste that was never tried."""
    for line in piped.stdout.splitlines():
        if not line.startswith("$ topics "):
            assert not _COMMAND.search(line), line


def test_demo_command_lines_run_in_bash(
    piped: subprocess.CompletedProcess[str], tmp_path: Path
) -> None:
    """Each ``$ topics …`` line, pasted into bash as printed (in order, against a fresh
    server, in an empty directory), exits as it did in the demo and, for the steps whose
    output is deterministic, prints the same (timestamps, lease ids and timings aside)."""
    assert piped.returncode == 0, piped.stdout + piped.stderr
    bindir = tmp_path / "bin"
    bindir.mkdir()
    shim = bindir / "topics"
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m topics_cli "$@"\n')
    shim.chmod(0o755)
    workdir = tmp_path / "work"
    workdir.mkdir()
    runs = _transcript(piped.stdout)
    assert len(runs) > 30
    with ServerProcess(data_dir=tmp_path / "data") as server:
        env = cli_env(server.url, tmp_path)
        env["PATH"] = f"{bindir}:{env['PATH']}"
        section = ""
        for line in piped.stdout.splitlines():
            if line.startswith("== "):
                section = line
            if not line.startswith("$ topics "):
                continue
            command, printed = runs.pop(0)
            assert command == line[2:]
            again = subprocess.run(
                ["bash", "--noprofile", "--norc", "-c", command],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                cwd=workdir,
                env=env,
                timeout=60,
            )
            expected = 3 if command.startswith("topics tombstone check") else 0
            assert again.returncode == expected, (command, again.stdout)
            if "mirror" in section:  # how often the cycle re-forwards depends on timing
                continue
            got = [_VOLATILE.sub("", x) for x in again.stdout.splitlines()]
            want = [_VOLATILE.sub("", x) for x in printed]
            if command.startswith("topics lease run"):  # the closing summary's timings
                got, want = got[:-1], want[:-1]
            assert got == want, command


def test_demo_on_a_terminal_is_pretty(tmp_path: Path) -> None:
    """On a terminal the commands print for people: no JSON forced on them."""
    code, raw = run_in_pty(
        ["demo", "--fast", "--step", "stream", "--step", "fanout", "--step", "lease"],
        cli_env(NOWHERE, tmp_path),
        timeout=180,
    )
    text = _ANSI.sub("", raw)
    assert code == 0, text
    assert "appended 4 to orders: seqs 1..4" in text
    assert "GAP news: seqs 4..8 lost (cap)" in text
    assert "2 claimed by w1, 2 still ready" in text
    assert "diff orders: orders: 2 records, seqs 3..4" in text  # the summary, as a line
    assert "rendered job 6" in text
    assert '"$seq"' not in text and '"first_seq"' not in text and '"$summary"' not in text
