"""Every example the user is shown runs, exactly as written, in bash, against a real server.

Examples are every command line in every ``--help`` (all groups and subcommands) and every
line of the README's ``sh`` blocks. Each runs with ``bash -c`` in a fresh directory holding
the files examples read (``orders.jsonl``, ``app.log``, ``./render.sh``…), against a
private server whose topics are reset before each example, with ``topics`` on PATH
running this checkout. An example passes when it exits 0 (those that never end by design,
``watch``, ``serve``, ``lease run``, ``--follow``, ``tail -f``, ``demo``, pass when they
show a sign of life without an error and are then stopped) and leaves no file behind
except the ones it names as outputs (``> FILE``, ``-c FILE``, ``--port-file FILE``): an
unquoted ``orders->audit`` writes a file ``audit`` and fails here.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.cli.conftest import ROOT
from tests.serverproc import ServerProcess

README = ROOT / "README.md"

# ---------------------------------------------------------------------------- collection


@dataclass(frozen=True)
class Example:
    source: str  # "topics lease run --help" or "README.md:57"
    text: str

    @property
    def endless(self) -> bool:
        """Runs until stopped, by design."""
        t = self.text
        return (
            ("topics watch " in t and "--until-caught-up" not in t and "--count" not in t)
            or "--follow" in t
            or "topics serve" in t
            or ("topics lease run " in t and "--once" not in t)
            or "tail -f " in t
            or "topics demo" in t  # minutes of walk-through: started is enough
            or "topics bench " in t  # minutes of load by design: started is enough
        )


def _joined(lines: list[str]) -> Iterator[str]:
    """Lines with ``\\`` continuations joined (as bash reads them)."""
    buf = ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1].rstrip() + " "
            continue
        yield buf + line.strip() if buf else line
        buf = ""


_COMMAND = re.compile(r"^(?:[A-Z_]+=\S+ )*topics\b|\|\s*topics\b")


def help_examples() -> list[Example]:
    import typer.main

    from topics_cli.app import app

    root = typer.main.get_command(app)
    found: list[Example] = []

    def walk(cmd: object, ctx: object, path: str) -> None:
        text = cmd.get_help(ctx)  # type: ignore[attr-defined]
        # example blocks are kept as written (Click's \b), indented 4 under a 2-space help
        block = [line[4:] for line in text.splitlines() if line.startswith("    ")]
        for line in _joined(block):
            if _COMMAND.search(line.strip()) and not line.startswith(" "):
                found.append(Example(f"{path} --help", line.strip()))
        if hasattr(cmd, "list_commands"):
            for name in cmd.list_commands(ctx):  # type: ignore[attr-defined]
                sub = cmd.get_command(ctx, name)  # type: ignore[attr-defined]
                walk(
                    sub,
                    sub.make_context(name, [], parent=ctx, resilient_parsing=True),
                    f"{path} {name}",
                )

    walk(root, root.make_context("topics", [], resilient_parsing=True), "topics")
    return found


# The README's install lines: checked for syntax, not run (they build a venv).
README_INSTALL = (
    "python3 -m venv .venv && .venv/bin/pip install '.[server]' && .venv/bin/topics demo",
    "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' && .venv/bin/pytest -q",
)


def readme_blocks() -> list[Example]:
    """Every command line of the README's ``sh`` blocks (``\\`` continuations joined)."""
    found: list[Example] = []
    inside, pending, first = False, "", 0
    for no, line in enumerate(README.read_text().splitlines(), 1):
        if line.startswith("```"):
            inside = (not inside) and line.strip() in ("```sh", "```bash")
            continue
        if not inside or not line.strip() or line.lstrip().startswith("#"):
            continue
        first = first or no
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1].strip() + " "
            continue
        found.append(Example(f"README.md:{first}", (pending + line.strip()).strip()))
        pending, first = "", 0
    return found


def _once(examples: list[Example]) -> list[Example]:
    """The first of identical examples (``topics gaps --help`` repeats tombstone's)."""
    seen: dict[str, Example] = {}
    for e in examples:
        seen.setdefault(e.text, e)
    return list(seen.values())


HELP_EXAMPLES = _once(help_examples())
README_EXAMPLES = [e for e in readme_blocks() if e.text not in README_INSTALL]
EXAMPLES = HELP_EXAMPLES + README_EXAMPLES


def test_examples_were_found() -> None:
    sources = {e.source for e in HELP_EXAMPLES}
    for command in ("topics", "topics router", "topics lease run", "topics put", "topics rm"):
        assert f"{command} --help" in sources, command
    assert any("router put" in e.text for e in README_EXAMPLES)
    # every README shell line is run, but for the two install lines
    assert {e.text for e in readme_blocks()} - {e.text for e in README_EXAMPLES} == set(
        README_INSTALL
    )
    for line in README_INSTALL:
        assert subprocess.run(["bash", "-n", "-c", line]).returncode == 0


