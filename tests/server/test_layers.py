"""The server's layers stay layered (issue 16): checked over the modules' imports.

``engine`` knows no wire (neither ``api`` nor ``sse``) and no concrete store;
``storage`` imports nothing from ``engine``; neither package imports the client
or the CLI.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "topics_server"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).glob("*.py"))


@pytest.mark.parametrize("path", _modules("engine"), ids=lambda p: p.name)
def test_engine_knows_no_wire_and_no_concrete_store(path: Path) -> None:
    for module in _imports(path):
        assert not module.startswith(("topics_server.api", "topics_server.sse")), module
        assert module not in ("topics_server.storage.sqlite", "topics_server.storage.memory")
        assert not module.startswith(("topics_client", "topics_cli")), module


@pytest.mark.parametrize("path", _modules("storage"), ids=lambda p: p.name)
def test_storage_imports_nothing_above_it(path: Path) -> None:
    for module in _imports(path):
        assert not module.startswith(
            ("topics_server.engine", "topics_server.api", "topics_server.sse")
        ), module
        assert not module.startswith(("topics_client", "topics_cli")), module


def test_the_layer_lists_are_not_empty() -> None:
    assert len(_modules("engine")) >= 5 and len(_modules("storage")) >= 4
