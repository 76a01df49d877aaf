"""The MIME message the SMTP adapter builds: what a receiving server and a mail client read."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy

import pytest

from tidings.channels.email.smtp import Envelope, build_message


def envelope(subject: str, text: str, html: str) -> Envelope:
    return Envelope(
        from_name="茶行 Tea House",
        from_address="news@teahouse.example",
        reply_to="hello@teahouse.example",
        to="yi-jun@mail.example",
        subject=subject,
        html=html,
        text=text,
        message_id="<tidings.7.abc@teahouse.example>",
        date=datetime(2026, 11, 24, 9, 30, tzinfo=UTC),
        headers={"List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
    )


@pytest.mark.parametrize(
    ("subject", "text", "encoding"),
    [
        ("Winter teas for you", "Dear Yi-jun, our winter list is here. " * 20, "quoted-printable"),
        ("冬季茶單", "怡君您好，冬天到了，為您準備了今年的阿里山高山茶。" * 20, "base64"),
        ("โปรโมชั่นฤดูหนาว", "สวัสดีค่ะ ชาอู่หลงฤดูหนาวมาแล้ว " * 20, "base64"),
    ],
)
def test_message_reads_back_exactly_with_seven_bit_encodings(
    subject: str, text: str, encoding: str
) -> None:
    html = f"<p>{text}</p>"
    data = build_message(envelope(subject, text, html))

    assert data.isascii(), "7-bit on the wire: every server takes it"
    assert b"\n" not in data.replace(b"\r\n", b""), "CRLF line ends only"
    assert all(len(line) <= 998 for line in data.split(b"\r\n")), "RFC 5322 line limit"
    parsed = message_from_bytes(data, policy=policy.default)
    assert parsed["Subject"] == subject
    assert parsed["From"].addresses[0].display_name == "茶行 Tea House"
    assert parsed["Message-ID"] == "<tidings.7.abc@teahouse.example>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed.get_content_type() == "multipart/alternative"
    plain, rich = parsed.iter_parts()
    assert (plain.get_content_type(), rich.get_content_type()) == ("text/plain", "text/html")
    assert plain["Content-Transfer-Encoding"] == encoding
    assert plain.get_content() == text
    assert rich.get_content() == html
