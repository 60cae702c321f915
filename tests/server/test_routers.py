"""Routers (SPEC §8): validation, forwarding, topology rules, exactly-once, source trim."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.serverproc import ServerProcess


def rpath(name: str) -> str:
    return f"/v0/routers/{quote(name, safe='')}"


def put_router(http: httpx.Client, name: str, **body: Any) -> httpx.Response:
    return http.put(rpath(name), json=body)


def write(http: httpx.Client, topic: str, *records: dict[str, Any], **extra: Any) -> Any:
    r = http.post(f"/v0/topics/{topic}", json={"records": list(records), **extra})
    assert r.status_code in (200, 201), r.text
    return r.json()


def read_all(http: httpx.Client, topic: str, **options: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = 0
    while True:
        page = http.post(
            f"/v0/topics/{topic}/diff", json={"from_seq": cursor, "limit": 1000, **options}
        ).json()
        out.extend(page["records"])
        cursor = page["next_from_seq"]
        if page["caught_up"]:
            return out


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    return dict(body["error"])


def test_put_get_list_delete(http: httpx.Client, topic: str) -> None:
    name = f"{topic}->audit"
    r = put_router(http, name, source=topic, dest=f"{topic}-audit")
    assert r.status_code == 201
    body = r.json()
    assert body["created"] is True
    assert {k: body[k] for k in body if k != "performance"} == {
        "router": name,
        "created": True,
        "source": topic,
        "dest": f"{topic}-audit",
        "preserve_node": True,
        "preserve_tag": True,
        "filter": None,
        "allow_cycle": False,
        "guarantee": "at_least_once",
    }
    # both topics were created with default config
    assert http.get(f"/v0/topics/{topic}").status_code == 200
    assert http.get(f"/v0/topics/{topic}-audit").status_code == 200
    again = put_router(
        http, name, source=topic, dest=f"{topic}-audit", filter="public:*", preserve_tag=False
    )
    assert again.status_code == 200
    assert again.json()["created"] is False
    assert again.json()["filter"] == ["tag", "Glob", "public:*"]
    got = http.get(rpath(name)).json()
    assert got["forwarded_total"] == 0
    assert got["preserve_tag"] is False
    assert "created" not in got
    listed = http.get("/v0/routers", params={"prefix": topic}).json()["routers"]
    assert listed == [
        {
            "router": name,
            "source": topic,
            "dest": f"{topic}-audit",
            "guarantee": "at_least_once",
            "forwarded_total": 0,
        }
    ]
    assert http.get("/v0/routers", params={"source": topic, "dest": "nope"}).json()["routers"] == []
    assert http.delete(rpath(name)).json()["deleted"] is True
    assert http.delete(rpath(name)).json()["deleted"] is False
    error(http.get(rpath(name)), 404, "router_not_found")


def test_list_paginates(http: httpx.Client, topic: str) -> None:
    names = [f"{topic}-r{i}" for i in range(5)]
    for i, name in enumerate(names):
        assert (
            put_router(http, name, source=f"{topic}-s{i}", dest=f"{topic}-d{i}").status_code == 201
        )
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"prefix": topic, "page_size": 2}
        if cursor:
            params["cursor"] = cursor
        page = http.get("/v0/routers", params=params).json()
        seen.extend(r["router"] for r in page["routers"])
        cursor = page.get("next_cursor")
        if cursor is None:
            break
    assert seen == sorted(names)
    error(http.get("/v0/routers", params={"cursor": "!!"}), 400, "invalid_request")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"dest": "x"}, 400, "invalid_request"),
        ({"source": "x"}, 400, "invalid_request"),
        ({"source": "same", "dest": "same"}, 400, "invalid_request"),
        ({"source": "bad name", "dest": "x"}, 400, "invalid_request"),
        ({"source": "a", "dest": "b", "filter": ["tag", "Nope", "x"]}, 400, "invalid_request"),
        ({"source": "a", "dest": "b", "guarantee": "maybe"}, 400, "invalid_request"),
        ({"source": "a", "dest": "b", "allow_cycle": "yes"}, 400, "invalid_request"),
    ],
)
def test_bad_router_bodies(
    http: httpx.Client, topic: str, body: dict[str, Any], status: int, code: str
) -> None:
    body = {
        k: (f"{topic}-{v}" if k in ("source", "dest") and v != "bad name" else v)
        for k, v in body.items()
    }
    error(put_router(http, f"{topic}-bad", **body), status, code)


def test_create_dest_false_needs_the_dest(http: httpx.Client, topic: str) -> None:
    e = error(
        put_router(http, f"{topic}-r", source=topic, dest=f"{topic}-missing", create_dest=False),
        404,
        "topic_not_found",
    )
    assert e["detail"]["topic"] == f"{topic}-missing"


def test_fan_in_and_repoint_rejected(http: httpx.Client, topic: str) -> None:
    dest = f"{topic}-dest"
    assert put_router(http, f"{topic}-a", source=f"{topic}-s1", dest=dest).status_code == 201
    e = error(
        put_router(http, f"{topic}-b", source=f"{topic}-s2", dest=dest),
        409,
        "topic_exists_incompatible",
    )
    assert e["detail"] == {"topic": dest, "reason": "router_dest_fan_in"}
    e = error(
        put_router(http, f"{topic}-a", source=f"{topic}-s1", dest=f"{topic}-other"),
        409,
        "topic_exists_incompatible",
    )
    assert e["detail"]["reason"] == "router_repoint_forbidden"
    assert e["detail"]["existing_dest"] == dest


def test_cycle_detection_and_allow_cycle(http: httpx.Client, topic: str) -> None:
    a, b, c = f"{topic}-a", f"{topic}-b", f"{topic}-c"
    assert put_router(http, f"{topic}-ab", source=a, dest=b).status_code == 201
    assert put_router(http, f"{topic}-bc", source=b, dest=c).status_code == 201
    e = error(put_router(http, f"{topic}-ca", source=c, dest=a), 409, "router_cycle")
    assert e["detail"]["cycle"] == [c, a, b, c]
    assert put_router(http, f"{topic}-ca", source=c, dest=a, allow_cycle=True).status_code == 201
    # the hop cap ends the loop: a record makes at most 8 forwards
    write(http, a, {"data": "loop"})
    eventually(lambda: len(read_all(http, a)) == 3)  # original + hops 3 and 6
    # reads catch their routers up first, so these counts are final: the cap stopped it
    counts = [len(read_all(http, t)) for t in (a, b, c)]
    assert counts == [3, 3, 3]  # 1 + 8 forwards spread over the three topics
    totals = [http.get(rpath(f"{topic}-{r}")).json()["forwarded_total"] for r in ("ab", "bc", "ca")]
    assert sum(totals) == 8


def test_forwarding_preserves_and_strips(http: httpx.Client, topic: str) -> None:
    dest = f"{topic}-copy"
    put_router(
        http,
        f"{topic}-r",
        source=topic,
        dest=dest,
        filter=["tag", "Glob", "pub:*"],
        preserve_node=False,
    )
    write(
        http,
        topic,
        {"data": 1, "tag": "pub:a", "node": "n1", "meta": {"k": "v"}},
        {"data": 2, "tag": "private"},
        {"data": 3},
        {"data": {"x": "é"}, "tag": "pub:b"},
    )
    eventually(lambda: len(read_all(http, dest)) == 2)
    copies = read_all(http, dest, include_tags=True)
    assert [c["data"] for c in copies] == [1, {"x": "é"}]
    assert copies[0]["$tag"] == "pub:a"
    assert "$node" not in copies[0]
    assert copies[0]["meta"] == {"k": "v"}
    assert http.get(rpath(f"{topic}-r")).json()["forwarded_total"] == 2


def test_no_backfill_and_fifo(http: httpx.Client, topic: str) -> None:
    write(http, topic, {"data": "before"})
    dest = f"{topic}-d"
    put_router(http, f"{topic}-r", source=topic, dest=dest)
    for i in range(20):
        write(http, topic, *[{"data": i * 10 + j} for j in range(10)])
    eventually(lambda: len(read_all(http, dest)) == 200)
    assert [r["data"] for r in read_all(http, dest)] == list(range(200))


def test_dest_read_catches_up(http: httpx.Client, topic: str) -> None:
    """A read of the destination reflects source writes acknowledged before it."""
    dest = f"{topic}-d"
    put_router(http, f"{topic}-r", source=topic, dest=dest)
    for i in range(30):
        write(http, topic, {"data": i})
        page = http.post(f"/v0/topics/{dest}/diff", json={"from_seq": i}).json()
        assert [r["data"] for r in page["records"]] == [i]


def test_dest_config_governs_and_reject_is_backpressure(http: httpx.Client, topic: str) -> None:
    dest = f"{topic}-d"
    http.put(f"/v0/topics/{dest}", json={"cap_records": 5, "discard": "reject"})
    put_router(http, f"{topic}-r", source=topic, dest=dest)
    write(http, topic, *[{"data": i} for i in range(8)])
    eventually(lambda: http.get(f"/v0/topics/{dest}").json()["count"] == 5)
    # nothing dropped: free room and the rest arrives, in order
    http.post(f"/v0/topics/{dest}/delete", json={"before_seq": 4})
    eventually(lambda: http.get(f"/v0/topics/{dest}").json()["head_seq"] == 8)
    assert [r["data"] for r in read_all(http, dest)] == [3, 4, 5, 6, 7]


def test_exactly_once_stamps_meta(http: httpx.Client, topic: str) -> None:
    dest = f"{topic}-d"
    put_router(http, f"{topic}-r", source=topic, dest=dest, guarantee="exactly_once")
    many = {f"k{i}": i for i in range(64)}
    write(http, topic, {"data": 1}, {"data": 2, "meta": {"a": 1}}, {"data": 3, "meta": many})
    eventually(lambda: len(read_all(http, dest)) == 3)
    copies = read_all(http, dest)
    stamp = copies[0]["meta"]["_topics_router"]
    assert stamp["router"] == f"{topic}-r"
    assert stamp["source_topic"] == topic
    assert stamp["source_seq"] == 1
    assert stamp["source_epoch"] == 1
    assert stamp["idempotency_key"] == (f"router:{topic}-r:{stamp['source_topic_id']}:1:1")
    assert copies[1]["meta"]["a"] == 1
    assert copies[2]["meta"]["_topics_original_meta"] == many


def test_source_trim_tombstones_the_dest(http: httpx.Client, topic: str) -> None:
    source, dest = f"{topic}-s", f"{topic}-d"
    http.put(f"/v0/topics/{dest}", json={"cap_records": 2, "discard": "reject"})
    http.put(f"/v0/topics/{source}", json={"cap_records": 3})
    put_router(http, f"{topic}-r", source=source, dest=dest)
    write(http, source, {"data": 1}, {"data": 2})
    eventually(lambda: http.get(f"/v0/topics/{dest}").json()["count"] == 2)
    # the dest is full: the router waits while the source evicts what it has not forwarded
    for i in range(6):
        write(http, source, {"data": 10 + i})
    http.post(f"/v0/topics/{dest}/delete", json={"before_seq": 100})
    eventually(lambda: http.get(f"/v0/topics/{dest}").json()["head_seq"] > 2)
    eventually(
        lambda: (
            http.post(f"/v0/topics/{dest}/diff", json={"from_seq": 2}).json()["tombstone"]
            is not None
        )
    )
    tomb = http.post(f"/v0/topics/{dest}/diff", json={"from_seq": 2}).json()["tombstone"]
    assert tomb["reason"] == "source_trim"
    assert tomb["gap_from"] == 3


def test_deleting_a_topic_removes_its_routers(http: httpx.Client, topic: str) -> None:
    put_router(http, f"{topic}-r1", source=topic, dest=f"{topic}-d1")
    put_router(http, f"{topic}-r2", source=f"{topic}-d1", dest=f"{topic}-d2")
    body = http.delete(f"/v0/topics/{f'{topic}-d1'}").json()
    assert body["routers_removed"] == sorted([f"{topic}-r1", f"{topic}-r2"])
    error(http.get(rpath(f"{topic}-r1")), 404, "router_not_found")


def test_two_node_mirror_is_echo_free(http: httpx.Client, topic: str) -> None:
    """The seed's multi-master recipe: each node writes with its id and reads with it."""
    a, b = f"{topic}:general", f"{topic}:general:mirror"
    put_router(http, f"{topic}-fra-to-iad", source=a, dest=b, allow_cycle=True)
    put_router(http, f"{topic}-iad-to-fra", source=b, dest=a, allow_cycle=True)
    write(http, a, {"data": {"text": "hey team"}}, node="api-fra-1")
    write(http, b, {"data": {"text": "on my way"}}, node="api-iad-1")
    eventually(lambda: any(r["$node"] == "api-iad-1" for r in read_all(http, a)))
    eventually(lambda: any(r["$node"] == "api-fra-1" for r in read_all(http, b)))
    fra_view = read_all(http, a, node="api-fra-1")
    iad_view = read_all(http, b, node="api-iad-1")
    assert fra_view and all(r["$node"] == "api-iad-1" for r in fra_view)
    assert iad_view and all(r["$node"] == "api-fra-1" for r in iad_view)


