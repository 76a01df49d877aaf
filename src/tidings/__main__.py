"""Lets ``python -m tidings`` behave like the ``tidings`` console script."""

from tidings.cli.main import run

run()
