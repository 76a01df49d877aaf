"""``tidings serve --demo`` as a real process, for tests that drive the product from outside:
its command line, its HTTP API and, in a browser, its web app."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

TIDINGS = [sys.executable, "-m", "tidings"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def tidings_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    """The environment of a ``tidings`` process on the test's database and data folder."""
    return {
        **os.environ,
        "TIDINGS_DATABASE_URL": database_url,
        "TIDINGS_DATA_DIR": str(tmp_path / "data"),
        "TIDINGS_SECRET_KEY": "a-test-secret-of-some-length",
        "COLUMNS": "200",
    }


@contextmanager
def serve_demo(env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``tidings serve --demo`` on a free port: its address and the demo API key."""
    port = free_port()
    log = (tmp_path / "serve.log").open("w")  # a file, not a pipe nobody reads: it never blocks
    process = subprocess.Popen(
        [*TIDINGS, "serve", "--demo", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail("tidings serve --demo did not answer within 60 s")
        key = (tmp_path / "data" / "demo-api-key.txt").read_text().strip()
        yield base, key
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
        log.close()
