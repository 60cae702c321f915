"""The pytest plugin, tested the way pytest tests plugins: generated test modules run by
``pytester`` in a subprocess, against real servers."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess
from topics_client import Client, TopicNotFoundError

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]


def _plugin_args() -> list[str]:
    """Load the plugin by module unless this install already registers it by entry point."""
    names = {ep.value for ep in entry_points(group="pytest11")}
    return [] if "topics_client.pytest_plugin" in names else ["-p", "topics_client.pytest_plugin"]


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makeini("[pytest]\naddopts = -p no:cacheprovider\n")
    return pytester.runpytest_subprocess(*_plugin_args(), "-p", "anyio", *args, timeout=120)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TOPICS_URL", "TOPICS", "TOPICS_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))


def test_every_fixture_and_helper_in_a_generated_suite(
    pytester: pytest.Pytester, clean_env: None
) -> None:
    pytester.makepyfile(
        test_user=textwrap.dedent(
            """
            import pytest
            from topics_client.testing import (
                assert_complete, async_wait_for_records, wait_for_records, wait_until,
            )

            def test_write_and_read(topics_client, topic):
                assert topic.startswith("test-test_write_and_read-")
                topics_client.topics.write(topic, [{"data": {"id": i}} for i in range(3)])
                records = wait_for_records(topics_client, topic, 3)
                assert [r.data["id"] for r in records] == [0, 1, 2]
                assert_complete(topics_client, topic)

            @pytest.mark.topic_config(cap_records=7, durability="memory")
            def test_marker_config(topics_client, topic):
                config = topics_client.topics.get(topic).config
                assert config.cap_records == 7 and config.durability == "memory"

            def test_wait_until(topics_client, topic):
                topics_client.topics.append(topic, {"n": 1})
                head = wait_until(lambda: topics_client.topics.get(topic).head_seq, timeout=5)
                assert head == 1

            @pytest.mark.anyio
            async def test_async_client(async_topics_client, topic):
                await async_topics_client.topics.append(topic, {"n": 1})
                records = await async_wait_for_records(async_topics_client, topic, 1)
                assert records[0].data == {"n": 1}

            @pytest.fixture
            def anyio_backend():
                return "asyncio"
            """
        )
    )
    result = _run(pytester, "-v")
    result.assert_outcomes(passed=4)
    # The bundled server's directory is gone at the end of the session.
    assert not list(Path(pytester.path).rglob("topics-server*"))


def test_a_gap_fails_with_the_missing_range_and_its_reason(
    pytester: pytest.Pytester, clean_env: None
) -> None:
    pytester.makepyfile(
        test_gap=textwrap.dedent(
            """
            import pytest
            from topics_client.testing import assert_complete

            @pytest.mark.topic_config(cap_records=5)
            def test_capped(topics_client, topic):
                topics_client.topics.write(topic, [{"data": i} for i in range(10)])
                assert_complete(topics_client, topic, 1, 10)
            """
        )
    )
    result = _run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*is missing 5 of 10 seqs in 1..10:*",
            "*1..5  evicted (cap): the server answered with a tombstone*",
        ]
    )


def test_wait_for_records_times_out_naming_what_arrived(
    pytester: pytest.Pytester, clean_env: None
) -> None:
    pytester.makepyfile(
        test_wait=textwrap.dedent(
            """
            from topics_client.testing import wait_for_records

            def test_short(topics_client, topic):
                topics_client.topics.write(topic, [{"data": 1}, {"data": 2}])
                wait_for_records(topics_client, topic, 5, timeout=0.5)
            """
        )
    )
    result = _run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*expected 5 records within 0.5 s; saw 2 (1..2)*"])


def test_an_external_server_is_used_and_nothing_is_started(
    pytester: pytest.Pytester, clean_env: None, server: ServerProcess
) -> None:
    pytester.makepyfile(
        test_ext=textwrap.dedent(
            f"""
            def test_uses_it(topics_server, topics_client, topic):
                assert topics_server == {server.url!r}
                topics_client.topics.append(topic, {{"n": 1}})
                with open("topic-name.txt", "w") as f:
                    f.write(topic)
            """
        )
    )
    result = _run(pytester, "--topics-url", server.url)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"topics: using the server at {server.url}"])
    name = (pytester.path / "topic-name.txt").read_text()
    assert name.startswith("test-test_uses_it-")
    with Client(server.url) as client, pytest.raises(TopicNotFoundError):
        client.topics.get(name)  # the fixture deleted what it created
    assert not list(Path(pytester.path).rglob("topics-server*"))


def test_topics_url_from_the_environment(
    pytester: pytest.Pytester,
    clean_env: None,
    server: ServerProcess,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TOPICS_URL", server.url)
    pytester.makepyfile(
        test_env=f"def test_it(topics_server):\n    assert topics_server == {server.url!r}\n"
    )
    _run(pytester).assert_outcomes(passed=1)


def test_a_missing_server_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from topics_client import pytest_plugin

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "uvicorn" else real(name)
    )
    with pytest.raises(
        RuntimeError, match=r"uvicorn not installed\): pip install 'topics-py\[server\]'"
    ):
        pytest_plugin.ReferenceServer(Path("/nonexistent")).start()


def test_topic_names_are_valid_for_any_test_name() -> None:
    from topics_client.pytest_plugin import topic_name

    pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,254}$"
    for test_name in ("test_x[a/b c]", "test_" + "y" * 400, "[weird]", "_under"):
        name = topic_name("", test_name)
        assert __import__("re").match(pattern, name), name
    assert topic_name("it-", "test_a[1]").startswith("it-test_a-1-")


def test_importing_the_plugin_loads_neither_httpx_nor_the_server() -> None:
    code = (
        "import sys, topics_client.pytest_plugin, topics_client.testing;"
        "loaded = [m for m in ('httpx', 'httpcore', 'topics_server', 'topics_client._client')"
        " if m in sys.modules];"
        "print(','.join(loaded))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == ""


def _readme_blocks(language: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    start = text.index("\n## Testing your code\n")
    section = text[start : text.index("\n## ", start + 1)]
    fence = f"```{language}\n"
    blocks = []
    at = section.find(fence)
    while at >= 0:
        end = section.index("```", at + len(fence))
        blocks.append(section[at + len(fence) : end])
        at = section.find(fence, end + 3)
    return blocks


def test_readme_pytest_example_runs_as_written(pytester: pytest.Pytester, clean_env: None) -> None:
    [example] = _readme_blocks("python")
    pytester.makepyfile(test_readme=example)
    _run(pytester, "-v").assert_outcomes(passed=1)


def test_readme_ci_snippet_runs_as_written(tmp_path: Path) -> None:
    """The snippet as printed, on a free port (the defaults' port 4000 may be taken here)."""
    import os

    from tests.serverproc import free_port

    [snippet] = _readme_blocks("bash")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOPICS")}
    env.update(
        TOPICS_PORT=str(port),
        TOPICS_URL=f"http://127.0.0.1:{port}",
        TOPICS_DATA_DIR=str(tmp_path / "data"),
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
        PYTHONPATH=str(ROOT),
    )
    script = f"set -e\n{snippet}\nkill %1\nwait\n"
    topics = Path(sys.executable).with_name("topics")
    if not topics.exists():
        pytest.skip("no `topics` script beside this Python")
    done = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    suite = (tmp_path / "smoke.xml").read_text()
    assert 'failures="0"' in suite and 'tests="9"' in suite
