"""``python -m topics_server``: serve with settings from the environment."""

from __future__ import annotations

import sys

from topics_server.server import run
from topics_server.settings import Settings, SettingsError


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"topics serve: {exc}", file=sys.stderr)
        return 2
    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
