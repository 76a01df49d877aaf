"""WhatsApp error codes are classified transient or permanent as issue #3 and the notes say."""

from __future__ import annotations

import pytest

from tidings.channels.domain import FailureAction
from tidings.channels.whatsapp.errors import classify_whatsapp_error


@pytest.mark.parametrize("code", [130429, 131000, 131016, 4, 80007, 2])
def test_throughput_and_server_side_failures_are_retried(code: int) -> None:
    failure = classify_whatsapp_error(code, http_status=400)
    assert failure.is_transient and failure.action == FailureAction.RETRY


@pytest.mark.parametrize(
    ("code", "action"),
    [
        (131026, FailureAction.UNDELIVERABLE),
        (131047, FailureAction.SEND_TEMPLATE),
        (131050, FailureAction.OPTED_OUT),
        (131051, FailureAction.FIX_REQUEST),
        (132001, FailureAction.FIX_REQUEST),
        (132099, FailureAction.FIX_REQUEST),
        (100, FailureAction.FIX_REQUEST),
        (190, FailureAction.REAUTHENTICATE),
        (368, FailureAction.PAUSE_CHANNEL),
        (131048, FailureAction.PAUSE_CHANNEL),
    ],
)
def test_permanent_failures_fail_at_once_with_a_reason(code: int, action: FailureAction) -> None:
    failure = classify_whatsapp_error(code, http_status=400)
    assert not failure.is_transient
    assert failure.action == action and failure.reason


def test_limits_that_lift_later_are_retried_on_their_own_schedule() -> None:
    assert (
        classify_whatsapp_error(131056, http_status=400).action
        == FailureAction.RETRY_RECIPIENT_LATER
    )
    assert (
        classify_whatsapp_error(131049, http_status=None).action == FailureAction.RETRY_AFTER_A_DAY
    )
    assert classify_whatsapp_error(131057, http_status=400).action == FailureAction.RETRY_LATER


def test_unknown_codes_follow_the_http_answer() -> None:
    assert classify_whatsapp_error(None, http_status=None).is_transient  # timeout
    assert classify_whatsapp_error(None, http_status=503).is_transient
    assert classify_whatsapp_error(999_999, http_status=502).is_transient
    assert not classify_whatsapp_error(999_999, http_status=400).is_transient
