"""No secret in a log line: webhook keys and URL queries are taken out."""

from __future__ import annotations

import logging

from tidings.cli.logs import Redacting, redact


def test_webhook_keys_and_url_queries_are_taken_out() -> None:
    line = 'POST /webhooks/whatsapp/sJnAtAomPraAKncP0Epno HTTP/1.1" 200'
    assert redact(line) == 'POST /webhooks/whatsapp/… HTTP/1.1" 200'
    assert redact("GET https://crm.example/hook?token=abc123 done") == (
        "GET https://crm.example/hook?… done"
    )


def test_the_filter_cleans_arguments_that_formatters_read_themselves() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s"',
        ("127.0.0.1:5", "POST", "/webhooks/whatsapp/secretkey"), None,
    )  # fmt: skip
    assert Redacting().filter(record)
    assert record.getMessage() == '127.0.0.1:5 - "POST /webhooks/whatsapp/…"'
    assert "secretkey" not in str(record.args)
