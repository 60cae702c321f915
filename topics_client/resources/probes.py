"""Health, readiness and metrics (SPEC §11); exposed as ``client.health()`` etc."""

from __future__ import annotations

from .._base import Call
from .._models.probes import Health, Metrics, Ready
from .._twins import twin_of
from ._resource import AsyncResource, SyncResource, json_parser, text_parser

__all__ = ["AsyncProbes", "Probes"]

# Probes answer "now": a 503 from /ready is the answer, not something to wait out.
_HEALTH = Call("GET", "/v0/health")
_READY = Call("GET", "/v0/ready", max_retries=0)
_METRICS_TEXT = Call("GET", "/v0/metrics", accept="text/plain")
_METRICS_JSON = Call("GET", "/v0/metrics", accept="application/json")

_health_parser = json_parser(Health.from_wire)
_ready_parser = json_parser(Ready.from_wire)
_metrics_parser = json_parser(Metrics.from_wire)


class Probes(SyncResource):
    def health(self) -> Health:
        return self._request(_HEALTH, _health_parser)

    def ready(self) -> Ready:
        """``Ready`` or :class:`NotReadyError` / :class:`ShuttingDownError` (no retries)."""
        return self._request(_READY, _ready_parser)

    def metrics(self) -> str:
        """Prometheus text exposition."""
        return self._request(_METRICS_TEXT, text_parser)

    def metrics_json(self) -> Metrics:
        return self._request(_METRICS_JSON, _metrics_parser)


@twin_of(Probes)
class AsyncProbes(AsyncResource):
    async def health(self) -> Health:
        return await self._request(_HEALTH, _health_parser)

    async def ready(self) -> Ready:
        return await self._request(_READY, _ready_parser)

    async def metrics(self) -> str:
        return await self._request(_METRICS_TEXT, text_parser)

    async def metrics_json(self) -> Metrics:
        return await self._request(_METRICS_JSON, _metrics_parser)
