"""``topics top``: the whole server at a glance, live (or one snapshot for scripts).

The numbers come from :mod:`topics_cli.top_model` (pure), the screen from
:mod:`topics_cli.top_render`; this module does the I/O: the requests of each refresh
(:class:`Poller`), the key reader and the live loop (:func:`run_live`), the snapshot
(:func:`snapshot`).

A refresh costs the server: the topic listing (``page_size`` 1000, so one request per
1,000 topics), ``/v0/metrics``, the router listing, and at most ``DETAIL_BUDGET`` small
GETs (state of topics on screen whose config is not known yet or is 30 s old, queues every
5 s, routers every 5 s, the oldest record's ``$ts`` of a TTL topic on screen when its
``earliest_seq`` moved, at most every 10 s). Never a diff per topic per tick.

Seam for ``--checkpoints`` (consumer risk): :func:`run_live` and :func:`snapshot` take a
``risk`` probe (:data:`topics_cli.top_model.RiskProbe`); given one, each refresh (in the
refresher thread, never while drawing) calls it with every topic's write rate, and the view
grows an AT RISK column with its labels, highlighting the rows it flags ``danger``; JSON rows
get an ``at_risk`` field. E.g. ``risk=lambda rates: {r.cursor.topic: AtRisk(...) for r in
consumers.assess(client, cursors, rates=rates, warn_before_ms=...)}``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from topics_cli.completions import choices
from topics_cli.context import get_app
from topics_cli.errors import EXIT_CODES_HELP, CliError
from topics_cli.group import typer_app

if TYPE_CHECKING:
    from topics_cli.output import Sink
    from topics_cli.top_model import RiskProbe, Snapshot, TopModel
    from topics_client import Client

HELP = """Live view of the whole server: topics by write rate, routers, queues.

