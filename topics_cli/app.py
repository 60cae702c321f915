"""The root ``topics`` app: global options, command groups, and ``main()``.

Exit codes (also in ``topics --help``)::

    0    ok
    1    API or server error (one line with the server's error.code and message)
    2    usage error
    3    gap found (tombstone check/scan, --on-gap fail)
    4    not found (topic, router)
    5    authentication or permission (401/403)
    6    cannot connect
    7    a checkpoint could not be saved mid-run (records written so far stay written)
    130  interrupted (Ctrl-C; checkpoints are saved first)
    143  terminated (SIGTERM, handled like Ctrl-C)

Importing this module loads Typer only. Each command's module is imported, and its Click
command built, when that command is looked up (run, ``--help``, completion): a ``topics put``
never loads the ``diff``, ``demo`` or ``config`` code. Global options may come before or
after the command (:mod:`topics_cli.group`). rich, httpx, uvicorn and the server
load when a command needs them.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import signal
import sys
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from topics_cli import __version__, completions
from topics_cli.context import AppContext, check_output
from topics_cli.errors import (
    EXIT_CODES_HELP,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    Terminated,
    describe,
    on_sigterm,
)
from topics_cli.group import TopicsGroup

__all__ = ["app", "main"]

HELP = """Command line for the topics event log: write, replay, tail, check for gaps, serve.

\b
  topics serve &                                  # a local server on 127.0.0.1:4000
  echo '{"id": 1}' | topics put orders            # append from stdin
  topics diff orders                              # replay everything, then exit
  topics watch orders audit                       # live tail of two topics
  topics tombstone check orders --checkpoint cp.json   # would this reader hit a gap?
  topics demo                                     # walk through the recipes live

Server: --url, else TOPICS_URL, else TOPICS, else the profile (topics config), else
http://127.0.0.1:4000. Output: pretty on a terminal, jsonl in a pipe.
"""


def _report(exc: BaseException, ctx: Any) -> None:
    """Print one line (plus hint / traceback with --debug) and exit with its code."""
    obj = ctx.find_root().obj if ctx is not None else None
    debug = getattr(obj, "debug", False) or "--debug" in sys.argv
    base_url = None
    if isinstance(obj, AppContext):
        try:
            base_url = obj.base_url
        except Exception:
            base_url = None
    failure = describe(exc, base_url)
    if failure is None:
        raise exc
    if debug:
        import traceback

        traceback.print_exception(exc)
    if failure.exit_code == EXIT_INTERRUPTED:
        sys.stderr.write("\ntopics: interrupted\n")
    elif failure.exit_code == EXIT_TERMINATED:
        sys.stderr.write("topics: terminated\n")
    elif failure.exit_code != 0:
        sys.stderr.write(f"topics: error: {failure.message}\n")
        if failure.hint:
            sys.stderr.write(f"  hint: {failure.hint}\n")
    sys.stderr.flush()
    raise typer.Exit(failure.exit_code)


# The command tree, in ``--help`` order: name → (module under topics_cli.commands, the
# command's name in that module's Typer when the module holds several (None: the module's
# Typer is the command or group itself), the one-line summary ``topics --help`` lists).
# The summary becomes the command's short help when it loads, so the two never differ and
# ``--help`` loads no command. A new command is one line here.
_COMMANDS: dict[str, tuple[str, str | None, str]] = {
    "put": ("put", None, "Append records from arguments or stdin."),
    "diff": ("diff", None, "Replay a topic from a position, with explicit gaps."),
    "watch": ("watch", None, "Live tail of topics over one SSE stream."),
    "delete": ("records", None, "Delete records before a seq or by tag."),
    "create": ("topic", "create", "Create or reconfigure a topic."),
    "info": ("topic", "info", "Show a topic's state and config."),
    "ls": ("topic", "ls", "List topics."),
    "rm": ("topic", "rm", "Delete a topic and the routers that touch it."),
    "status": ("status", None, "Server health, readiness and metrics."),
    "smoke": ("smoke", None, "Check a running server end to end (CI, on call)."),
    "top": ("top", None, "Live view of every topic, router and queue."),
    "bench": ("bench", None, "Benchmark a server: latency percentiles, throughput."),
    "demo": ("demo", None, "The recipes, live, on a private server."),
    "serve": ("serve", None, "Run the bundled reference server."),
    "tombstone": ("tombstone", None, "Gap checks: will a reader hit a gap, is a range complete?"),
    "gaps": ("tombstone", None, "Alias of tombstone; `topics gaps TOPIC` scans TOPIC."),
    "lag": ("lag", None, "Consumer lag and time-to-loss from checkpoints or cursors."),
    "router": ("router", None, "Copy a topic's new records into another topic."),
    "mirror": ("mirror", None, "Copy topics between servers, one way or both, without echoes."),
    "lease": ("lease", None, "Lease queues: claim, ack, nack, run a command per job."),
    "config": ("config", None, "Named profiles: url, api key, output."),
}
_ALIASES = {"gaps": "tombstone"}


@functools.cache
def _module_command(module_name: str) -> Any:
    """The Click command (or group) of one module's Typer, built once."""
    import importlib

    import typer.main

    module = importlib.import_module(f"topics_cli.commands.{module_name}")
    return typer.main.get_command(module.app)


