"""Configuration, import weight and TLS laziness."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest
import respx

from topics_client import (
    BASE_URL_ENV,
    DEFAULT_BACKOFF_MAX_MS,
    DEFAULT_BASE_URL,
    NOT_GIVEN,
    TOPIC_CONFIG_FIELDS,
    Client,
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
