"""``python -m topics_cli``: the same as the ``topics`` script."""

from topics_cli.app import main

main()