def load_command(ctx: Any, name: str) -> Any:
    """Import one command's module and build its Click command with
    ``typer.main.get_command`` (Click's lazy-loading group pattern)."""
    module_name, inner, summary = _COMMANDS[name]
    command = _module_command(module_name)
    if inner is not None:
        command = command.get_command(ctx, inner)
    if name in _ALIASES:
        command = copy.copy(command)  # same subcommands, its own help
        command.help = f"{summary}\n\n{command.help}"
    command.short_help = summary
    return command


class RootGroup(TopicsGroup):
    """Loads each command on first lookup (listing names loads nothing) and maps exceptions
    escaping any command to one stderr line and an exit code."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._loaded: dict[str, Any] = {}

    def list_commands(self, ctx: Any) -> list[str]:
        return list(_COMMANDS)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name = args[0] if args else ""
        if name and not name.startswith("-") and name not in _COMMANDS:
            from difflib import get_close_matches

            close = ", ".join(repr(m) for m in get_close_matches(name, list(_COMMANDS)))
            ctx.fail(f"No such command {name!r}." + (f" Did you mean {close}?" if close else ""))
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """The command list from the table: ``topics --help`` builds no command."""
        with formatter.section("Commands"):
            formatter.write_dl([(name, spec[2]) for name, spec in _COMMANDS.items()])

    def lookup(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in _COMMANDS:
            return None
        if cmd_name not in self._loaded:
            self._loaded[cmd_name] = load_command(ctx, cmd_name)
        return self._loaded[cmd_name]

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (Exception, KeyboardInterrupt) as exc:
            if isinstance(exc, typer.Exit | typer.Abort) or type(exc).__module__.startswith(
                "typer"
            ):
                raise
            _report(exc, ctx)
        finally:
            obj = ctx.obj
            if isinstance(obj, AppContext):
                obj.close()


app = typer.Typer(
    name="topics",
    cls=RootGroup,
    help=HELP,
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    add_completion=False,  # ours below install the scripts completions/ ships
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"topics {__version__}")
        raise typer.Exit()


_OUTPUT_HELP = (
    "pretty | json | jsonl | data | template (default: pretty on a terminal, else jsonl)."
)


@app.callback()
def root(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            "--url", "-u", help="Server URL (env TOPICS_URL or TOPICS).", show_default=False
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", help="API key (env TOPICS_API_KEY).", show_default=False),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            help="Config profile (env TOPICS_PROFILE).",
            show_default=False,
            autocompletion=completions.profile_names,
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help=_OUTPUT_HELP,
            show_default=False,
            case_sensitive=False,
            autocompletion=completions.output_modes,
        ),
    ] = None,
    template: Annotated[
        str | None,
        typer.Option(
            "--template",
            help="Line template for records, e.g. '{seq}\\t{tag}\\t{data}' (implies -o template).",
            show_default=False,
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress, summaries or receipts.")
    ] = False,
    no_color: Annotated[
        bool, typer.Option("--no-color", help="No colour (also NO_COLOR).")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    install_completion: Annotated[
        bool,
        typer.Option(
            "--install-completion",
            callback=completions.install_callback,
            is_eager=True,
            expose_value=False,
            help="Install shell completion for $SHELL (bash, zsh, fish).",
        ),
    ] = False,
    show_completion: Annotated[
        bool,
        typer.Option(
            "--show-completion",
            callback=completions.show_callback,
            is_eager=True,
            expose_value=False,
            help="Print the completion script for $SHELL.",
        ),
    ] = False,
) -> None:
    ctx.obj = AppContext(
        url=url,
        api_key=api_key,
        profile=profile,
        output=check_output(output),
        template=template,
        quiet=quiet,
        no_color=no_color,
        debug=debug,
    )


@contextlib.contextmanager
def process_tuning() -> Iterator[None]:
    """Process-wide runtime settings of the ``topics`` program, set only here, at its entry
    point, and restored on the way out (so importing or embedding the CLI changes nothing):

    * ``gc.set_threshold(50_000, 20, 20)``: replays and watches make pages of short-lived
      objects; at the default gen-0 threshold the collector costs ~25% of a replay.
    * ``sys.setswitchinterval(0.0002)``: a replay fetches the next page in a thread while the
      main thread writes this one, and both hold the GIL through long C calls (orjson on a
      whole page); at the default 5 ms interval the fetcher waits that long at every read.
    """
    import gc

    threshold, interval = gc.get_threshold(), sys.getswitchinterval()
    gc.set_threshold(50_000, 20, 20)
    sys.setswitchinterval(min(interval, 0.0002))
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        gc.set_threshold(*threshold)


def main() -> None:
    """The ``topics`` program (console script and ``python -m topics_cli``)."""
    if "_TOPICS_COMPLETE" in os.environ:  # a shell asking for completions
        completions.enable()
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        with process_tuning():
            app(prog_name="topics")
    except Terminated:
        sys.stderr.write("topics: terminated\n")
        raise SystemExit(EXIT_TERMINATED) from None
    except KeyboardInterrupt:  # outside any command (e.g. while parsing)
        sys.stderr.write("\ntopics: interrupted\n")
        raise SystemExit(EXIT_INTERRUPTED) from None
