"""Run the reference server under uvicorn (uvloop + httptools).

We bind the listening socket ourselves so ``TOPICS_PORT=0`` works: the port
the OS picked is known before serving, and ``TOPICS_PORT_FILE`` gets it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

from topics_server.app import create_app
from topics_server.connections import default_max_connections, protocol_class, raise_fd_limit
from topics_server.engine.engine import Engine
from topics_server.settings import Settings, SettingsError
from topics_server.storage.base import Store, StoreCorrupt
from topics_server.storage.failpoints import Failpoints
from topics_server.storage.memory import MemoryStore
from topics_server.storage.sqlite import DataDirLocked, SqliteStore, data_dir_lock

__all__ = ["check_bind_safety", "run", "serve"]

SWITCH_INTERVAL_S = 0.0005


def _is_loopback(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def check_bind_safety(settings: Settings) -> None:
    """Refuse a non-loopback bind without API keys (SPEC §12.4)."""
    if settings.api_keys.strip() or settings.allow_insecure_no_auth:
        return
    if not _is_loopback(settings.host):
        raise SettingsError(
            f"refusing to listen on {settings.host} without TOPICS_API_KEYS; "
            "set keys, or TOPICS_ALLOW_INSECURE_NO_AUTH=1 to accept an open server"
        )


def _resolve_host(host: str, port: int) -> None:
    """A host that names no address is the commonest start-up typo: say so first."""
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise SettingsError(
            f"host {host!r} does not resolve to an address to listen on "
            f"(TOPICS_HOST / --host): {exc.strerror}"
        ) from None


def _bind(settings: Settings) -> socket.socket:
    """Resolve the host and bind the port (not yet listening: connections are refused
    until the server is ready to take them)."""
    _resolve_host(settings.host, settings.port)
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        sock.close()
        where = f"{settings.host}:{settings.port}"
        raise SettingsError(f"cannot listen on {where}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def prepare_data_dir(data_dir: Path) -> None:
    """Create the data directory (and its parents) or say in one line why it cannot be."""
    where = f"data directory {str(data_dir)!r} (TOPICS_DATA_DIR / --data-dir)"
    if data_dir.exists() and not data_dir.is_dir():
        raise SettingsError(f"{where} is not a directory")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a parent is a file
        raise SettingsError(f"{where} cannot be created: a parent is not a directory") from None
    except OSError as exc:
        raise SettingsError(f"{where} cannot be created: {exc.strerror}") from None
    if not os.access(data_dir, os.W_OK | os.X_OK):
        raise SettingsError(f"{where} is not writable")


def _write_port_file(path: Path, hostport: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(hostport + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        raise SettingsError(f"cannot write TOPICS_PORT_FILE {path}: {exc.strerror}") from None


class _Server(uvicorn.Server):
    """uvicorn's server, telling the engine first when a shutdown starts."""

    def __init__(self, config: uvicorn.Config, engine: Engine) -> None:
        super().__init__(config)
        self.engine = engine

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM through the event loop itself.

        uvicorn's default installs plain ``signal.signal`` handlers; with uvloop
        and a second thread (the store's writer) a signal then sometimes goes
        unnoticed until the next wake-up. The loop's own handlers never miss one,
        and a clean shutdown exits 0 instead of re-raising the signal.
        """
        if threading.current_thread() is not threading.main_thread():
            yield  # embedded (e.g. `topics demo`): the host program owns the signals
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.engine.begin_shutdown()
        super().handle_exit(sig, frame)
        self._captured_signals.clear()  # shut down cleanly: exit 0, no re-raise


async def serve(settings: Settings, announce: bool = True) -> None:
    """Check the cheap things first (the host resolves and the port binds, the keys a
    non-loopback bind needs, the data directory), then open the store and serve."""
    sock = _bind(settings)
    try:
        check_bind_safety(settings)
        prepare_data_dir(settings.data_dir)
        with data_dir_lock(settings.data_dir):
            await _serve(settings, Engine(settings, _open_store(settings)), sock, announce)
    except (DataDirLocked, StoreCorrupt) as exc:
        raise SettingsError(str(exc)) from None
    finally:
        sock.close()


def _open_store(settings: Settings) -> Store:
    """``TOPICS_STORE=memory`` keeps everything in the process (nothing survives a
    restart: for ephemeral-only servers and fast tests); SQLite otherwise."""
    failpoints = Failpoints.from_env()
    kind = os.environ.get("TOPICS_STORE", "sqlite").strip().lower() or "sqlite"
    if kind == "memory":
        return MemoryStore(failpoints)
    if kind != "sqlite":
        raise SettingsError(f"TOPICS_STORE must be sqlite or memory, not {kind!r}")
    return SqliteStore(settings.data_dir, failpoints)


async def _serve(settings: Settings, engine: Engine, sock: socket.socket, announce: bool) -> None:
    fatal: list[str] = []
    server: _Server | None = None

    def on_fatal(message: str) -> None:
        fatal.append(message)
        if server is not None:
            server.should_exit = True

    app = create_app(settings, engine, on_fatal=on_fatal)
    fd_limit = raise_fd_limit()
    max_connections = settings.max_connections
    if max_connections is None:
        max_connections = default_max_connections(fd_limit)
    sock.listen(2048)
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        app,
        loop="none",
        http=protocol_class(settings.header_timeout_ms, settings.body_timeout_ms, max_connections),
        lifespan="on",
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
        server_header=False,
        # X-Forwarded-For/-Proto are believed only from the proxies an operator names
        # in uvicorn's FORWARDED_ALLOW_IPS; without it, no per-request layer for them
        proxy_headers="FORWARDED_ALLOW_IPS" in os.environ,
    )
    server = _Server(config, engine)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    settle = asyncio.create_task(_settle_heap(engine))
    while not server.started and not task.done():
        await asyncio.sleep(0.005)
    if server.started:
        hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if settings.port_file is not None:
            try:
                _write_port_file(settings.port_file, hostport)
            except SettingsError:
                server.should_exit = True
                await task
                raise
        if announce:
            for warning in settings.warnings:
                print(f"topics serve: warning: {warning}", file=sys.stderr, flush=True)
            # the base URL, as clients take it (they add /v0 themselves)
            url = f"http://{hostport}"
            print(
                f"topics serving {url} (data: {settings.data_dir}); "
                f"point clients at it with: export TOPICS_URL={url}",
                file=sys.stderr,
                flush=True,
            )
    await task
    settle.cancel()
    if fatal:
        raise SettingsError(fatal[0])


async def _settle_heap(engine: Engine) -> None:
    """Once the state is rebuilt, take what start-up made out of the collector's sight.

    A full collection walks every tracked object: the modules, classes and functions
    of the server and its libraries, and the recovered state, on the event loop. That
    was a 30 ms stall here, every time one ran. Frozen objects are never walked again.
    """
    while not engine.ready:
        await asyncio.sleep(0.05)
    gc.collect()
    gc.freeze()


def _configure_logging(level: str) -> None:
    """The server's own lines (``topics_server`` logger) on stderr, at uvicorn's level:
    ``--log-level debug`` shows the routine ones too (e.g. a client leaving early)."""
    logger = logging.getLogger("topics_server")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    with contextlib.suppress(ValueError):
        logger.setLevel(level.upper())


def run(settings: Settings) -> int:
    """Serve until SIGINT/SIGTERM; returns the process exit code."""
    _configure_logging(settings.log_level)
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - platforms without uvloop
        runner = asyncio.run
    # The store's writer thread needs the GIL back the moment a commit returns;
    # with the default 5 ms switch interval it queues behind request handling
    # and every group commit stretches to ~6 ms under load.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        runner(serve(settings))
    except SettingsError as exc:
        print(f"topics serve: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0
