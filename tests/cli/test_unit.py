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


def test_commands_load_lazily_and_list_in_order() -> None:
    """Looking up ``put`` imports its module only; ``--help`` still lists every command in
    registration order (commands, then groups) and "did you mean" knows unbuilt names."""
    code = (
        "import sys, typer.main\n"
        "from topics_cli.app import _COMMANDS, app\n"
        "group = typer.main.get_command(app)\n"
        "print(list(group.commands) == list(_COMMANDS))\n"
        "group.get_command(None, 'put')\n"
        "print(sorted(m for m in sys.modules if m.startswith('topics_cli.commands.')))\n"
        "from topics_client import Client\n"
        "Client('http://127.0.0.1:1').topics\n"
        "print(sorted(m for m in sys.modules if m.startswith('topics_client._models.')))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "True",
        "['topics_cli.commands.put']",
        "['topics_client._models._common', 'topics_client._models.writes']",
    ]
    from topics_cli.app import _COMMANDS

    runner = CliRunner()
    top = runner.invoke(app, ["--help"]).output
    section = top.split("Commands:\n")[1].split("\n\n")[0]
    listed = [line.split()[0] for line in section.splitlines()]
    assert listed == list(_COMMANDS)
    typo = runner.invoke(app, ["tombstne"])
    assert typo.exit_code == 2 and "Did you mean 'tombstone'" in typo.output
    gaps = runner.invoke(app, ["gaps", "--help"]).output
    assert "check" in gaps and "scan" in gaps


def test_jsonl_page_is_per_record_dumps() -> None:
    """One ``orjson.dumps`` per page, split at record boundaries, is byte for byte the
    per-record form, including when strings or nested data look like a boundary."""
    import orjson

    from topics_cli.output import jsonl_page

    def rec(seq: int, data: object, **extra: object) -> dict[str, object]:
        return {"$seq": seq, "$ts": 1_700_000_000_000 + seq, **extra, "data": data}

    pages: list[list[dict[str, object]]] = [
        [],
        [rec(1, 1)],
        [rec(i, {"i": i, "s": "x" * i}) for i in range(1, 50)],
        [rec(1, '},{"$seq":2'), rec(2, '\u00e9\n"}'), rec(3, None, meta={"k": "v"})],
        [rec(1, [rec(7, 7), rec(8, 8)]), rec(2, [{"$seq": 1}, {"$seq": 2}])],  # nested
        [rec(1, 1), {"$ts": 5, "$seq": 2, "data": 2}],  # another first key
        [{"topic": "t", **rec(1, 1)}, {"topic": "t", **rec(2, [{"topic": "u"}, {"topic": 1}])}],
    ]
    for page in pages:
        expected = b"".join(orjson.dumps(r) + b"\n" for r in page)
        assert jsonl_page(page) == expected, page


def test_wire_records_match_the_record_path() -> None:
    """Raw pages (server dicts) render exactly like decoded ``Record`` pages in every
    mode but pretty."""
    import io

    from topics_cli.output import Sink, record_to_wire
    from topics_client import Record

    recs = [
        Record(1, 1_700_000_000_000, {"a": [1, 2]}, tag="t", node="n1", meta={"m": 1}),
        Record(2, 1_700_000_000_001, "s"),
        Record(3, 1_700_000_000_002, None, extra={"$future": True}),
    ]
    wire = [record_to_wire(r) for r in recs]
    for mode in ("jsonl", "json", "data", "template"):
        template = r"{seq}|{ts}|{time}|{tag}|{node}|{topic}|{data}|{data[a][0]}|{meta[m]}"
        a, b = io.StringIO(), io.StringIO()
        Sink(mode, template=template, out=a).records(recs, "orders")
        Sink(mode, template=template, out=b).wire_records(wire, "orders")
        assert a.getvalue() == b.getvalue() and a.getvalue(), mode
