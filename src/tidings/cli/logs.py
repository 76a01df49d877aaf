"""How the server and the worker log: one format, and no secret in any line.

A WhatsApp number's webhook address ends in its key (whoever knows it can post, though not
sign, updates), and outgoing addresses may carry tokens in their query: the access log shows
the webhook path with the key replaced, and the HTTP client's per-request lines (full URLs)
are not written below WARNING.
"""

from __future__ import annotations

import logging
import re

WEBHOOK_KEY = re.compile(r"(/webhooks/whatsapp/)[^\s/?\"]+")
QUERY = re.compile(r"(https?://[^\s?\"]+)\?[^\s\"]*")


def redact(text: str) -> str:
    """A log line without webhook keys or URL queries."""
    return QUERY.sub(r"\1?…", WEBHOOK_KEY.sub(r"\1…", text))


class Redacting(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            # Formatters may read the arguments themselves (uvicorn's access log does).
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))
    for handler in logging.getLogger().handlers:
        handler.addFilter(Redacting())
    # uvicorn's access log has handlers of its own, made when the server starts.
    logging.getLogger("uvicorn.access").addFilter(Redacting())
