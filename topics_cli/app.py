"""The root ``topics`` app: global options, command groups, and ``main()``."""

from __future__ import annotations

from typing import Annotated

import typer

from topics_cli import __version__
from topics_cli.commands import serve as serve_cmd

app = typer.Typer(
    name="topics",
    help="Command line for the topics event log: write, replay, tail and serve.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"topics {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Command line for the topics event log: write, replay, tail and serve."""


app.command("serve", help=serve_cmd.HELP)(serve_cmd.serve)


def main() -> None:
    app()