# ---------------------------------------------------------------------------- the world


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(
        data_dir=tmp_path_factory.mktemp("examples") / "data", env={"TOPICS_STORE": "memory"}
    ) as proc:
        yield proc


def reset(url: str) -> None:
    """The topics the examples talk about, as a newcomer following the README would have
    them: a busy ``orders`` log (6,000 records), ``audit`` fed by ``orders->audit``, a job
    queue ``jobs``, an empty ``scratch``…; everything else deleted."""
    with httpx.Client(base_url=f"{url}/v0", timeout=30) as http:
        for t in http.get("/topics", params={"page_size": 1000}).json()["topics"]:
            http.delete(f"/topics/{t['topic']}").raise_for_status()

        def write(topic: str, records: list[dict[str, object]]) -> None:
            http.post(f"/topics/{topic}", json={"records": records}).raise_for_status()

        write("orders", [{"data": {"id": i}, "tag": f"order:{i}"} for i in range(1, 6001)])
        write("audit", [{"data": {"id": i}} for i in range(1, 51)])
        http.put(
            "/routers/orders->audit", json={"source": "orders", "dest": "audit"}
        ).raise_for_status()
        for name in ("A", "a", "b", "logs"):
            write(name, [{"data": {"n": i}} for i in range(3)])
        write(
            "carts", [{"data": {"n": i}, "tag": t} for i, t in enumerate(["cart:77", "tenant42:x"])]
        )
        http.put(
            "/topics/jobs", json={"type": "queue", "max_deliveries": 5, "dead_letter": "jobs.dlq"}
        ).raise_for_status()
        write("jobs", [{"data": {"clip": 9, "url": f"{url}/v0/health"}}])
        http.put("/topics/scratch", json={}).raise_for_status()


# What `topics bench ... -o json > FILE` writes, for the examples that compare against one.
_BENCH_REPORT = json.dumps({"schema": "topics-bench/1", "results": []}) + "\n"

FILES = {
    "ours.json": _BENCH_REPORT,
    "upstream.json": _BENCH_REPORT,
    "orders.jsonl": '{"id": 101}\n{"id": 102}\n',
    "app.log": "started\n",
    "ten-headlines.txt": "".join(f"headline {i}\n" for i in range(1, 11)),
    "orders.cp": json.dumps({"orders": 10}) + "\n",
    "cp.json": json.dumps({"orders": 10}) + "\n",
    "billing.cp": json.dumps({"orders": 10}) + "\n",
    "render.sh": "#!/bin/sh\ncat\n",
    "handle.py": "import sys\nprint(sys.stdin.read().strip())\n",
    "Makefile": "job:\n\t@cat\n",
    "workers/billing.cp": json.dumps({"orders": 10}) + "\n",
    "workers/archiver.cp": json.dumps({"orders": 40, "audit": 5}) + "\n",
}

# Examples aimed at servers the test does not have: they get as far as trying to connect
# (exit 6, or a relay that keeps retrying), no further and no sooner.
ELSEWHERE = (
    "https://topics.internal:4000",
    "http://fra:4000",
    "http://iad:4000",
    "http://127.0.0.1:4100",
    "--url http://127.0.0.1:4000",  # the default port: no server there while tests run
)
_CANNOT_CONNECT = re.compile(r"connection error|cannot connect|Name or service not known")


def _outputs(text: str) -> set[str]:
    """Files an example writes on purpose: ``> FILE``, ``-c FILE``, ``--port-file FILE``…"""
    words = shlex.split(text, comments=True)
    named = {
        b
        for a, b in itertools.pairwise(words)
        if a in (">", "-c", "--checkpoint", "--port-file", "--data-dir", "--junit-xml")
    }
    if "topics serve" in text:
        named.add("topics-data")
    return named


@dataclass
class Outcome:
    code: int | None  # None: stopped while running
    out: str
    err: str
    new_files: set[str]


