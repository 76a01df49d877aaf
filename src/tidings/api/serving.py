"""Serving the app with uvicorn, so that stopping is prompt: the web app's live streams never
end on their own, and uvicorn waits for every open response before it stops."""

from __future__ import annotations

import socket
import threading

import uvicorn
from fastapi import FastAPI
from starlette.requests import HTTPConnection

# Longer than any ordinary request takes; what is still running then is cancelled.
GRACEFUL_SHUTDOWN_SECONDS = 30


def closing_signal(app: FastAPI) -> threading.Event:
    """Set once the server starts to stop: long-lived responses end at their next tick."""
    event: threading.Event = app.state.closing
    return event


def is_closing(connection: HTTPConnection) -> bool:
    return closing_signal(connection.app).is_set()


class GracefulServer(uvicorn.Server):
    """uvicorn's server, which tells the app it is stopping before it waits for the open
    responses, so a browser's open live feed does not hold a restart or a deploy."""

    def __init__(self, app: FastAPI, *, host: str, port: int, log_level: str) -> None:
        super().__init__(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                log_level=log_level,
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
            )
        )
        self.app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        closing_signal(self.app).set()
        await super().shutdown(sockets)
