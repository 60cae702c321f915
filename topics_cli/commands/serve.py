"""``topics serve``: run the bundled reference server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from topics_cli.completions import choices
from topics_cli.group import typer_app

HELP = """Run the bundled reference server (the whole /v0 contract, no external services).

Flags override the upstream environment variables (TOPICS_HOST, TOPICS_PORT,
TOPICS_PORT_FILE, TOPICS_DATA_DIR, TOPICS_MAX_*). Stop it with Ctrl-C or SIGTERM.
On start it prints its base URL, the one clients take (export TOPICS_URL=...). A host
that does not resolve or bind, a data directory that cannot be created, or a bad
setting stops it with one line, exit 2.
Needs the server extra: pip install 'topics-py[server]' (without it: one line naming
it, exit 1).

Examples:

\b
  topics serve                            # http://127.0.0.1:4000, data in ./topics-data
  topics serve --port 0 --port-file port  # OS-assigned port, written to ./port
  TOPICS_MAX_BATCH_RECORDS=500 topics serve --data-dir ~/topics-data
"""


app = typer_app()


@app.command("serve", help=HELP)
def serve(
    host: Annotated[
        str | None, typer.Option("--host", help="Bind address (env TOPICS_HOST).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", "-p", help="Port; 0 picks a free one (env TOPICS_PORT).", min=0),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="State directory (env TOPICS_DATA_DIR).")
    ] = None,
    port_file: Annotated[
        Path | None,
        typer.Option("--port-file", help="Write the bound host:port here (env TOPICS_PORT_FILE)."),
    ] = None,
    log_level: Annotated[
        str,
        typer.Option(
            "--log-level",
            help="uvicorn log level (debug, info, warning).",
            autocompletion=choices("debug", "info", "warning"),
        ),
    ] = "warning",
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request.")] = False,
) -> None:
    # the server is imported only here: no other command pays for it
    from topics_cli.commands._server import require_server

    require_server("serve")
    from topics_server.server import run
    from topics_server.settings import Settings, SettingsError

    try:
        settings = Settings.from_env(
            host=host,
            port=port,
            data_dir=data_dir,
            port_file=port_file,
            log_level=log_level,
            access_log=access_log,
        )
    except SettingsError as exc:
        typer.echo(f"topics serve: {exc}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(run(settings))
