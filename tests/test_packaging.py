"""Installs as users make them: a script outside the checkout type-checks against
``topics_client`` under ``mypy --strict``, with the project installed editable (the README's
development set-up) and installed normally.

Each install goes into a fresh virtual environment (no system site-packages: the machine's
own python may have the project installed already), from a copy of the checkout, so the
build leaves nothing in the working tree. ``--no-deps`` keeps it quick: mypy finds the
package's own types without its dependencies installed. The build itself runs as pip runs
it by default (an isolated build environment with the pinned setuptools).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

GOOD = """\
from topics_client import AsyncClient, Client, TopicState


def head(url: str) -> int:
    with Client(url) as client:
        state: TopicState = client.topics.get("orders")
        return state.head_seq


async def count(url: str) -> int:
    async with AsyncClient(url) as client:
        return (await client.topics.get("orders")).count
"""

# a typed package makes this an error; a package mypy cannot see makes it Any (or missing)
BAD = """\
from topics_client import Client


def head(url: str) -> int:
    with Client(url) as client:
        return client.topics.get("orders").topic
"""

_SKIP = shutil.ignore_patterns(
    ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis",
    ".benchmarks", "topics-data",
)  # fmt: skip


def _env() -> dict[str, str]:
    """This process's environment without what would point mypy or python at the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MYPYPATH")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300, check=False
    )


def _install(tmp: Path, source: Path, name: str, *, editable: bool) -> Path:
    """A fresh venv at ``tmp/name`` with the project from ``source`` installed; its python."""
    where = tmp / name
    venv.EnvBuilder(with_pip=False).create(where)
    python = where / "bin" / "python"
    target = ["-e", str(source)] if editable else [str(source)]
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps"]
    done = _run([*pip, *target], cwd=tmp)
    assert done.returncode == 0, done.stdout + done.stderr
    return python


def _mypy(python: Path, outside: Path, script: str) -> subprocess.CompletedProcess[str]:
    (outside / "script.py").write_text(script)
    cache = outside / f".mypy-{python.parent.parent.name}"
    argv = [sys.executable, "-m", "mypy", "--strict", "--python-executable", str(python)]
    return _run([*argv, "--cache-dir", str(cache), "script.py"], cwd=outside)


@pytest.mark.parametrize("editable", [True, False], ids=["editable", "normal"])
def test_mypy_strict_sees_topics_client_from_outside(tmp_path: Path, editable: bool) -> None:
    pytest.importorskip("mypy")
    source = tmp_path / "checkout"
    shutil.copytree(ROOT, source, ignore=_SKIP)
    python = _install(tmp_path, source, "venv", editable=editable)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    good = _mypy(python, outside, GOOD)
    assert good.returncode == 0, good.stdout + good.stderr
    bad = _mypy(python, outside, BAD)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert 'Incompatible return value type (got "str", expected "int")' in bad.stdout

    site = python.parent.parent / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    installed = sorted(p.name for p in (site / "site-packages").iterdir())
    if editable:  # a plain path, no import hook (mypy never runs the hook)
        pth = [p for p in installed if p.endswith(".pth")]
        assert len(pth) == 1 and not any(p.endswith("_finder.py") for p in installed), installed
        lines = (site / "site-packages" / pth[0]).read_text().split()
        assert [Path(x).resolve() for x in lines] == [source.resolve()]
    else:  # the wheel holds the three packages and nothing else of the checkout
        packages = [p for p in installed if not p.endswith(".dist-info")]
        assert packages == ["topics_cli", "topics_client", "topics_server"]
