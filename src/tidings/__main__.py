"""Lets ``python -m tidings`` behave like the ``tidings`` console script."""

from tidings.cli.entry import run

run()
