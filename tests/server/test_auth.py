"""API keys, scopes and allowlists (SPEC §12)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.serverproc import ServerProcess

KEYS = ",".join(
    [
        "root",  # every scope, any name
        "reader:r",
        "writer:w",
        "rw:rw",
        "tenant:r+w+d:t42:|shared.",  # prefixes may contain ':'
        "admin-t42:a+r:t42:",
    ]
)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("auth") / "data"
    with ServerProcess(data_dir=data, env={"TOPICS_API_KEYS": KEYS}) as server:
        yield server


def client(server: ServerProcess, key: str | None) -> httpx.Client:
    headers = {"authorization": f"Bearer  {key}"} if key else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=10)


def code(resp: httpx.Response) -> tuple[int, str]:
    return resp.status_code, resp.json()["error"]["code"] if resp.status_code >= 400 else ""


def test_authentication(secured: ServerProcess) -> None:
    with client(secured, None) as anon, client(secured, "nope") as bad:
        assert code(anon.get("/v0/topics")) == (401, "unauthorized")
        assert code(bad.get("/v0/topics")) == (401, "unauthorized")
        # probes stay open unless TOPICS_PROBE_AUTH
        assert anon.get("/v0/health").status_code == 200
        assert anon.get("/v0/ready").status_code == 200
        assert code(anon.get("/v0/metrics")) == (401, "unauthorized")
        # ?token= is only for the SSE streams
        assert code(anon.get("/v0/topics", params={"token": "root"})) == (401, "unauthorized")
    with client(secured, "root") as root:
        assert root.get("/v0/topics").status_code == 200
        assert root.get("/v0/metrics").status_code == 200


def test_scopes(secured: ServerProcess) -> None:
    with (
        client(secured, "root") as root,
        client(secured, "reader") as reader,
        client(secured, "writer") as writer,
        client(secured, "rw") as rw,
    ):
        assert root.put("/v0/topics/scoped", json={}).status_code in (200, 201)
        assert code(reader.put("/v0/topics/scoped", json={})) == (403, "forbidden")
        assert code(reader.post("/v0/topics/scoped", json={"records": [{"data": 1}]})) == (
            403,
            "forbidden",
        )
        assert writer.post("/v0/topics/scoped", json={"records": [{"data": 1}]}).status_code == 200
        assert code(writer.post("/v0/topics/scoped/diff", json={})) == (403, "forbidden")
        assert reader.post("/v0/topics/scoped/diff", json={}).status_code == 200
        assert code(rw.delete("/v0/topics/scoped")) == (403, "forbidden")
        assert code(rw.post("/v0/topics/scoped/delete", json={"before_seq": 1})) == (
            403,
            "forbidden",
        )
        # a lazy create needs only write; a create with config needs admin too
        assert writer.post("/v0/topics/lazy", json={"records": [{"data": 1}]}).status_code == 201
        resp = writer.post(
            "/v0/topics/configured", json={"records": [{"data": 1}], "config": {"cap_records": 5}}
        )
        assert code(resp) == (403, "forbidden")
        assert resp.json()["error"]["detail"]["topic"] == "configured"
        assert root.get("/v0/topics/configured").status_code == 404


def test_prefix_allowlist(secured: ServerProcess) -> None:
    with client(secured, "root") as root, client(secured, "tenant") as tenant:
        root.post("/v0/topics/t42:orders", json={"records": [{"data": 1}]})
        root.post("/v0/topics/other", json={"records": [{"data": 1}]})
        root.post("/v0/topics/shared.news", json={"records": [{"data": 1}]})
        assert tenant.post("/v0/topics/t42:orders/diff", json={}).status_code == 200
        assert tenant.post("/v0/topics/shared.news/diff", json={}).status_code == 200
        resp = tenant.post("/v0/topics/other/diff", json={})
        assert code(resp) == (403, "forbidden")
        assert resp.json()["error"]["detail"]["topic"] == "other"
        names = [t["topic"] for t in tenant.get("/v0/topics").json()["topics"]]
        assert "other" not in names and "t42:orders" in names
        # every topic of a watch must be allowed
        resp = tenant.post("/v0/watch", json={"topics": {"t42:orders": {}, "other": {}}})
        assert code(resp) == (403, "forbidden")


def test_router_allowlist(secured: ServerProcess) -> None:
    with client(secured, "root") as root, client(secured, "admin-t42") as admin:
        assert (
            admin.put("/v0/routers/t42:a", json={"source": "t42:a", "dest": "t42:b"}).status_code
            == 201
        )
        resp = admin.put("/v0/routers/t42:x", json={"source": "t42:a", "dest": "elsewhere"})
        assert code(resp) == (403, "forbidden")
        assert (
            root.put(
                "/v0/routers/t42:leak", json={"source": "t42:c", "dest": "outside"}
            ).status_code
            == 201
        )
        assert code(admin.get("/v0/routers/t42:leak")) == (403, "forbidden")
        listed = [r["router"] for r in admin.get("/v0/routers").json()["routers"]]
        assert listed == ["t42:a"]


def test_watch_is_bound_to_its_key(secured: ServerProcess) -> None:
    with client(secured, "root") as root, client(secured, "reader") as reader:
        root.post("/v0/topics/bound", json={"records": [{"data": 1}]})
        wid = reader.post("/v0/watch", json={"topics": {"bound": {}}}).json()["wid"]
        with client(secured, None) as anon:
            assert code(anon.get(f"/v0/watch/{wid}")) == (401, "unauthorized")
        assert code(root.get(f"/v0/watch/{wid}")) == (401, "unauthorized")
        with (
            httpx.Client(base_url=secured.url, timeout=10) as plain,
            plain.stream("GET", f"/v0/watch/{wid}", params={"token": "reader"}) as response,
        ):
            assert response.status_code == 200
            assert next(response.iter_lines()) == "retry: 2000"


@pytest.mark.parametrize("entry", ["k:bogus", "k:r+superuser"])
def test_unknown_scope_stops_startup(
    server_factory: Callable[..., ServerProcess], entry: str
) -> None:
    with pytest.raises(RuntimeError) as err:
        server_factory(env={"TOPICS_API_KEYS": entry})
    assert "unknown scope" in str(err.value)


def test_probe_auth(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(env={"TOPICS_API_KEYS": "k:r", "TOPICS_PROBE_AUTH": "1"})
    with client(server, None) as anon, client(server, "k") as keyed:
        assert code(anon.get("/v0/health")) == (401, "unauthorized")
        assert keyed.get("/v0/health").status_code == 200


def test_non_loopback_bind_needs_keys(server_factory: Callable[..., ServerProcess]) -> None:
    with pytest.raises(RuntimeError) as err:
        server_factory(env={"TOPICS_HOST": "0.0.0.0"})
    assert "TOPICS_API_KEYS" in str(err.value)
