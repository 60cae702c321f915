"""In-process: parsing, rendering, import budget, completions (no server needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from topics_cli.app import app


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


def test_global_options_after_the_command_are_parsed_in_place() -> None:
    """``-o``/``-q``/``--url`` may follow the command; an option's value is never taken for
    a global flag (``--tag -q`` is the tag "-q"), and ``config`` keeps its own --profile."""
    import typer.main

    from topics_cli.context import AppContext

    group = typer.main.get_command(app)

    def parse(name: str, args: list[str]) -> tuple[AppContext, dict[str, object]]:
        root = group.make_context("topics", [name])
        root.obj = AppContext()
        sub = group.get_command(root, name).make_context(name, args, parent=root)
        return root.obj, sub.params

    obj, params = parse("put", ["t", "--tag", "-q", "1"])
    assert params["tag"] == "-q" and obj.quiet is False
    obj, _ = parse("diff", ["t", "-o", "JSONL", "-q", "--url", "http://h:1", "--debug"])
    assert (obj.output, obj.quiet, obj.url, obj.debug) == ("jsonl", True, "http://h:1", True)
    obj, params = parse("diff", ["t"])
    assert (obj.output, obj.quiet, obj.url) == (None, False, None)
    runner = CliRunner()
    r = runner.invoke(app, ["diff", "t", "-o", "xml"])
    assert r.exit_code == 2 and "not one of" in r.output


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
        "print(group.list_commands(None) == list(_COMMANDS))\n"
        "group.get_command(group.make_context('topics', ['put']), 'put')\n"
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


def test_record_pages_render_in_every_raw_mode() -> None:
    """Decoded ``Record`` pages and the server's dicts give these exact lines in every mode
    but pretty (written out here, not recomputed from the code under test)."""
    import io

    from topics_cli.output import Sink
    from topics_client import Record

    recs = [
        Record(1, 1_700_000_000_000, {"a": [1, 2]}, tag="t", node="n1", meta={"m": 1}),
        Record(2, 1_700_000_000_001, "s"),
        Record(3, 1_700_000_000_002, None, extra={"$future": True}),
    ]
    wire = [
        {"$seq": 1, "$ts": 1_700_000_000_000, "$node": "n1", "$tag": "t", "meta": {"m": 1},
         "data": {"a": [1, 2]}},
        {"$seq": 2, "$ts": 1_700_000_000_001, "data": "s"},
        {"$seq": 3, "$ts": 1_700_000_000_002, "data": None, "$future": True},
    ]  # fmt: skip
    jsonl = (
        '{"$seq":1,"$ts":1700000000000,"$node":"n1","$tag":"t","meta":{"m":1},"data":{"a":[1,2]}}\n'
        '{"$seq":2,"$ts":1700000000001,"data":"s"}\n'
        '{"$seq":3,"$ts":1700000000002,"data":null,"$future":true}\n'
    )
    expected = {
        "jsonl": jsonl,
        "data": '{"a":[1,2]}\ns\nnull\n',
        "template": (
            "1|2023-11-14T22:13:20.000+00:00|t|n1|orders|1|1\n"
            "2|2023-11-14T22:13:20.001+00:00|||orders||\n"
            "3|2023-11-14T22:13:20.002+00:00|||orders||\n"
        ),
    }
    template = r"{seq}|{time}|{tag}|{node}|{topic}|{data[a][0]}|{meta[m]}"
    for mode, text in expected.items():
        for page in (recs, wire):
            out = io.StringIO()
            sink = Sink(mode, template=template, out=out)
            if page is recs:
                sink.records(recs, "orders")
            else:
                sink.wire_records(wire, "orders")
            assert out.getvalue() == text, (mode, page is recs)
    out = io.StringIO()
    Sink("json", out=out).wire_records(wire[1:2])
    assert out.getvalue() == '{\n  "$seq": 2,\n  "$ts": 1700000000001,\n  "data": "s"\n}\n'


def test_template_escapes_are_one_pass() -> None:
    """``\\t`` is a tab, ``\\\\t`` a literal backslash-t, ``\\\\`` one backslash."""
    import io

    from topics_cli.output import Sink
    from topics_client import Record

    cases = {
        r"{seq}\t{data}": "1\tx\n",
        r"{seq}\\t{data}": "1\\tx\n",
        r"{seq}\\\t{data}": "1\\\tx\n",
        r"{seq}\n{data}": "1\nx\n",
        r"C:\\dir\q{data}": "C:\\dir\\qx\n",
    }
    for template, want in cases.items():
        out = io.StringIO()
        Sink("template", template=template, out=out).records([Record(1, 0, "x")], "t")
        assert out.getvalue() == want, template


def test_every_duration_flag_rejects_non_finite_values() -> None:
    """inf, nan and 1e400 are usage errors (exit 2, one line), never a traceback."""
    runner = CliRunner()
    commands = [
        ["diff", "t", "--idle-timeout"],
        ["watch", "t", "--idle-timeout"],
        ["tombstone", "check", "t", "--warn-before"],
        ["tombstone", "check", "t", "--sample"],
        ["create", "t", "--ttl"],
        ["status", "--wait", "--timeout"],
        ["lease", "run", "q", "--exec", "true", "--idle-timeout"],
        ["lease", "run", "q", "--exec", "true", "--grace"],
        ["diff", "t", "--from"],
    ]
    env = {"TOPICS_URL": "http://127.0.0.1:9"}
    for command in commands:
        for value in ("inf", "nan", "1e400", "-inf"):
            arg = f"@-{value}" if command[-1] == "--from" else value
            r = runner.invoke(app, [*command, arg], env=env)
            assert r.exit_code == 2, (command, value, r.output, r.exception)
            assert "Traceback" not in r.output


def test_environment_overrides_the_profile_field_by_field(tmp_path: Path) -> None:
    """With TOPICS_URL and TOPICS_API_KEY both set, the profile still gives output,
    template and no_color; each variable replaces only its own field."""
    from topics_cli.config import ConfigFile, resolve

    path = tmp_path / "config.toml"
    cfg = ConfigFile.load(path)
    for key, value in {
        "url": "http://profile:1",
        "api_key": "profile-key",
        "output": "json",
        "template": "{seq}",
        "no_color": True,
    }.items():
        cfg.set("prod", key, value)
    cfg.use("prod")
    cfg.save()
    env = {"TOPICS_URL": "http://env:2", "TOPICS_API_KEY": "env-key"}
    r = resolve(url=None, api_key=None, profile=None, env=env, path=path)
    assert (r.url, r.api_key) == ("http://env:2", "env-key")
    assert (r.profile, r.output, r.template, r.no_color) == ("prod", "json", "{seq}", True)
    r = resolve(url=None, api_key=None, profile=None, env={"TOPICS": "env:3"}, path=path)
    assert (r.url, r.api_key, r.output) == ("http://env:3", "profile-key", "json")
    r = resolve(url="flag:4", api_key="flag-key", profile=None, env=env, path=path)
    assert (r.url, r.api_key, r.output) == ("http://flag:4", "flag-key", "json")
    r = resolve(url=None, api_key=None, profile=None, env={}, path=tmp_path / "none.toml")
    assert (r.url, r.api_key, r.profile) == ("http://127.0.0.1:4000", None, None)


def test_serve_and_demo_name_the_missing_server_extra() -> None:
    """Without the server extra (its packages unimportable), `topics serve` / `topics demo`
    print one line with the pip command to run and exit 1; other commands never need it."""
    for command in ("serve", "demo"):
        code = (
            "import sys\n"
            "for name in ('uvicorn', 'starlette', 'uvloop', 'httptools', 'sortedcontainers'):\n"
            "    sys.modules[name] = None\n"
            f"sys.argv = ['topics', '{command}']\n"
            "from topics_cli.app import main\n"
            "main()\n"
        )
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert r.returncode == 1, r.stderr
        assert r.stderr.splitlines() == [
            f"topics: error: topics {command} needs the server extra (uvicorn is not installed): "
            "pip install 'topics-py[server]'"
        ]
