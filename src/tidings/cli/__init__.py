"""The ``tidings`` command line: thin Typer commands over the same services as the API."""
