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

Importing this module loads Typer and the command modules only: rich, httpx, uvicorn and
the server load when a command needs them.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from topics_cli import __version__
from topics_cli.commands import config as config_cmd
from topics_cli.commands import demo as demo_cmd
from topics_cli.commands import diff as diff_cmd
from topics_cli.commands import put as put_cmd
from topics_cli.commands import records as records_cmd
from topics_cli.commands import router as router_cmd
from topics_cli.commands import serve as serve_cmd
from topics_cli.commands import status as status_cmd
from topics_cli.commands import tombstone as tombstone_cmd
from topics_cli.commands import topic as topic_cmd
from topics_cli.commands import watch as watch_cmd
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


class RootGroup(TyperGroup):
    """Maps exceptions escaping any command to one stderr line and an exit code."""

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


app.command("put", help=put_cmd.HELP, epilog=EXIT_CODES_HELP)(put_cmd.put)
app.command("diff", help=diff_cmd.HELP, epilog=EXIT_CODES_HELP)(diff_cmd.diff)
app.command("watch", help=watch_cmd.HELP, epilog=EXIT_CODES_HELP)(watch_cmd.watch)
app.add_typer(tombstone_cmd.app, name="tombstone")
app.add_typer(tombstone_cmd.app, name="gaps", help="Alias of `topics tombstone`.")
app.command("delete", help=records_cmd.HELP, epilog=EXIT_CODES_HELP)(records_cmd.delete)
app.command("create", help=topic_cmd.HELP_CREATE)(topic_cmd.create)
app.command("info", help=topic_cmd.HELP_INFO)(topic_cmd.info)
app.command("ls", help=topic_cmd.HELP_LS)(topic_cmd.ls)
app.command("rm", help=topic_cmd.HELP_RM)(topic_cmd.rm)
app.add_typer(router_cmd.app, name="router")
app.command("status", help=status_cmd.HELP, epilog=EXIT_CODES_HELP)(status_cmd.status)
app.add_typer(config_cmd.app, name="config")
app.command("demo", help=demo_cmd.HELP)(demo_cmd.demo)
app.command("serve", help=serve_cmd.HELP)(serve_cmd.serve)


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
