"""The root ``topics`` app: global options, command groups, and ``main()``.

Exit codes (also in ``topics --help``)::

    0    ok
    1    API or server error (one line with the server's error.code and message)
    2    usage error
    3    gap found (tombstone check/scan, --on-gap fail)
    4    not found (topic, router)
    5    authentication or permission (401/403)
    6    cannot connect
    130  interrupted (Ctrl-C; checkpoints are saved first)

Importing this module loads Typer only. Each command's module is imported, and its Click
command built, when that command is looked up (run, ``--help``, completion): a ``topics put``
never loads the ``diff``, ``demo`` or ``config`` code. rich, httpx, uvicorn and the server
load when a command needs them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, MutableMapping
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from topics_cli import __version__
from topics_cli.context import AppContext
from topics_cli.errors import EXIT_CODES_HELP, EXIT_INTERRUPTED, describe

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
    elif failure.exit_code != 0:
        sys.stderr.write(f"topics: error: {failure.message}\n")
        if failure.hint:
            sys.stderr.write(f"  hint: {failure.hint}\n")
    sys.stderr.flush()
    raise typer.Exit(failure.exit_code)


# The command tree, in ``--help`` order (Typer lists commands before groups): name →
# (module under topics_cli.commands, the command function or sub-Typer in it, the module
# attribute with its help (None: a sub-Typer's own help), whether the exit codes go in its
# epilog, a help override). A new command is one line here.
_COMMANDS: dict[str, tuple[str, str, str | None, bool, str | None]] = {
    "put": ("put", "put", "HELP", True, None),
    "diff": ("diff", "diff", "HELP", True, None),
    "watch": ("watch", "watch", "HELP", True, None),
    "delete": ("records", "delete", "HELP", True, None),
    "create": ("topic", "create", "HELP_CREATE", False, None),
    "info": ("topic", "info", "HELP_INFO", False, None),
    "ls": ("topic", "ls", "HELP_LS", False, None),
    "rm": ("topic", "rm", "HELP_RM", False, None),
    "status": ("status", "status", "HELP", True, None),
    "demo": ("demo", "demo", "HELP", False, None),
    "serve": ("serve", "serve", "HELP", False, None),
    "tombstone": ("tombstone", "app", None, False, None),
    "gaps": ("tombstone", "app", None, False, "Alias of `topics tombstone`."),
    "router": ("router", "app", None, False, None),
    "lease": ("lease", "app", None, False, None),
    "config": ("config", "app", None, False, None),
}


def build_command(name: str) -> Any:
    """Import one command's module and build its Click command exactly as
    ``app.command(...)`` / ``app.add_typer(...)`` plus ``typer.main.get_command`` would."""
    import importlib

    import typer.main

    module_name, attr, help_attr, with_epilog, help_text = _COMMANDS[name]
    module = importlib.import_module(f"topics_cli.commands.{module_name}")
    target = getattr(module, attr)
    holder = typer.Typer()
    if isinstance(target, typer.Typer):
        if help_text is None:
            holder.add_typer(target, name=name)
        else:
            holder.add_typer(target, name=name, help=help_text)
        return typer.main.get_group_from_info(
            holder.registered_groups[0],
            pretty_exceptions_short=app.pretty_exceptions_short,
            rich_markup_mode=app.rich_markup_mode,
            suggest_commands=app.suggest_commands,
        )
    assert help_attr is not None
    holder.command(
        name,
        help=getattr(module, help_attr),
        epilog=EXIT_CODES_HELP if with_epilog else None,
    )(target)
    return typer.main.get_command_from_info(
        holder.registered_commands[0],
        pretty_exceptions_short=app.pretty_exceptions_short,
        rich_markup_mode=app.rich_markup_mode,
    )


class LazyCommands(MutableMapping[str, Any]):
    """The root group's ``commands``: every name is known up front, a command is built on
    first lookup. Listing names (``--help`` order, "did you mean") loads nothing."""

    def __init__(self, built: MutableMapping[str, Any]) -> None:
        self._built: dict[str, Any] = dict(built)
        self._names = list(_COMMANDS) + [n for n in built if n not in _COMMANDS]

    def __getitem__(self, name: str) -> Any:
        cmd = self._built.get(name)
        if cmd is None:
            if name not in _COMMANDS:
                raise KeyError(name)
            cmd = self._built[name] = build_command(name)
        return cmd

    def __setitem__(self, name: str, cmd: Any) -> None:
        if name not in self._names:
            self._names.append(name)
        self._built[name] = cmd

    def __delitem__(self, name: str) -> None:
        self._names.remove(name)
        self._built.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._names))

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._names


class RootGroup(TyperGroup):
    """Builds commands lazily (:class:`LazyCommands`) and maps exceptions escaping any
    command to one stderr line and an exit code."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.commands = LazyCommands(self.commands)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        return self.commands.get(cmd_name)

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)

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
        typer.Option("--profile", help="Config profile (env TOPICS_PROFILE).", show_default=False),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option("--output", "-o", help=_OUTPUT_HELP, show_default=False, case_sensitive=False),
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
) -> None:
    from topics_cli.output import MODES

    if output is not None and output.lower() not in MODES:
        raise typer.BadParameter(
            f"{output!r} is not one of {', '.join(MODES)}", param_hint="--output"
        )
    ctx.obj = AppContext(
        url=url,
        api_key=api_key,
        profile=profile,
        output=output.lower() if output else None,
        template=template,
        quiet=quiet,
        no_color=no_color,
        debug=debug,
    )


# Global options users put after the command (`topics diff t -o jsonl`), with whether
# they take a value; main() moves them in front of the command, where Click expects them.
_GLOBAL_FLAGS = {
    "-u": True,
    "--url": True,
    "--api-key": True,
    "--profile": True,
    "-o": True,
    "--output": True,
    "--template": True,
    "-q": False,
    "--quiet": False,
    "--no-color": False,
    "--debug": False,
}
_KEEP_LOCAL = {"config": {"--profile"}}


def hoist_globals(argv: list[str]) -> list[str]:
    """Move global options found after the command name to the front."""
    command_at = None
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return argv
        if not arg.startswith("-"):
            command_at = i
            break
        name = arg.split("=", 1)[0]
        i += 2 if _GLOBAL_FLAGS.get(name) and "=" not in arg else 1
    if command_at is None:
        return argv
    keep = _KEEP_LOCAL.get(argv[command_at], set())
    head, rest, moved = argv[:command_at], argv[command_at:], []
    out: list[str] = []
    i = 0
    while i < len(rest):
        arg = rest[i]
        if arg == "--":
            out.extend(rest[i:])
            break
        name = arg.split("=", 1)[0]
        if name in _GLOBAL_FLAGS and name not in keep:
            takes = _GLOBAL_FLAGS[name] and "=" not in arg
            moved.extend(rest[i : i + (2 if takes else 1)])
            i += 2 if takes else 1
            continue
        out.append(arg)
        i += 1
    return head + moved + out


def main() -> None:
    try:
        app(args=hoist_globals(sys.argv[1:]), prog_name="topics")
    except KeyboardInterrupt:  # outside any command (e.g. while parsing)
        sys.stderr.write("\ntopics: interrupted\n")
        raise SystemExit(EXIT_INTERRUPTED) from None
