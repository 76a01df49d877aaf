"""The ``tidings`` console script, as small as can be: it takes SIGTERM before anything else
is imported, so a stop that comes while the program is still starting (imports, the database,
migrations checked) ends it cleanly with exit code 0 instead of the signal's default death.
The worker later replaces this with its own handler (finish the batch, then stop)."""

from __future__ import annotations

import signal
import sys
from types import FrameType


def _stop_while_starting(signum: int, _frame: FrameType | None) -> None:
    sys.stderr.write(f"tidings: stopped while starting (signal {signum})\n")
    sys.exit(0)


def run() -> None:
    signal.signal(signal.SIGTERM, _stop_while_starting)
    from tidings.cli.main import run as main

    main()
