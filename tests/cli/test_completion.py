"""Shell completion through the shipped scripts, in a real bash, against the real server.

Each completion sources ``completions/topics.bash``, sets ``COMP_WORDS``/``COMP_CWORD`` as
bash does on TAB, and calls the completion function, which runs the ``topics`` program (a
wrapper on PATH running this checkout's ``python -m topics_cli``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import ROOT, Run, cli_env

Topics = Callable[..., Run]
SCRIPT = ROOT / "completions" / "topics.bash"


def _bin(tmp_path: Path) -> Path:
    """A directory holding a ``topics`` that runs this checkout (the shim on PATH does not)."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    exe = bindir / "topics"
    exe.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m topics_cli "$@"\n')
    exe.chmod(0o755)
    return bindir


def _env(base_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {**cli_env(base_url, tmp_path), **extra}
    env["PATH"] = f"{_bin(tmp_path)}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def complete(line: str, env: dict[str, str], cwd: Path, script: Path = SCRIPT) -> list[str]:
    """Candidates bash offers for ``line`` (TAB pressed at its end; a trailing space starts
    a new word), as the sourced completion script computes them."""
    typed = shlex.split(line) + ([""] if line.endswith(" ") else [])
    # bash's COMP_WORDS: a `:` (in COMP_WORDBREAKS) is a word of its own
    words = [part for w in typed for part in ([p for p in re.split("(:)", w) if p] or [""])]
    program = (
        f"source {shlex.quote(str(script))}\n"
        f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        "_topics_completion topics\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    proc = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return [c for c in proc.stdout.splitlines() if c]


@pytest.fixture
def shell(base_url: str, tmp_path: Path) -> Callable[..., list[str]]:
    """``shell(line, **env)`` → candidates, run in a directory full of files that a
    filename completion would offer."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    for name in ("json-notes.txt", "warn.log", "start.txt", "disk.img", "orders.cp"):
        (cwd / name).write_text("x\n")

    def run(line: str, **extra: str) -> list[str]:
        return complete(line, _env(base_url, tmp_path, **extra), cwd)

    return run


def test_topic_and_router_names_come_from_the_server(
    topics: Topics, topic: str, shell: Callable[..., list[str]]
) -> None:
    names = [f"{topic}-orders", f"{topic}-audit"]
    for name in names:
        assert topics("create", name).code == 0
    assert (
        topics("router", "put", f"{topic}-o2a", "--source", names[0], "--dest", names[1]).code == 0
    )
    for line in (
        f"topics diff {topic}",
        f"topics info {topic}",
        f"topics watch {names[0]} {topic}",
        f"topics lease claim {topic}",
        f"topics router put x --source {topic}",
        f"topics -o jsonl diff {topic}",
    ):
        assert sorted(shell(line)) == sorted(names), line
    assert shell(f"topics diff {topic}-or") == [names[0]]
    assert shell(f"topics router get {topic}") == [f"{topic}-o2a"]
    assert shell(f"topics router rm {topic}-o") == [f"{topic}-o2a"]


def test_names_holding_colons_complete_as_one_word(
    topics: Topics, topic: str, shell: Callable[..., list[str]]
) -> None:
    for node in ("fra", "iad"):
        assert topics("create", f"{topic}:{node}").code == 0
    # bash replaces what follows the word's last `:`, so that is what is offered
    assert shell(f"topics diff {topic}:f") == ["fra"]
    assert shell(f"topics watch {topic}:fra {topic}:") == ["fra", "iad"]
    assert shell(f"topics watch {topic}") == [f"{topic}:fra", f"{topic}:iad"]
    assert shell(f"topics diff {topic}:fra -o js") == ["json", "jsonl"]


def test_names_honour_url_option_and_profile(
    topics: Topics, topic: str, base_url: str, tmp_path: Path, shell: Callable[..., list[str]]
) -> None:
    assert topics("create", topic).code == 0
    dead = "http://127.0.0.1:9"  # nothing listens: a completion asking there finds nothing
    assert shell(f"topics diff {topic}", TOPICS_URL=dead) == []
    assert shell(f"topics --url {base_url} diff {topic}", TOPICS_URL=dead) == [topic]
    assert shell(f"topics diff --url {base_url} {topic}", TOPICS_URL=dead) == [topic]
    # a profile's url (no TOPICS_URL at all)
    env = _env(base_url, tmp_path)
    del env["TOPICS_URL"]
    subprocess.run(
        ["topics", "config", "set", "url", base_url, "--profile", "lab"], env=env, check=True
    )
    assert complete(f"topics --profile lab diff {topic}", env, tmp_path) == [topic]


def test_a_server_that_never_answers_costs_about_a_second_and_prints_nothing(
    topic: str, shell: Callable[..., list[str]]
) -> None:
    with _silent_server() as url:
        t0 = time.monotonic()
        shell("topics -o ")  # the program's own start-up, for comparison
        baseline = time.monotonic() - t0
        t0 = time.monotonic()
        assert shell(f"topics diff {topic}", TOPICS_URL=url) == []
        waited = time.monotonic() - t0 - baseline
    assert waited < 3.0, f"completion waited {waited:.1f}s on a silent server"


def _enum_options() -> Iterator[tuple[str, str, list[str]]]:
    """(command, option, values) for every option whose help starts with ``a | b | c``,
    plus the ones whose values are named otherwise (on-gap, step, log level)."""
    import typer.main

    from topics_cli.app import app

    named = {
        "--on-gap": ["warn", "fail", "inline"],
        "--step": ["stream", "fanout", "queue", "mirror", "lease"],
        "--log-level": ["debug", "info", "warning"],
    }
    root = typer.main.get_command(app)

    def walk(cmd: object, ctx: object, path: str) -> Iterator[tuple[str, str, list[str]]]:
        for p in getattr(cmd, "params", []):
            opts = [o for o in getattr(p, "opts", ()) if o.startswith("--")]
            if getattr(p, "hidden", False) or not opts or getattr(p, "is_flag", False):
                continue
            m = re.match(r"(\w+(?: \| \w+)+)", getattr(p, "help", None) or "")
            if m:
                yield path, opts[0], m.group(1).split(" | ")
            elif opts[0] in named:
                yield path, opts[0], named[opts[0]]
        if hasattr(cmd, "list_commands"):
            for name in cmd.list_commands(ctx):  # type: ignore[attr-defined]
                sub = cmd.get_command(ctx, name)  # type: ignore[attr-defined]
                sub_ctx = sub.make_context(name, ["--help"], parent=ctx, resilient_parsing=True)
                yield from walk(sub, sub_ctx, f"{path} {name}")

    yield from walk(root, root.make_context("topics", [], resilient_parsing=True), "topics")


def test_every_enum_option_offers_its_choices_never_files(
    shell: Callable[..., list[str]],
) -> None:
    found = list(_enum_options())
    seen = {opt for _, opt, _ in found}
    assert {"--output", "--type", "--durability", "--discard", "--on-gap", "--step"} <= seen
    done: set[tuple[str, tuple[str, ...]]] = set()
    for path, opt, values in found:
        if (opt, tuple(values)) in done:  # the same option on another command
            continue
        done.add((opt, tuple(values)))
        line = f"{path} {opt} "
        assert shell(line) == values, line
        first = values[0]
        assert shell(line + first[:2]) == [v for v in values if v.startswith(first[:2])], line
        assert shell(line + "zz") == [], line  # no match: nothing, not the directory's files
    # positions offer their words, never the files named like them
    assert shell("topics diff x --from st") == ["start"]
    assert shell("topics diff x --until ") == ["head"]


def test_path_options_complete_files(shell: Callable[..., list[str]]) -> None:
    assert shell("topics diff x -c ord") == ["orders.cp"]
    assert shell("topics watch x --checkpoint orders") == ["orders.cp"]
    assert "orders.cp" in shell("topics serve --port-file ")
    assert shell("topics lag ord") == ["orders.cp"]  # an argument that takes files


def test_install_completion_installs_the_shipped_scripts(base_url: str, tmp_path: Path) -> None:
    for shell_path, installed, rc in (
        ("/bin/bash", ".bash_completions/topics.sh", ".bashrc"),
        ("/usr/bin/zsh", ".zfunc/_topics", ".zshrc"),
        ("/usr/local/bin/fish", ".config/fish/completions/topics.fish", None),
    ):
        home = tmp_path / Path(shell_path).name
        home.mkdir()
        env = _env(base_url, tmp_path, HOME=str(home), SHELL=shell_path)
        for _ in range(2):  # installing twice adds the rc line once
            r = subprocess.run(
                ["topics", "--install-completion"], env=env, capture_output=True, text=True
            )
            assert r.returncode == 0, r.stderr
        shipped = (ROOT / "completions" / f"topics.{Path(shell_path).name}").read_text()
        assert (home / installed).read_text() == shipped
        if rc is not None:
            lines = (home / rc).read_text().splitlines()
            assert len([line for line in lines if "topics" in line or "zfunc" in line]) == 1
        shown = subprocess.run(
            ["topics", "--show-completion"], env=env, capture_output=True, text=True
        )
        assert shown.returncode == 0 and shown.stdout == shipped
    # the installed bash script works as installed
    env = _env(base_url, tmp_path, HOME=str(tmp_path / "bash"))
    installed_script = tmp_path / "bash" / ".bash_completions" / "topics.sh"
    assert complete("topics diff x --on-gap f", env, tmp_path, installed_script) == ["fail"]
    r = subprocess.run(
        ["topics", "--install-completion"],
        env={**env, "SHELL": "/bin/tcsh"},
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "SHELL='/bin/tcsh'" in r.stderr and "Traceback" not in r.stderr


@contextlib.contextmanager
def _silent_server() -> Iterator[str]:
    """A listening socket whose connections are queued and never answered."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def _needs(shell_name: str) -> str:
    path = shutil.which(shell_name)
    if path is None:
        pytest.skip(f"{shell_name} is not installed")
    return path


def test_fish_completes_through_its_own_engine(
    topics: Topics, topic: str, base_url: str, tmp_path: Path
) -> None:
    """fish's ``complete -C LINE`` runs the real completion engine on the sourced script."""
    fish = _needs("fish")
    assert topics("create", topic).code == 0
    (tmp_path / "orders.cp").write_text("{}\n")
    (tmp_path / "json-notes.txt").write_text("x\n")
    script = ROOT / "completions" / "topics.fish"

    def fish_complete(line: str) -> list[str]:
        program = f"source {shlex.quote(str(script))}; complete -C {shlex.quote(line)}"
        proc = subprocess.run(
            [fish, "--no-config", "-c", program],
            capture_output=True,
            text=True,
            env=_env(base_url, tmp_path),
            cwd=tmp_path,
            timeout=60,
        )
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        return [c.split("\t")[0] for c in proc.stdout.splitlines()]

    assert fish_complete("topics diff x -o ") == ["data", "json", "jsonl", "pretty", "template"]
    assert fish_complete("topics diff x -o zz") == []  # never the directory's files
    assert fish_complete("topics create x --durability f") == ["fsync"]
    assert fish_complete(f"topics watch {topic}") == [topic]
    assert fish_complete("topics diff x -c ord") == ["orders.cp"]


def test_zsh_script_hands_values_to_arguments_and_files_only_to_path_options(
    base_url: str, tmp_path: Path
) -> None:
    """zsh runs the sourced script; its completion-system functions (_arguments, _files,
    compdef) are stand-ins that print what the script asked them to offer."""
    zsh = _needs("zsh")
    script = ROOT / "completions" / "topics.zsh"

    def zsh_complete(*words: str) -> str:
        program = (
            "compdef() { :; }\n"
            '_arguments() { print -r -- "ARGUMENTS $*"; }\n'
            '_files() { print -r -- "FILES"; }\n'
            f"source {shlex.quote(str(script))}\n"
            f"words=({' '.join(shlex.quote(w) for w in words)}); CURRENT={len(words)}\n"
            "_topics_completion\n"
        )
        proc = subprocess.run(
            [zsh, "-f", "-c", program],
            capture_output=True,
            text=True,
            env=_env(base_url, tmp_path),
            cwd=tmp_path,
            timeout=60,
        )
        assert proc.stderr == "", proc.stderr  # status 1: nothing offered (zsh's convention)
        return proc.stdout

    offered = zsh_complete("topics", "diff", "x", "--on-gap", "")
    assert offered.startswith("ARGUMENTS") and re.findall(r'"(\w+)"', offered) == [
        "warn",
        "fail",
        "inline",
    ]
    assert zsh_complete("topics", "diff", "x", "-o", "zz") == ""  # not `_files`
    assert zsh_complete("topics", "diff", "x", "--checkpoint", "o") == "FILES\n"
    # installed into fpath, zsh's own completion system registers it for `topics`
    zfunc = tmp_path / "zfunc"
    zfunc.mkdir()
    (zfunc / "_topics").write_text(script.read_text())
    program = (
        f"fpath=({shlex.quote(str(zfunc))} $fpath); autoload -Uz compinit; compinit -u -D\n"
        "print -r -- ${_comps[topics]}\n"
    )
    registered = subprocess.run(
        [zsh, "-f", "-c", program], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert registered.stdout == "_topics\n", registered.stderr
