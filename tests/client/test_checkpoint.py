from __future__ import annotations

import os
from pathlib import Path

import pytest

from topics_client import load_checkpoint, save_checkpoint


def test_roundtrip_and_missing(tmp_path: Path) -> None:
    path = tmp_path / "cursors.json"
    assert load_checkpoint(path) == {}
    save_checkpoint(path, {"b": 2, "a": 1})
    save_checkpoint(path, {"a": 3, "b": 4})
    assert load_checkpoint(path) == {"a": 3, "b": 4}
    assert [p.name for p in tmp_path.iterdir()] == ["cursors.json"]  # no temp files left


def test_failed_save_keeps_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "cursors.json"
    save_checkpoint(path, {"a": 1})

    def broken(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError):
        save_checkpoint(path, {"a": 2})
    monkeypatch.undo()
    assert load_checkpoint(path) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["cursors.json"]


def test_fsyncs_file_and_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    save_checkpoint(tmp_path / "c.json", {"t": 9})
    assert len(synced) == 2


def test_rejects_foreign_content(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"a": "x"}')
    with pytest.raises(ValueError):
        load_checkpoint(path)


def test_file_is_one_line_ending_in_a_newline(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    save_checkpoint(path, {"b": 2, "a": 1})
    assert path.read_bytes() == b'{"a":1,"b":2}\n'  # `cat` leaves the prompt on its own line
    save_checkpoint(path, {})
    assert path.read_bytes() == b"{}\n"


@pytest.mark.parametrize("text", ['{"a":1,"b":2}', '{"a":1,"b":2}\n', '{"a": 1, "b": 2}\r\n'])
def test_reads_files_with_or_without_the_newline(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.json"
    path.write_bytes(text.encode())
    assert load_checkpoint(path) == {"a": 1, "b": 2}


@pytest.mark.parametrize("text", ["garbage\n", "[1, 2]\n", '{"a": true}\n', ""])
def test_not_a_checkpoint_names_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"c\.json: not a checkpoint"):
        load_checkpoint(path)
