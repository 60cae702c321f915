"""Configuration, import weight and TLS laziness."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import anyio
import httpx
import pytest
import respx

from topics_client import (
    BASE_URL_ENV,
    DEFAULT_BACKOFF_MAX_MS,
    DEFAULT_BASE_URL,
    NOT_GIVEN,
    TOPIC_CONFIG_FIELDS,
    APIError,
    APIResponseError,
    AsyncClient,
    Client,
    NotATopicsServerError,
    ServiceUnavailableError,
    TopicConfig,
    backoff_ms,
    resolve_api_key,
    resolve_base_url,
)


def test_base_url_resolution_order() -> None:
    env = {"TOPICS_URL": "http://a:1/", "TOPICS": "b:2"}
    assert resolve_base_url("http://x:9", env) == "http://x:9"
    assert resolve_base_url(None, env) == "http://a:1"
    assert resolve_base_url(None, {"TOPICS": "b:2"}) == "http://b:2"
    assert resolve_base_url(None, {}) == "http://127.0.0.1:4000"
    assert resolve_api_key(None, {"TOPICS_API_KEY": " k "}) == "k"
    assert resolve_api_key(None, {}) is None and resolve_api_key("", {}) is None


def test_env_used_by_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOPICS_URL", "env-host:4321/")
    monkeypatch.setenv("TOPICS_API_KEY", "from-env")
    health = {"status": "ok", "version": "x", "uptime_ms": 1}
    with respx.mock(assert_all_called=True) as mock, Client() as client:
        route = mock.get("http://env-host:4321/v0/health").respond(json=health)
        assert client.base_url == "http://env-host:4321"
        assert client.health().status == "ok"
    assert route.calls.last.request.headers["authorization"] == "Bearer from-env"


def test_timeouts_and_not_given() -> None:
    assert not NOT_GIVEN and repr(NOT_GIVEN) == "NOT_GIVEN"
    with Client("http://h", timeout=httpx.Timeout(1.0, connect=0.5)) as client:
        assert client.timeout.connect == 0.5 and client.timeout.read == 1.0
        assert client.with_options(timeout=None).timeout.read is None
        assert client.with_options().timeout is client.timeout


def _probe(code: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return out.stdout.split()


def test_import_is_light_and_http_skips_tls() -> None:
    """A plain-HTTP client never loads a CA bundle (that was ~100 ms of every ``topics``
    run); an https one does. Counted through the ssl entry points, not timed: a wall-clock
    bound flakes on a loaded machine."""
    code = (
        "import ssl, sys, topics_client\n"
        "print('httpx' in sys.modules, 'rich' in sys.modules)\n"
        "calls = []\n"
        "def spy(owner, name):\n"
        "    real = getattr(owner, name)\n"
        "    def wrapper(*a, **k):\n"
        "        calls.append(name)\n"
        "        return real(*a, **k)\n"
        "    setattr(owner, name, wrapper)\n"
        "for name in ('load_verify_locations', 'load_default_certs', 'set_default_verify_paths'):\n"
        "    spy(ssl.SSLContext, name)\n"
        "spy(ssl, 'create_default_context')\n"
        "c = topics_client.Client('http://127.0.0.1:1')\n"
        "print('rich' in sys.modules, sorted(set(calls)))\n"
        "c2 = topics_client.Client('https://127.0.0.1:1')\n"
        "print(any(n in calls for n in ('load_verify_locations', 'load_default_certs')))\n"
    )
    assert _probe(code) == ["False", "False", "False", "[]", "True"]


def test_httpx_still_fully_usable_after_lazy_import() -> None:
    code = "import topics_client, sys; topics_client.Client; import httpx._main; print('ok')"
    assert _probe(code) == ["ok"]


def test_public_names_report_package_module() -> None:
    import topics_client

    for name in topics_client.__all__:
        value = getattr(topics_client, name)
        if isinstance(value, type):
            assert value.__module__ == "topics_client", name
    with pytest.raises(AttributeError):
        topics_client.Nope  # noqa: B018


def test_base_url_fallback_and_env_names() -> None:
    """The one URL rule the CLI shares: argument > TOPICS_URL > TOPICS > fallback > default."""
    assert BASE_URL_ENV == ("TOPICS_URL", "TOPICS")
    assert resolve_base_url(None, {"TOPICS": " "}, fallback="p:7/") == "http://p:7"
    assert resolve_base_url(None, {"TOPICS": "e:1"}, fallback="p:7") == "http://e:1"
    assert resolve_base_url("https://f", {"TOPICS_URL": "e:1"}, fallback="p:7") == "https://f"
    assert resolve_base_url(None, {}, fallback="  ") == DEFAULT_BASE_URL


def test_topic_config_fields_have_one_definition() -> None:
    """``TopicConfig`` defines the fields; the name tuple and the typed ``put`` keywords
    (``ConfigParams``) follow it, in SPEC order."""
    from topics_client.resources.topics import ConfigParams

    assert TOPIC_CONFIG_FIELDS[:3] == ("type", "ttl_ms", "cap_records")
    assert tuple(ConfigParams.__annotations__) == TOPIC_CONFIG_FIELDS
    wire = TopicConfig().to_wire()
    assert set(wire) == set(TOPIC_CONFIG_FIELDS) - {"durable"}


def test_backoff_ms_is_shared_and_capped() -> None:
    assert [backoff_ms(n) for n in (0, 1, 2, 3)] == [1000, 1000, 2000, 4000]
    assert backoff_ms(10_000) == DEFAULT_BACKOFF_MAX_MS
    assert backoff_ms(3, 10, 25) == 25


# -- a URL with its /v0 (issue 14, item 9) --------------------------------------------

V0_FORMS = ["{u}/v0", "{u}/v0/", " {u}/v0// "]


@pytest.mark.parametrize("form", V0_FORMS)
def test_trailing_v0_is_dropped_wherever_a_url_is_read(form: str) -> None:
    url = form.format(u="http://h:1")
    assert resolve_base_url(url, {}) == "http://h:1"
    assert resolve_base_url(None, {"TOPICS_URL": url}) == "http://h:1"
    assert resolve_base_url(None, {"TOPICS": url}) == "http://h:1"
    assert resolve_base_url(None, {}, fallback=url) == "http://h:1"  # e.g. a CLI profile
    assert resolve_base_url(form.format(u="h:1"), {}) == "http://h:1"
    # a mount path stays; only the API version goes; a host named v0 is a host
    assert resolve_base_url(form.format(u="https://gw.example/topics"), {}) == (
        "https://gw.example/topics"
    )
    assert resolve_base_url("http://v0", {}) == "http://v0"
    assert resolve_base_url("http://h:1/v01", {}) == "http://h:1/v01"


@pytest.mark.parametrize("form", V0_FORMS)
def test_clients_given_the_announced_url_reach_the_server(base_url: str, form: str) -> None:
    """``topics serve`` used to announce ``http://HOST:PORT/v0``; pasted, it gave
    ``no route for /v0/v0/topics``."""
    url = form.format(u=base_url)
    with Client(url) as client:
        assert client.base_url == base_url
        list(client.topics.list())
    aclient = AsyncClient(url)
    assert aclient.base_url == base_url

    async def go() -> None:
        async with aclient:
            [t async for t in aclient.topics.list()]

    anyio.run(go)


# -- something else answering (issue 14, item 8) ------------------------------------


@pytest.fixture(scope="module")
def foreign_url() -> Iterator[str]:
    """``python -m http.server`` on an ephemeral port: a web server, not a topics server."""
    with tempfile.TemporaryDirectory() as root:
        proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1"],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().decode()  # "Serving HTTP on 127.0.0.1 port N ..."
            match = re.search(r"port (\d+)", line)
            assert match, line
            yield f"http://127.0.0.1:{match.group(1)}"
        finally:
            proc.terminate()
            proc.wait(10)
            proc.stdout.close()  # type: ignore[union-attr]


def test_a_web_server_is_not_a_topics_server(foreign_url: str) -> None:
    hostport = foreign_url.removeprefix("http://")
    with Client(foreign_url, max_retries=0) as client:
        with pytest.raises(NotATopicsServerError) as info:
            list(client.topics.list())  # GET: 404 and an HTML page
        err = info.value
        assert str(err) == f"{hostport} does not look like a topics server (HTTP 404, text/html)"
        assert "\n" not in str(err) and err.status == 404 and err.code == "http_404"
        assert err.content_type == "text/html" and "<html" in err.body.lower()
        assert err.response is not None and err.response.text == err.body
        with pytest.raises(NotATopicsServerError, match=r"\(HTTP 501, text/html\)$"):
            client.topics.append("orders", {"id": 1})  # POST: 501 Unsupported method
    assert isinstance(err, APIError)  # callers catching APIError still catch it

    async def go() -> None:
        async with AsyncClient(foreign_url, max_retries=0) as aclient:
            with pytest.raises(NotATopicsServerError, match=r"\(HTTP 404, text/html\)$"):
                [t async for t in aclient.topics.list()]

    anyio.run(go)


def test_a_gateway_error_page_keeps_its_status_family() -> None:
    """A proxy's 503 page in front of a starting server must still read as "unavailable"
    (``topics status --wait`` keeps waiting on it), in one line."""
    page = "<html>\n<head><title>503 Service Temporarily Unavailable</title></head>\n</html>\n"
    with respx.mock(base_url="http://gw:1") as mock, Client("http://gw:1", max_retries=0) as c:
        mock.get("/v0/topics").mock(return_value=httpx.Response(503, html=page))
        with pytest.raises(ServiceUnavailableError) as info:
            list(c.topics.list())
    assert not isinstance(info.value, NotATopicsServerError)
    assert "\n" not in info.value.message and "HTTP 503 from gw:1" in info.value.message
    assert info.value.code == "http_503"


def test_a_2xx_html_page_names_the_server_too() -> None:
    with respx.mock(base_url="http://web:1") as mock, Client("http://web:1") as c:
        mock.get("/v0/topics").mock(return_value=httpx.Response(200, html="<html></html>"))
        with pytest.raises(APIResponseError) as info:
            list(c.topics.list())
    assert str(info.value).startswith(
        "web:1 does not look like a topics server (HTTP 200, text/html)"
    )
