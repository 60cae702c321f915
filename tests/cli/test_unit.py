"""In-process: parsing, rendering, import budget, completions (no server needed)."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from topics_cli.app import app, hoist_globals


def test_help_has_examples_and_exit_codes() -> None:
    runner = CliRunner()
    for args in (
        ["--help"],
        ["put", "--help"],
        ["diff", "--help"],
        ["watch", "--help"],
        ["tombstone", "check", "--help"],
        ["router", "--help"],
        ["demo", "--help"],
    ):
        r = runner.invoke(app, args)
        assert r.exit_code == 0, r.output
        assert "topics" in r.output
    top = runner.invoke(app, ["--help"]).output
    assert "3 gap found" in top and "6 cannot connect" in top
    assert "topics put orders --key import-2026-01" in runner.invoke(app, ["put", "--help"]).output


def test_usage_errors_exit_2() -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["-o", "xml", "ls"]).exit_code == 2
    assert runner.invoke(app, ["diff", "t", "--from", "yesterday"]).exit_code == 2
    assert runner.invoke(app, ["diff", "t", "--idle-timeout", "soon"]).exit_code == 2
    assert runner.invoke(app, ["watch", "t@x"]).exit_code == 2
    assert runner.invoke(app, ["delete", "t"]).exit_code == 2
    assert runner.invoke(app, ["put", "t", "--raw", "--envelope", "x"]).exit_code == 2


def test_version() -> None:
    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.startswith("topics ")


def test_hoist_globals() -> None:
    assert hoist_globals(["diff", "t", "-o", "jsonl"]) == ["-o", "jsonl", "diff", "t"]
    assert hoist_globals(["diff", "t", "--output=data", "-q"]) == [
        "--output=data",
        "-q",
        "diff",
        "t",
    ]
    assert hoist_globals(["-u", "x", "put", "t", "--debug"]) == ["-u", "x", "--debug", "put", "t"]
    # config keeps its own --profile; "--" ends option processing
    assert hoist_globals(["config", "set", "url", "u", "--profile", "p"]) == [
        "config",
        "set",
        "url",
        "u",
        "--profile",
        "p",
    ]
    assert hoist_globals(["put", "t", "--", "-o"]) == ["put", "t", "--", "-o"]


def test_import_budget() -> None:
    """Importing the app loads neither rich, uvicorn, the server nor httpx."""
    code = (
        "import sys, topics_cli.app;"
        "bad=[m for m in ('rich','uvicorn','topics_server','httpx') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_help_does_not_load_rich() -> None:
    code = (
        "import sys; sys.argv=['topics','--help'];"
        "from topics_cli.app import main\n"
        "try: main()\n"
        "except SystemExit: pass\n"
        "sys.stderr.write(str([m for m in ('rich','httpx') if m in sys.modules]))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stderr.strip() == "[]", r.stderr


def test_completions_are_fresh() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "topics_cli.completions", "--check"], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr


def test_sink_template_and_data() -> None:
    import io

    from topics_cli.output import Sink
    from topics_client import Record

    out = io.StringIO()
    recs = [Record(1, 0, {"a": [1, 2]}, tag="t"), Record(2, 0, "s")]
    Sink("template", template=r"{seq}|{tag}|{data[a][1]}|{data}", out=out).records(recs, "x")
    assert out.getvalue() == '1|t|2|{"a":[1,2]}\n2||| s\n'.replace("| s", "|s")
    out = io.StringIO()
    Sink("data", out=out).records(recs, "x")
    assert out.getvalue() == '{"a":[1,2]}\ns\n'
