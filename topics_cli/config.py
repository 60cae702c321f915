"""Profiles and environment: where the CLI finds its server, key and output mode.

The file is ``$XDG_CONFIG_HOME/topics/config.toml`` (default ``~/.config``)::

    current = "prod"

    [profiles.prod]
    url = "https://topics.example.com"
    api_key = "s3cret"
    output = "jsonl"

Precedence for every setting: flag > environment (``TOPICS_URL``, then ``TOPICS``;
``TOPICS_API_KEY``; ``TOPICS_PROFILE``) > profile > built-in default
(``http://127.0.0.1:4000``); the url rule is the client's own
:func:`topics_client.resolve_base_url`, with the profile's url as its fallback. The file is
written with mode 0600 (it may hold a key).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from topics_cli.errors import CliError

__all__ = [
    "PROFILE_KEYS",
    "ConfigFile",
    "Resolved",
    "config_path",
    "resolve",
]

PROFILE_KEYS = ("url", "api_key", "output", "template", "no_color")
DEFAULT_PROFILE = "default"


def config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "topics" / "config.toml"


class ConfigFile:
    """The TOML file: a ``current`` profile name and ``[profiles.NAME]`` tables."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    @classmethod
    def load(cls, path: Path | None = None) -> ConfigFile:
        path = path or config_path()
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return cls(path, {})
        except OSError as exc:
            raise CliError(f"cannot read {path}: {exc.strerror}") from None
        import tomllib

        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise CliError(f"{path}: not valid TOML: {exc}") from None
        return cls(path, data)

    @property
    def profiles(self) -> dict[str, dict[str, Any]]:
        profiles = self.data.get("profiles")
        return profiles if isinstance(profiles, dict) else {}

    @property
    def current(self) -> str | None:
        value = self.data.get("current")
        return value if isinstance(value, str) else None

    def profile(self, name: str) -> dict[str, Any]:
        return dict(self.profiles.get(name) or {})

    def set(self, profile: str, key: str, value: Any) -> None:
        profiles = self.data.setdefault("profiles", {})
        profiles.setdefault(profile, {})[key] = value

    def unset(self, profile: str, key: str) -> bool:
        table = self.profiles.get(profile)
        if not table or key not in table:
            return False
        del table[key]
        return True

    def use(self, profile: str) -> None:
        self.data["current"] = profile

    def save(self) -> None:
        import tomli_w

        payload = tomli_w.dumps(self.data).encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


@dataclass(frozen=True, slots=True)
class Resolved:
    """Settings after precedence (flag > environment > profile > default, field by field)."""

    url: str
    api_key: str | None
    profile: str | None
    output: str | None
    template: str | None
    no_color: bool


def _first(*candidates: Any) -> str | None:
    """The first non-blank string among ``candidates``, stripped."""
    for value in candidates:
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _profile(
    flag: str | None, env: Mapping[str, str], path: Path | None
) -> tuple[str | None, dict[str, Any]]:
    """The chosen profile's name and table: ``--profile``, else ``TOPICS_PROFILE``, else the
    file's ``current``, else ``default`` when the file has profiles."""
    wanted = flag or env.get("TOPICS_PROFILE") or None
    cfg = ConfigFile.load(path or config_path(env))
    if wanted is not None and wanted not in cfg.profiles and (flag is not None or cfg.profiles):
        raise CliError(
            f"no profile {wanted!r} in {cfg.path}",
            hint="create it with: topics config set url URL --profile NAME",
        )
    name = wanted or cfg.current or (DEFAULT_PROFILE if cfg.profiles else None)
    return name, (cfg.profile(name) if name is not None else {})


def resolve(
    *,
    url: str | None,
    api_key: str | None,
    profile: str | None,
    env: Mapping[str, str] | None = None,
    path: Path | None = None,
) -> Resolved:
    """Apply flag > env > profile > default, field by field: the profile is always read, so
    an environment variable replaces only its own field, never the rest of the profile."""
    from topics_client import resolve_base_url

    env = os.environ if env is None else env
    name, table = _profile(profile, env, path)
    return Resolved(
        url=resolve_base_url(url, env, fallback=_text(table.get("url"))),
        api_key=_first(api_key, env.get("TOPICS_API_KEY"), table.get("api_key")),
        profile=name,
        output=_text(table.get("output")),
        template=_text(table.get("template")),
        no_color=bool(table.get("no_color", False)),
    )
