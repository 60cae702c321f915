"""Property-based fuzzing of the request parsers (SPEC §0.4, §0.6).

Whatever arrives, the server never answers 5xx, every non-2xx body is the canonical
envelope, every success carries ``performance``, and a rejected write or record delete
changes nothing.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.server._helpers import check_envelope, ok, unique

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**65), max_value=2**65)
    | st.sampled_from([0, 1, -1, 2**32 - 1, 2**32, 2**63 - 1, 2**64 - 1, 2**64])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["", "*", "tag", "Eq", "Glob", "a*", "log", "queue", "old", "reject"])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


def _objects(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(keys) | st.text(max_size=6), json_values, max_size=6)


CONFIG_KEYS = [
    "type",
    "ttl_ms",
    "cap_records",
    "cap_bytes",
    "discard",
    "durable",
    "durability",
    "priority",
    "auto_priority",
    "auto_create",
    "idempotency_window_ms",
    "dedupe_node",
    "lease_ms",
    "claim_jitter_ms",
    "max_deliveries",
    "dead_letter",
    "leases_durable",
]
RECORD_KEYS = ["data", "tag", "node", "meta"]
WRITE_KEYS = ["records", "node", "idempotency_key", "create", "config", "disable_backpressure"]
DIFF_KEYS = ["from_seq", "limit", "node", "include_tags", "include_meta", "max_batch_bytes"]
DELETE_KEYS = ["before_seq", "match"]

records = st.lists(_objects(RECORD_KEYS) | json_values, max_size=4)
predicates = (
    st.lists(st.sampled_from(["tag", "Eq", "Glob", "x", "x*", "*", "*x", ""]) | scalars, max_size=4)
    | st.text(max_size=6)
    | json_values
)
write_bodies = json_values | st.builds(
    lambda base, recs, cfg: {**base, "records": recs, **({"config": cfg} if cfg else {})},
    _objects(WRITE_KEYS),
    records,
    st.none() | _objects(CONFIG_KEYS),
)
config_bodies = json_values | _objects(CONFIG_KEYS)
diff_bodies = json_values | _objects(DIFF_KEYS)
delete_bodies = json_values | st.builds(
    lambda base, match: {**base, "match": match}, _objects(DELETE_KEYS), predicates
)
raw_bytes = st.binary(max_size=200)
content_types = st.sampled_from(["application/json", "application/json; charset=utf-8", ""])


@pytest.fixture(scope="module")
def client(shared_http: httpx.Client) -> httpx.Client:
    return shared_http


def _encode(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


def _check(resp: httpx.Response) -> None:
    assert resp.status_code < 500, (resp.status_code, resp.text)
    if 200 <= resp.status_code < 300:
        ok(resp, resp.status_code)
    else:
        check_envelope(resp)


def _send(
    client: httpx.Client, method: str, path: str, content: bytes, ctype: str = "application/json"
) -> httpx.Response:
    headers = {"content-type": ctype} if ctype else {}
    resp = client.request(method, path, content=content, headers=headers)
    _check(resp)
    return resp


def _counts(client: httpx.Client, topic: str) -> tuple[int, int, int]:
    got = ok(client.get(f"/v0/topics/{topic}", params={"touch": "false"}))
    return got["head_seq"], got["count"], got["bytes"]


def _tame_diff(body: Any) -> Any:
    """Keep long-polls short: a fuzzed wait_ms could park the request for 30 s."""
    if isinstance(body, dict):
        wait = body.get("wait_ms")
        if type(wait) is int and wait > 0:
            body = {**body, "wait_ms": wait % 20}
    return body


@pytest.fixture(scope="module")
def fuzz_topics(client: httpx.Client) -> dict[str, str]:
    names = {kind: unique(f"fz-{kind}") for kind in ("put", "write", "diff", "delete")}
    for name in names.values():
        resp = client.post(
            f"/v0/topics/{name}",
            json={"records": [{"data": i, "tag": f"t{i % 3}", "node": "n"} for i in range(20)]},
        )
        assert resp.status_code == 201, resp.text
    return names


@FUZZ
@given(body=config_bodies, fresh=st.booleans())
def test_fuzz_put_topic(
    client: httpx.Client, fuzz_topics: dict[str, str], body: Any, fresh: bool
) -> None:
    name = unique("fz-new") if fresh else fuzz_topics["put"]
    resp = _send(client, "PUT", f"/v0/topics/{name}", _encode(body))
    if resp.status_code in (200, 201):
        config = resp.json()["config"]
        assert set(config) == set(CONFIG_KEYS)
        assert config["durable"] is (config["durability"] == "fsync")
        assert 100 <= config["lease_ms"] <= 86_400_000
        assert 0 <= config["claim_jitter_ms"] <= 5000
    elif not fresh:
        assert resp.status_code in (400, 409), resp.text
    if not fresh and resp.status_code in (200, 201):
        # keep the shared fuzz topic a plain log for the next example
        _send(client, "PUT", f"/v0/topics/{name}", b"{}")


@settings(FUZZ, max_examples=100)
@given(raw=raw_bytes, ctype=content_types)
def test_fuzz_put_topic_bytes(
    client: httpx.Client, fuzz_topics: dict[str, str], raw: bytes, ctype: str
) -> None:
    name = fuzz_topics["put"]
    resp = _send(client, "PUT", f"/v0/topics/{name}", raw, ctype)
    if resp.status_code in (200, 201):
        _send(client, "PUT", f"/v0/topics/{name}", b"{}")


@FUZZ
@given(body=write_bodies, return_seqs=st.sampled_from([None, "false", "0", "x"]))
def test_fuzz_write(
    client: httpx.Client, fuzz_topics: dict[str, str], body: Any, return_seqs: str | None
) -> None:
    topic = fuzz_topics["write"]
    before = _counts(client, topic)
    params = {"return_seqs": return_seqs} if return_seqs else None
    resp = client.post(
        f"/v0/topics/{topic}",
        content=_encode(body),
        headers={"content-type": "application/json"},
        params=params,
    )
    _check(resp)
    after = _counts(client, topic)
    if resp.status_code >= 300:
        assert after == before, (resp.text, before, after)
    else:
        out = resp.json()
        assert out["topic"] == topic
        if out["deduped"]:
            assert after == before
        else:
            assert out["first_seq"] == before[0] + 1
            assert out["last_seq"] == after[0]
            assert out["count"] == after[0] - before[0]
            assert after[1] == before[1] + out["count"]
        assert ("seqs" in out) is (return_seqs not in ("false", "0"))


@settings(FUZZ, max_examples=100)
@given(raw=raw_bytes, ctype=content_types)
def test_fuzz_write_bytes(
    client: httpx.Client, fuzz_topics: dict[str, str], raw: bytes, ctype: str
) -> None:
    topic = fuzz_topics["write"]
    before = _counts(client, topic)
    resp = _send(client, "POST", f"/v0/topics/{topic}", raw, ctype)
    if resp.status_code >= 300:
        assert _counts(client, topic) == before


@FUZZ
@given(body=diff_bodies)
def test_fuzz_diff(client: httpx.Client, fuzz_topics: dict[str, str], body: Any) -> None:
    topic = fuzz_topics["diff"]
    resp = _send(client, "POST", f"/v0/topics/{topic}/diff", _encode(_tame_diff(body)))
    if resp.status_code == 200:
        out = resp.json()
        assert out["caught_up"] is (out["next_from_seq"] == out["head_seq"])
        assert out["lag"] == out["head_seq"] - out["next_from_seq"]
        seqs = [r["$seq"] for r in out["records"]]
        assert seqs == sorted(set(seqs))
        assert len(seqs) <= 1000
    else:
        assert resp.status_code == 400, resp.text


@settings(FUZZ, max_examples=100)
@given(raw=raw_bytes, ctype=content_types)
def test_fuzz_diff_bytes(
    client: httpx.Client, fuzz_topics: dict[str, str], raw: bytes, ctype: str
) -> None:
    topic = fuzz_topics["diff"]
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and "wait_ms" in parsed:
        raw = _encode(_tame_diff(parsed))
    _send(client, "POST", f"/v0/topics/{topic}/diff", raw, ctype)


@FUZZ
@given(body=delete_bodies)
def test_fuzz_delete_records(client: httpx.Client, fuzz_topics: dict[str, str], body: Any) -> None:
    topic = fuzz_topics["delete"]
    before = _counts(client, topic)
    resp = _send(client, "POST", f"/v0/topics/{topic}/delete", _encode(body))
    after = _counts(client, topic)
    if resp.status_code >= 300:
        assert resp.status_code == 400, resp.text
        assert after == before
    else:
        out = resp.json()
        assert out["count"] == after[1] == before[1] - out["deleted"]
        assert out["head_seq"] == before[0]
    if after[1] < 5:  # refill so later examples have something to delete
        client.post(
            f"/v0/topics/{topic}",
            json={"records": [{"data": i, "tag": f"t{i % 3}"} for i in range(10)]},
        )


@settings(FUZZ, max_examples=100)
@given(raw=raw_bytes, ctype=content_types)
def test_fuzz_delete_records_bytes(
    client: httpx.Client, fuzz_topics: dict[str, str], raw: bytes, ctype: str
) -> None:
    topic = fuzz_topics["delete"]
    before = _counts(client, topic)
    resp = _send(client, "POST", f"/v0/topics/{topic}/delete", raw, ctype)
    if resp.status_code >= 300:
        assert _counts(client, topic) == before


@settings(FUZZ, max_examples=75)
@given(name=st.text(min_size=1, max_size=20))
def test_fuzz_topic_names_in_paths(client: httpx.Client, name: str) -> None:
    path = f"/v0/topics/{quote(name, safe='')}"
    for method in ("GET", "DELETE"):
        _check(client.request(method, path, params={"touch": "false"}))
    _check(client.post(f"{path}/diff", content=b""))
    resp = client.put(path, content=b"")
    _check(resp)
    if resp.status_code in (200, 201):
        client.delete(path)


@settings(FUZZ, max_examples=75)
@given(
    params=st.dictionaries(
        st.sampled_from(["prefix", "page_size", "cursor", "touch"]),
        st.text(max_size=16),
        max_size=4,
    )
)
def test_fuzz_list_query(client: httpx.Client, params: dict[str, str]) -> None:
    resp = client.get("/v0/topics", params=params)
    _check(resp)
    if resp.status_code == 200:
        names = [e["topic"] for e in resp.json()["topics"]]
        assert names == sorted(names)
        assert len(names) <= 1000
    else:
        assert resp.status_code == 400


# -- hostile families (issue 10): deep nesting, u64 extremes, percent-encoded names ------

JSON_ENDPOINTS = [
    ("PUT", ""),
    ("POST", ""),
    ("POST", "/diff"),
    ("POST", "/delete"),
    ("POST", "/claim"),
    ("POST", "/ack"),
    ("POST", "/nack"),
    ("POST", "/extend"),
]
U64_EDGES = [2**62 - 1, 2**62, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**64 + 1, -1, -(2**63)]


def _nested_text(depth: int, kinds: list[bool]) -> str:
    """``depth`` levels, each an array (False) or an object under "k" (True)."""
    opening = "".join('{"k":' if kinds[i % len(kinds)] else "[" for i in range(depth))
    closing = "".join("}" if kinds[i % len(kinds)] else "]" for i in reversed(range(depth)))
    return opening + "1" + closing


@settings(FUZZ, max_examples=150)
@given(
    endpoint=st.sampled_from(JSON_ENDPOINTS),
    depth=st.integers(min_value=1, max_value=1100) | st.sampled_from([125, 126, 127, 128, 129]),
    kinds=st.lists(st.booleans(), min_size=1, max_size=4),
    place=st.sampled_from(["data", "meta", "extra", "top"]),
)
def test_fuzz_deep_nesting(
    client: httpx.Client,
    fuzz_topics: dict[str, str],
    endpoint: tuple[str, str],
    depth: int,
    kinds: list[bool],
    place: str,
) -> None:
    """Any depth anywhere: over 128 levels in all is 400, never a 5xx (SPEC §0.4)."""
    method, suffix = endpoint
    deep = _nested_text(depth, kinds)
    if place == "data":  # body, records, record: three levels above
        body, total = f'{{"records":[{{"data":{deep}}}]}}', depth + 3
    elif place == "meta":  # ... and the meta object: four
        body, total = f'{{"records":[{{"data":1,"meta":{{"m":{deep}}}}}],"node":"n"}}', depth + 4
    elif place == "extra":
        body, total = f'{{"node":"n","seqs":[1],"before_seq":1,"x":{deep}}}', depth + 1
    else:
        body, total = deep, depth
    name = fuzz_topics["write"] if method == "POST" and not suffix else fuzz_topics["diff"]
    if method == "PUT":
        name = fuzz_topics["put"]
    resp = _send(client, method, f"/v0/topics/{name}{suffix}", body.encode())
    if total > 128:
        assert resp.status_code == 400, (total, resp.text)
        assert resp.json()["error"]["code"] == "invalid_request"
    if method == "PUT" and resp.status_code < 300:
        _send(client, "PUT", f"/v0/topics/{name}", b"{}")


@settings(FUZZ, max_examples=150)
@given(
    config=st.dictionaries(
        st.sampled_from(CONFIG_KEYS), st.sampled_from(U64_EDGES) | scalars, max_size=5
    ),
    fields=st.dictionaries(
        st.sampled_from(
            ["from_seq", "limit", "max_batch_bytes", "wait_ms", "before_seq", "lease_ms", "max"]
        ),
        st.sampled_from(U64_EDGES),
        max_size=3,
    ),
    seqs=st.lists(st.sampled_from(U64_EDGES), max_size=3),
)
def test_fuzz_u64_extremes(
    client: httpx.Client, config: dict[str, Any], fields: dict[str, Any], seqs: list[int]
) -> None:
    """u64 edges in configs, cursors and seqs: never a 5xx; a saturated config still works."""
    name = unique("fz-u64")
    resp = _send(client, "PUT", f"/v0/topics/{name}", _encode(config))
    if resp.status_code >= 300:
        assert resp.status_code in (400, 409), resp.text
        return
    echoed = resp.json()["config"]
    for key in ("ttl_ms", "idempotency_window_ms", "cap_records", "cap_bytes"):
        if key in config and type(config[key]) is int and 0 <= config[key] < 2**64:
            assert echoed[key] == config[key]
    is_queue = echoed["type"] == "queue"
    write = {"records": [{"data": 1}], "idempotency_key": "k"}
    for _ in range(2):  # the second is a dedupe within the (maybe huge) window
        resp = _send(client, "POST", f"/v0/topics/{name}", _encode(write))
        assert resp.status_code in (200, 201, 422), resp.text
    body = {**fields, "node": "n", "seqs": seqs, "match": ["tag", "Eq", "x"]}
    body["wait_ms"] = 0
    for suffix in ("/diff", "/delete") + (
        ("/claim", "/ack", "/nack", "/extend") if is_queue else ()
    ):
        _send(client, "POST", f"/v0/topics/{name}{suffix}", _encode(body))
    client.delete(f"/v0/topics/{name}")


NAME_PIECES = ["%2F", "%2f", "%00", "%25", "%2E", "%3E", "%20", "%FF", "%E2%82%AC", "%", "..", "a"]


@settings(FUZZ, max_examples=150)
@given(
    pieces=st.lists(st.sampled_from(NAME_PIECES) | st.text(max_size=4), min_size=1, max_size=5),
    route=st.sampled_from(
        [
            ("GET", "/v0/topics/{}"),
            ("PUT", "/v0/topics/{}"),
            ("POST", "/v0/topics/{}"),
            ("DELETE", "/v0/topics/{}"),
            ("POST", "/v0/topics/{}/diff"),
            ("POST", "/v0/topics/{}/delete"),
            ("POST", "/v0/topics/{}/claim"),
            ("POST", "/v0/topics/{}/ack"),
            ("GET", "/v0/topics/{}/work"),
            ("GET", "/v0/routers/{}"),
            ("PUT", "/v0/routers/{}"),
            ("DELETE", "/v0/routers/{}"),
            ("GET", "/v0/watch/{}"),
        ]
    ),
)
def test_fuzz_percent_encoded_names(
    client: httpx.Client, pieces: list[str], route: tuple[str, str]
) -> None:
    """Names built from escapes (``%2F``, ``%00``, bad UTF-8…) on every route: never a 5xx."""
    name = "".join(
        p if p.startswith("%") or p in ("..", "a") else quote(p, safe="") for p in pieces
    )
    method, template = route
    path = template.format(name)
    body = {"records": [{"data": 1}], "node": "n", "seqs": [1], "source": "a", "dest": "b"}
    headers = {"content-type": "application/json", "accept": "text/event-stream"}
    if path.endswith("/work"):
        path += "?node=n"
    try:
        if method == "GET":
            with client.stream(method, path, headers=headers, timeout=5) as resp:
                if resp.status_code == 200:  # a stream opened: enough
                    return
                resp.read()
        else:
            resp = client.request(method, path, content=_encode(body), headers=headers)
    except httpx.InvalidURL:
        return  # the client would not send it
    _check(resp)
    if method == "PUT" and resp.status_code in (200, 201):
        client.delete(path)