One row per topic (type, durability, head, records, bytes, rec/s with a sparkline of the
last minute, earliest seq, how full the cap is, the oldest record's age against the TTL);
then routers (forwarding lag when the server reports a router cursor, records/s, state:
running, paused by a full destination, stalled) and queues (ready, in flight, delayed,
dead-lettered, jobs done per second). Figures a server does not report show as "–".

Keys: q (or Ctrl-C) quit, s next sort, r/h/n/f sort by rate/head/name/fill, p or space
pause. The screen shows the top rows by the sort key that fit; resize at will.

Not on a terminal, with -o json|jsonl, or with --once: one snapshot and exit. Rates need
two samples, so a snapshot takes two listings --interval apart (--interval 0: one listing,
rates null). It shows the top --rows topics (default 20; 0 = all, one state GET each).

Cheap for the server: a refresh is the topic listing (one request per 1,000 topics),
/v0/metrics, the router listing and at most 16 small requests (configs of the rows on
screen, queue counters, router states, the oldest record of a TTL topic on screen at most
every 10 s); never a read per topic per refresh. --sort fill learns every topic's config
that way over successive refreshes (a snapshot fetches them all).

--checkpoints adds an AT RISK column from the cursors `topics lag` reads (checkpoint files
or globs, or TOPIC=SEQ): per topic, how many known readers and the soonest loss; a row
whose reader already lost records, or will within --warn-before, is highlighted. Each
refresh then also reads those topics' states and one record per cursor.

\b
Examples:
  topics top
  topics top --sort fill --prefix 'tenant42:'
  topics top --once -o json | jq '.topics[] | select(.fill > 0.9) | .topic'
  topics top --once --rows 0 -o jsonl > snapshot.jsonl
  topics top --checkpoints 'workers/*.cp' --warn-before 30m
"""

DETAIL_BUDGET = 16
"""Extra per-topic/per-router GETs one live refresh may make."""
HEALTH_EVERY_S = 30.0
SNAPSHOT_ROWS = 20
SNAPSHOT_DETAIL_CAP = 100
"""A snapshot GETs the state of at most this many queues and routers (each) beyond its rows."""
PAGE = 1000


app = typer_app()
T = TypeVar("T")


def _optional(call: Callable[[], T]) -> T | None:
    """``call()``, or ``None`` when the server answers it with an error other than 401 (a
    probe or listing this server or this key does not offer: its figures show as "–")."""
    import topics_client as tc

    try:
        return call()
    except tc.AuthenticationError:
        raise
    except tc.APIError:
        return None


class Poller:
    """The requests of one refresh, fed into a :class:`TopModel`.

    The model is only touched under ``lock`` (the live view draws from another thread);
    requests are made outside it.
    """

    def __init__(
        self,
        client: Client,
        model: TopModel,
        lock: threading.Lock | None = None,
        risk: RiskProbe | None = None,
    ) -> None:
        self.client = client
        self.model = model
        self.lock = lock or threading.Lock()
        self.risk = risk
        self._health_at: float | None = None

    def refresh(self, visible: list[str], budget: int | None, *, learn_all: bool = False) -> None:
        """Listing + metrics + routers, then details (``budget=None``: all that are due)."""
        from topics_cli.top_model import ListedLike, RouterInfo, parse_metrics

        client, model = self.client, self.model
        now = time.monotonic()
        if self._health_at is None or now - self._health_at >= HEALTH_EVERY_S:
            health = _optional(client.health)
            with self.lock:
                model.version = (health.version or None) if health is not None else None
            self._health_at = now
        entries: list[ListedLike] = []
        cursor: str | None = None
        started = time.monotonic()
        while True:
            page = client.topics.list_page(
                prefix=model.prefix or None, page_size=PAGE, cursor=cursor
            )
            entries.extend(page.items)
            cursor = page.next_cursor
            if not cursor:
                break
        # the listing's pages span some time: stamp it at its middle
        middle = (started + time.monotonic()) / 2
        metrics = parse_metrics(_optional(client.metrics) or "")
        routers: list[RouterInfo] = []
        cursor = None
        while True:
            rpage = _optional(
                functools.partial(client.routers.list_page, page_size=PAGE, cursor=cursor)
            )
            if rpage is None:
                break
            routers.extend(
                RouterInfo(r.router, r.source, r.dest, r.forwarded_total) for r in rpage.items
            )
            cursor = rpage.next_cursor
            if not cursor:
                break
        with self.lock:
            model.add_metrics(metrics)  # first: it names the queues among the entries
            model.add_listing(entries, middle)
            model.add_routers(routers, time.monotonic())
        self.details(visible, budget, learn_all=learn_all)
        self.probe_risk()

    def probe_risk(self) -> None:
        """Ask the risk probe (if any) about the topics just listed; its requests are made
        outside the lock."""
        if self.risk is None:
            return
        with self.lock:
            rates = self.model.rates()
        found = self.risk(rates)
        with self.lock:
            self.model.set_risk(found)

    def details(self, visible: list[str], budget: int | None, *, learn_all: bool) -> None:
        model = self.model
        rounds = 0
        while True:
            with self.lock:
                want = model.wanted_details(
                    visible,
                    budget if budget is not None else 1_000_000,
                    learn_all=learn_all,
                    cap=None if budget is not None else SNAPSHOT_DETAIL_CAP,
                )
            if not want:
                return
            for kind, name in want:
                self._detail(kind, name)
            rounds += 1
            if budget is not None or rounds > 2:
                return

    def _detail(self, kind: str, name: str) -> None:
        import topics_client as tc
        from topics_cli.top_model import Detail

        model, now, lock = self.model, time.monotonic(), self.lock
        try:
            if kind == "router":
                r = self.client.routers.get(name)
                cursor = r.extra.get("source_cursor", r.extra.get("cursor"))
                state, reason = r.extra.get("state"), r.extra.get("reason")
                with lock:
                    model.add_router_state(
                        name,
                        state if isinstance(state, str) else None,
                        reason if isinstance(reason, str) else None,
                        cursor if isinstance(cursor, int) else None,
                        now,
                        r.forwarded_total,
                    )
            elif kind == "topic":
                s = self.client.topics.get(name, touch=False)
                c, q = s.config, s.queue
                detail = Detail(
                    type=s.type,
                    durability=c.durability,
                    cap_records=c.cap_records,
                    cap_bytes=c.cap_bytes,
                    ttl_ms=c.ttl_ms,
                    ready=q.ready if q else None,
                    in_flight=q.in_flight if q else None,
                    dead_lettered=q.dead_lettered if q else None,
                    fetched_at=now,
                )
                with lock:
                    model.add_detail(name, detail)
            else:  # the oldest live record's $ts (TTL topics)
                with lock:
                    earliest = model.earliest_of(name)
                if earliest is None:
                    return
                d = self.client.topics.diff(
                    name, from_seq=max(0, earliest - 1), limit=1, include_meta=False
                )
                ts = d.records[0].ts if d.records else None
                with lock:
                    model.add_oldest(name, d.records[0].seq if d.records else earliest, ts, now)
        except tc.TopicNotFoundError:
            with lock:
                model.forget_topic(name)
        except tc.NotFoundError:
            pass


def _snapshot(model: TopModel, rows: int | None) -> Snapshot:
    return model.snapshot(rows=rows, wall_ms=int(time.time() * 1000))


def snapshot(
    client: Client,
    model: TopModel,
    *,
    interval: float,
    rows: int | None,
    risk: RiskProbe | None = None,
) -> Snapshot:
    """Two samples ``interval`` apart (one when it is 0), every detail of the rows shown,
    then the risk probe (if any) with the rates measured."""
    poller = Poller(client, model)
    poller.refresh([], 0)
    if interval > 0:
        time.sleep(interval)
        poller.refresh([], 0)
    learn_all = model.sort == "fill"
    shown = [r.topic for r in _snapshot(model, rows).topics]
    poller.details(shown, None, learn_all=learn_all)
    if learn_all:  # the order may change once every fill is known
        shown = [r.topic for r in _snapshot(model, rows).topics]
        poller.details(shown, None, learn_all=False)
    poller.risk = risk
    poller.probe_risk()
    return _snapshot(model, rows)


def emit_snapshot(sink: Sink, snap: Snapshot, url: str) -> None:
    if sink.mode == "jsonl":
        import orjson

        lines = [{"kind": "server", "url": url, **snap.header.to_json()}]
        lines += [{"kind": "topic", **r.to_json(snap.with_risk)} for r in snap.topics]
        lines += [{"kind": "router", **r.to_json()} for r in snap.routers]
        lines += [{"kind": "queue", **q.to_json()} for q in snap.queues]
        sink.write_raw("".join(orjson.dumps(line).decode() + "\n" for line in lines))
        return
    value = {"url": url, **snap.to_json()}

    def pretty(console: Any) -> None:
        from topics_cli.top_render import render

        console.print(render(snap, url=url, footer=False, width=console.size.width))

    sink.result(value, pretty)


# -- live view ----------------------------------------------------------------------------


class KeyReader:
    """Puts each key pressed on ``fd`` into ``events`` from a thread, with the terminal in
    cbreak mode (no echo, no line buffering; Ctrl-C still raises KeyboardInterrupt). The
    terminal's settings are restored on every way out of the ``with`` block."""

    def __init__(self, fd: int, events: queue.SimpleQueue[tuple[str, str]]) -> None:
        self.fd = fd
        self.events = events
        self._stop = threading.Event()
        self._saved: list[Any] | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> KeyReader:
        import termios
        import tty

        if os.isatty(self.fd):
            self._saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd, termios.TCSANOW)
            self._thread = threading.Thread(target=self._run, name="topics-top-keys", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        import select

        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self.fd], [], [], 0.1)
                if not ready:
                    continue
                data = os.read(self.fd, 64)
            except (OSError, ValueError):
                return
            if not data:
                return
            text = data.decode(errors="ignore")
            if text.startswith("\x1b"):
                continue  # arrows and other escape sequences: not ours
            for ch in text:
                self.events.put(("key", ch))

    def __exit__(self, *exc: object) -> None:
        import termios

        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)
        if self._saved is not None:
            with contextlib.suppress(termios.error, OSError):
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)


