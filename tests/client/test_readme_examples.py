"""The README's "Python client" recipes, run as written against the real server.

``EXAMPLES`` holds the four code blocks verbatim and
:func:`test_readme_blocks_are_these_examples` holds README.md's "## Python client" section
to them, so an edit to either side that is not made to the other fails here, and so does
a renamed or missing section.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Python client"

LEDGER = """\
from topics_client import Client, load_checkpoint, save_checkpoint

with Client() as client:
    client.topics.put("ledger", durable=True, discard="reject")
    client.topics.write(
        "ledger",
        [{"data": {"account": "acct_88", "amount": -1299}, "tag": "txn-9f2a"}],
        idempotency_key="txn-9f2a",  # a retried write is deduplicated, never appended twice
    )

    start = load_checkpoint("ledger.ckpt").get("ledger", 0)  # {} on the first run
    for batch in client.topics.replay("ledger", from_seq=start).batches():
        if batch.gap is not None:  # records evicted before we read them: never silent
            print(f"missed {batch.gap.gap_from}..{batch.gap.gap_to} ({batch.gap.reason})")
        for record in batch.records:
            print("apply", record.seq, record.data)
        save_checkpoint("ledger.ckpt", {"ledger": batch.next_from_seq})
"""

PUBSUB = """\
from topics_client import CaughtUpEvent, Client, Gap, RecordsEvent

with Client() as client:
    client.topics.put("orders", cap_records=10_000, ttl_ms=3_600_000)
    client.routers.put("orders->audit", source="orders", dest="audit")
    orders = [{"data": {"id": 1, "total": 42}}, {"data": {"id": 2, "total": 7}}]
    client.topics.write("orders", orders)

    caught_up = set()
    with client.watch.stream({"orders": 0, "audit": 0}) as stream:  # None instead of 0: tail
        for event in stream:
            if isinstance(event, RecordsEvent):
                for record in event.records:
                    print(event.topic, record.seq, record.data)
            elif isinstance(event, Gap):  # the subscriber fell behind the cap/TTL
                print(f"{event.topic}: missed {event.gap_from}..{event.gap_to} ({event.reason})")
            elif isinstance(event, CaughtUpEvent):
                caught_up.add(event.topic)
                if caught_up == {"orders", "audit"}:
                    break  # a real subscriber keeps iterating; this example stops here
        print("checkpoint", stream.cursors)
"""

JOB_QUEUE = """\
from topics_client import Client, load_checkpoint, save_checkpoint

with Client() as client:
    client.topics.put("transcode", durable=True)
    client.topics.write(
        "transcode",
        [
            {"data": {"clip": 9001, "preset": "1080p"}, "tag": "tenant42:clip-9001"},
            {"data": {"clip": 9002, "preset": "720p"}, "tag": "tenant42:clip-9002"},
            {"data": {"clip": 9003, "preset": "480p"}, "tag": "tenant7:clip-9003"},
        ],
        idempotency_key="upload-batch-17",
    )
    client.topics.delete_records("transcode", match=("tag", "Eq", "tenant42:clip-9002"))  # cancel

    cursor = load_checkpoint("worker-1.ckpt").get("transcode", 0)
    while True:
        page = client.topics.diff("transcode", from_seq=cursor, limit=50, node="worker-1")
        for job in page.records:
            print("transcoding", job.seq, job.data)
        cursor = page.next_from_seq
        save_checkpoint("worker-1.ckpt", {"transcode": cursor})  # the ack for the whole page
        if page.caught_up:
            break  # or pass wait_ms=30_000 to long-poll for the next job
"""

MIRROR = """\
from topics_client import Client

with Client() as client:
    client.routers.put("fra->iad", source="chat:fra", dest="chat:iad", allow_cycle=True)
    client.routers.put("iad->fra", source="chat:iad", dest="chat:fra", allow_cycle=True)
    fra = [{"data": {"id": "fra-1", "text": "hey team"}}]
    iad = [{"data": {"id": "iad-1", "text": "on my way"}}]
    client.topics.write("chat:fra", fra, node="api-fra-1")  # stamped $node = api-fra-1
    client.topics.write("chat:iad", iad, node="api-iad-1")

    for node, topic in [("api-fra-1", "chat:fra"), ("api-iad-1", "chat:iad")]:
        seen = set()
        for record in client.topics.replay(topic, node=node):  # drops records with $node == node
            if record.data["id"] not in seen:
                seen.add(record.data["id"])
                print(node, "got", record.data["text"], "from", record.node)
"""

EXAMPLES = [LEDGER, PUBSUB, JOB_QUEUE, MIRROR]

Runner = Callable[[str], list[str]]


@pytest.fixture
def run_example(
    server_factory: Callable[..., ServerProcess],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Runner:
    """Run example code as a script would: its own fresh server as ``TOPICS_URL``, the
    working directory a scratch dir (checkpoint files); returns the printed lines."""
    server = server_factory()
    monkeypatch.setenv("TOPICS_URL", server.url)
    monkeypatch.chdir(tmp_path)

    def run(code: str) -> list[str]:
        capsys.readouterr()
        exec(compile(code, "<README example>", "exec"), {"__name__": "__main__"})
        return capsys.readouterr().out.splitlines()

    return run


def test_durable_ledger_replays_from_its_checkpoint(run_example: Runner) -> None:
    assert run_example(LEDGER) == ["apply 1 {'account': 'acct_88', 'amount': -1299}"]
    assert run_example(LEDGER) == []  # deduplicated write, checkpoint past it
    assert Path("ledger.ckpt").read_text() == '{"ledger":1}\n'  # one line, newline-terminated


def test_pubsub_router_fan_out_over_one_watch(run_example: Runner) -> None:
    lines = run_example(PUBSUB)
    assert lines[-1] == "checkpoint {'orders': 2, 'audit': 2}"
    expected = [
        f"{topic} {seq} {data}"
        for topic in ("orders", "audit")
        for seq, data in ((1, {"id": 1, "total": 42}), (2, {"id": 2, "total": 7}))
    ]
    assert sorted(lines[:-1]) == sorted(expected)
    for topic in ("orders", "audit"):  # per topic, in seq order
        assert [line for line in lines if line.startswith(f"{topic} ")] == [
            e for e in expected if e.startswith(f"{topic} ")
        ]


def test_cursor_job_queue_skips_cancelled_and_acks_by_checkpoint(run_example: Runner) -> None:
    assert run_example(JOB_QUEUE) == [
        "transcoding 1 {'clip': 9001, 'preset': '1080p'}",
        "transcoding 3 {'clip': 9003, 'preset': '480p'}",
    ]
    assert run_example(JOB_QUEUE) == []  # everything up to the cursor is acknowledged
    assert Path("worker-1.ckpt").read_text() == '{"transcode":3}\n'


def test_two_node_mirror_is_echo_free(run_example: Runner) -> None:
    assert run_example(MIRROR) == [
        "api-fra-1 got on my way from api-iad-1",
        "api-iad-1 got hey team from api-fra-1",
    ]


def _readme_blocks() -> list[str]:
    text = README.read_text()
    start = text.find(SECTION + "\n")
    assert start >= 0, f"README.md has no {SECTION!r} section"
    end = text.find("\n## ", start + len(SECTION))
    section = text[start : end if end >= 0 else len(text)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_blocks_are_these_examples() -> None:
    assert _readme_blocks() == EXAMPLES
