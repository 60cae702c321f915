"""The per-run context the root callback stores in ``ctx.obj``.

It holds the global options and builds, on first use only, the resolved settings, the
client (so ``--help`` never loads httpx) and the output sink (so jsonl never loads rich).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from topics_cli.config import Resolved
    from topics_cli.output import Sink
    from topics_client import Client

__all__ = ["AppContext", "check_output", "get_app"]


@dataclass
class AppContext:
    url: str | None = None
    api_key: str | None = None
    profile: str | None = None
    output: str | None = None
    template: str | None = None
    quiet: bool = False
    no_color: bool = False
    debug: bool = False
    _clients: list[Any] = field(default_factory=list, repr=False)

    @cached_property
    def settings(self) -> Resolved:
        from topics_cli.config import resolve

        return resolve(url=self.url, api_key=self.api_key, profile=self.profile)

    @property
    def base_url(self) -> str:
        return self.settings.url

    @cached_property
    def mode(self) -> str:
        from topics_cli.output import default_mode

        if self.output:
            return self.output
        if self.template is not None:
            return "template"
        configured = self.settings.output if self._settings_cheap() else None
        if configured:
            return configured
        return default_mode()

    def _settings_cheap(self) -> bool:
        try:
            _ = self.settings
        except Exception:
            return False
        return True

    @cached_property
    def sink(self) -> Sink:
        from topics_cli.output import Sink

        template = self.template
        if template is None and self.mode == "template":
            template = self.settings.template
        if self.mode == "template" and template is None:
            raise typer.BadParameter("-o template needs --template '{seq}\\t{data}'")
        return Sink(
            self.mode,
            template=template,
            quiet=self.quiet,
            no_color=self.no_color or self.settings.no_color,
        )

    def set_option(self, name: str, value: Any) -> None:
        """A global option given after the command (``topics diff t -o jsonl``)."""
        setattr(self, name, check_output(value) if name == "output" else value)

    def client(self, **options: Any) -> Client:
        """A client for the resolved server; closed when the command ends."""
        from topics_client import Client

        client = Client(self.base_url, api_key=self.settings.api_key, **options)
        self._clients.append(client)
        return client

    def close(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()


def check_output(output: str | None) -> str | None:
    """``--output`` lower-cased, or a usage error naming the modes."""
    if output is None:
        return None
    from topics_cli.output import MODES

    if output.lower() not in MODES:
        raise typer.BadParameter(
            f"{output!r} is not one of {', '.join(MODES)}", param_hint="--output"
        )
    return output.lower()


def get_app(ctx: typer.Context) -> AppContext:
    obj = ctx.find_root().obj
    if not isinstance(obj, AppContext):
        obj = AppContext()
        ctx.find_root().obj = obj
    return obj
