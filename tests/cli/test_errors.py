"""One line, never a traceback (issue 14, items 6, 8, 9, 18): checkpoints that cannot be
used or saved, a URL that is not a topics server, a URL pasted with its ``/v0``.

Every test runs ``python -m topics_cli`` as a real process against the real server (or, for
item 8, against ``python -m http.server``).
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli.conftest import Run, cli_env

Topics = Callable[..., Run]


def _fill(base_url: str, topic: str, n: int, start: int = 1) -> None:
    records = [{"data": {"i": i}} for i in range(start, start + n)]
    httpx.post(f"{base_url}/v0/topics/{topic}", json={"records": records}).raise_for_status()


def _one_error_line(run: Run) -> str:
    """stderr is one ``topics: error:`` line (plus at most a hint), no traceback."""
    assert "Traceback" not in run.err, run.err
    lines = run.err.strip().splitlines()
    assert lines and lines[0].startswith("topics: error: "), run.err
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("  hint: ")), run.err
    return lines[0].removeprefix("topics: error: ")


# -- item 6: a checkpoint that cannot be used is refused before anything is read -------


@pytest.mark.parametrize("command", ["diff", "watch"])
def test_checkpoint_in_a_missing_directory_is_refused_first(
    topics: Topics, topic: str, base_url: str, tmp_path: Path, command: str
) -> None:
    _fill(base_url, topic, 3)
    path = tmp_path / "nonexistent" / "dir" / "x.cp"
    extra = ["--from", "start", "--count", "3"] if command == "watch" else []
    run = topics(command, topic, "-c", str(path), *extra, "-o", "jsonl")
    assert run.code == 2, run
    line = _one_error_line(run)
    assert line == f"checkpoint {path}: the directory {path.parent} does not exist"
    assert run.out == ""  # not one record read, so none is lost with the checkpoint
    assert not path.parent.exists()


@pytest.mark.parametrize("command", ["diff", "watch"])
def test_checkpoint_that_is_a_directory_or_not_a_checkpoint(
    topics: Topics, topic: str, base_url: str, tmp_path: Path, command: str
) -> None:
    _fill(base_url, topic, 2)
    extra = ["--from", "start", "--count", "2"] if command == "watch" else []
    run = topics(command, topic, "-c", str(tmp_path), *extra)
    assert run.code == 2 and run.out == "", run
    assert _one_error_line(run) == f"checkpoint {tmp_path} is a directory; name a file in it"
    foreign = tmp_path / "notes.txt"
    foreign.write_text("remember the milk\n")
    run = topics(command, topic, "-c", str(foreign), *extra)
    assert run.code == 2 and run.out == "", run
    assert "not a checkpoint" in _one_error_line(run)
    assert foreign.read_text() == "remember the milk\n"  # never overwritten


def test_read_only_checkpoint_users_do_not_need_a_writable_directory(
    topics: Topics, topic: str, base_url: str, tmp_path: Path
) -> None:
    """``tombstone check --checkpoint`` only reads: it is judged on the file's content."""
    _fill(base_url, topic, 3)
    path = tmp_path / "missing-dir" / "x.cp"
    run = topics("tombstone", "check", topic, "--checkpoint", str(path))
    assert run.code == 2 and "holds no cursor" in run.err, run
    assert "directory" not in run.err


def _wait_for(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


@pytest.mark.parametrize("command", ["diff", "watch"])
def test_checkpoint_save_failing_mid_run_is_one_line_and_keeps_the_output(
    topic: str, base_url: str, tmp_path: Path, command: str
) -> None:
    """The directory is removed under a running consumer, then records arrive: they are
    printed, the failed save is one line with exit 7, nothing is lost from the output."""
    _fill(base_url, topic, 3)
    folder = tmp_path / "cp"
    folder.mkdir()
    path = folder / "x.cp"
    args = ["diff", topic, "--follow"] if command == "diff" else ["watch", topic, "--from", "start"]
    with tempfile.TemporaryFile(dir=tmp_path) as out, tempfile.TemporaryFile(dir=tmp_path) as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "topics_cli", *args, "-c", str(path), "-o", "jsonl"],
            stdout=out,
            stderr=err,
            env=cli_env(base_url, tmp_path),
            cwd=tmp_path,
        )
        try:
            _wait_for(
                lambda: path.exists() and json.loads(path.read_text()) == {topic: 3},
                "the first three records delivered and saved",
            )
            shutil.rmtree(folder)
            _fill(base_url, topic, 2, start=4)
            code = proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        out.seek(0)
        err.seek(0)
        run = Run(code, out.read().decode(), err.read().decode())
    assert run.code == 7, run
    assert [r["data"]["i"] for r in run.jsonl()] == [1, 2, 3, 4, 5]  # printed, then refused
    line = _one_error_line(
        Run(run.code, "", "\n".join(x for x in run.err.splitlines() if x[:1] != "{"))
    )
    assert line.startswith(f"checkpoint {path} could not be saved (No such file or directory)")
    assert f"it still holds {topic}@3, the output reached {topic}@5" in line


