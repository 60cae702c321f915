"""Lease queues (SPEC §10): claim/ack/nack/extend, dead-lettering, cohorts, ``/work``."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import EventSource, ServerSentEvent, connect_sse

from tests.server._helpers import (
    assert_error,
    delete_records,
    diff,
    ok,
    poll,
    put_topic,
    seqs_of,
    state,
    unique,
    write,
    write_n,
)
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.timeout(60)


def queue(http: httpx.Client, name: str, **config: Any) -> str:
    put_topic(http, name, {"type": "queue", **config}, status=201)
    return name


def claim(http: httpx.Client, q: str, node: str = "w1", **body: Any) -> dict[str, Any]:
    return ok(http.post(f"/v0/topics/{q}/claim", json={"node": node, **body}))


def settle(http: httpx.Client, op: str, q: str, node: str, seqs: list[int], **body: Any) -> Any:
    return ok(http.post(f"/v0/topics/{q}/{op}", json={"node": node, "seqs": seqs, **body}))


def counters(http: httpx.Client, q: str) -> dict[str, int]:
    body = state(http, q)
    assert body["type"] == "queue"
    result: dict[str, int] = body["queue"]
    return result


# -- claim --------------------------------------------------------------------------


def test_claim_entries_and_counters(http: httpx.Client, topic: str) -> None:
    queue(http, topic)
    records = [
        {"data": {"clip": 9}, "tag": "clip:9", "meta": {"trace": "a"}, "node": "edge"},
        {"data": {"clip": 10}},
        {"data": None},
    ]
    write(http, topic, records)
    before = int(time.time() * 1000)
    body = claim(http, topic, max=2)
    assert body["topic"] == topic and body["count"] == 2 and body["ready"] == 1
    first, second = body["claimed"]
    assert [first["$seq"], second["$seq"]] == [1, 2]
    assert set(first) == {
        "$seq",
        "lease_id",
        "deadline",
        "$ts",
        "$tag",
        "deliveries",
        "data",
        "meta",
    }
    assert set(second) == {"$seq", "lease_id", "deadline", "$ts", "deliveries", "data"}
    assert first["$tag"] == "clip:9" and first["meta"] == {"trace": "a"}
    assert first["data"] == {"clip": 9} and first["deliveries"] == 1
    assert first["lease_id"].startswith("lease_") and first["lease_id"] != second["lease_id"]
    int(first["lease_id"].removeprefix("lease_"), 16)
    assert before + 30_000 <= first["deadline"] <= int(time.time() * 1000) + 30_000
    assert counters(http, topic) == {"ready": 1, "in_flight": 2, "dead_lettered": 0}
    rest = claim(http, topic, max=5)
    assert rest["count"] == 1 and rest["ready"] == 0 and rest["claimed"][0]["data"] is None
    assert claim(http, topic)["count"] == 0  # count < max, even 0, is normal
    assert counters(http, topic) == {"ready": 0, "in_flight": 3, "dead_lettered": 0}
    # jobs stay readable by diff; diff never touches leases
    assert seqs_of(diff(http, topic)) == [1, 2, 3]


def test_claim_max_and_lease_clamps(http: httpx.Client, topic: str) -> None:
    queue(http, topic)
    write_n(http, topic, 1200)
    assert claim(http, topic, max=0)["count"] == 1  # 0 means 1
    assert claim(http, topic, max=5000)["count"] == 1000  # clamped to TOPICS_MAX_CLAIM
    write_n(http, topic, 2)
    now = int(time.time() * 1000)
    short = claim(http, topic, lease_ms=5)["claimed"][0]
    assert now + 100 <= short["deadline"] <= int(time.time() * 1000) + 100
    now = int(time.time() * 1000)
    long = claim(http, topic, lease_ms=10**15)["claimed"][0]
    assert now + 86_400_000 <= long["deadline"] <= int(time.time() * 1000) + 86_400_000


def test_topic_lease_ms_is_the_default(http: httpx.Client, topic: str) -> None:
    queue(http, topic, lease_ms=5000)
    write_n(http, topic, 1)
    now = int(time.time() * 1000)
    job = claim(http, topic)["claimed"][0]
    assert now + 5000 <= job["deadline"] <= int(time.time() * 1000) + 5000


def test_claims_never_node_filter(http: httpx.Client, topic: str) -> None:
    queue(http, topic)
    write(http, topic, [{"data": 1, "node": "w1"}, {"data": 2}], node="w1")
    assert claim(http, topic, node="w1", max=5)["count"] == 2


def test_claim_serves_reclaimed_before_fresh(http: httpx.Client, topic: str) -> None:
    queue(http, topic)
    write_n(http, topic, 6)
    got = claim(http, topic, max=3)["claimed"]
    settle(http, "nack", topic, "w1", [3, 2])
    again = claim(http, topic, max=3)["claimed"]
    assert [j["$seq"] for j in again] == [2, 3, 4]
    assert {j["$seq"]: j["deliveries"] for j in again} == {2: 2, 3: 2, 4: 1}
    assert got[0]["$seq"] == 1


# -- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["claim", "ack", "nack", "extend"])
def test_queue_ops_on_absent_and_log_topics(http: httpx.Client, op: str) -> None:
    name = unique("absent")
    body = {"node": "w", "seqs": [1], "lease_ms": 1000}
    err = assert_error(http.post(f"/v0/topics/{name}/{op}", json=body), 404, "topic_not_found")
    assert err["detail"] == {"topic": name}
    assert http.get(f"/v0/topics/{name}").status_code == 404  # never created
    log = unique("log")
    write_n(http, log, 1)
    err = assert_error(http.post(f"/v0/topics/{log}/{op}", json=body), 409, "not_a_queue")
    assert err["detail"] == {"topic": log}


def test_claim_body_errors(http: httpx.Client, topic: str) -> None:
    queue(http, topic)
    url = f"/v0/topics/{topic}/claim"
    assert_error(http.post(url, content=b""), 400, "invalid_request")
    assert_error(
        http.post(url, content=b"", headers={"content-type": "application/json"}),
        400,
        "invalid_request",
    )
    assert_error(http.post(url, json={}), 400, "invalid_request")
    assert_error(http.post(url, json={"node": ""}), 400, "invalid_request")
    assert_error(http.post(url, json={"node": 5}), 400, "invalid_request")
    assert_error(http.post(url, json={"node": "x" * 129}), 400, "invalid_request")
    assert_error(http.post(url, json={"node": "w", "max": -1}), 400, "invalid_request")
    assert_error(http.post(url, json={"node": "w", "max": "2"}), 400, "invalid_request")
    assert_error(http.post(url, json={"node": "w", "lease_ms": 1.5}), 400, "invalid_request")
    assert_error(http.post(url, json=[1]), 400, "invalid_request")
    assert_error(
        http.post(url, content=b'{"node":"w"}', headers={"content-type": "text/plain"}),
        415,
        "unsupported_media_type",
    )


@pytest.mark.parametrize("op", ["ack", "nack", "extend"])
def test_settle_body_errors(http: httpx.Client, topic: str, op: str) -> None:
    queue(http, topic)
    url = f"/v0/topics/{topic}/{op}"
    extra = {"lease_ms": 1000} if op == "extend" else {}

    def post(**body: Any) -> httpx.Response:
        return http.post(url, json={**extra, **body})

    assert_error(post(seqs=[1]), 400, "invalid_request")  # node missing
    assert_error(post(node="", seqs=[1]), 400, "invalid_request")
    assert_error(post(node="w"), 400, "invalid_request")  # seqs missing
    assert_error(post(node="w", seqs=[-1]), 400, "invalid_request")
    assert_error(post(node="w", seqs="1"), 400, "invalid_request")
    err = assert_error(post(node="w", seqs=list(range(1001))), 400, "batch_too_large")
    assert err["detail"] == {"seqs": 1001, "max": 1000}
    assert_error(post(node="w", seqs=[1, 2], lease_ids=["lease_1"]), 400, "invalid_request")
    assert_error(post(node="w", seqs=[1], lease_ids=["nope"]), 400, "invalid_request")
    assert_error(post(node="w", seqs=[1], lease_ids=["lease_xyz"]), 400, "invalid_request")
    assert_error(post(node="w", seqs=[1], lease_ids=["lease_"]), 400, "invalid_request")
    assert_error(post(node="w", seqs=[1], lease_ids=[7]), 400, "invalid_request")
    assert_error(http.post(url, content=b""), 400, "invalid_request")
    # an empty seqs array is fine; 1000 is the bound
    body = ok(post(node="w", seqs=[]))
    assert body["skipped"] == []
    assert ok(post(node="w", seqs=list(range(1000))))["skipped"] == list(range(1000))
    assert ok(post(node="w", seqs=[1], lease_ids=[""]))["skipped"] == [1]


def test_extend_requires_lease_ms(http: httpx.Client, topic: str) -> None:
    queue(http, topic)
    resp = http.post(f"/v0/topics/{topic}/extend", json={"node": "w", "seqs": []})
    assert_error(resp, 400, "invalid_request")


# -- ack / nack / extend ----------------------------------------------------------------


def test_ack_deletes_silently_and_reports_counters(http: httpx.Client, topic: str) -> None:
    queue(http, topic)
    write_n(http, topic, 4)
    jobs = claim(http, topic, max=3)["claimed"]
    body = settle(http, "ack", topic, "w1", [1, 2, 9, 2])
    assert body["topic"] == topic and body["acked"] == 2 and body["skipped"] == [9, 2]
    assert body["ready"] == 1 and body["in_flight"] == 1
    assert "fsync_ms" not in body["performance"]  # disk queue
    after = diff(http, topic)
    assert seqs_of(after) == [3, 4] and after["tombstone"] is None
    assert state(http, topic)["count"] == 2
    # retries are safe
    assert settle(http, "ack", topic, "w1", [1])["skipped"] == [1]
    assert jobs[2]["$seq"] == 3


def test_fencing_with_lease_ids(http: httpx.Client, topic: str) -> None:
    queue(http, topic)
    write_n(http, topic, 4)
    jobs = claim(http, topic, max=4)["claimed"]
    ids = [j["lease_id"] for j in jobs]
    stale = "lease_" + format(int(ids[0].removeprefix("lease_"), 16) + 1000, "x")
    upper = "lease_" + ids[2].removeprefix("lease_").upper()  # tokens compare by value
    body = settle(http, "ack", topic, "w1", [1, 2, 3], lease_ids=[stale, "", upper])
    assert body["acked"] == 2 and body["skipped"] == [1]
    # another holder never matches, with or without a token
    assert settle(http, "ack", topic, "w2", [1], lease_ids=[ids[0]])["skipped"] == [1]
    assert settle(http, "ack", topic, "w2", [4])["skipped"] == [4]
    assert settle(http, "ack", topic, "w1", [1, 4], lease_ids=[ids[0], ids[3]])["acked"] == 2


def test_expired_lease_is_reclaimed_and_late_ack_skipped(http: httpx.Client, topic: str) -> None:
    queue(http, topic)
    write_n(http, topic, 1)
    job = claim(http, topic, node="slow", lease_ms=150)["claimed"][0]
    retry = poll(lambda: claim(http, topic, node="fast"), lambda b: b["count"] == 1, 5.0)
    again = retry["claimed"][0]
    assert again["$seq"] == job["$seq"] and again["deliveries"] == 2
    assert again["lease_id"] != job["lease_id"]
    late = settle(http, "ack", topic, "slow", [1], lease_ids=[job["lease_id"]])
    assert late["acked"] == 0 and late["skipped"] == [1]
    assert settle(http, "ack", topic, "fast", [1])["acked"] == 1


def test_ack_after_deadline_is_skipped_even_if_not_reclaimed(
    http: httpx.Client, topic: str
) -> None:
    queue(http, topic)
    write_n(http, topic, 1)
    claim(http, topic, lease_ms=100)
    poll(lambda: counters(http, topic), lambda c: c["in_flight"] == 0, 5.0)
    body = settle(http, "ack", topic, "w1", [1])
    assert body["acked"] == 0 and body["skipped"] == [1] and body["ready"] == 1


def test_nack_now_and_with_delay(http: httpx.Client, topic: str) -> None:
    queue(http, topic)
    write_n(http, topic, 2)
    claim(http, topic, max=2)
    body = settle(http, "nack", topic, "w1", [1])
    assert body["nacked"] == 1 and body["skipped"] == [] and body["ready"] == 1
    body = settle(http, "nack", topic, "w1", [2, 5], delay_ms=400)
    assert body["nacked"] == 1 and body["skipped"] == [5]
    # a delayed job is neither ready nor in flight until due
    assert body["ready"] == 1 and body["in_flight"] == 0
    assert counters(http, topic) == {"ready": 1, "in_flight": 0, "dead_lettered": 0}
    assert [j["$seq"] for j in claim(http, topic, max=5)["claimed"]] == [1]
    got = poll(lambda: claim(http, topic, max=5), lambda b: b["count"] == 1, 5.0)
    assert got["claimed"][0]["$seq"] == 2 and got["claimed"][0]["deliveries"] == 2


def test_nack_delay_is_clamped(http: httpx.Client, topic: str) -> None:
    queue(http, topic)
    write_n(http, topic, 1)
    claim(http, topic)
    assert settle(http, "nack", topic, "w1", [1], delay_ms=10**18)["nacked"] == 1
    assert counters(http, topic) == {"ready": 0, "in_flight": 0, "dead_lettered": 0}


def test_extend_sets_the_deadline(http: httpx.Client, topic: str) -> None:
    queue(http, topic)
    write_n(http, topic, 2)
    jobs = claim(http, topic, max=2, lease_ms=60_000)["claimed"]
    now = int(time.time() * 1000)
    body = settle(
        http,
        "extend",
        topic,
        "w1",
        [1, 2, 3],
        lease_ms=1000,
        lease_ids=[jobs[0]["lease_id"], "lease_1", ""],
    )
    assert body["extended"] == 1 and body["skipped"] == [2, 3]
    assert set(body["deadlines"]) == {"1"}
    deadline = body["deadlines"]["1"]
    assert now + 1000 <= deadline <= int(time.time() * 1000) + 1000  # set, not added
    low = settle(http, "extend", topic, "w1", [1], lease_ms=1)["deadlines"]["1"]
    assert low - int(time.time() * 1000) <= 100
    high = settle(http, "extend", topic, "w1", [2], lease_ms=10**15)["deadlines"]["2"]
    assert high >= now + 86_400_000
    # deliveries unchanged; the extended lease still acks
    assert settle(http, "ack", topic, "w1", [1, 2])["acked"] == 2


def test_extend_keeps_a_short_lease_alive(http: httpx.Client, topic: str) -> None:
    queue(http, topic)
    write_n(http, topic, 1)
    claim(http, topic, lease_ms=300)
    for _ in range(4):
        time.sleep(0.1)
        assert settle(http, "extend", topic, "w1", [1], lease_ms=300)["extended"] == 1
    assert claim(http, topic, node="other")["count"] == 0
    assert settle(http, "ack", topic, "w1", [1])["acked"] == 1


def test_counters_follow_record_deletes(http: httpx.Client, topic: str) -> None:
    queue(http, topic)
    write(http, topic, [{"data": i, "tag": f"job:{i}"} for i in range(4)])
    claim(http, topic, max=2)
    delete_records(http, topic, match=["tag", "Eq", "job:0"])
    delete_records(http, topic, match=["tag", "Eq", "job:3"])
    assert counters(http, topic) == {"ready": 1, "in_flight": 1, "dead_lettered": 0}
    assert settle(http, "ack", topic, "w1", [1])["skipped"] == [1]
    assert [j["$seq"] for j in claim(http, topic, max=5)["claimed"]] == [3]


def test_metrics_carry_queue_series(tmp_path: Path, topic: str) -> None:
    # a server of its own: per-topic series stop after 1,000 topics, and the shared
    # server of this suite holds more than that by now
    with (
        ServerProcess(data_dir=tmp_path / "data") as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        _check_queue_metrics(http, topic)


def _check_queue_metrics(http: httpx.Client, topic: str) -> None:
    queue(http, topic)
    write_n(http, topic, 3)
    claim(http, topic, max=2)
    text = http.get("/v0/metrics").text
    assert f'topics_topic_queue_ready{{topic="{topic}"}} 1' in text
    assert f'topics_topic_queue_in_flight{{topic="{topic}"}} 2' in text
    total = next(
        line for line in text.splitlines() if line.startswith("topics_queue_leases_in_flight ")
    )
    assert int(float(total.split()[1])) >= 2
    body = http.get("/v0/metrics", headers={"accept": "application/json"}).json()
    assert body["queue_leases_in_flight"] >= 2


def test_log_state_has_no_queue_counters(http: httpx.Client, topic: str) -> None:
    write_n(http, topic, 1)
    body = state(http, topic)
    assert body["type"] == "log" and "queue" not in body


def test_recreated_queue_starts_fresh(http: httpx.Client, topic: str) -> None:
    queue(http, topic)
    write_n(http, topic, 2)
    claim(http, topic, max=2)
    ok(http.delete(f"/v0/topics/{topic}"))
    queue(http, topic)
    write_n(http, topic, 1)
    assert counters(http, topic) == {"ready": 1, "in_flight": 0, "dead_lettered": 0}
    job = claim(http, topic)["claimed"][0]
    assert job["$seq"] == 1 and job["deliveries"] == 1


# -- dead-lettering -----------------------------------------------------------------------


def test_poison_job_is_dead_lettered_with_stamps(http: httpx.Client, topic: str) -> None:
    dlq = unique("dlq")
    queue(http, topic, max_deliveries=2, dead_letter=dlq, auto_create=False)
    write(http, topic, [{"data": {"bad": True}, "tag": "p:1", "meta": {"trace": "z"}, "node": "n"}])
    write_n(http, topic, 1)
    for round_ in (1, 2):
        jobs = claim(http, topic, max=5)["claimed"]
        assert [j["deliveries"] for j in jobs if j["$seq"] == 1] == [round_]
        settle(http, "nack", topic, "w1", [1])
        settle(http, "ack", topic, "w1", [j["$seq"] for j in jobs if j["$seq"] != 1])
    third = claim(http, topic, max=5)
    assert third["count"] == 0  # the dead-lettered job does not count toward max
    assert counters(http, topic) == {"ready": 0, "in_flight": 0, "dead_lettered": 1}
    assert diff(http, topic)["records"] == []
    copy = diff(http, dlq, include_tags=True)["records"]
    assert len(copy) == 1
    assert copy[0]["data"] == {"bad": True} and copy[0]["$tag"] == "p:1"
    assert copy[0]["$node"] == "n"
    assert copy[0]["meta"] == {
        "trace": "z",
        "$dead_letter_from": topic,
        "$dead_letter_deliveries": "2",
        "$dead_letter_src_seq": "1",
    }
    # created with default config although the queue's auto_create is false
    assert state(http, dlq)["config"]["type"] == "log"


def test_dead_letter_without_meta_and_within_claim(http: httpx.Client, topic: str) -> None:
    dlq = unique("dlq")
    queue(http, topic, max_deliveries=1, dead_letter=dlq)
    write_n(http, topic, 3)
    claim(http, topic, max=1, lease_ms=100)  # job 1 delivered once, then expires
    poll(lambda: counters(http, topic), lambda c: c["in_flight"] == 0, 5.0)
    got = claim(http, topic, max=2)["claimed"]
    assert [j["$seq"] for j in got] == [2, 3]  # job 1 was dead-lettered on the way
    (copy,) = diff(http, dlq)["records"]
    assert copy["data"] == 0 and copy["meta"]["$dead_letter_src_seq"] == "1"
    assert counters(http, topic)["dead_lettered"] == 1


def test_no_dead_letter_topic_redelivers_forever(http: httpx.Client, topic: str) -> None:
    queue(http, topic, max_deliveries=1)
    write_n(http, topic, 1)
    for n in (1, 2, 3):
        job = claim(http, topic)["claimed"][0]
        assert job["deliveries"] == n
        settle(http, "nack", topic, "w1", [1])


def test_failed_dead_letter_append_rolls_back(http: httpx.Client, topic: str) -> None:
    dlq = unique("dlq")
    put_topic(http, dlq, {"cap_records": 1, "discard": "reject"}, status=201)
    write_n(http, dlq, 1)  # full: the copy is refused
    queue(http, topic, max_deliveries=1, dead_letter=dlq)
    write_n(http, topic, 1)
    claim(http, topic)
    settle(http, "nack", topic, "w1", [1])
    assert claim(http, topic)["count"] == 0
    assert counters(http, topic) == {"ready": 1, "in_flight": 0, "dead_lettered": 0}
    assert seqs_of(diff(http, topic)) == [1]
    ok(http.delete(f"/v0/topics/{dlq}"))  # room again: the next claim moves it
    assert claim(http, topic)["count"] == 0
    assert counters(http, topic) == {"ready": 0, "in_flight": 0, "dead_lettered": 1}
    assert len(diff(http, dlq)["records"]) == 1


# -- competition and cohorts ----------------------------------------------------------


def test_competing_workers_never_share_a_job(base_url: str, topic: str) -> None:
    with httpx.Client(base_url=base_url) as http:
        queue(http, topic)
        for _ in range(3):
            write_n(http, topic, 100)
    seen: dict[str, list[int]] = {"a": [], "b": [], "c": []}
    errors: list[BaseException] = []

    def worker(node: str) -> None:
        try:
            with httpx.Client(base_url=base_url) as http:
                while True:
                    jobs = claim(http, topic, node=node, max=7)["claimed"]
                    if not jobs:
                        return
                    seqs = [j["$seq"] for j in jobs]
                    seen[node].extend(seqs)
                    assert settle(http, "ack", topic, node, seqs)["acked"] == len(seqs)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in seen]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    everything = seen["a"] + seen["b"] + seen["c"]
    assert sorted(everything) == list(range(1, 301))  # each job exactly once


def test_cohort_splits_evenly(base_url: str, topic: str) -> None:
    with httpx.Client(base_url=base_url) as http:
        queue(http, topic, claim_jitter_ms=600)
        write_n(http, topic, 50)
    barrier = threading.Barrier(10)
    counts: dict[int, int] = {}
    errors: list[BaseException] = []

    def claimer(i: int) -> None:
        try:
            with httpx.Client(base_url=base_url) as http:
                barrier.wait(10)
                counts[i] = claim(http, topic, node=f"w{i}", max=10)["count"]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors, errors
    assert sorted(counts.values()) == [5] * 10


def test_cohort_respects_each_max(base_url: str, topic: str) -> None:
    with httpx.Client(base_url=base_url) as http:
        queue(http, topic, claim_jitter_ms=600)
        write_n(http, topic, 10)
    barrier = threading.Barrier(3)
    counts: dict[int, int] = {}

    def claimer(i: int, want: int) -> None:
        with httpx.Client(base_url=base_url) as http:
            barrier.wait(10)
            counts[i] = claim(http, topic, node=f"w{i}", max=want)["count"]

    threads = [threading.Thread(target=claimer, args=a) for a in ((0, 1), (1, 8), (2, 8))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert counts == {0: 1, 1: 5, 2: 4} or counts == {0: 1, 1: 4, 2: 5}


# -- GET /work ------------------------------------------------------------------------


def work_url(topic: str) -> str:
    return f"/v0/topics/{topic}/work"


def events(source: EventSource) -> Iterator[ServerSentEvent]:
    """Named events only (the leading ``retry:`` line surfaces as an empty message)."""
    for sse in source.iter_sse():
        if sse.event != "message" or sse.data:
            yield sse


def test_work_checks_in_order(http: httpx.Client, topic: str) -> None:
    absent = unique("absent")
    resp = http.get(work_url(absent), params={"node": "w"}, headers={"accept": "text/html"})
    assert_error(resp, 406, "not_acceptable")
    assert_error(http.get(work_url(absent)), 400, "invalid_request")
    assert_error(http.get(work_url(absent), params={"node": ""}), 400, "invalid_request")
    assert_error(http.get(work_url(absent), params={"node": "x" * 200}), 400, "invalid_request")
    assert_error(http.get(work_url(absent), params={"node": "w"}), 404, "topic_not_found")
    write_n(http, topic, 1)
    assert_error(http.get(work_url(topic), params={"node": "w"}), 409, "not_a_queue")


def test_work_pushes_jobs_and_refills_on_ack(base_url: str, topic: str) -> None:
    with httpx.Client(base_url=base_url, timeout=10) as http:
        queue(http, topic)
        write(http, topic, [{"data": i, "tag": f"j{i}"} for i in range(5)])
        params = {"node": "pusher", "max": "2"}
        with connect_sse(http, "GET", work_url(topic), params=params) as source:
            resp = source.response
            assert resp.headers["content-type"].startswith("text/event-stream")
            assert resp.headers["cache-control"] == "no-store"
            assert resp.headers["x-accel-buffering"] == "no"
            it = events(source)
            first, second = next(it), next(it)
            assert (first.event, first.id, second.id) == ("job", "1", "2")
            job = first.json()
            assert job["topic"] == topic and job["$seq"] == 1 and job["$tag"] == "j0"
            assert job["lease_id"].startswith("lease_") and job["deliveries"] == 1
            assert "$node" not in job
            assert counters(http, topic)["in_flight"] == 2
            ack = settle(http, "ack", topic, "pusher", [1], lease_ids=[job["lease_id"]])
            assert ack["acked"] == 1
            third = next(it)
            assert third.id == "3"
            settle(http, "nack", topic, "pusher", [2], delay_ms=60_000)
            assert next(it).id == "4"


def test_work_retry_line_comes_first(http: httpx.Client, topic: str) -> None:
    queue(http, topic)
    write_n(http, topic, 1)
    with http.stream("GET", work_url(topic), params={"node": "w"}) as resp:
        lines = resp.iter_lines()
        assert next(lines) == "retry: 2000"


def test_work_release_on_disconnect(http: httpx.Client, base_url: str, topic: str) -> None:
    queue(http, topic, lease_ms=60_000)
    write_n(http, topic, 3)
    with httpx.Client(base_url=base_url, timeout=10) as conn:
        with connect_sse(conn, "GET", work_url(topic), params={"node": "w", "max": "3"}) as s:
            it = events(s)
            got = [next(it).json() for _ in range(3)]
        assert counters(http, topic)["in_flight"] in (0, 3)
    # released at once, long before the 60 s lease would expire
    poll(lambda: counters(http, topic), lambda c: c["in_flight"] == 0 and c["ready"] == 3, 5.0)
    again = claim(http, topic, node="other", max=3)["claimed"]
    assert [j["$seq"] for j in again] == [j["$seq"] for j in got]
    assert [j["deliveries"] for j in again] == [2, 2, 2]


def test_work_release_spares_post_claims(http: httpx.Client, base_url: str, topic: str) -> None:
    queue(http, topic)
    write_n(http, topic, 2)
    claim(http, topic, node="w")  # seq 1 via POST
    with (
        httpx.Client(base_url=base_url, timeout=10) as conn,
        connect_sse(conn, "GET", work_url(topic), params={"node": "w"}) as s,
    ):
        assert next(events(s)).id == "2"
    poll(
        lambda: counters(http, topic),
        lambda c: c == {"ready": 1, "in_flight": 1, "dead_lettered": 0},
        5.0,
    )


def test_work_ends_when_topic_deleted(http: httpx.Client, base_url: str, topic: str) -> None:
    queue(http, topic)
    with (
        httpx.Client(base_url=base_url, timeout=10) as conn,
        connect_sse(conn, "GET", work_url(topic), params={"node": "w"}) as s,
    ):
        it = events(s)
        ok(http.delete(f"/v0/topics/{topic}"))
        frame = next(it)
        assert frame.event == "error"
        assert frame.json() == {"code": 409, "error": "topic is no longer a queue", "topic": topic}
        assert list(it) == []  # closed


def test_work_ends_when_recreated_as_log(http: httpx.Client, base_url: str, topic: str) -> None:
    queue(http, topic)
    with (
        httpx.Client(base_url=base_url, timeout=10) as conn,
        connect_sse(conn, "GET", work_url(topic), params={"node": "w"}) as s,
    ):
        it = events(s)
        ok(http.delete(f"/v0/topics/{topic}"))
        write_n(http, topic, 1)
        frame = next(it)
        assert frame.event == "error" and frame.json()["code"] == 409


def test_work_dead_letters_too(http: httpx.Client, base_url: str, topic: str) -> None:
    dlq = unique("dlq")
    queue(http, topic, max_deliveries=1, dead_letter=dlq)
    write_n(http, topic, 2)
    claim(http, topic, lease_ms=100)
    poll(lambda: counters(http, topic), lambda c: c["in_flight"] == 0, 5.0)
    with (
        httpx.Client(base_url=base_url, timeout=10) as conn,
        connect_sse(conn, "GET", work_url(topic), params={"node": "w"}) as s,
    ):
        assert next(events(s)).id == "2"
    assert len(diff(http, dlq)["records"]) == 1


def test_work_cohort_with_post_claims(base_url: str, topic: str) -> None:
    with httpx.Client(base_url=base_url, timeout=10) as http:
        queue(http, topic, claim_jitter_ms=500)
        write_n(http, topic, 4)
        result: dict[str, Any] = {}
        with connect_sse(http, "GET", work_url(topic), params={"node": "s", "max": "4"}) as s:

            def poster() -> None:
                with httpx.Client(base_url=base_url, timeout=10) as other:
                    result["claim"] = claim(other, topic, node="p", max=4)

            # the stream opened first; the POST claim joins its cohort within the window
            t = threading.Thread(target=poster)
            t.start()
            it = events(s)
            pushed = [next(it).json()["$seq"], next(it).json()["$seq"]]
            t.join(10)
        assert result["claim"]["count"] == 2
        assert sorted(pushed + [j["$seq"] for j in result["claim"]["claimed"]]) == [1, 2, 3, 4]


def test_work_sse_connection_cap(server_factory: Callable[..., ServerProcess]) -> None:
    proc = server_factory(env={"TOPICS_MAX_SSE_CONNECTIONS": "1"})
    with httpx.Client(base_url=proc.url, timeout=10) as http:
        q = queue(http, unique("q"))
        write_n(http, q, 1)
        with connect_sse(http, "GET", work_url(q), params={"node": "a"}) as s:
            it = events(s)  # keep the generator: dropping it closes the stream
            next(it)
            err = assert_error(http.get(work_url(q), params={"node": "b"}), 429, "throttled")
            assert err["detail"]["limit"] == "max_sse_connections"
            assert (
                http.get("/v0/metrics", headers={"accept": "application/json"}).json()[
                    "sse_connections"
                ]
                == 1
            )
        # the slot is freed when the stream ends
        poll(
            lambda: http.get(work_url(q), params={"node": "b"}, headers={"accept": "x/y"}),
            lambda r: r.status_code == 406,
            5.0,
        )
        with connect_sse(http, "GET", work_url(q), params={"node": "c"}) as s:
            assert next(events(s)).event == "job"


def test_work_shutdown_frame(server_factory: Callable[..., ServerProcess]) -> None:
    proc = server_factory()
    with httpx.Client(base_url=proc.url, timeout=10) as http:
        q = queue(http, unique("q"))
        with connect_sse(http, "GET", work_url(q), params={"node": "a"}) as s:
            it = events(s)
            assert proc.proc is not None
            proc.proc.send_signal(signal.SIGTERM)
            frame = next(it)
            assert frame.event == "error"
            assert frame.json()["code"] == "server_shutting_down"
    assert proc.proc.wait(15) == 0


# -- restarts ------------------------------------------------------------------------------


def _restart(proc: ServerProcess) -> httpx.Client:
    proc.kill()
    proc.start()
    return httpx.Client(base_url=proc.url, timeout=10)


@pytest.mark.parametrize("durability", ["disk", "fsync"])
def test_leases_not_durable_come_back_after_restart(
    server_factory: Callable[..., ServerProcess], tmp_path: Path, durability: str
) -> None:
    proc = server_factory(data_dir=tmp_path / "data")
    q = unique("q")
    with httpx.Client(base_url=proc.url, timeout=10) as http:
        queue(http, q, durability=durability, lease_ms=600_000)
        write_n(http, q, 3)
        claim(http, q, max=2)
        assert settle(http, "ack", q, "w1", [1])["acked"] == 1
    with _restart(proc) as http:
        assert counters(http, q) == {"ready": 2, "in_flight": 0, "dead_lettered": 0}
        jobs = claim(http, q, node="w2", max=5)["claimed"]
        assert [j["$seq"] for j in jobs] == [2, 3]
        assert [j["deliveries"] for j in jobs] == [1, 1]  # counters need not survive


def test_durable_leases_survive_restart(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    proc = server_factory(data_dir=tmp_path / "data")
    q = unique("q")
    with httpx.Client(base_url=proc.url, timeout=10) as http:
        queue(http, q, leases_durable=True, lease_ms=600_000)
        write_n(http, q, 4)
        held = claim(http, q, max=3)["claimed"]
        settle(http, "ack", q, "w1", [1])
        settle(http, "nack", q, "w1", [2])
        extended = settle(http, "extend", q, "w1", [3], lease_ms=500_000)["deadlines"]["3"]
    with _restart(proc) as http:
        assert counters(http, q) == {"ready": 2, "in_flight": 1, "dead_lettered": 0}
        jobs = claim(http, q, node="w2", max=5)["claimed"]
        assert [j["$seq"] for j in jobs] == [2, 4]
        body = settle(http, "extend", q, "w1", [3], lease_ms=1000, lease_ids=[held[2]["lease_id"]])
        assert body["extended"] == 1 and body["deadlines"]["3"] < extended
        assert settle(http, "ack", q, "w1", [3])["acked"] == 1
        # fresh lease ids never repeat one handed out before the restart
        assert {j["lease_id"] for j in jobs}.isdisjoint({j["lease_id"] for j in held})


def test_durable_leases_expire_after_restart(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    proc = server_factory(data_dir=tmp_path / "data")
    q = unique("q")
    with httpx.Client(base_url=proc.url, timeout=10) as http:
        queue(http, q, leases_durable=True)
        write_n(http, q, 1)
        claim(http, q, lease_ms=1500)
    with _restart(proc) as http:
        got = poll(lambda: claim(http, q, node="w2"), lambda b: b["count"] == 1, 10.0)
        assert got["claimed"][0]["$seq"] == 1


def test_ephemeral_queue_ignores_leases_durable(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    proc = server_factory(data_dir=tmp_path / "data")
    q = unique("q")
    with httpx.Client(base_url=proc.url, timeout=10) as http:
        queue(http, q, leases_durable=True, durability="ephemeral")
        write_n(http, q, 2)
        claim(http, q)
    with _restart(proc) as http:
        assert counters(http, q) == {"ready": 0, "in_flight": 0, "dead_lettered": 0}
        write_n(http, q, 1)
        assert claim(http, q, max=5)["count"] == 1


def test_fsync_ack_survives_sigkill(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    proc = server_factory(data_dir=tmp_path / "data")
    q = unique("q")
    with httpx.Client(base_url=proc.url, timeout=10) as http:
        queue(http, q, durable=True)
        write_n(http, q, 3)
        jobs = claim(http, q, max=2)["claimed"]
        body = settle(http, "ack", q, "w1", [j["$seq"] for j in jobs])
        assert body["acked"] == 2
        assert body["performance"].get("fsync_ms", 1.0) > 0
    with _restart(proc) as http:
        assert seqs_of(diff(http, q)) == [3]
        assert [j["$seq"] for j in claim(http, q, max=5)["claimed"]] == [3]


def test_dead_letter_survives_restart(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    proc = server_factory(data_dir=tmp_path / "data")
    q, dlq = unique("q"), unique("dlq")
    with httpx.Client(base_url=proc.url, timeout=10) as http:
        queue(http, q, max_deliveries=1, dead_letter=dlq)
        write_n(http, q, 1)
        claim(http, q)
        settle(http, "nack", q, "w1", [1])
        assert claim(http, q)["count"] == 0
    with _restart(proc) as http:
        assert diff(http, q)["records"] == []
        assert len(diff(http, dlq)["records"]) == 1
