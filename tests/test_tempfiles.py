"""The suite cleans up after itself: the check in ``tests/conftest.py`` fails a run that left
a temporary file behind, and the server helper removes the directory it made."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.serverproc import ServerProcess

ROOT = Path(__file__).resolve().parents[1]

INNER = """\
import tempfile


def test_one():
    {body}
"""


def _inner_run(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    """``pytest`` on one test file with this suite's conftest loaded as a plugin."""
    (tmp_path / "test_inner.py").write_text(INNER.format(body=body))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    argv = ["-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider"]
    return subprocess.run(
        [sys.executable, *argv, "--basetemp", str(tmp_path / "base"), "test_inner.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_run_that_leaves_a_temp_file_fails(tmp_path: Path) -> None:
    leaky = _inner_run(tmp_path, 'tempfile.mkdtemp(prefix="topics-test-")')
    assert leaky.returncode == 1, leaky.stdout + leaky.stderr
    assert "1 passed" in leaky.stdout
    assert "tests left 1 temporary file(s) behind: topics-test-" in leaky.stdout


def test_a_clean_run_passes(tmp_path: Path) -> None:
    clean = _inner_run(tmp_path, 'tempfile.TemporaryDirectory(prefix="topics-test-").cleanup()')
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "temporary file" not in clean.stdout


def test_server_without_a_data_dir_removes_its_own(tmp_path: Path) -> None:
    """The temporary directory a data-dir-less server makes (data, port file, log) is gone
    once its ``with`` block ends."""
    with ServerProcess() as server:
        own = server.data_dir.parent
        assert own.is_dir() and {p.name for p in own.iterdir()} >= {"data", "data.port"}
    assert not own.exists()