def test_help_lists_the_checkpoint_exit_code(topics: Topics) -> None:
    run = topics("--help")
    assert "7 checkpoint not saved" in " ".join(run.out.split())


# -- item 18: checkpoint files end with a newline ------------------------------------


def test_checkpoint_file_ends_with_a_newline_and_old_files_still_resume(
    topics: Topics, topic: str, base_url: str, tmp_path: Path
) -> None:
    _fill(base_url, topic, 4)
    path = tmp_path / "orders.cp"
    run = topics("diff", topic, "-c", str(path), "--count", "2", "-o", "jsonl")
    assert run.code == 0, run
    assert path.read_text() == json.dumps({topic: 2}, separators=(",", ":")) + "\n"
    path.write_text(json.dumps({topic: 3}))  # written before this change: no newline
    run = topics("diff", topic, "-c", str(path), "-o", "jsonl")
    assert run.code == 0, run
    assert [r["$seq"] for r in run.jsonl()] == [4]
    assert path.read_text().endswith("\n")


# -- item 8: something that is not a topics server -----------------------------------


@pytest.fixture(scope="module")
def foreign_url() -> Iterator[str]:
    """``python -m http.server`` on an ephemeral port."""
    with tempfile.TemporaryDirectory() as root:
        proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1"],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert proc.stdout is not None
            match = re.search(r"port (\d+)", proc.stdout.readline().decode())
            assert match
            yield f"http://127.0.0.1:{match.group(1)}"
        finally:
            proc.terminate()
            proc.wait(10)
            assert proc.stdout is not None
            proc.stdout.close()


@pytest.mark.parametrize(
    ("args", "status"),
    [(["ls"], 404), (["put", "orders", '{"id": 1}'], 501), (["diff", "orders"], 404)],
    ids=["ls", "put", "diff"],
)
def test_a_web_server_at_the_url_is_one_line_exit_1(
    topics: Topics, foreign_url: str, args: list[str], status: int
) -> None:
    hostport = foreign_url.removeprefix("http://")
    run = topics("--url", foreign_url, *args)
    assert run.code == 1, run
    line = _one_error_line(run)
    assert line == f"{hostport} does not look like a topics server (HTTP {status}, text/html)"
    assert "<" not in run.err  # no HTML on the terminal


# -- item 9: a URL pasted with its /v0 -----------------------------------------------


@pytest.mark.parametrize("suffix", ["/v0", "/v0/"])
def test_url_with_v0_works_from_flag_env_and_profile(
    topics: Topics, topic: str, base_url: str, suffix: str
) -> None:
    _fill(base_url, topic, 1)
    url = base_url + suffix

    def names(run: Run) -> list[str]:
        assert run.code == 0, run
        return [t["topic"] for t in run.jsonl()]

    assert topic in names(topics("--url", url, "ls", "-o", "jsonl"))
    assert topic in names(topics("ls", "-o", "jsonl", env={"TOPICS_URL": url}))
    assert topic in names(topics("ls", "-o", "jsonl", env={"TOPICS_URL": "", "TOPICS": url}))
    assert topics("config", "set", "url", url, "--profile", "pasted").code == 0
    run = topics("--profile", "pasted", "ls", "-o", "jsonl", env={"TOPICS_URL": ""})
    assert topic in names(run)


@pytest.mark.parametrize("command", ["diff", "watch"])
def test_sigterm_stops_like_ctrl_c_saving_the_checkpoint(
    topic: str, base_url: str, tmp_path: Path, command: str
) -> None:
    """``kill`` (a supervisor, a CI timeout) is not a crash: the checkpoint holds what was
    printed, no temporary file is left beside it, exit 143 with one line."""
    _fill(base_url, topic, 3)
    path = tmp_path / "x.cp"
    args = ["diff", topic, "--follow"] if command == "diff" else ["watch", topic, "--from", "start"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "topics_cli", *args, "-c", str(path), "-o", "jsonl"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(base_url, tmp_path),
        cwd=tmp_path,
    )
    try:
        _wait_for(
            lambda: path.exists() and json.loads(path.read_text()) == {topic: 3},
            "the first three records delivered and saved",
        )
        _fill(base_url, topic, 2, start=4)
        _wait_for(lambda: json.loads(path.read_text()) == {topic: 5}, "the next two saved as well")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 143, err
    assert err.decode().splitlines()[-1] == "topics: terminated"
    assert b"Traceback" not in err
    assert [json.loads(line)["data"]["i"] for line in out.splitlines()] == [1, 2, 3, 4, 5]
    assert json.loads(path.read_text()) == {topic: 5}
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