def test_forwarding_resumes_after_sigkill(tmp_path: Path) -> None:
    """The cursor lands with the copies: after a crash, no duplicate and no gap."""
    with ServerProcess(data_dir=tmp_path / "data") as server:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            http.put("/v0/topics/src", json={"durability": "fsync"})
            http.put("/v0/topics/dst", json={"durability": "fsync"})
            put_router(http, "src->dst", source="src", dest="dst", guarantee="exactly_once")
            for i in range(50):
                write(http, "src", *[{"data": i * 20 + j} for j in range(20)])
        server.kill()
        server.start()
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for i in range(50, 60):
                write(http, "src", *[{"data": i * 20 + j} for j in range(20)])
            eventually(lambda: len(read_all(http, "dst")) == 1200, timeout=20)
            copies = read_all(http, "dst")
            assert [c["data"] for c in copies] == list(range(1200))
            seqs = [c["meta"]["_topics_router"]["source_seq"] for c in copies]
            # after a crash the source continues above its synced seq reservation
            assert seqs[:1000] == list(range(1, 1001))
            assert seqs[1000:] == sorted(set(seqs[1000:])) and seqs[1000] > 1000
            assert http.get(rpath("src->dst")).json()["forwarded_total"] == 1200


def test_a_caught_up_router_copies_inside_the_source_write(tmp_path: Path) -> None:
    """One commit holds a write and its copies: the router is at the source's head the
    moment the write is acknowledged, and a failed commit leaves neither behind."""
    armed = tmp_path / "failpoints"
    armed.write_text("")
    env = {"TOPICS_FAILPOINTS_FILE": str(armed)}
    with (
        ServerProcess(data_dir=tmp_path / "data", env=env) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):

        def commits() -> int:
            text = http.get("/v0/metrics").text
            return int(text.split("\ntopics_wal_batches_total ")[1].split()[0])

        def cursor() -> int:
            return int(http.get(rpath("src->dst")).json()["source_cursor"])

        http.put("/v0/topics/src", json={"durability": "disk"}).raise_for_status()
        http.put("/v0/topics/dst", json={"durability": "disk"}).raise_for_status()
        put_router(http, "src->dst", source="src", dest="dst").raise_for_status()
        write(http, "src", {"data": 0})  # the first copy takes a seq reservation: background
        eventually(lambda: len(read_all(http, "dst")) == 1)
        before = commits()
        for i in range(1, 21):
            seq = write(http, "src", {"data": i})["last_seq"]
            assert cursor() == seq  # no background pass, no read of dst needed
        assert commits() - before < 30  # one per write; two each when copied apart
        assert [r["data"] for r in read_all(http, "dst")] == list(range(21))

        at = cursor()
        armed.write_text("router_cursor=error\n")
        stamp = time.time_ns()
        os.utime(armed, ns=(stamp, stamp))
        failed = http.post("/v0/topics/src", json={"records": [{"data": "lost"}]})
        assert failed.status_code == 500, failed.text
        assert cursor() == at
        armed.write_text("")
        os.utime(armed, ns=(stamp + 1_000_000, stamp + 1_000_000))
        write(http, "src", {"data": 21})
        eventually(lambda: [r["data"] for r in read_all(http, "dst")] == list(range(22)))
        assert "lost" not in [r["data"] for r in read_all(http, "src")]
