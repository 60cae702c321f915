"""Raw-response access: ``client.with_raw_response.topics.get("t")`` → ``RawResponse``.

The raw views are the normal resources with one flag set, so every method keeps its exact
signature; only the return type changes from ``T`` to ``RawResponse[T]``
(:func:`raw_method` is that typed re-labelling). Error answers still raise.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, ParamSpec, TypeVar, cast

from ._exceptions import APIResponseError
from ._http import httpx

__all__ = ["RawResponse", "parse_response"]

T = TypeVar("T")
P = ParamSpec("P")
Parser = Callable[[httpx.Response], T]


def parse_response(response: httpx.Response, parse: Parser[T]) -> T:
    """Run a parser; a body of the wrong shape becomes :class:`APIResponseError`."""
    try:
        return parse(response)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, APIResponseError):
            raise
        raise APIResponseError(
            f"unexpected response body for {response.request.method} "
            f"{response.request.url.path}: {exc!r}",
            response=response,
        ) from exc


class RawResponse(Generic[T]):
    """The HTTP answer plus a lazy :meth:`parse` into the usual typed result."""

    __slots__ = ("_parse", "_parsed", "http_response", "retries_taken")

    def __init__(self, response: httpx.Response, parse: Parser[T], retries_taken: int) -> None:
        self.http_response = response
        self.retries_taken = retries_taken
        self._parse = parse
        self._parsed: list[T] = []

    @property
    def status_code(self) -> int:
        return self.http_response.status_code

    @property
    def headers(self) -> httpx.Headers:
        return self.http_response.headers

    @property
    def content(self) -> bytes:
        return self.http_response.content

    def parse(self) -> T:
        if not self._parsed:
            self._parsed.append(parse_response(self.http_response, self._parse))
        return self._parsed[0]

    def __repr__(self) -> str:
        return f"<RawResponse [{self.status_code}] {self.http_response.request.url.path}>"


def raw_method(method: Callable[P, T]) -> Callable[P, RawResponse[T]]:
    """Re-type a method of a raw-mode resource (it already returns ``RawResponse``)."""
    return cast(Callable[P, RawResponse[T]], method)


def async_raw_method(
    method: Callable[P, Awaitable[T]],
) -> Callable[P, Awaitable[RawResponse[T]]]:
    return cast(Callable[P, Awaitable[RawResponse[T]]], method)
