"""The reference server for ``topics serve`` and ``topics demo``: part of the ``server``
extra (``pip install 'topics-py[server]'``), imported only by these two commands."""

from __future__ import annotations

import importlib
from types import ModuleType

from topics_cli.errors import EXIT_API, CliError

__all__ = ["SERVER_EXTRA", "require_server"]

SERVER_EXTRA = "pip install 'topics-py[server]'"
_SERVER_PACKAGES = frozenset(
    {"starlette", "uvicorn", "uvloop", "httptools", "sortedcontainers", "topics_server"}
)


def require_server(command: str) -> ModuleType:
    """Import the server (then plain imports of it are free), or fail with one line naming
    what to install (exit 1) when the ``server`` extra is missing."""
    try:
        return importlib.import_module("topics_server.server")
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing not in _SERVER_PACKAGES:
            raise
        raise CliError(
            f"topics {command} needs the server extra ({missing} is not installed): {SERVER_EXTRA}",
            code=EXIT_API,
        ) from None
