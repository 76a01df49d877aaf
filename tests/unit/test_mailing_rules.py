"""The pure rules of e-mail: tokens, tracked links, the text part, machine signals, SMTP
reply classes and rendering."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.kernel.errors import TidingsError
from tidings.mailing.domain import (
    UNSUBSCRIBE_MARK,
    SmtpStage,
    TokenKind,
    classify_smtp_reply,
    compose,
    links_of,
    machine_signal,
    make_token,
    read_token,
    render_email,
)

KEY = b"k" * 32


@given(
    message_id=st.integers(min_value=1, max_value=2**63 - 1),
    link=st.integers(min_value=0, max_value=65535),
    at=st.integers(min_value=0, max_value=200),
    char=st.sampled_from("ABCabc019-_"),
)
def test_a_token_reads_back_and_any_changed_character_is_refused(
    message_id: int, link: int, at: int, char: str
) -> None:
    token = make_token(KEY, TokenKind.CLICK, message_id, link)
    claims = read_token(KEY, token, TokenKind.CLICK)
    assert claims is not None and (claims.message_id, claims.link) == (message_id, link)
    position = at % len(token)
    changed = token[:position] + char + token[position + 1 :]
    if changed != token:
        assert read_token(KEY, changed, TokenKind.CLICK) is None
    assert read_token(KEY, token, TokenKind.OPEN) is None  # another kind
    assert read_token(b"x" * 32, token, TokenKind.CLICK) is None  # another installation


def test_links_are_collected_once_in_order_and_only_web_links_are_tracked() -> None:
    body = (
        "<a href=\"https://a.example/1?x=1&amp;y=2\">one</a><A HREF='http://b.example'>two</A>"
        '<a href="mailto:x@y.example">mail</a><a href="#top">top</a>'
        '<a class="c" href="https://a.example/1?x=1&amp;y=2">again</a>'
        f'<a href="{UNSUBSCRIBE_MARK}">leave</a>'
    )
    assert links_of(body) == ["https://a.example/1?x=1&y=2", "http://b.example"]
    composed = compose(
        body_html=body,
        body_text="see https://a.example/1?x=1&y=2",
        links=links_of(body),
        click_url=lambda i: f"https://t.example/c/{i}",
        open_url="https://t.example/o.gif",
        unsubscribe_url="https://t.example/u",
        footer="Unsubscribe",
    )
    assert composed.html.count('href="https://t.example/c/0"') == 2
    assert "HREF='https://t.example/c/1'" in composed.html
    assert 'href="mailto:x@y.example"' in composed.html and 'href="#top"' in composed.html
    assert 'href="https://t.example/u">leave' in composed.html  # placed by the author
    assert composed.html.count("https://t.example/u") == 1  # so no footer
    assert composed.html.endswith('height:1px">')
    assert composed.text.startswith("see https://t.example/c/0")
    assert composed.text.rstrip().endswith("Unsubscribe: https://t.example/u")


@pytest.mark.parametrize(
    ("method", "agent", "seconds", "machine"),
    [
        ("GET", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5) AppleWebKit/605.1.15", 120.0, None),
        ("HEAD", "Mozilla/5.0", 120.0, "HEAD request"),
        ("GET", "", 120.0, "no user agent"),
        ("GET", "Mozilla/5.0 (compatible; Barracuda Sentinel)", 120.0, "scanner agent (barracuda)"),
        ("GET", "python-requests/2.32", 120.0, "scanner agent (python-requests)"),
        ("GET", "Mozilla/5.0 (Windows NT 10.0)", 2.0, "within 10 s of sending"),
    ],
)
def test_machine_signals(method: str, agent: str, seconds: float, machine: str | None) -> None:
    found = machine_signal(method=method, user_agent=agent, seconds_after_send=seconds, within=10)
    assert found == machine


@pytest.mark.parametrize(
    ("code", "text", "stage", "permanent", "undeliverable"),
    [
        (451, "4.2.0 try later", SmtpStage.RECIPIENT, False, False),
        (421, "closing", SmtpStage.CONNECT, False, False),
        (550, "5.1.1 no such user", SmtpStage.RECIPIENT, True, True),
        (550, "mailbox unavailable", SmtpStage.RECIPIENT, True, True),
        (554, "5.7.1 message refused as spam", SmtpStage.DATA, True, False),
        (552, "5.3.4 message too big", SmtpStage.DATA, True, False),
        (550, "5.1.1 user unknown", SmtpStage.DATA, True, True),
        (550, "5.2.1 mailbox disabled", SmtpStage.DATA, True, True),
        (553, "sender refused", SmtpStage.SENDER, True, False),
    ],
)
def test_smtp_replies(
    code: int, text: str, stage: SmtpStage, permanent: bool, undeliverable: bool
) -> None:
    verdict = classify_smtp_reply(code, text, stage)
    assert (verdict.permanent, verdict.undeliverable) == (permanent, undeliverable)
    assert verdict.reason.startswith(f"SMTP {code} at {stage.value}: ")


def test_rendering_escapes_html_keeps_the_subject_plain_and_makes_the_text_part() -> None:
    rendered = render_email(
        subject="Hi {{ contact.first_name }}",
        html='<p>Dear {{ contact.first_name }},</p><ul><li><a href="https://s.example/a">A</a></li></ul>',
        text=None,
        variables={"contact": {"first_name": "<Ann & Bo>"}},
    )
    assert rendered.subject == "Hi <Ann & Bo>"
    assert "Dear &lt;Ann &amp; Bo&gt;," in rendered.html
    assert "Dear <Ann & Bo>," in rendered.text and "[A](https://s.example/a)" in rendered.text
    assert rendered.links == ["https://s.example/a"]
    with pytest.raises(TidingsError) as refused:
        render_email(subject="{{ x }}", html="<p>x</p>", text=None, variables={})
    assert refused.value.field == "subject"
