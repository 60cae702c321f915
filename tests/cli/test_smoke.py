"""``topics smoke`` against real servers: every step, reports, skips, failures, cleanup."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from tests.cli.conftest import Run, cli_env, run_in_pty
from tests.serverproc import ServerProcess, free_port
from topics_client import Client

STEPS = ["health", "ready", "create", "write", "read", "watch", "router", "tombstone", "lease"]


def _leftovers(url: str, prefix: str, key: str | None = None) -> list[str]:
    with Client(url, api_key=key) as client:
        topics = [t.topic for t in client.topics.list(prefix=prefix)]
        routers = [r.router for r in client.routers.list() if r.router.startswith(prefix)]
    return topics + routers


def test_every_step_passes_and_everything_is_cleaned_up(
    topics: Callable[..., Run], base_url: str, tmp_path: Path
) -> None:
    run = topics("smoke", "--prefix", "smk-all-", "--junit-xml", "report.xml")
    assert run.code == 0, run.err
    [report] = run.jsonl()
    assert [s["step"] for s in report["steps"]] == STEPS
    assert {s["status"] for s in report["steps"]} == {"passed"}
    assert (report["passed"], report["failed"], report["skipped"]) == (9, 0, 0)
    assert report["cleanup"] == {"ok": True, "problems": []}
    assert report["url"] == base_url
    by_step = {s["step"]: s["detail"] for s in report["steps"]}
    assert by_step["write"].endswith("retry deduplicated")
    assert by_step["tombstone"] == "gap 1..3 reported (cap)"
    assert _leftovers(base_url, "smk-all-") == []

    suite = ET.parse(tmp_path / "report.xml").getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("9", "0", "0")
    assert [case.get("name") for case in suite.iter("testcase")] == STEPS


def test_only_and_skip_choose_steps(topics: Callable[..., Run]) -> None:
    run = topics("smoke", "--only", "health,write,read", "--prefix", "smk-only-")
    assert run.code == 0, run.err
    assert [s["step"] for s in run.jsonl()[0]["steps"]] == ["health", "write", "read"]
    run = topics("smoke", "--skip", "watch,router,lease", "--prefix", "smk-skip-")
    assert [s["step"] for s in run.jsonl()[0]["steps"]] == [
        "health",
        "ready",
        "create",
        "write",
        "read",
        "tombstone",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--only", "health,nope"], "unknown step nope"),
        (["--skip", "health,ready,create,write,read,watch,router,tombstone,lease"], "no step"),
        (["--prefix", "-bad"], "--prefix"),
        (["--timeout", "soon"], "--timeout"),
    ],
)
def test_bad_options_are_usage_errors(
    topics: Callable[..., Run], args: list[str], message: str
) -> None:
    run = topics("smoke", *args)
    assert run.code == 2
    assert message in run.err
    assert "Traceback" not in run.err


def test_a_refused_scope_is_skipped_not_failed(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    admin, reader = "adm-secret", "ro-secret"
    server = server_factory(env={"TOPICS_API_KEYS": f"{admin},{reader}:r"})
    env = cli_env(server.url, tmp_path, TOPICS_API_KEY=reader)
    run = _run(["smoke", "--prefix", "smk-ro-"], env, tmp_path)
    assert run.code == 0, run.err
    status = {s["step"]: s for s in run.jsonl()[0]["steps"]}
    assert status["health"]["status"] == "passed"
    assert status["create"]["status"] == "skipped"
    assert "the API key may not do this" in status["create"]["detail"]
    assert _leftovers(server.url, "smk-ro-", admin) == []


def test_a_failing_step_fails_the_run_and_cleanup_still_runs(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    # Room for two topics: the router step's second topic is refused (429 throttled).
    server = server_factory(env={"TOPICS_MAX_TOPICS": "2"})
    env = cli_env(server.url, tmp_path)
    run = _run(["smoke", "--only", "create,router", "--prefix", "smk-fail-"], env, tmp_path)
    assert run.code == 1
    [report] = run.jsonl()
    status = {s["step"]: s for s in report["steps"]}
    assert status["create"]["status"] == "passed"
    assert status["router"]["status"] == "failed"
    assert "429" in status["router"]["detail"]
    assert report["cleanup"]["ok"] is True
    assert _leftovers(server.url, "smk-fail-") == []


def test_an_unreachable_server_exits_6_and_runs_nothing_else(tmp_path: Path) -> None:
    env = cli_env(f"http://127.0.0.1:{free_port()}", tmp_path)
    run = _run(["smoke"], env, tmp_path)
    assert run.code == 6
    steps = run.jsonl()[0]["steps"]
    assert steps[0]["status"] == "failed" and "connect" in steps[0]["detail"]
    assert {s["status"] for s in steps[1:]} == {"skipped"}


def test_pretty_on_a_terminal(base_url: str, tmp_path: Path) -> None:
    code, screen = run_in_pty(
        ["smoke", "--only", "health,ready", "--prefix", "smk-tty-"], cli_env(base_url, tmp_path)
    )
    assert code == 0
    assert "✓ health" in screen and "✓ ready" in screen
    assert "2 passed, 0 failed, 0 skipped" in screen
    assert "{" not in screen  # no JSON on a terminal


def _run(args: list[str], env: dict[str, str], cwd: Path) -> Run:
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-m", "topics_cli", *args],
        capture_output=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )
    return Run(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def test_ctrl_c_cleans_up_and_exits_130(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """Interrupted while a step waits on a frozen server: what was created is still removed."""
    import os
    import signal
    import subprocess

    server = server_factory()
    assert server.proc is not None
    env = cli_env(server.url, tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "topics_cli", "smoke", "-o", "pretty", "--prefix", "smk-int-"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # ends at EOF if smoke exits early (then the asserts fail)
            if " create " in line:
                break
        assert "✓" in line, line
        # Frozen, the server can answer nothing: the next step cannot finish, so the
        # interrupt lands inside it whenever it arrives.
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            proc.send_signal(signal.SIGINT)
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert _leftovers(server.url, "smk-int-") == []