@contextlib.contextmanager
def _on_resize(events: queue.SimpleQueue[tuple[str, str]]) -> Iterator[None]:
    """SIGWINCH → a redraw event (``SimpleQueue.put`` is safe in a signal handler)."""
    previous = signal.signal(signal.SIGWINCH, lambda *_: events.put(("resize", "")))
    try:
        yield
    finally:
        signal.signal(signal.SIGWINCH, previous)


_SORT_KEYS = {"r": "rate", "h": "head", "n": "name", "f": "fill"}


def run_live(
    client: Client,
    model: TopModel,
    *,
    url: str,
    interval: float,
    no_color: bool,
    rows: int | None = None,
    risk: RiskProbe | None = None,
) -> None:
    """The full-screen view until q or Ctrl-C.

    A refresher thread makes the requests every ``interval`` (a fixed cadence: a slow
    refresh is followed by the next at once) while this thread draws and answers keys, so a
    key never waits for a refresh. The model is shared under one lock.
    """
    from rich.console import Console
    from rich.live import Live

    console = Console(no_color=no_color, highlight=False)
    events: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
    lock = threading.Lock()
    poller = Poller(client, model, lock, risk)
    view = _View(model, lock, console, url, rows)

    poller.refresh([], 0)  # the first refresh fails loudly (exit code)
    with lock:
        view.draw()  # which rows fit: their details come first
    poller.details(view.visible, DETAIL_BUDGET, learn_all=model.sort == "fill")
    refresher = _Refresher(poller, view, events, interval)
    with (
        KeyReader(sys.stdin.fileno(), events),
        _on_resize(events),
        Live(
            view.draw(),
            console=console,
            screen=True,
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=False,
        ) as live,
        refresher,
    ):
        while True:
            try:
                kind, key = events.get(timeout=1.0)  # ages move on even when idle
            except queue.Empty:
                kind, key = "tick", ""
            if kind == "failed":
                raise refresher.crash or RuntimeError(key)
            if kind == "error":
                view.status = f"refresh failed: {key} (retrying)"
            elif kind == "refreshed":
                view.status = ""
            elif kind == "key" and view.on_key(key.lower(), refresher):
                return
            with lock:
                screen = view.draw()
            live.update(screen, refresh=True)


