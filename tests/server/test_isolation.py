"""Isolation between keys (SPEC §12.2): dead letters, metrics series, 401 before anything.

One server with several keys: a tenant restricted to ``pub-`` (every scope), an
admin-only key for the same prefix, a prefix-restricted reader, and a root key.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.server._helpers import assert_error, ok
from tests.serverproc import ServerProcess

KEYS = ",".join(["root", "pub::pub-", "pubadmin:a+r:pub-", "pubreader:r:pub-|shared."])


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("isolation") / "data"
    with ServerProcess(data_dir=data, env={"TOPICS_API_KEYS": KEYS}) as server:
        yield server


@pytest.fixture(scope="module")
def clients(keyed: ServerProcess) -> Iterator[dict[str | None, httpx.Client]]:
    made: dict[str | None, httpx.Client] = {}
    for key in (None, "root", "pub", "pubadmin", "pubreader"):
        headers = {"authorization": f"Bearer {key}"} if key else {}
        made[key] = httpx.Client(base_url=keyed.url, headers=headers, timeout=10)
    yield made
    for client in made.values():
        client.close()


def absent(root: httpx.Client, *names: str) -> None:
    for name in names:
        assert_error(root.get(f"/v0/topics/{name}"), 404, "topic_not_found")


def test_queue_cannot_dead_letter_outside_the_keys_prefixes(
    clients: dict[str | None, httpx.Client],
) -> None:
    pub, root = clients["pub"], clients["root"]
    resp = pub.put("/v0/topics/pub-q1", json={"type": "queue", "dead_letter": "secret"})
    error = assert_error(resp, 403, "forbidden")
    assert error["detail"]["topic"] == "secret"
    absent(root, "pub-q1", "secret")
    # nor by reconfiguring a queue it owns
    ok(pub.put("/v0/topics/pub-q1", json={"type": "queue", "dead_letter": "pub-dlq"}), 201)
    resp = pub.put("/v0/topics/pub-q1", json={"type": "queue", "dead_letter": "secret"})
    assert_error(resp, 403, "forbidden")
    assert ok(root.get("/v0/topics/pub-q1"))["config"]["dead_letter"] == "pub-dlq"


def test_write_with_config_cannot_dead_letter_outside(
    clients: dict[str | None, httpx.Client],
) -> None:
    pub, root = clients["pub"], clients["root"]
    body = {
        "records": [{"data": "job"}],
        "config": {"type": "queue", "dead_letter": "secret-dlq", "max_deliveries": 1},
    }
    resp = pub.post("/v0/topics/pub-q2", json=body)
    assert assert_error(resp, 403, "forbidden")["detail"]["topic"] == "secret-dlq"
    absent(root, "pub-q2", "secret-dlq")


def test_dead_lettering_stays_inside_the_prefix(clients: dict[str | None, httpx.Client]) -> None:
    """The poison job lands in the tenant's own dead-letter topic, nowhere else."""
    pub, root = clients["pub"], clients["root"]
    config = {"type": "queue", "dead_letter": "pub-dead", "max_deliveries": 1}
    ok(pub.put("/v0/topics/pub-q3", json=config), 201)
    ok(pub.post("/v0/topics/pub-q3", json={"records": [{"data": "poison"}]}))
    (job,) = ok(pub.post("/v0/topics/pub-q3/claim", json={"node": "w"}))["claimed"]
    ok(pub.post("/v0/topics/pub-q3/nack", json={"node": "w", "seqs": [job["$seq"]]}))
    # the next claim finds it out of deliveries and moves it to pub-dead
    assert ok(pub.post("/v0/topics/pub-q3/claim", json={"node": "w"}))["claimed"] == []
    copied = ok(root.post("/v0/topics/pub-dead/diff", json={}))["records"]
    assert [r["data"] for r in copied] == ["poison"]


def test_dead_letter_needs_the_write_scope(clients: dict[str | None, httpx.Client]) -> None:
    """An admin-only key could not write the target, so it cannot dead-letter into it."""
    resp = clients["pubadmin"].put(
        "/v0/topics/pub-q4", json={"type": "queue", "dead_letter": "pub-dlq4"}
    )
    assert assert_error(resp, 403, "forbidden")["detail"]["topic"] == "pub-dlq4"
    absent(clients["root"], "pub-q4")
    ok(clients["pubadmin"].put("/v0/topics/pub-q4", json={"type": "queue"}), 201)


def series_topics(text: str) -> set[str]:
    return {
        line.split('topic="', 1)[1].split('"', 1)[0]
        for line in text.splitlines()
        if line.startswith("topics_topic_head_seq{")
    }


def test_metrics_show_only_the_keys_topics(clients: dict[str | None, httpx.Client]) -> None:
    root = clients["root"]
    for name in ("pub-m", "shared.m", "private-m"):
        ok(root.post(f"/v0/topics/{name}", json={"records": [{"data": 1}]}), 201)
    everything = root.get("/v0/metrics")
    assert everything.status_code == 200
    assert {"pub-m", "shared.m", "private-m"} <= series_topics(everything.text)

    seen = series_topics(clients["pubreader"].get("/v0/metrics").text)
    assert {"pub-m", "shared.m"} <= seen
    assert all(name.startswith(("pub-", "shared.")) for name in seen), seen
    text = clients["pub"].get("/v0/metrics").text
    assert "private-m" not in text and "shared.m" not in text
    assert "topics_topic_metrics_truncated 0" in text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v0/topics/jobs%2Fx"),
        ("GET", "/v0/topics/a%2Fb"),
        ("PUT", "/v0/topics/a%2Fb"),
        ("DELETE", "/v0/topics/a%2Fb"),
        ("POST", "/v0/topics/a%2Fb/diff"),
        ("PUT", "/v0/routers/a%2Fb"),
        ("GET", "/v0/routers/a%2Fb"),
        ("GET", "/v0/topics/a%2Fb/work"),
        ("GET", "/v0/nowhere/%2F"),
    ],
)
def test_no_key_is_401_whatever_the_path(
    clients: dict[str | None, httpx.Client], method: str, path: str
) -> None:
    resp = clients[None].request(method, path, json={"records": [{"data": 1}]})
    assert_error(resp, 401, "unauthorized")


def test_encoded_slash_names_after_authentication(
    clients: dict[str | None, httpx.Client],
) -> None:
    root, pub, reader = clients["root"], clients["pub"], clients["pubreader"]
    records = {"records": [{"data": 1}]}
    assert_error(root.post("/v0/topics/jobs%2Fx", json=records), 400, "invalid_request")
    assert_error(root.get("/v0/topics/a%2Fb"), 404, "topic_not_found")
    # scope and prefix come before the name is judged
    assert_error(pub.post("/v0/topics/jobs%2Fx", json=records), 403, "forbidden")
    assert_error(reader.post("/v0/topics/pub-a%2Fb", json=records), 403, "forbidden")
    assert_error(pub.post("/v0/topics/pub-a%2Fb", json=records), 400, "invalid_request")
    assert_error(pub.get("/v0/routers/pub-a%2Fb"), 404, "router_not_found")


def test_work_stream_checks_scope_and_prefix_first(
    clients: dict[str | None, httpx.Client],
) -> None:
    ok(clients["root"].put("/v0/topics/private-work", json={"type": "queue"}), 201)
    params = {"node": "w"}
    resp = clients["pubreader"].get("/v0/topics/pub-work/work", params=params)
    assert_error(resp, 403, "forbidden")  # read only: /work needs read+write
    resp = clients["pub"].get("/v0/topics/private-work/work", params=params)
    assert assert_error(resp, 403, "forbidden")["detail"]["topic"] == "private-work"
