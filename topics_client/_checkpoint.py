"""Atomic cursor checkpoints: ``{topic: seq}`` maps in a small JSON file.

``save_checkpoint`` writes a temp file in the same directory, fsyncs it, renames it over
the target and fsyncs the directory, so a crash leaves either the old or the new map,
never a torn one. The file is one line of JSON ending in a newline (people ``cat`` it);
``load_checkpoint`` accepts it with or without that newline, and returns ``{}`` when there
is no file yet.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping

import orjson

__all__ = ["load_checkpoint", "save_checkpoint"]

StrPath = str | os.PathLike[str]


def save_checkpoint(path: StrPath, cursors: Mapping[str, int]) -> None:
    import tempfile

    target = os.fspath(path)
    payload = orjson.dumps(
        {str(k): int(v) for k, v in cursors.items()},
        option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE,
    )
    directory = os.path.dirname(target) or "."
    name = os.path.basename(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def _fsync_dir(directory: str) -> None:
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def load_checkpoint(path: StrPath) -> dict[str, int]:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return {}
    try:
        value = orjson.loads(data)  # JSON: a trailing newline (or none) is fine
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value.values()
    ):
        raise ValueError(f"{os.fspath(path)}: not a checkpoint ({{topic: seq}} JSON object)")
    return {str(k): v for k, v in value.items()}
