"""``client.queues``: lease queues — claim, ack, nack, extend and the ``/work`` push
stream (SPEC §10)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._base import Call, path
from .._config import DEFAULT_MAX_RECONNECTS, WATCHDOG_SLACK, WORK_HEARTBEAT_MS
from .._exceptions import NotFoundError
from .._http import httpx
from .._models.queues import AckResult, ClaimResult, ExtendResult, Job, NackResult
from .._sse import SHUTTING_DOWN, StreamErrorEvent, decode_error_frame, decode_job_frame
from .._twins import twin_of
from ._resource import AsyncResource, SyncResource, json_parser
from ._streaming import StreamTarget, aiter_stream, iter_stream

if TYPE_CHECKING:
    from .._client import AsyncClient, Client

__all__ = ["AsyncQueues", "AsyncWorkStream", "Queues", "WorkStream"]

WorkEvent = Job | StreamErrorEvent


def claim_call(topic: str, node: str, max: int | None, lease_ms: int | None) -> Call:
    body: dict[str, Any] = {"node": node}
    if max is not None:
        body["max"] = max
    if lease_ms is not None:
        body["lease_ms"] = lease_ms
    # A repeated claim would lease more jobs: retry only if the request surely never landed.
    return Call("POST", path("topics", topic, "claim"), body=body, repeatable=False)


def settle_call(
    op: str,
    topic: str,
    node: str,
    seqs: Sequence[int],
    lease_ids: Sequence[str] | None,
    extra: dict[str, Any],
) -> Call:
    if lease_ids is not None and len(lease_ids) != len(seqs):
        raise ValueError("lease_ids must have one entry per seq")
    body: dict[str, Any] = {"node": node, "seqs": list(seqs), **extra}
    if lease_ids is not None:
        body["lease_ids"] = list(lease_ids)
    return Call("POST", path("topics", topic, op), body=body)


def _jobs(jobs: Sequence[Job] | Sequence[int]) -> tuple[list[int], list[str] | None]:
    """Seqs plus fencing lease ids when whole :class:`Job` objects were passed."""
    if jobs and isinstance(jobs[0], Job):
        return [j.seq for j in jobs], [j.lease_id for j in jobs]  # type: ignore[union-attr]
    return [int(s) for s in jobs], None  # type: ignore[arg-type]


_claim_parser = json_parser(ClaimResult.from_wire)
_ack_parser = json_parser(AckResult.from_wire)
_nack_parser = json_parser(NackResult.from_wire)
_extend_parser = json_parser(ExtendResult.from_wire)


class _WorkSpec:
    """What the reconnect loop needs to read ``/work`` (see ``_streaming.StreamSpec``).

    A ``server_shutting_down`` frame is not handed out: the connection ends and the loop
    comes back after a backoff, as a watch does. ``stopped`` lets a worker end the stream.
    """

    def __init__(
        self,
        topic: str,
        params: dict[str, str | int],
        max_reconnects: int,
        stopped: Callable[[], bool] | None = None,
    ) -> None:
        self.topic = topic
        self.params = params
        self.max_reconnects = max_reconnects
        self.error: StreamErrorEvent | None = None
        self.response: httpx.Response | None = None
        self._stopped = stopped

    def target(self) -> StreamTarget:
        read = 2 * WORK_HEARTBEAT_MS / 1000.0 + WATCHDOG_SLACK
        return StreamTarget(path("topics", self.topic, "work"), read, self.params)

    def feed(self, event: str, data: str, event_id: str) -> WorkEvent | None:
        if event == "job":
            return decode_job_frame(data)
        if event == "error":
            error = decode_error_frame(data)
            if error.code == SHUTTING_DOWN:
                return None
            self.error = error
            return error
        return None

    def finished(self) -> bool:
        if self._stopped is not None and self._stopped():
            return True
        return self.error is not None and self.error.terminal

    def lost(self, error: NotFoundError) -> None:
        raise error

    def take_pending(self) -> Sequence[WorkEvent]:
        return ()

    def connected(self, response: httpx.Response | None) -> None:
        self.response = response


def work_spec(
    topic: str,
    node: str,
    max: int | None,
    lease_ms: int | None,
    max_reconnects: int,
    stopped: Callable[[], bool] | None = None,
) -> _WorkSpec:
    if not node:
        raise ValueError("node must be non-empty")
    params: dict[str, str | int] = {"node": node}
    if max is not None:
        params["max"] = max
    if lease_ms is not None:
        params["lease_ms"] = lease_ms
    path("topics", topic)  # validates the name
    return _WorkSpec(topic, params, max_reconnects, stopped)


class WorkStream:
    """Jobs pushed to this worker; a terminal error frame ends it (the event is yielded).
    A draining server's ``server_shutting_down`` frame is not: the stream reconnects.

    Leases delivered on a connection are released by the server when it drops, so after a
    reconnect jobs may come again: handlers must be idempotent (SPEC §10.1).
    """

    def __init__(self, client: Client, spec: _WorkSpec) -> None:
        self._iter = iter_stream(client, spec)

    def __iter__(self) -> Iterator[WorkEvent]:
        return self._iter

    def __next__(self) -> WorkEvent:
        return next(self._iter)

    def close(self) -> None:
        self._iter.close()  # type: ignore[attr-defined]

    def __enter__(self) -> WorkStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@twin_of(WorkStream)
class AsyncWorkStream:
    def __init__(self, client: AsyncClient, spec: _WorkSpec) -> None:
        self._iter = aiter_stream(client, spec)

    def __aiter__(self) -> AsyncIterator[WorkEvent]:
        return self._iter

    async def __anext__(self) -> WorkEvent:
        return await self._iter.__anext__()

    async def aclose(self) -> None:
        await self._iter.aclose()  # type: ignore[attr-defined]

    async def __aenter__(self) -> AsyncWorkStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class Queues(SyncResource):
    def claim(
        self, topic: str, *, node: str, max: int | None = None, lease_ms: int | None = None
    ) -> ClaimResult:
        return self._request(claim_call(topic, node, max, lease_ms), _claim_parser)

    def ack(
        self,
        topic: str,
        jobs: Sequence[Job] | Sequence[int],
        *,
        node: str,
        lease_ids: Sequence[str] | None = None,
    ) -> AckResult:
        """Ack by seq, or pass the :class:`Job` objects to fence on their lease ids."""
        seqs, fences = _jobs(jobs)
        call = settle_call("ack", topic, node, seqs, lease_ids or fences, {})
        return self._request(call, _ack_parser)

    def nack(
        self,
        topic: str,
        jobs: Sequence[Job] | Sequence[int],
        *,
        node: str,
        delay_ms: int | None = None,
        lease_ids: Sequence[str] | None = None,
    ) -> NackResult:
        seqs, fences = _jobs(jobs)
        extra = {} if delay_ms is None else {"delay_ms": delay_ms}
        call = settle_call("nack", topic, node, seqs, lease_ids or fences, extra)
        return self._request(call, _nack_parser)

    def extend(
        self,
        topic: str,
        jobs: Sequence[Job] | Sequence[int],
        *,
        node: str,
        lease_ms: int,
        lease_ids: Sequence[str] | None = None,
    ) -> ExtendResult:
        seqs, fences = _jobs(jobs)
        call = settle_call("extend", topic, node, seqs, lease_ids or fences, {"lease_ms": lease_ms})
        return self._request(call, _extend_parser)

    def work(
        self,
        topic: str,
        *,
        node: str,
        max: int | None = None,
        lease_ms: int | None = None,
        max_reconnects: int = DEFAULT_MAX_RECONNECTS,
    ) -> WorkStream:
        return WorkStream(self._client, work_spec(topic, node, max, lease_ms, max_reconnects))


@twin_of(Queues)
class AsyncQueues(AsyncResource):
    async def claim(
        self, topic: str, *, node: str, max: int | None = None, lease_ms: int | None = None
    ) -> ClaimResult:
        return await self._request(claim_call(topic, node, max, lease_ms), _claim_parser)

    async def ack(
        self,
        topic: str,
        jobs: Sequence[Job] | Sequence[int],
        *,
        node: str,
        lease_ids: Sequence[str] | None = None,
    ) -> AckResult:
        seqs, fences = _jobs(jobs)
        call = settle_call("ack", topic, node, seqs, lease_ids or fences, {})
        return await self._request(call, _ack_parser)

    async def nack(
        self,
        topic: str,
        jobs: Sequence[Job] | Sequence[int],
        *,
        node: str,
        delay_ms: int | None = None,
        lease_ids: Sequence[str] | None = None,
    ) -> NackResult:
        seqs, fences = _jobs(jobs)
        extra = {} if delay_ms is None else {"delay_ms": delay_ms}
        call = settle_call("nack", topic, node, seqs, lease_ids or fences, extra)
        return await self._request(call, _nack_parser)

    async def extend(
        self,
        topic: str,
        jobs: Sequence[Job] | Sequence[int],
        *,
        node: str,
        lease_ms: int,
        lease_ids: Sequence[str] | None = None,
    ) -> ExtendResult:
        seqs, fences = _jobs(jobs)
        call = settle_call("extend", topic, node, seqs, lease_ids or fences, {"lease_ms": lease_ms})
        return await self._request(call, _extend_parser)

    def work(
        self,
        topic: str,
        *,
        node: str,
        max: int | None = None,
        lease_ms: int | None = None,
        max_reconnects: int = DEFAULT_MAX_RECONNECTS,
    ) -> AsyncWorkStream:
        return AsyncWorkStream(self._client, work_spec(topic, node, max, lease_ms, max_reconnects))