class _View:
    """What the screen shows: sort (in the model), pause, status line, rows that fit."""

    def __init__(
        self,
        model: TopModel,
        lock: threading.Lock,
        console: Any,
        url: str,
        rows: int | None,
    ) -> None:
        self.model, self.lock, self.console, self.url = model, lock, console, url
        self.rows = rows
        self.paused = False
        self.status = ""
        self.visible: list[str] = []

    def draw(self) -> Any:
        """The screen at the console's current size (call with the lock held)."""
        from topics_cli.top_render import fit, render

        width, height = self.console.size
        layout = fit(height, *self.model.counts())
        snap = self.model.snapshot(
            rows=self.rows or layout.topics,
            wall_ms=int(time.time() * 1000),
            max_routers=layout.routers,
            max_queues=layout.queues,
        )
        self.visible = [r.topic for r in snap.topics]
        status = (self.status + ("  PAUSED" if self.paused else "")).strip()
        return render(snap, url=self.url, status=status, width=width)

    def on_key(self, key: str, refresher: _Refresher) -> bool:
        """Apply one key; True to leave."""
        from topics_cli.top_model import SORT_KEYS

        if key == "q":
            return True
        if key in ("p", " "):
            self.paused = not self.paused
            refresher.pause(self.paused)
        elif key == "s":
            with self.lock:
                i = SORT_KEYS.index(self.model.sort)
                self.model.sort = SORT_KEYS[(i + 1) % len(SORT_KEYS)]
        elif key in _SORT_KEYS:
            with self.lock:
                self.model.sort = _SORT_KEYS[key]
        return False


class _Refresher:
    """The thread that refreshes every ``interval`` and reports each one as an event."""

    def __init__(
        self,
        poller: Poller,
        view: _View,
        events: queue.SimpleQueue[tuple[str, str]],
        interval: float,
    ) -> None:
        self.poller, self.view, self.events, self.interval = poller, view, events, interval
        self.crash: BaseException | None = None
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._thread = threading.Thread(target=self._run, name="topics-top-refresh", daemon=True)

    def __enter__(self) -> _Refresher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._running.set()
        self._thread.join(0.5)  # a request in flight is abandoned with the process

    def pause(self, paused: bool) -> None:
        if paused:
            self._running.clear()
        else:
            self._running.set()

    def _run(self) -> None:
        import topics_client as tc

        next_at = time.monotonic() + self.interval
        while True:
            self._running.wait()
            if self._stop.wait(max(0.0, next_at - time.monotonic())) or self._stop.is_set():
                return
            if not self._running.is_set():
                continue
            model = self.poller.model
            with self.poller.lock:
                visible, learn_all = list(self.view.visible), model.sort == "fill"
            try:
                self.poller.refresh(visible, DETAIL_BUDGET, learn_all=learn_all)
                self.events.put(("refreshed", ""))
            except tc.TopicsError as exc:
                self.events.put(("error", str(exc)))
            except Exception as exc:  # a bug: end the view and report it
                if not self._stop.is_set():
                    self.crash = exc
                    self.events.put(("failed", repr(exc)))
                return
            next_at = max(next_at + self.interval, time.monotonic())


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


