"""A small driver for LazyFS, the FUSE file system used to simulate power loss.

LazyFS (github.com/dsrhaslab/lazyfs) keeps every write in its own page cache until the
writer fsyncs it; ``lazyfs::clear-cache`` on its command FIFO throws away everything not yet
fsynced, which is what a power cut does to a disk's volatile cache. ``/work/shared/lazyfs``
builds it (``setup.sh``) into ``~/.cache/topics-lazyfs/``; this module finds the binary there
(or at ``$TOPICS_LAZYFS_BIN``), mounts it over a backing folder, sends ``clear-cache`` and
waits for ``finished::clear-cache`` on the completion FIFO, and unmounts / remounts.

One mount per :class:`LazyFS`. Every mount records its owner (pid and start time) next to the
mount point; a later :meth:`LazyFS.mount` lazily unmounts any LazyFS mount left behind by an
owner that is gone, so a crashed run never wedges the next one. LazyFS exits on its own once
unmounted, so no process is ever killed by name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

COMMAND_CLEAR = b"lazyfs::clear-cache\n"
FINISHED_CLEAR = b"finished::clear-cache"
MOUNT_NAME = "topics-lazyfs-mnt"  # every mount point this driver makes has this name
OWNER_FILE = "lazyfs.owner"  # beside the mount point: "<pid> <start time>" of the test process
FSTYPE = "fuse.lazyfs"


def binary() -> Path:
    """Where the LazyFS binary is expected: ``$TOPICS_LAZYFS_BIN`` or setup.sh's cache."""
    explicit = os.environ.get("TOPICS_LAZYFS_BIN")
    if explicit:
        return Path(explicit)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "topics-lazyfs" / "lazyfs" / "build" / "lazyfs"


def unavailable() -> str | None:
    """Why LazyFS cannot be used on this machine, or ``None`` when it can."""
    if not sys.platform.startswith("linux"):
        return "LazyFS needs Linux (FUSE)"
    if os.geteuid() != 0:
        return "LazyFS tests need root (to mount FUSE and read its FIFOs)"
    if not os.path.exists("/dev/fuse") or not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "/dev/fuse is missing or not accessible"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is not installed (Debian package fuse3)"
    path = binary()
    if not (path.is_file() and os.access(path, os.X_OK)):
        return (
            f"LazyFS is not built ({path} missing): run /work/shared/lazyfs/setup.sh with a "
            "clone of github.com/dsrhaslab/lazyfs, or set TOPICS_LAZYFS_BIN"
        )
    return None


def _mounts() -> list[tuple[str, str]]:
    """(mount point, fs type) of every mount this process can see."""
    out: list[tuple[str, str]] = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as info:
        for line in info:
            fields = line.split()
            sep = fields.index("-")
            point = fields[4].encode().decode("unicode_escape")  # \040 for spaces etc.
            out.append((point, fields[sep + 1]))
    return out


def is_mounted(point: Path) -> bool:
    return any(p == str(point) and t == FSTYPE for p, t in _mounts())


