"""Shell completion: the candidates options and arguments offer, and the bash/zsh/fish
scripts shipped in ``completions/`` (the same text ``topics --install-completion`` installs).

How a completion runs: the shell script asks the ``topics`` program itself
(``_TOPICS_COMPLETE=complete_bash`` with the words typed so far, Typer's protocol), which
answers with the command names, option names, or the value candidates below:

* an option with a fixed set of values (``-o``, ``--on-gap``, ``--durability``…) offers
  exactly those values, never file names;
* a topic, queue or router argument (and ``--source``/``--dest``) offers the names the server
  has, fetched with one request bounded by :data:`NAME_TIMEOUT_S` and silent on any failure,
  from the server the command line would use (``--url``, ``TOPICS_URL``, the profile);
* only options taking a path (``--checkpoint``, ``--port-file``, ``--data-dir``) complete file
  names: the scripts list them, generated from the app.

Run ``python -m topics_cli.completions`` after changing commands or options; ``--check``
exits 1 when a shipped script differs from what would be generated (a test runs it).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import typer

__all__ = [
    "NAME_TIMEOUT_S",
    "SHELLS",
    "choices",
    "command_tree",
    "file_options",
    "install",
    "paths",
    "profile_names",
    "router_names",
    "script",
    "topic_names",
]

SHELLS = ("bash", "zsh", "fish")
COMPLETIONS_DIR = Path(__file__).resolve().parent.parent / "completions"
NAME_TIMEOUT_S = 1.0
"""The most a completion waits for the server's topic or router names."""

_MAX_NAMES = 200

Completer = Callable[[typer.Context, str], list[str]]


# ---------------------------------------------------------------------------- candidates


def choices(*values: str) -> Completer:
    """A completer offering ``values`` (Typer keeps those starting with what was typed)."""

    def complete(ctx: typer.Context, incomplete: str) -> list[str]:
        return list(values)

    return complete


def paths(ctx: typer.Context, incomplete: str) -> list[str]:
    """Files and directories (with a trailing ``/``) starting with ``incomplete``: for an
    argument that takes files (``topics lag FILE…``), which the scripts cannot tell apart."""
    import glob

    try:
        found = glob.glob(glob.escape(os.path.expanduser(incomplete)) + "*")
    except Exception:
        return []
    return sorted(p + "/" if os.path.isdir(p) else p for p in found)[:_MAX_NAMES]


def output_modes(ctx: typer.Context, incomplete: str) -> list[str]:
    from topics_cli.output import MODES

    return list(MODES)


def profile_names(ctx: typer.Context, incomplete: str) -> list[str]:
    try:
        from topics_cli.config import ConfigFile, config_path

        return sorted(ConfigFile.load(config_path(os.environ)).profiles)
    except Exception:
        return []


def profile_keys(ctx: typer.Context, incomplete: str) -> list[str]:
    from topics_cli.config import PROFILE_KEYS

    return list(PROFILE_KEYS)


def topic_names(ctx: typer.Context, incomplete: str) -> list[str]:
    """Topic names on the server starting with ``incomplete`` (``[]`` on any failure)."""
    return _server_names(ctx, "topics", incomplete)


def router_names(ctx: typer.Context, incomplete: str) -> list[str]:
    """Router names on the server starting with ``incomplete`` (``[]`` on any failure)."""
    return _server_names(ctx, "routers", incomplete)


def _server_names(ctx: typer.Context, kind: str, incomplete: str) -> list[str]:
    try:
        from topics_client import Client

        url, api_key = _server_of(ctx)
        with Client(url, api_key=api_key, timeout=NAME_TIMEOUT_S, max_retries=0) as client:
            prefix = incomplete or None
            if kind == "topics":
                topics = client.topics.list_page(prefix=prefix, page_size=_MAX_NAMES, touch=False)
                return [t.topic for t in topics.items]
            routers = client.routers.list_page(prefix=prefix, page_size=_MAX_NAMES)
            return [r.router for r in routers.items]
    except Exception:  # completion is best effort: a shell must never show an error
        return []


def _server_of(ctx: typer.Context) -> tuple[str, str | None]:
    """The URL and key the command being completed would use: global options typed so far
    (before the command, or after it), then the environment, then the profile."""
    from topics_cli.config import resolve
    from topics_cli.context import AppContext

    root = ctx.find_root()
    given = {k: root.params.get(k) for k in ("url", "api_key", "profile")}
    if isinstance(root.obj, AppContext):  # global options given after the command
        for key in given:
            given[key] = getattr(root.obj, key) or given[key]
    settings = resolve(url=given["url"], api_key=given["api_key"], profile=given["profile"])
    return settings.url, settings.api_key


