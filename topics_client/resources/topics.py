"""``client.topics``: lifecycle, write, diff, record delete and replay (SPEC §1–§7)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypedDict, Unpack

from .._base import Call, bool_param, decode_json, path
from .._config import DEFAULT_FOLLOW_WAIT_MS, DEFAULT_REPLAY_LIMIT
from .._http import httpx
from .._models.writes import DeleteRecordsResult, NewRecord, WriteResult
from .._twins import twin_of
from ._resource import AsyncResource, SyncResource, json_parser

if TYPE_CHECKING:  # replay and the topic/diff models load on first use: a put needs neither
    from .._models.records import DiffResult
    from .._models.topics import (
        TopicConfig,
        TopicDeleteResult,
        TopicPage,
        TopicPutResult,
        TopicState,
        TopicSummary,
    )
    from .._replay import AsyncReplay, GapPolicy, Replay, ReplayState


__all__ = ["AsyncTopics", "ConfigParams", "Match", "NodeFilter", "RecordInput", "Topics"]

RecordInput = NewRecord | Mapping[str, Any]
"""A record to write: :class:`NewRecord` or the wire mapping ``{data, tag?, node?, meta?}``."""
NodeFilter = str | Sequence[str]
Match = str | tuple[str, str, str] | Sequence[str]
"""Tag predicate (SPEC §7): ``("tag", "Eq", "x")``, ``("tag", "Glob", "p*")`` or a bare string."""


class ConfigParams(TypedDict, total=False):
    """Topic config fields (SPEC §1), all optional; see :class:`TopicConfig`."""

    type: Literal["log", "queue"]
    ttl_ms: int
    cap_records: int
    cap_bytes: int
    discard: Literal["old", "reject"]
    durable: bool
    durability: Literal["ephemeral", "memory", "disk", "fsync"]
    priority: int | None
    auto_priority: bool
    auto_create: bool
    idempotency_window_ms: int
    dedupe_node: bool
    lease_ms: int
    claim_jitter_ms: int
    max_deliveries: int
    dead_letter: str | None
    leases_durable: bool


# ------------------------------------------------------------------ pure call builders


def _config_body(
    config: TopicConfig | Mapping[str, Any] | None, overrides: Mapping[str, Any]
) -> dict[str, Any]:
    from .._models.topics import TopicConfig

    body = config.to_wire() if isinstance(config, TopicConfig) else dict(config or {})
    body.update(overrides)
    return body


def put_call(
    topic: str, config: TopicConfig | Mapping[str, Any] | None, overrides: Mapping[str, Any]
) -> Call:
    return Call("PUT", path("topics", topic), body=_config_body(config, overrides))


def get_call(topic: str, touch: bool | None) -> Call:
    params = None if touch is None else {"touch": bool_param(touch)}
    return Call("GET", path("topics", topic), params=params)


def list_call(
    prefix: str | None, page_size: int | None, cursor: str | None, touch: bool | None
) -> Call:
    params: dict[str, str | int | bool] = {}
    if prefix:
        params["prefix"] = prefix
    if page_size is not None:
        params["page_size"] = page_size
    if cursor:
        params["cursor"] = cursor
    if touch is not None:
        params["touch"] = bool_param(touch)
    return Call("GET", "/v0/topics", params=params or None)


def delete_call(topic: str, if_empty: bool) -> Call:
    params = {"if_empty": "true"} if if_empty else None
    return Call("DELETE", path("topics", topic), params=params)


def write_call(
    topic: str,
    records: Iterable[RecordInput],
    *,
    idempotency_key: str,
    node: str | None,
    create: bool | None,
    config: TopicConfig | Mapping[str, Any] | None,
    return_seqs: bool,
    disable_backpressure: bool | None,
) -> Call:
    wire = [r.to_wire() if isinstance(r, NewRecord) else r for r in records]
    body: dict[str, Any] = {"records": wire, "idempotency_key": idempotency_key}
    if node is not None:
        body["node"] = node
    if create is not None:
        body["create"] = create
    if config is not None:
        body["config"] = _config_body(config, {})
    if disable_backpressure is not None:
        body["disable_backpressure"] = disable_backpressure
    params = None if return_seqs else {"return_seqs": "false"}
    # The idempotency key makes a repeat harmless, so ambiguous failures may be retried.
    return Call("POST", path("topics", topic), params=params, body=body)


def diff_call(topic: str, from_seq: int, options: Mapping[str, Any]) -> Call:
    body: dict[str, Any] = {"from_seq": from_seq}
    body.update((k, v) for k, v in options.items() if v is not None)
    if isinstance(body.get("node"), tuple):
        body["node"] = list(body["node"])
    return Call("POST", path("topics", topic, "diff"), body=body, wait_ms=body.get("wait_ms", 0))


def delete_records_call(topic: str, before_seq: int | None, match: Match | None) -> Call:
    if before_seq is None and match is None:
        raise ValueError("delete_records needs before_seq and/or match")
    body: dict[str, Any] = {}
    if before_seq is not None:
        body["before_seq"] = before_seq
    if match is not None:
        body["match"] = match if isinstance(match, str) else list(match)
    # A tag-match delete re-run later could catch newer records: retry only when unsent.
    return Call("POST", path("topics", topic, "delete"), body=body, repeatable=match is None)


def _key(idempotency_key: str | None) -> str:
    return idempotency_key if idempotency_key is not None else uuid.uuid4().hex


def _write_parser(key: str) -> Callable[[httpx.Response], WriteResult]:
    return json_parser(lambda d: WriteResult.from_wire(d, key))


def _replay_state(
    topic: str,
    from_seq: int,
    until_seq: int | None,
    follow: bool,
    limit: int,
    wait_ms: int,
    on_gap: GapPolicy,
) -> ReplayState:
    from .._replay import ReplayState

    return ReplayState(
        topic,
        from_seq,
        until_seq=until_seq,
        follow=follow,
        limit=limit,
        wait_ms=wait_ms,
        on_gap=on_gap,
    )


def _put_parser(response: httpx.Response) -> TopicPutResult:
    from .._models.topics import TopicPutResult

    return TopicPutResult.from_wire(decode_json(response))


def _state_parser(response: httpx.Response) -> TopicState:
    from .._models.topics import TopicState

    return TopicState.from_wire(decode_json(response))


def _page_parser(response: httpx.Response) -> TopicPage:
    from .._models.topics import TopicPage

    return TopicPage.from_wire(decode_json(response))


def _delete_parser(response: httpx.Response) -> TopicDeleteResult:
    from .._models.topics import TopicDeleteResult

    return TopicDeleteResult.from_wire(decode_json(response))


def _diff_parser(response: httpx.Response) -> DiffResult:
    from .._models.records import DiffResult

    return DiffResult.from_wire(decode_json(response))


_delete_records_parser = json_parser(DeleteRecordsResult.from_wire)


# ------------------------------------------------------------------ sync


class Topics(SyncResource):
    def put(
        self,
        topic: str,
        config: TopicConfig | Mapping[str, Any] | None = None,
        **fields: Unpack[ConfigParams],
    ) -> TopicPutResult:
        """Create or reconfigure (SPEC §2.1: the body replaces the config over defaults).

        ``config`` (e.g. a ``TopicState.config``) is the base, keyword fields override it.
        """
        return self._request(put_call(topic, config, fields), _put_parser)

    def get(self, topic: str, *, touch: bool | None = None) -> TopicState:
        return self._request(get_call(topic, touch), _state_parser)

    def list_page(
        self,
        *,
        prefix: str | None = None,
        page_size: int | None = None,
        cursor: str | None = None,
        touch: bool | None = None,
    ) -> TopicPage:
        return self._request(list_call(prefix, page_size, cursor, touch), _page_parser)

    def list(
        self, *, prefix: str | None = None, page_size: int | None = None, touch: bool | None = None
    ) -> Iterator[TopicSummary]:
        """Every topic (sorted by name), following ``next_cursor`` page by page."""
        cursor: str | None = None
        while True:
            page = self.list_page(prefix=prefix, page_size=page_size, cursor=cursor, touch=touch)
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def delete(self, topic: str, *, if_empty: bool = False) -> TopicDeleteResult:
        return self._request(delete_call(topic, if_empty), _delete_parser)

    def write(
        self,
        topic: str,
        records: Iterable[RecordInput],
        *,
        node: str | None = None,
        idempotency_key: str | None = None,
        create: bool | None = None,
        config: TopicConfig | Mapping[str, Any] | None = None,
        return_seqs: bool = True,
        disable_backpressure: bool | None = None,
    ) -> WriteResult:
        """Append atomically. An ``idempotency_key`` is generated when none is given and
        reused on every retry, so a retried write appends at most once."""
        key = _key(idempotency_key)
        call = write_call(
            topic,
            records,
            idempotency_key=key,
            node=node,
            create=create,
            config=config,
            return_seqs=return_seqs,
            disable_backpressure=disable_backpressure,
        )
        return self._request(call, _write_parser(key))

    def append(
        self,
        topic: str,
        data: Any,
        *,
        tag: str | None = None,
        node: str | None = None,
        meta: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        create: bool | None = None,
        config: TopicConfig | Mapping[str, Any] | None = None,
    ) -> WriteResult:
        """Write one record."""
        return self.write(
            topic,
            [NewRecord(data, tag, None, meta)],
            node=node,
            idempotency_key=idempotency_key,
            create=create,
            config=config,
        )

    def diff(
        self,
        topic: str,
        *,
        from_seq: int = 0,
        limit: int | None = None,
        node: NodeFilter | None = None,
        include_tags: bool | None = None,
        include_meta: bool | None = None,
        wait_ms: int | None = None,
        max_batch_bytes: int | None = None,
    ) -> DiffResult:
        """Records with ``$seq > from_seq``; ``wait_ms`` long-polls (the read timeout is
        stretched to outlast it)."""
        options = {
            "limit": limit,
            "node": node,
            "include_tags": include_tags,
            "include_meta": include_meta,
            "wait_ms": wait_ms,
            "max_batch_bytes": max_batch_bytes,
        }
        return self._request(diff_call(topic, from_seq, options), _diff_parser)

    def delete_records(
        self, topic: str, *, before_seq: int | None = None, match: Match | None = None
    ) -> DeleteRecordsResult:
        return self._request(delete_records_call(topic, before_seq, match), _delete_records_parser)

    def seek(self, topic: str, since: int) -> int:
        """The cursor from which a replay yields everything stamped at or after ``since``
        (ms since epoch): just before the first such live record, found by binary search
        over ``$ts``. When no live record is older than ``since`` but records below the
        live log were evicted, nothing shows those were older, so the cursor is ``0`` and
        the first read from it reports them as a tombstone (a :class:`Gap`)."""
        from .._replay import seek_plan

        plan = seek_plan(since)
        try:
            step = next(plan)
            while True:
                if step is None:
                    answer: Any = self.get(topic, touch=False)
                else:
                    answer = self.diff(topic, from_seq=step, limit=1, include_meta=False)
                step = plan.send(answer)
        except StopIteration as stop:
            cursor: int = stop.value
            return cursor

    def replay(
        self,
        topic: str,
        *,
        from_seq: int = 0,
        since: int | None = None,
        until_seq: int | None = None,
        follow: bool = False,
        on_gap: GapPolicy = "yield",
        limit: int = DEFAULT_REPLAY_LIMIT,
        wait_ms: int = DEFAULT_FOLLOW_WAIT_MS,
        node: NodeFilter | None = None,
        include_tags: bool | None = None,
        include_meta: bool | None = None,
        max_batch_bytes: int | None = None,
    ) -> Replay:
        """Page through the topic from ``from_seq`` (or from time ``since``, ms since epoch)
        to the head, or forever with ``follow=True``; see :mod:`topics_client._replay`."""
        if since is not None and from_seq:
            raise ValueError("pass from_seq or since, not both")
        state = _replay_state(topic, from_seq, until_seq, follow, limit, wait_ms, on_gap)
        options = {
            "node": node,
            "include_tags": include_tags,
            "include_meta": include_meta,
            "max_batch_bytes": max_batch_bytes,
        }
        from .._replay import Replay

        return Replay(self, state, since_ms=since, diff_options=options)


# ------------------------------------------------------------------ async


@twin_of(Topics)
class AsyncTopics(AsyncResource):
    async def put(
        self,
        topic: str,
        config: TopicConfig | Mapping[str, Any] | None = None,
        **fields: Unpack[ConfigParams],
    ) -> TopicPutResult:
        return await self._request(put_call(topic, config, fields), _put_parser)

    async def get(self, topic: str, *, touch: bool | None = None) -> TopicState:
        return await self._request(get_call(topic, touch), _state_parser)

    async def list_page(
        self,
        *,
        prefix: str | None = None,
        page_size: int | None = None,
        cursor: str | None = None,
        touch: bool | None = None,
    ) -> TopicPage:
        return await self._request(list_call(prefix, page_size, cursor, touch), _page_parser)

    async def list(
        self, *, prefix: str | None = None, page_size: int | None = None, touch: bool | None = None
    ) -> AsyncIterator[TopicSummary]:
        cursor: str | None = None
        while True:
            page = await self.list_page(
                prefix=prefix, page_size=page_size, cursor=cursor, touch=touch
            )
            for item in page.items:
                yield item
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def delete(self, topic: str, *, if_empty: bool = False) -> TopicDeleteResult:
        return await self._request(delete_call(topic, if_empty), _delete_parser)

    async def write(
        self,
        topic: str,
        records: Iterable[RecordInput],
        *,
        node: str | None = None,
        idempotency_key: str | None = None,
        create: bool | None = None,
        config: TopicConfig | Mapping[str, Any] | None = None,
        return_seqs: bool = True,
        disable_backpressure: bool | None = None,
    ) -> WriteResult:
        key = _key(idempotency_key)
        call = write_call(
            topic,
            records,
            idempotency_key=key,
            node=node,
            create=create,
            config=config,
            return_seqs=return_seqs,
            disable_backpressure=disable_backpressure,
        )
        return await self._request(call, _write_parser(key))

    async def append(
        self,
        topic: str,
        data: Any,
        *,
        tag: str | None = None,
        node: str | None = None,
        meta: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        create: bool | None = None,
        config: TopicConfig | Mapping[str, Any] | None = None,
    ) -> WriteResult:
        return await self.write(
            topic,
            [NewRecord(data, tag, None, meta)],
            node=node,
            idempotency_key=idempotency_key,
            create=create,
            config=config,
        )

    async def diff(
        self,
        topic: str,
        *,
        from_seq: int = 0,
        limit: int | None = None,
        node: NodeFilter | None = None,
        include_tags: bool | None = None,
        include_meta: bool | None = None,
        wait_ms: int | None = None,
        max_batch_bytes: int | None = None,
    ) -> DiffResult:
        options = {
            "limit": limit,
            "node": node,
            "include_tags": include_tags,
            "include_meta": include_meta,
            "wait_ms": wait_ms,
            "max_batch_bytes": max_batch_bytes,
        }
        return await self._request(diff_call(topic, from_seq, options), _diff_parser)

    async def delete_records(
        self, topic: str, *, before_seq: int | None = None, match: Match | None = None
    ) -> DeleteRecordsResult:
        return await self._request(
            delete_records_call(topic, before_seq, match), _delete_records_parser
        )

    async def seek(self, topic: str, since: int) -> int:
        """The cursor from which a replay yields everything stamped at or after ``since``
        (ms since epoch): just before the first such live record, found by binary search
        over ``$ts``. When no live record is older than ``since`` but records below the
        live log were evicted, nothing shows those were older, so the cursor is ``0`` and
        the first read from it reports them as a tombstone (a :class:`Gap`)."""
        from .._replay import seek_plan

        plan = seek_plan(since)
        try:
            step = next(plan)
            while True:
                if step is None:
                    answer: Any = await self.get(topic, touch=False)
                else:
                    answer = await self.diff(topic, from_seq=step, limit=1, include_meta=False)
                step = plan.send(answer)
        except StopIteration as stop:
            cursor: int = stop.value
            return cursor

    def replay(
        self,
        topic: str,
        *,
        from_seq: int = 0,
        since: int | None = None,
        until_seq: int | None = None,
        follow: bool = False,
        on_gap: GapPolicy = "yield",
        limit: int = DEFAULT_REPLAY_LIMIT,
        wait_ms: int = DEFAULT_FOLLOW_WAIT_MS,
        node: NodeFilter | None = None,
        include_tags: bool | None = None,
        include_meta: bool | None = None,
        max_batch_bytes: int | None = None,
    ) -> AsyncReplay:
        if since is not None and from_seq:
            raise ValueError("pass from_seq or since, not both")
        state = _replay_state(topic, from_seq, until_seq, follow, limit, wait_ms, on_gap)
        options = {
            "node": node,
            "include_tags": include_tags,
            "include_meta": include_meta,
            "max_batch_bytes": max_batch_bytes,
        }
        from .._replay import AsyncReplay

        return AsyncReplay(self, state, since_ms=since, diff_options=options)