def _start_time(pid: int) -> str | None:
    """A process's start time in clock ticks (field 22 of /proc/PID/stat), if it exists."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _owner_tag() -> str:
    return f"{os.getpid()} {_start_time(os.getpid())}"


def _owner_alive(tag: str) -> bool:
    parts = tag.split()
    if len(parts) != 2 or not parts[0].isdigit():
        return False
    return _start_time(int(parts[0])) == parts[1]


def _fusermount(point: Path, lazy: bool = False) -> bool:
    args = ["fusermount3", "-u", *(["-z"] if lazy else []), str(point)]
    return subprocess.run(args, capture_output=True, check=False).returncode == 0


def reap_stale() -> list[str]:
    """Lazily unmount LazyFS mounts made by this driver whose owner process is gone.

    Returns the mount points it unmounted. Mounts of a live owner (a concurrent run) are left
    alone.
    """
    reaped = []
    for point, fstype in _mounts():
        if fstype != FSTYPE or Path(point).name != MOUNT_NAME:
            continue
        try:
            tag = (Path(point).parent / OWNER_FILE).read_text()
        except OSError:
            tag = ""
        if not _owner_alive(tag) and _fusermount(Path(point), lazy=True):
            reaped.append(point)
    return reaped


def _no_core_dumps() -> None:  # pragma: no cover - runs in the child
    # LazyFS aborts on exit (its FIFO thread is never joined); that is harmless, a core is not.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


class LazyFSError(RuntimeError):
    pass


class LazyFS:
    """LazyFS mounted at ``workdir/topics-lazyfs-mnt`` over ``workdir/backing``."""

    def __init__(self, workdir: Path, cache_size: str = "256mb") -> None:
        self.workdir = workdir
        self.root = workdir / "backing"
        self.mount_point = workdir / MOUNT_NAME
        self.config = workdir / "lazyfs.toml"
        self.command_fifo = workdir / "lazyfs.cmd.fifo"
        self.done_fifo = workdir / "lazyfs.done.fifo"
        self.log_path = workdir / "lazyfs.log"
        self.cache_size = cache_size
        self.proc: subprocess.Popen[bytes] | None = None
        self._done_fd: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def mount(self, timeout: float = 20.0) -> LazyFS:
        if self.proc is not None:
            raise LazyFSError("already mounted")
        reap_stale()
        if is_mounted(self.mount_point):  # ours, left by an earlier mount that died
            _fusermount(self.mount_point, lazy=True)
        for folder in (self.root, self.mount_point):
            folder.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            "[faults]\n"
            f'fifo_path="{self.command_fifo}"\n'
            f'fifo_path_completed="{self.done_fifo}"\n'
            "[cache]\n"
            "apply_eviction=false\n"
            "[cache.simple]\n"
            f'custom_size="{self.cache_size}"\n'
            "blocks_per_page=1\n"
            "[filesystem]\n"
            "log_all_operations=false\n"
            'logfile=""\n'
        )
        for fifo in (self.command_fifo, self.done_fifo):
            if fifo.exists() and not fifo.is_fifo():
                fifo.unlink()
            if not fifo.exists():
                os.mkfifo(fifo, 0o600)
        # LazyFS opens the completion FIFO write-only when it starts, which blocks until a
        # reader exists: open our end first, and keep it for the life of the mount.
        self._done_fd = os.open(self.done_fifo, os.O_RDONLY | os.O_NONBLOCK)
        (self.workdir / OWNER_FILE).write_text(_owner_tag())
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(binary()),
                    str(self.mount_point),
                    "--config-path",
                    # relative to cwd: LazyFS takes a config path containing "-o" (as in
                    # /tmp/pytest-of-root) for a FUSE option and falls back to its default
                    self.config.name,
                    "-o",
                    "modules=subdir",
                    "-o",
                    f"subdir={self.root}",
                    "-f",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                preexec_fn=_no_core_dumps,
                start_new_session=True,  # a ^C to the test does not tear the mount down mid-use
            )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.unmount()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        """Mounted, and the fault worker is reading its command FIFO."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            if is_mounted(self.mount_point):
                try:  # succeeds only once LazyFS holds the command FIFO open
                    os.close(os.open(self.command_fifo, os.O_WRONLY | os.O_NONBLOCK))
                    return
                except OSError as exc:
                    if exc.errno != errno.ENXIO:
                        raise
            if time.monotonic() > deadline:
                raise LazyFSError(f"LazyFS did not come up within {timeout}s:\n{self.log()}")
            time.sleep(0.02)

    def unmount(self, timeout: float = 20.0) -> None:
        """Unmount (lazily if it stays busy) and wait for LazyFS to exit."""
        deadline = time.monotonic() + timeout
        proc, self.proc = self.proc, None
        while is_mounted(self.mount_point):
            if _fusermount(self.mount_point):
                break
            if time.monotonic() > deadline - timeout / 2:  # still busy: detach it
                _fusermount(self.mount_point, lazy=True)
                break
            time.sleep(0.05)
        if proc is not None:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()  # our own child, by pid
                proc.wait(5)
        if self._done_fd is not None:
            os.close(self._done_fd)
            self._done_fd = None
        with contextlib.suppress(OSError):
            (self.workdir / OWNER_FILE).unlink()

    def remount(self) -> None:
        self.unmount()
        self.mount()

    def __enter__(self) -> LazyFS:
        return self.mount()

    def __exit__(self, *exc: object) -> None:
        self.unmount()

    # -- faults ------------------------------------------------------------------------------

    def clear_cache(self, timeout: float = 30.0) -> float:
        """Drop every byte not fsynced; returns once LazyFS reports it done (seconds taken)."""
        if self.proc is None or self._done_fd is None:
            raise LazyFSError("not mounted")
        started = time.monotonic()
        self._drain()
        fd = os.open(self.command_fifo, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, COMMAND_CLEAR)
        finally:
            os.close(fd)
        got = b""
        poller = select.poll()
        poller.register(self._done_fd, select.POLLIN)
        while FINISHED_CLEAR not in got:
            self._check_alive()
            if time.monotonic() - started > timeout:
                raise LazyFSError(f"no {FINISHED_CLEAR!r} within {timeout}s:\n{self.log()}")
            for _fd, event in poller.poll(200):
                if event & select.POLLIN:
                    got += os.read(self._done_fd, 4096)
                elif event & select.POLLHUP:
                    raise LazyFSError(f"LazyFS closed its completion FIFO:\n{self.log()}")
        return time.monotonic() - started

    def _drain(self) -> None:
        assert self._done_fd is not None
        with contextlib.suppress(BlockingIOError):
            while os.read(self._done_fd, 4096):
                pass

    def _check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise LazyFSError(f"LazyFS is not running (exit {code}):\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""
