"""The Click group every ``topics`` command group is built with, and the shared Typer factory.

Global options (``--url``, ``-o``, ``-q``…) are declared once, on the root callback
(``topics_cli.app.root``). :class:`TopicsGroup` also accepts them after any command
(``topics diff orders -o jsonl``): when it hands out a command, it gives that command hidden
copies of the root's options whose callback stores a value given on the command line in the
run's :class:`~topics_cli.context.AppContext`. Click parses them in place, so ``--tag -q``
is a tag, never ``--quiet``. Only documented Click/Typer surface is used: the group's
``get_command`` hook, ``Command.params``, ``Parameter.callback`` / ``expose_value`` /
``hidden`` and ``Context.get_parameter_source``.
"""

from __future__ import annotations

import copy
from typing import Any

import typer
from typer.core import TyperGroup

__all__ = ["GLOBAL_OPTIONS", "TopicsGroup", "typer_app"]

GLOBAL_OPTIONS = ("url", "api_key", "profile", "output", "template", "quiet", "no_color", "debug")
"""Names of the root callback's parameters that may also follow a command."""

_HAS_GLOBALS = "_topics_globals"


def _store_global(ctx: Any, param: Any, value: Any) -> Any:
    """Callback of a global option given after the command: set it on the AppContext."""
    source = ctx.get_parameter_source(param.name)
    if source is None or source.name != "COMMANDLINE":
        return value
    from topics_cli.context import get_app

    get_app(ctx).set_option(param.name, value)
    return value


def _with_globals(ctx: Any, command: Any) -> Any:
    """Give ``command`` (a leaf) the global options it does not define itself, once."""
    if getattr(command, _HAS_GLOBALS, False) or ctx is None:
        return command
    own = {opt for p in command.params for opt in getattr(p, "opts", ())}
    own.update(p.name for p in command.params)
    for param in ctx.find_root().command.params:
        if param.name not in GLOBAL_OPTIONS or param.name in own or own & set(param.opts):
            continue
        clone = copy.copy(param)
        clone.expose_value = False
        clone.hidden = True
        clone.callback = _store_global
        command.params.append(clone)
    setattr(command, _HAS_GLOBALS, True)
    return command


class TopicsGroup(TyperGroup):
    """A command group whose commands also accept the global options (see module doc)."""

    def lookup(self, ctx: Any, cmd_name: str) -> Any:
        """The command itself; subclasses load it here (:class:`topics_cli.app.RootGroup`)."""
        return super().get_command(ctx, cmd_name)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = self.lookup(ctx, cmd_name)
        if command is None or isinstance(command, TyperGroup):
            return command
        return _with_globals(ctx, command)


def typer_app(**settings: Any) -> typer.Typer:
    """A command module's Typer: the same settings everywhere (plain help, no completion
    install flags, no pretty tracebacks), groups built as :class:`TopicsGroup`."""
    defaults: dict[str, Any] = {
        "cls": TopicsGroup,
        "no_args_is_help": True,
        "rich_markup_mode": None,
        "add_completion": False,
        "pretty_exceptions_enable": False,
    }
    return typer.Typer(**{**defaults, **settings})
