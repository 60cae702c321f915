"""Import httpx without its command-line extra.

``httpx/__init__`` tries ``from ._main import main``; when ``click`` and ``rich`` are
installed (the CLI depends on both) that pulls in rich, pygments and click: about half of
httpx's import time, paid by every ``topics put``. A ``None`` entry in ``sys.modules`` makes
that import fail, so httpx falls back to its stub ``main``; the entry is removed again so a
later explicit ``import httpx._main`` still works. Only ``httpx.main`` (the console entry
point of the ``httpx`` command, which we never call) is affected.
"""

from __future__ import annotations

import sys

if "httpx" not in sys.modules and "httpx._main" not in sys.modules:
    sys.modules["httpx._main"] = None  # type: ignore[assignment]
    try:
        import httpx
    finally:
        if sys.modules.get("httpx._main", 0) is None:
            del sys.modules["httpx._main"]

import httpx as httpx

__all__ = ["httpx"]
