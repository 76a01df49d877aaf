"""WhatsApp error codes → what to do about them (the notes' §4, from Meta's error reference).

Decisions are taken on ``error.code``, never on the HTTP status or subcode (Meta's advice);
the HTTP status only breaks the tie for codes we do not know: a 5xx or no answer at all is a
server-side, transient failure; anything else is permanent and kept with its code.
"""

from __future__ import annotations

from tidings.channels.domain import FailureAction, FailureClass

A = FailureAction
_BY_CODE: dict[int, tuple[FailureAction, str]] = {
    0: (A.REAUTHENTICATE, "the app user could not be authenticated"),
    1: (A.RETRY, "invalid request or possible server error"),
    2: (A.RETRY, "temporary downtime or overload"),
    3: (A.FIX_REQUEST, "capability or permission missing"),
    4: (A.RETRY, "the app reached its API call rate limit"),
    10: (A.FIX_REQUEST, "permission not granted or removed"),
    33: (A.PAUSE_CHANNEL, "the business phone number was deleted"),
    100: (A.FIX_REQUEST, "unsupported or misspelled parameter"),
    190: (A.REAUTHENTICATE, "the access token has expired"),
    368: (A.PAUSE_CHANNEL, "the account is restricted for a policy violation"),
    80007: (A.RETRY, "the business account reached its rate limit"),
    130403: (A.UNDELIVERABLE, "the business has blocked this user"),
    130429: (A.RETRY, "throughput limit reached"),
    130472: (A.UNDELIVERABLE, "the user's number is part of an experiment"),
    130497: (A.UNDELIVERABLE, "messaging users in this country is restricted"),
    131000: (A.RETRY, "unknown error while sending"),
    131005: (A.FIX_REQUEST, "permission not granted or removed"),
    131008: (A.FIX_REQUEST, "a required parameter is missing"),
    131009: (A.FIX_REQUEST, "a parameter value is invalid"),
    131016: (A.RETRY, "service temporarily unavailable"),
    131021: (A.FIX_REQUEST, "sender and recipient are the same number"),
    131026: (A.UNDELIVERABLE, "unable to deliver: not a reachable WhatsApp user"),
    131030: (A.UNDELIVERABLE, "recipient not in the test allowed list"),
    131031: (A.PAUSE_CHANNEL, "the business account is locked"),
    131037: (A.PAUSE_CHANNEL, "the number has no approved display name"),
    131042: (A.PAUSE_CHANNEL, "payment method problem"),
    131045: (A.PAUSE_CHANNEL, "phone number registration error"),
    131047: (A.SEND_TEMPLATE, "more than 24 hours since the user's last message: send a template"),
    131048: (A.PAUSE_CHANNEL, "spam rate limit: too many messages were blocked or flagged"),
    131049: (A.RETRY_AFTER_A_DAY, "per-user marketing limit: wait at least 24 hours"),
    131050: (A.OPTED_OUT, "the user stopped marketing messages from this business"),
    131051: (A.FIX_REQUEST, "unsupported message type"),
    131052: (A.FIX_REQUEST, "the user's media could not be downloaded"),
    131053: (A.FIX_REQUEST, "the media could not be uploaded"),
    131056: (A.RETRY_RECIPIENT_LATER, "pair rate limit: too many messages to this user"),
    131057: (A.RETRY_LATER, "the business account is in maintenance"),
    131062: (A.FIX_REQUEST, "this message cannot be sent to a BSUID recipient"),
    131063: (A.PAUSE_CHANNEL, "marketing templates are disabled for the Cloud API"),
    131064: (A.PAUSE_CHANNEL, "messaging limited after template classification violations"),
    132000: (A.FIX_REQUEST, "template parameter count mismatch"),
    132001: (A.FIX_REQUEST, "template missing in this language or not approved"),
    132005: (A.FIX_REQUEST, "translated template text too long"),
    132007: (A.FIX_REQUEST, "template content violates a WhatsApp policy"),
    132008: (A.FIX_REQUEST, "template parameter formatted incorrectly"),
    132012: (A.FIX_REQUEST, "template parameter formatted incorrectly"),
    132015: (A.PAUSE_CHANNEL, "template paused for low quality"),
    132016: (A.FIX_REQUEST, "template permanently disabled"),
    133004: (A.RETRY, "server temporarily unavailable"),
    133010: (A.PAUSE_CHANNEL, "phone number not registered on the WhatsApp Business Platform"),
    135000: (A.FIX_REQUEST, "unknown error with request parameters"),
    137000: (A.UNDELIVERABLE, "recipient identity key hash mismatch"),
}


def classify_whatsapp_error(code: int | None, *, http_status: int | None) -> FailureClass:
    """What a failed send or a ``failed`` status means for the message (X3).

    ``code`` is the Graph ``error.code`` (None when no error body came back); ``http_status``
    is None when no HTTP answer arrived at all (timeout, connection refused).
    """
    if code is not None and code in _BY_CODE:
        action, reason = _BY_CODE[code]
        return FailureClass(action, reason)
    if code is not None and 200 <= code <= 299:
        return FailureClass(A.FIX_REQUEST, "permission not granted or removed")
    if code is not None and 132000 <= code <= 132999:
        return FailureClass(A.FIX_REQUEST, "template error")
    if http_status is None or http_status >= 500:
        return FailureClass(A.RETRY, "no answer or a server error from the provider")
    return FailureClass(A.FIX_REQUEST, f"unknown error code {code}" if code else "rejected")
