"""Exceptions → one line on stderr, a hint, and an exit code.

Exit codes::

    0    ok
    1    API or server error (the line carries the server's error.code)
    2    usage error (bad flag, position, input line)
    3    gap found (data lost before a cursor; tombstone check/scan, --on-gap fail)
    4    not found (topic, router)
    5    authentication or permission (401/403)
    6    cannot connect to the server
    7    a checkpoint could not be saved mid-run (disk full, directory gone): the records
         written so far stay written, the file keeps its last good cursors
    130  interrupted (Ctrl-C; any checkpoint is saved first)
    143  terminated (SIGTERM; handled like Ctrl-C)

Client exceptions are imported lazily inside :func:`describe`, so a command that never
talks to a server never loads the client.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "EXIT_API",
    "EXIT_AUTH",
    "EXIT_CHECKPOINT",
    "EXIT_CODES_HELP",
    "EXIT_CONNECT",
    "EXIT_GAP",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "CliError",
    "Failure",
    "Terminated",
    "describe",
    "interrupted",
    "on_sigterm",
]

EXIT_OK = 0
EXIT_API = 1
EXIT_USAGE = 2
EXIT_GAP = 3
EXIT_NOT_FOUND = 4
EXIT_AUTH = 5
EXIT_CONNECT = 6
EXIT_CHECKPOINT = 7
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

EXIT_CODES_HELP = (
    "Exit codes: 0 ok, 1 API/server error, 2 usage, 3 gap found, 4 not found, "
    "5 auth (401/403), 6 cannot connect, 7 checkpoint not saved, 130 interrupted, "
    "143 terminated (SIGTERM)."
)


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (checkpoints saved, temp files removed), exit 143.

    A ``KeyboardInterrupt`` so every path that already cleans up after Ctrl-C covers it;
    commands that own their shutdown (``serve``, ``lease run``, ``mirror``) install their
    own SIGTERM handler over this one."""


_sigterm_received = False


def on_sigterm(signum: int, frame: object) -> None:
    """The CLI's SIGTERM handler (``kill``, a supervisor, a CI timeout): stop like Ctrl-C."""
    global _sigterm_received
    _sigterm_received = True
    raise Terminated()


def interrupted() -> KeyboardInterrupt:
    """What a loop that caught the interrupt (and saved its checkpoint) raises again:
    :class:`Terminated` after a SIGTERM, else ``KeyboardInterrupt``."""
    return Terminated() if _sigterm_received else KeyboardInterrupt()


class CliError(Exception):
    """An error the CLI itself detects (bad input line, unusable checkpoint...)."""

    def __init__(self, message: str, *, code: int = EXIT_USAGE, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = code
        self.hint = hint


@dataclass(frozen=True, slots=True)
class Failure:
    message: str
    exit_code: int
    hint: str | None = None


_URL_HINT = "check --url / TOPICS_URL (a topics server answers GET /v0/health with JSON)"


def describe(exc: BaseException, base_url: str | None = None) -> Failure | None:
    """The one-line failure for ``exc``, or ``None`` when it is not ours to explain."""
    if isinstance(exc, CliError):
        return Failure(exc.message, exc.exit_code, exc.hint)
    if isinstance(exc, Terminated):
        return Failure("terminated", EXIT_TERMINATED)
    if isinstance(exc, KeyboardInterrupt):
        return Failure("interrupted", EXIT_INTERRUPTED)
    import topics_client as tc  # cheap: only the exception tree loads eagerly

    if isinstance(exc, tc.NotATopicsServerError):
        return Failure(str(exc), EXIT_API, _URL_HINT)
    if isinstance(exc, tc.APIError):
        text = f"{exc.code}: {exc.message} (HTTP {exc.status})"
        if isinstance(exc, tc.AuthenticationError | tc.PermissionDeniedError):
            return Failure(text, EXIT_AUTH, "pass --api-key or set TOPICS_API_KEY")
        if isinstance(exc, tc.NotFoundError):
            hint = None
            if isinstance(exc, tc.TopicNotFoundError):
                hint = "list topics with: topics ls"
            elif isinstance(exc, tc.RouterNotFoundError):
                hint = "list routers with: topics router ls"
            return Failure(text, EXIT_NOT_FOUND, hint)
        if isinstance(exc, tc.NotReadyError):
            return Failure(text, EXIT_API, "wait for it with: topics status --wait")
        return Failure(text, EXIT_API)
    if isinstance(exc, tc.APIConnectionError):
        where = f" at {base_url}" if base_url else ""
        return Failure(
            f"cannot connect to the topics server{where}: {exc}",
            EXIT_CONNECT,
            "start one with `topics serve`, or pass --url / set TOPICS_URL",
        )
    if isinstance(exc, tc.APIResponseError):  # a 2xx of the wrong shape: another server?
        return Failure(f"unexpected answer: {exc}", EXIT_API, _URL_HINT)
    if isinstance(exc, tc.TopicsError):
        return Failure(f"{type(exc).__name__}: {exc}", EXIT_API)
    if isinstance(exc, BrokenPipeError):
        return Failure("output closed", EXIT_OK)
    return None