# ---------------------------------------------------------------------------- the app's shape


def _root() -> Any:
    import typer.main

    from topics_cli.app import app

    return typer.main.get_command(app)


def _walk(visit: Callable[[str, Any], None]) -> None:
    """Call ``visit(path, command)`` for every command and group, depth first, sorted."""
    root = _root()

    def walk(cmd: Any, ctx: Any, path: str) -> None:
        visit(path, cmd)
        if not hasattr(cmd, "list_commands"):
            return
        for name in sorted(cmd.list_commands(ctx)):
            sub = cmd.get_command(ctx, name)
            walk(
                sub,
                sub.make_context(name, ["--help"], parent=ctx, resilient_parsing=True),
                f"{path} {name}",
            )

    walk(root, root.make_context("topics", [], resilient_parsing=True), "topics")


def _visible(cmd: Any) -> list[Any]:
    return [p for p in cmd.params if not getattr(p, "hidden", False)]


def command_tree() -> list[str]:
    """``topics diff --checkpoint --count …`` lines for every command, sorted."""
    lines: list[str] = []

    def visit(path: str, cmd: Any) -> None:
        opts = sorted(o for p in _visible(cmd) for o in getattr(p, "opts", ()) if o[0] == "-")
        lines.append(f"{path} {' '.join(opts)}".rstrip())

    _walk(visit)
    return lines


def file_options() -> list[str]:
    """Every option name that takes a path, sorted; an option name never takes a path in
    one command and something else in another (the scripts decide by the name alone)."""
    paths: set[str] = set()
    others: set[str] = set()

    def visit(path: str, cmd: Any) -> None:
        for p in _visible(cmd):
            opts = [o for o in getattr(p, "opts", ()) if o[0] == "-"]
            is_path = getattr(p.type, "name", "") == "path"
            (paths if is_path else others).update(opts)

    _walk(visit)
    clash = paths & others
    if clash:
        raise RuntimeError(f"options both path and not: {', '.join(sorted(clash))}")
    return sorted(paths)


# ---------------------------------------------------------------------------- scripts

_BASH = """\
_topics_completion() {
    local IFS=$'\\n' i word cword=0 prefix
    # bash splits `tenant42:clip` into `tenant42 : clip`; join them back into one word
    local -a words=()
    for ((i = 0; i < ${#COMP_WORDS[@]}; i++)); do
        word="${COMP_WORDS[i]}"
        if ((i > 1)) && [[ "$word" == : || "${COMP_WORDS[i-1]}" == : ]]; then
            words[${#words[@]}-1]+="$word"
        else
            words+=("$word")
        fi
        ((i == COMP_CWORD)) && cword=$((${#words[@]} - 1))
    done
    case "${words[cword-1]}" in
        @FILE_OPTIONS@)
            compopt -o filenames 2>/dev/null
            COMPREPLY=( $(compgen -f -- "${words[cword]}") )
            return 0 ;;
    esac
    COMPREPLY=( $( env COMP_WORDS="${words[*]}" COMP_CWORD=$cword \\
                   _TOPICS_COMPLETE=complete_bash "$1" 2>/dev/null ) )
    # a directory (from an argument taking files) is completed further, not ended
    [[ ${#COMPREPLY[@]} -eq 1 && "${COMPREPLY[0]}" == */ ]] && compopt -o nospace 2>/dev/null
    # bash replaces only what follows the last `:` of the word
    if [[ "${words[cword]}" == *:* && "$COMP_WORDBREAKS" == *:* ]]; then
        prefix="${words[cword]%"${words[cword]##*:}"}"
        for ((i = 0; i < ${#COMPREPLY[@]}; i++)); do
            COMPREPLY[i]="${COMPREPLY[i]#"$prefix"}"
        done
    fi
    return 0
}

complete -F _topics_completion topics
"""

_ZSH = """\
_topics_completion() {
  case "${words[CURRENT-1]}" in
    (@FILE_OPTIONS@) _files; return ;;
  esac
  local out
  out="$(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _TOPICS_COMPLETE=complete_zsh \\
         topics 2>/dev/null)"
  # nothing to offer is offered as `_files`: only the path options above complete files
  [[ -n "$out" && "$out" != _files ]] && eval "$out"
}

if [[ "${zsh_eval_context[-1]}" == loadautofunc ]]; then
  _topics_completion "$@"  # autoloaded from fpath as _topics: complete right away
else
  compdef _topics_completion topics  # sourced
fi
"""

