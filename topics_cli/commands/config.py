"""``topics config set | get | list | use``: named profiles in config.toml."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from topics_cli.completions import profile_keys, profile_names
from topics_cli.config import PROFILE_KEYS, ConfigFile
from topics_cli.context import get_app
from topics_cli.group import typer_app

app = typer_app(
    help="""Named profiles in $XDG_CONFIG_HOME/topics/config.toml (default ~/.config).

Keys: url, api_key, output, template, no_color. Precedence: flag > env > profile > default.

\b
Examples:
  topics config set url https://topics.example.com --profile prod
  topics config set api_key s3cret --profile prod
  topics config use prod
  topics config list
  topics --profile staging diff orders
""",
)

ProfileOpt = Annotated[
    str | None,
    typer.Option(
        "--profile",
        "-p",
        help="Profile (default: the current one, else 'default').",
        show_default=False,
        autocompletion=profile_names,
    ),
]


def _target(ctx: typer.Context, profile: str | None, cfg: ConfigFile) -> str:
    return profile or get_app(ctx).profile or cfg.current or "default"


def _check_key(key: str) -> None:
    if key not in PROFILE_KEYS:
        raise typer.BadParameter(f"unknown key {key!r}; keys: {', '.join(PROFILE_KEYS)}")


def _mask(key: str, value: Any) -> Any:
    if key == "api_key" and isinstance(value, str):
        return value[:2] + "…" if len(value) > 4 else "…"
    return value


@app.command("set")
def set_(
    ctx: typer.Context,
    key: Annotated[
        str,
        typer.Argument(
            help="url | api_key | output | template | no_color.", autocompletion=profile_keys
        ),
    ],
    value: Annotated[str, typer.Argument(help="The value ('' removes the key).")],
    profile: ProfileOpt = None,
) -> None:
    """Set KEY in a profile (the file is written with mode 0600)."""
    _check_key(key)
    cfg = ConfigFile.load()
    name = _target(ctx, profile, cfg)
    if value == "":
        cfg.unset(name, key)
    elif key == "no_color":
        cfg.set(name, key, value.lower() in ("1", "true", "yes", "on"))
    else:
        if key == "output":
            from topics_cli.output import MODES

            if value not in MODES:
                raise typer.BadParameter(f"output must be one of {', '.join(MODES)}")
        cfg.set(name, key, value)
    if cfg.current is None:
        cfg.use(name)
    cfg.save()
    get_app(ctx).sink.info(f"{cfg.path}: [{name}] {key} = {_mask(key, value)!r}")


@app.command("get")
def get(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="The key to print.", autocompletion=profile_keys)],
    profile: ProfileOpt = None,
) -> None:
    """Print KEY of a profile (exit 4 when unset)."""
    _check_key(key)
    cfg = ConfigFile.load()
    table = cfg.profile(_target(ctx, profile, cfg))
    if key not in table:
        raise typer.Exit(4)
    typer.echo(str(table[key]))


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """List profiles (api keys masked); * marks the current one."""
    cfg = ConfigFile.load()
    current = cfg.current
    rows = [
        {
            "profile": name,
            "current": name == current,
            **{k: _mask(k, v) for k, v in table.items()},
        }
        for name, table in cfg.profiles.items()
    ]
    sink = get_app(ctx).sink

    def pretty(console: Any) -> None:
        console.print(f"[dim]{cfg.path}[/]")
        if not rows:
            console.print("[dim]no profiles; add one with: topics config set url URL[/]")
        for row in rows:
            mark = "*" if row["current"] else " "
            rest = ", ".join(f"{k}={v}" for k, v in row.items() if k not in ("profile", "current"))
            console.print(f"{mark} [bold]{row['profile']}[/]  {rest}")

    sink.result(rows, pretty)


@app.command("use")
def use(
    ctx: typer.Context,
    profile: Annotated[str, typer.Argument(help="Profile name.", autocompletion=profile_names)],
) -> None:
    """Make PROFILE the current one."""
    cfg = ConfigFile.load()
    if profile not in cfg.profiles:
        raise typer.BadParameter(f"no profile {profile!r} in {cfg.path}")
    cfg.use(profile)
    cfg.save()
    get_app(ctx).sink.info(f"current profile: {profile}")