def run_example(example: Example, url: str, where: Path) -> Outcome:
    work, home = where / "work", where / "home"
    for d in (work, home, where / "xdg" / "topics", where / "bin"):
        d.mkdir(parents=True)
    for name, content in FILES.items():
        (work / name).parent.mkdir(exist_ok=True)
        (work / name).write_text(content)
    for script in ("render.sh",):
        (work / script).chmod(0o755)
    (where / "xdg" / "topics" / "config.toml").write_text(
        f'current = "default"\n[profiles.default]\nurl = "{url}"\n'
        f'[profiles.staging]\nurl = "{url}"\n[profiles.prod]\nurl = "{url}"\n'
    )
    exe = where / "bin" / "topics"
    exe.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m topics_cli "$@"\n')
    exe.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOPICS")}
    env.update(
        TOPICS_URL=url,
        TOPICS_PORT="0",  # `topics serve` examples: never the shared default port
        HOME=str(home),
        XDG_CONFIG_HOME=str(where / "xdg"),
        NO_COLOR="1",
        KEY="s3cret",  # the API key examples pass as "$KEY"
        PATH=f"{where / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    before = set(os.listdir(work))
    out_path, err_path = where / "stdout", where / "stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            ["bash", "-c", example.text],
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,  # one group: `topics serve &` is stopped with it
        )
        try:
            code = _wait(example, proc, work, before, out_path, err_path, url)
        finally:
            _stop_group(proc)
    return Outcome(
        code,
        out_path.read_text(errors="replace"),
        err_path.read_text(errors="replace"),
        set(os.listdir(work)) - before,
    )


_ERROR = re.compile(r"Usage:|Error|error:|Traceback|command not found|No such file")


def _wait(
    example: Example,
    proc: subprocess.Popen[bytes],
    work: Path,
    before: set[str],
    out: Path,
    err: Path,
    url: str,
) -> int | None:
    """The exit code; for an endless example, None once it showed a sign of life (output
    or a new file) with no error, after nudging it with fresh records and log lines."""
    deadline = time.monotonic() + 120
    if any(target in example.text for target in ELSEWHERE):
        return _wait_elsewhere(example, proc, err)
    if not example.endless:
        return proc.wait(120)
    nudge = 0
    while time.monotonic() < deadline:
        code = proc.poll()
        if code not in (None, 0):
            return code
        text = err.read_text(errors="replace")
        if _ERROR.search(text):
            return -1
        if out.stat().st_size > 0 or text.strip() or set(os.listdir(work)) - before:
            return None
        nudge += 1
        _nudge(example.text, work, url, nudge)
        time.sleep(0.2)
    raise AssertionError(f"no sign of life within 120 s: {example.text}")


def _wait_elsewhere(example: Example, proc: subprocess.Popen[bytes], err: Path) -> int | None:
    """0 once the example failed only to connect (exit 6, or retrying with a connection
    error and nothing worse); otherwise its exit code."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        code = proc.poll()
        text = err.read_text(errors="replace")
        if "Traceback" in text or "Usage:" in text:
            return code if code not in (None, 0) else -1
        if code is not None:
            return 0 if code == 6 else code
        if _CANNOT_CONNECT.search(text):
            return None
        time.sleep(0.1)
    raise AssertionError(f"neither connected nor failed to within 60 s: {example.text}")


def _nudge(text: str, work: Path, url: str, n: int) -> None:
    """Give a waiting example something to show: a record for every topic it names, a job,
    a log line."""
    words = set(re.findall(r"[\w.:-]+", text))
    try:
        with httpx.Client(base_url=f"{url}/v0", timeout=5) as http:
            for topic in ("orders", "audit", "a", "b", "logs"):
                if topic in words:
                    http.post(f"/topics/{topic}", json={"records": [{"data": {"nudge": n}}]})
            if "jobs" in words:
                job = {"clip": n, "url": f"{url}/v0/health"}
                http.post("/topics/jobs", json={"records": [{"data": job}]})
    except httpx.HTTPError:
        pass
    if "app.log" in words:
        with open(work / "app.log", "a") as f:
            f.write(f"line {n}\n")


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop an example as its user would: Ctrl-C (SIGINT: checkpoints are saved, temp files
    removed); then SIGTERM for what ignores it (`topics serve &`: bash starts background
    jobs with SIGINT ignored); then SIGKILL."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + 15
        while not _group_gone(proc) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _group_gone(proc):
            break
    proc.wait(30)


def _group_gone(proc: subprocess.Popen[bytes]) -> bool:
    proc.poll()  # reap bash: a zombie leader keeps the group alive
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"{e.source}: {e.text}"[:90])
def test_example_runs_as_written(example: Example, server: ServerProcess, tmp_path: Path) -> None:
    reset(server.url)
    r = run_example(example, server.url, tmp_path)
    where = f"{example.source}: {example.text}"
    assert r.code in (0, None), (
        f"{where}\nexit {r.code}\nstdout: {r.out[-2000:]}\nstderr: {r.err[-2000:]}"
    )
    stray = r.new_files - _outputs(example.text)
    assert not stray, f"{where}\nleft files {sorted(stray)} behind (a `>` the shell took?)"
