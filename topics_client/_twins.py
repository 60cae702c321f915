"""Sync/async twins share their docstrings: each is written once, on the sync member.

``@twin_of(Topics)`` on ``AsyncTopics`` gives every async member without a docstring the
one of its sync twin (``aclose`` ↔ ``close``, ``__aiter__`` ↔ ``__iter__``…), so ``help()``
shows the same text on both. ``tests/client/test_twins.py`` holds every pair to the same
names, parameters, defaults and docstrings.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from types import FunctionType
from typing import TypeVar

__all__ = ["SYNC_NAME", "twin_of"]

C = TypeVar("C", bound=type)

SYNC_NAME = {
    "__aiter__": "__iter__",
    "__anext__": "__next__",
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "aclose": "close",
}
"""Async member name → the sync twin's, where the protocols name them differently."""


def twin_of(sync_cls: type) -> Callable[[C], C]:
    def apply(async_cls: C) -> C:
        for name, member in vars(async_cls).items():
            if not isinstance(member, FunctionType | property | cached_property):
                continue
            if member.__doc__ or (name.startswith("__") and name not in SYNC_NAME):
                continue
            source = getattr(sync_cls, SYNC_NAME.get(name, name), None)
            if source is not None and source.__doc__:
                member.__doc__ = source.__doc__
        return async_cls

    return apply