_FISH = """\
complete --command topics --no-files --arguments \\
    "(env _TOPICS_COMPLETE=complete_fish _TYPER_COMPLETE_FISH_ACTION=get-args \\
      _TYPER_COMPLETE_ARGS=(commandline -cp) topics 2>/dev/null)"
@FISH_FILE_OPTIONS@
"""


def _fish_file_option(opt: str) -> str:
    flag = f"--long-option {opt[2:]}" if opt.startswith("--") else f"--short-option {opt[1:]}"
    return f"complete --command topics {flag} --require-parameter --force-files"


def script(shell: str) -> str:
    """The completion script for ``shell``, headed by the command tree it was made from."""
    if shell not in SHELLS:
        raise ValueError(f"no completion for {shell!r}; shells: {', '.join(SHELLS)}")
    opts = file_options()
    body = (
        {"bash": _BASH, "zsh": _ZSH, "fish": _FISH}[shell]
        .replace("@FILE_OPTIONS@", "|".join(opts))
        .replace("@FISH_FILE_OPTIONS@", "\n".join(_fish_file_option(o) for o in opts))
    )
    header = [
        *(["#compdef topics"] if shell == "zsh" else []),  # zsh reads it from line 1
        f"# {shell} completion for topics, generated by `python -m topics_cli.completions`.",
        "# Do not edit; install with `topics --install-completion` or source this file.",
        "# Command tree:",
        *(f"#   {line}" for line in command_tree()),
    ]
    return "\n".join(header) + "\n" + body


def generate(shell: str) -> str:
    return script(shell)


# ---------------------------------------------------------------------------- install


def detect_shell(environ: Any = None) -> str:
    """The shell ``$SHELL`` names, or a usage error (exit 2)."""
    env = os.environ if environ is None else environ
    name = Path(env.get("SHELL", "")).name
    if name not in SHELLS:
        raise typer.BadParameter(
            f"cannot tell the shell from SHELL={env.get('SHELL', '')!r}; "
            f"run e.g. SHELL=bash topics --install-completion ({', '.join(SHELLS)})"
        )
    return name


def install(shell: str, home: Path | None = None) -> Path:
    """Write ``completions/topics.SHELL``'s text where ``shell`` loads it from; for bash and
    zsh, also add the line loading it to ``~/.bashrc`` / ``~/.zshrc`` (once)."""
    home = Path.home() if home is None else home
    text = script(shell)
    if shell == "bash":
        target = home / ".bash_completions" / "topics.sh"
        _add_line(home / ".bashrc", f"source '{target}'")
    elif shell == "zsh":
        target = home / ".zfunc" / "_topics"
        _add_line(home / ".zshrc", "fpath+=~/.zfunc; autoload -Uz compinit; compinit")
    else:
        target = home / ".config" / "fish" / "completions" / "topics.fish"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target


def _add_line(rc: Path, line: str) -> None:
    current = rc.read_text() if rc.is_file() else ""
    if line not in current.splitlines():
        sep = "" if not current or current.endswith("\n") else "\n"
        rc.write_text(f"{current}{sep}{line}\n")


def install_callback(value: bool) -> None:
    """``topics --install-completion``: install for ``$SHELL``, say where, exit 0."""
    if value:
        shell = detect_shell()
        path = install(shell)
        typer.echo(f"{shell} completion installed in {path}; it works in new shells.")
        raise typer.Exit()


def show_callback(value: bool) -> None:
    """``topics --show-completion``: print the script for ``$SHELL``, exit 0."""
    if value:
        typer.echo(script(detect_shell()), nl=False)
        raise typer.Exit()


def enable() -> None:
    """Register Typer's answerers for ``_TOPICS_COMPLETE=complete_SHELL`` (the protocol the
    scripts speak). Typer registers them itself only for an app built with its own install
    options, which would install Typer's scripts instead of ours."""
    from typer.completion import completion_init  # type: ignore[attr-defined]

    completion_init()


# ---------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    check = "--check" in args
    stale = []
    for shell in SHELLS:
        path = COMPLETIONS_DIR / f"topics.{shell}"
        text = script(shell)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(f"stale: {', '.join(stale)}; run python -m topics_cli.completions", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