@app.command("top", help=HELP, epilog=EXIT_CODES_HELP)
def top(
    ctx: typer.Context,
    interval: Annotated[
        str, typer.Option("--interval", "-i", help="Time between refreshes (e.g. 1s, 500ms).")
    ] = "1s",
    sort: Annotated[
        str,
        typer.Option(
            "--sort",
            help="rate | head | name | fill.",
            case_sensitive=False,
            autocompletion=choices("rate", "head", "name", "fill"),
        ),
    ] = "rate",
    prefix: Annotated[
        str, typer.Option("--prefix", help="Only topics whose name starts with this.")
    ] = "",
    once: Annotated[
        bool, typer.Option("--once", help="One snapshot, then exit (the default off a terminal).")
    ] = False,
    rows: Annotated[
        int | None,
        typer.Option(
            "--rows",
            "-n",
            min=0,
            help="Topic rows to show (default: what fits the screen; 20 in a snapshot; 0 = all).",
            show_default=False,
        ),
    ] = None,
    checkpoints: Annotated[
        list[str] | None,
        typer.Option(
            "--checkpoints",
            help="Known readers' cursors (checkpoint files, globs, TOPIC=SEQ); repeatable.",
        ),
    ] = None,
    warn_before: Annotated[
        str,
        typer.Option("--warn-before", help="Highlight readers that lose records within this."),
    ] = "30m",
) -> None:
    from topics_cli.options import duration_ms
    from topics_cli.top_model import SORT_KEYS, TopModel

    interval_s = duration_ms(interval, "--interval") / 1000
    sort = sort.lower()
    if sort not in SORT_KEYS:
        raise typer.BadParameter(
            f"{sort!r} is not one of {', '.join(SORT_KEYS)}", param_hint="--sort"
        )
    ap = get_app(ctx)
    sink = ap.sink
    live = not once and sink.mode == "pretty" and _isatty(sys.stdout) and _isatty(sys.stdin)
    if live and interval_s <= 0:
        raise CliError("--interval must be above 0 for the live view")
    warn_ms = duration_ms(warn_before, "--warn-before")
    client = ap.client(max_retries=0, timeout=30.0)
    risk = _checkpoint_probe(client, checkpoints, warn_ms) if checkpoints else None
    model = TopModel(sort=sort, prefix=prefix)
    if live:
        # Ctrl-C is the usual way out (exit 0): the terminal is already restored by then
        with contextlib.suppress(KeyboardInterrupt):
            run_live(
                client,
                model,
                url=ap.base_url,
                interval=interval_s,
                no_color=sink.no_color,
                rows=rows,
                risk=risk,
            )
        return
    limit = SNAPSHOT_ROWS if rows is None else (rows or None)
    snap = snapshot(client, model, interval=interval_s, rows=limit, risk=risk)
    emit_snapshot(sink, snap, ap.base_url)


def _checkpoint_probe(client: Client, specs: list[str], warn_before_ms: int) -> RiskProbe:
    """The ``--checkpoints`` column: :func:`topics_cli.consumers.assess` on the cursors,
    with the rates ``top`` measured, summed up per topic."""
    from topics_cli.consumers import assess, load_cursors
    from topics_cli.positions import format_duration
    from topics_cli.top_model import AtRisk

    cursors = load_cursors(specs)  # a bad spec is a usage error before the screen opens

    def probe(rates: Mapping[str, float | None]) -> Mapping[str, AtRisk]:
        by_topic: dict[str, list[Any]] = {}
        for risk in assess(client, cursors, rates=rates, warn_before_ms=warn_before_ms):
            by_topic.setdefault(risk.cursor.topic, []).append(risk)
        found: dict[str, AtRisk] = {}
        for topic, risks in by_topic.items():
            readers = f"{len(risks)} reader{'s' if len(risks) != 1 else ''}"
            lost = [r for r in risks if r.status == "lost"]
            soon = [r.falloff_ms for r in risks if r.falloff_ms is not None and r.status != "lost"]
            if lost:
                count = sum(r.lost.missed_estimate for r in lost if r.lost is not None)
                found[topic] = AtRisk(f"{readers}: {len(lost)} LOST ~{count}", danger=True)
            elif soon:
                first = min(soon)
                danger = any(r.status == "at_risk" for r in risks)
                found[topic] = AtRisk(f"{readers}: loses in {format_duration(first)}", danger)
            elif any(r.status == "missing" for r in risks):
                found[topic] = AtRisk(f"{readers}: topic missing", danger=True)
            else:
                found[topic] = AtRisk(f"{readers}: safe")
        return found

    return probe
