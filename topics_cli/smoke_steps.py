"""The steps of ``topics smoke``: an end-to-end check of a running deployment.

Each step is a function of a :class:`Workspace` that raises on failure. Steps make what they
need through the workspace, which remembers every topic and router it created so
:meth:`Workspace.cleanup` removes them whatever happened (a failed step, Ctrl-C). Only public
``/v0`` endpoints are used, so the check runs unchanged against any topics server.

A step the server refuses for a documented reason is *skipped*, not failed: a 403 (the key
lacks the scope or prefix) or a 404/405/501 for a route the server does not offer.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from topics_client import Client

__all__ = ["STEPS", "StepResult", "Workspace", "junit_xml", "run_step"]


class StepSkipped(Exception):
    """The server refused the step for a documented reason."""


class StepFailed(AssertionError):
    """The server answered, but not what the contract says."""


@dataclass
class Workspace:
    """What the steps share: the client, names, a timeout, and what to clean up."""

    client: Client
    base_url: str
    api_key: str | None
    prefix: str
    timeout: float
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    topics: list[str] = field(default_factory=list)
    routers: list[str] = field(default_factory=list)
    written: dict[str, Any] = field(default_factory=dict)
    unreachable: bool = False

    def name(self, role: str) -> str:
        return f"{self.prefix}{self.run_id}-{role}"

    def topic(self, role: str, **config: Any) -> str:
        """A throwaway topic (created once per role; removed by :meth:`cleanup`)."""
        name = self.name(role)
        if name not in self.topics:
            self._creating(self.topics, name, lambda: self.client.topics.put(name, config))
        return name

    def router(self, role: str, source: str, dest: str) -> str:
        """A throwaway router from ``source`` to ``dest`` (removed by :meth:`cleanup`)."""
        name = self.name(role)
        self._creating(
            self.routers, name, lambda: self.client.routers.put(name, source=source, dest=dest)
        )
        return name

    @staticmethod
    def _creating(made: list[str], name: str, create: Callable[[], object]) -> None:
        """Remember ``name`` for cleanup unless the server answered that it made nothing
        (an error status); after a timeout or a dropped connection it may exist."""
        import topics_client as tc

        try:
            create()
        except tc.APIError:
            raise
        except BaseException:
            made.append(name)
            raise
        made.append(name)

    def cleanup(self) -> list[str]:
        """Delete every router, then every topic this run created; the problems, as text."""
        import topics_client as tc

        problems: list[str] = []
        if self.unreachable:
            left = [*self.routers, *self.topics]
            return [f"not cleaned up (server unreachable): {', '.join(left)}"] if left else []
        for router in reversed(self.routers):
            try:
                self.client.routers.delete(router)
            except tc.RouterNotFoundError:
                pass
            except tc.TopicsError as exc:
                problems.append(f"router {router}: {exc}")
        for topic in reversed(self.topics):
            try:
                self.client.topics.delete(topic)
            except tc.TopicNotFoundError:
                pass
            except tc.TopicsError as exc:
                problems.append(f"topic {topic}: {exc}")
        self.routers.clear()
        self.topics.clear()
        return problems

    def deadline(self) -> float:
        return time.monotonic() + self.timeout


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise StepFailed(message)


# ------------------------------------------------------------------ steps


def step_health(ws: Workspace) -> str:
    health = ws.client.health()
    _expect(health.status == "ok", f"health status is {health.status!r}, not 'ok'")
    return f"version {health.version}"


def step_ready(ws: Workspace) -> str:
    ready = ws.client.ready()
    _expect(ready.status == "ready", f"ready status is {ready.status!r}")
    return f"{ready.topics:,} topics"


def step_create(ws: Workspace) -> str:
    name = ws.topic("main")
    state = ws.client.topics.get(name)
    _expect(state.topic == name, f"created {name!r} but the server answered for {state.topic!r}")
    return name


def step_write(ws: Workspace) -> str:
    topic = ws.topic("main")
    key = f"{ws.name('write')}-key"
    records = [{"data": {"smoke": ws.run_id, "n": n}} for n in (1, 2)]
    first = ws.client.topics.write(topic, records, idempotency_key=key)
    again = ws.client.topics.write(topic, records, idempotency_key=key)
    _expect(not first.deduped, "the first write was reported as a duplicate")
    _expect(again.deduped, "the retried write (same idempotency key) was appended again")
    _expect(
        again.seqs == first.seqs,
        f"the retry answered seqs {list(again.seqs)}, the write {list(first.seqs)}",
    )
    ws.written[topic] = (first.seqs, [r["data"] for r in records])
    return f"seqs {first.first_seq}..{first.last_seq}, retry deduplicated"


def step_read(ws: Workspace) -> str:
    topic = ws.topic("main")
    if topic not in ws.written:
        step_write(ws)
    seqs, data = ws.written[topic]
    page = ws.client.topics.diff(topic, from_seq=seqs[0] - 1, limit=len(seqs))
    got = [(r.seq, r.data) for r in page.records]
    _expect(got == list(zip(seqs, data, strict=True)), f"read back {got}, wrote {list(data)}")
    _expect(page.tombstone is None, "read back a tombstone from a fresh topic")
    return f"{len(got)} records"


def step_watch(ws: Workspace) -> str:
    import anyio

    from topics_client import AsyncClient, CaughtUpEvent, RecordsEvent

    topic = ws.topic("watch")
    marker = {"smoke": ws.run_id, "watch": True}

    async def watch_one() -> float:
        async with AsyncClient(ws.base_url, api_key=ws.api_key) as client:
            with anyio.fail_after(ws.timeout):
                sent = 0.0
                async for event in client.watch.stream({topic: None}):
                    if isinstance(event, CaughtUpEvent) and not sent:
                        sent = time.perf_counter()
                        await client.topics.append(topic, marker)
                    elif isinstance(event, RecordsEvent) and any(
                        r.data == marker for r in event.records
                    ):
                        return time.perf_counter() - sent
        raise StepFailed("the watch stream ended before the live record arrived")

    try:
        latency = anyio.run(watch_one)
    except TimeoutError:
        raise StepFailed(f"no live record on the watch within {ws.timeout:g} s") from None
    return f"live record delivered in {latency * 1000:.1f} ms"


def step_router(ws: Workspace) -> str:
    source = ws.topic("router-src")
    dest = ws.topic("router-dst")
    ws.router("router", source, dest)
    written = ws.client.topics.append(source, {"smoke": ws.run_id, "routed": True}, node="smoke")
    start = time.perf_counter()
    deadline = ws.deadline()
    cursor = 0
    while time.monotonic() < deadline:
        wait_ms = max(1, int((deadline - time.monotonic()) * 1000))
        page = ws.client.topics.diff(dest, from_seq=cursor, wait_ms=min(wait_ms, 1000))
        for record in page.records:
            if record.data == {"smoke": ws.run_id, "routed": True}:
                _expect(record.node == "smoke", f"the copy's $node is {record.node!r}, not 'smoke'")
                elapsed = (time.perf_counter() - start) * 1000
                return f"seq {written.first_seq} copied in {elapsed:.1f} ms, $node kept"
        cursor = page.next_from_seq
    raise StepFailed(f"the router's copy did not reach {dest} within {ws.timeout:g} s")


def step_tombstone(ws: Workspace) -> str:
    topic = ws.topic("capped", cap_records=3)
    ws.client.topics.write(topic, [{"data": n} for n in range(6)])
    page = ws.client.topics.diff(topic, from_seq=0)
    tomb = page.tombstone
    _expect(tomb is not None, "a cursor behind a capped topic's eviction got no tombstone")
    assert tomb is not None
    _expect(
        (tomb.gap_from, tomb.gap_to) == (1, 3),
        f"the tombstone covers {tomb.gap_from}..{tomb.gap_to}, expected 1..3",
    )
    _expect(tomb.reason == "cap", f"the tombstone's reason is {tomb.reason!r}, not 'cap'")
    return "gap 1..3 reported (cap)"


def step_lease(ws: Workspace) -> str:
    topic = ws.topic("queue", type="queue")
    ws.client.topics.append(topic, {"smoke": ws.run_id, "job": 1})
    claim = ws.client.queues.claim(topic, node="smoke", max=1)
    _expect(len(claim.jobs) == 1, f"claimed {len(claim.jobs)} jobs from a queue holding 1")
    ack = ws.client.queues.ack(topic, list(claim.jobs), node="smoke")
    _expect(ack.acked == 1, f"acked {ack.acked} of 1 job")
    again = ws.client.queues.claim(topic, node="smoke", max=1)
    _expect(not again.jobs, "an acked job was delivered again")
    return "claimed and acked 1 job"


STEPS: dict[str, tuple[Callable[[Workspace], str], str]] = {
    "health": (step_health, "GET /v0/health answers ok"),
    "ready": (step_ready, "GET /v0/ready answers ready"),
    "create": (step_create, "create a throwaway topic"),
    "write": (step_write, "write with an idempotency key; the retry is deduplicated"),
    "read": (step_read, "read the records back"),
    "watch": (step_watch, "a watch receives a live record"),
    "router": (step_router, "a router's copy arrives with $node kept"),
    "tombstone": (step_tombstone, "a capped topic reports a tombstone to a lagging cursor"),
    "lease": (step_lease, "lease queue: claim and ack a job"),
}


# ------------------------------------------------------------------ running and reporting


@dataclass
class StepResult:
    name: str
    status: str  # passed | failed | skipped
    seconds: float
    detail: str

    def to_wire(self) -> dict[str, Any]:
        return {
            "step": self.name,
            "status": self.status,
            "seconds": round(self.seconds, 4),
            "detail": self.detail,
        }


def run_step(name: str, ws: Workspace) -> StepResult:
    """Run one step; its outcome, never an exception (Ctrl-C still propagates)."""
    import topics_client as tc

    func = STEPS[name][0]
    if ws.unreachable:
        return StepResult(name, "skipped", 0.0, "not run: the server is unreachable")
    start = time.perf_counter()
    try:
        detail = func(ws)
        status = "passed"
    except StepFailed as exc:
        status, detail = "failed", str(exc)
    except tc.PermissionDeniedError as exc:
        status, detail = "skipped", f"the API key may not do this ({exc.code}: {exc.message})"
    except tc.APIError as exc:
        if _not_offered(exc):
            status, detail = "skipped", f"the server does not offer this ({exc})"
        else:
            status, detail = "failed", str(exc)
    except tc.APIConnectionError as exc:
        ws.unreachable = True
        status, detail = "failed", str(exc)
    except tc.TopicsError as exc:
        status, detail = "failed", str(exc)
    return StepResult(name, status, time.perf_counter() - start, detail)


def _not_offered(exc: Any) -> bool:
    """A 404 for a route (not for a topic or router), a 405 or a 501."""
    if exc.status in (405, 501):
        return True
    return bool(exc.status == 404 and exc.code not in ("topic_not_found", "router_not_found"))


def select_steps(only: list[str], skip: list[str]) -> Iterator[str]:
    for name in STEPS:
        if (not only or name in only) and name not in skip:
            yield name


def junit_xml(results: list[StepResult], base_url: str, seconds: float) -> bytes:
    """A JUnit XML report (one test case per step) for CI systems that show test results."""
    from xml.etree import ElementTree as ET

    suite = ET.Element(
        "testsuite",
        name="topics smoke",
        tests=str(len(results)),
        failures=str(sum(r.status == "failed" for r in results)),
        skipped=str(sum(r.status == "skipped" for r in results)),
        errors="0",
        time=f"{seconds:.3f}",
    )
    ET.SubElement(ET.SubElement(suite, "properties"), "property", name="url", value=base_url)
    for result in results:
        case = ET.SubElement(
            suite,
            "testcase",
            classname="topics.smoke",
            name=result.name,
            time=f"{result.seconds:.3f}",
        )
        if result.status == "failed":
            ET.SubElement(case, "failure", message=result.detail).text = result.detail
        elif result.status == "skipped":
            ET.SubElement(case, "skipped", message=result.detail)
        else:
            ET.SubElement(case, "system-out").text = result.detail
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True)) + b"\n"
