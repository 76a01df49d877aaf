"""Media (I5): customers' files downloaded through the media endpoint and kept, images over
the limit re-encoded as JPEG; uploads checked against WhatsApp's types and sizes."""

from __future__ import annotations

import io
import os
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.conftest import Tenant
from tests.live import fast_config, live_stack
from tidings.bootstrap import Tidings
from tidings.kernel.errors import TidingsError
from tidings.messaging.domain import MB, media_kind_for
from tidings.messaging.media import MediaStore, compress_image, store_inbound


def noisy_png(width: int, height: int) -> bytes:
    """A PNG that does not compress: random pixels (a photo's worst case)."""
    image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_channel_limits_are_enforced_with_a_clear_error() -> None:
    assert media_kind_for("image/jpeg", 1000) == "image"
    assert media_kind_for("image/webp", 1000) == "sticker"
    assert media_kind_for("application/pdf; charset=binary", 50 * MB) == "document"
    with pytest.raises(TidingsError) as caught:
        media_kind_for("image/png", 5 * MB + 1)
    assert caught.value.field == "file" and "5 MB" in caught.value.message
    with pytest.raises(TidingsError) as caught:
        media_kind_for("image/gif", 10)
    assert caught.value.code == "unsupported_media"


def test_a_large_image_becomes_a_jpeg_under_the_limit(tmp_path: Path) -> None:
    big = noisy_png(1500, 1500)
    assert len(big) > 5 * MB
    small = compress_image(big, limit=5 * MB)
    assert len(small) <= 5 * MB and small[:3] == b"\xff\xd8\xff"  # a JPEG
    stored = store_inbound(MediaStore(tmp_path), 7, big, "image/png", compress_over=5 * MB)
    assert stored.compressed and stored.mime_type == "image/jpeg"
    assert stored.original_size == len(big) and stored.size <= 5 * MB
    kept = store_inbound(
        MediaStore(tmp_path), 7, b"%PDF-1.4 ...", "application/pdf", compress_over=5 * MB
    )
    assert not kept.compressed and (tmp_path / kept.path).read_bytes() == b"%PDF-1.4 ..."
    with pytest.raises(ValueError, match="outside"):
        MediaStore(tmp_path).path_of("../../etc/passwd")


def test_a_customers_photo_is_downloaded_compressed_and_served(
    tidings: Tidings, tenant: Tenant
) -> None:
    photo = noisy_png(1500, 1500)
    with live_stack(tidings, tenant, fast_config()) as stack:
        sent = httpx.post(
            f"{stack.simulator.url}/_simulator/customers/66812345678/media",
            content=photo,
            headers={"Content-Type": "image/png"},
            params={"caption": "สีนี้มีไหม"},
        )
        assert sent.status_code == 202

        def stored() -> bool:
            messages = stack.messages()
            return bool(messages) and "stored_media" in messages[0]["content"]

        stack.drain(stored)
        (message,) = stack.messages()
        assert message["kind"] == "image"
        kept = message["content"]["stored_media"]
        assert kept["compressed"] and kept["mime_type"] == "image/jpeg" and kept["size"] <= 5 * MB
        served = stack.api.get(f"/api/v1/messages/{message['id']}/media")
        assert served.headers["content-type"] == "image/jpeg"
        assert len(served.content) == kept["size"]


def test_uploads_are_checked_then_sent_by_id(tidings: Tidings, tenant: Tenant) -> None:
    with live_stack(tidings, tenant, fast_config()) as stack:
        url = f"/api/v1/whatsapp-numbers/{stack.number_id}/media"
        too_big = stack.api.post(url, files={"file": ("a.png", b"x" * (5 * MB + 1), "image/png")})
        assert too_big.status_code == 422 and too_big.json()["error"]["field"] == "file"
        gif = stack.api.post(url, files={"file": ("a.gif", b"GIF89a", "image/gif")})
        assert gif.status_code == 422 and gif.json()["error"]["code"] == "unsupported_media"
        anonymous = httpx.post(
            stack.app_url + url, files={"file": ("a.jpg", b"\xff\xd8\xff", "image/jpeg")}
        )
        assert anonymous.status_code == 401
        uploaded = stack.api.post(url, files={"file": ("a.jpg", b"\xff\xd8\xffdata", "image/jpeg")})
        assert uploaded.status_code == 201, uploaded.text
        media_id = uploaded.json()["id"]
        assert stack.simulator.simulator.media[media_id] == (b"\xff\xd8\xffdata", "image/jpeg")


def test_a_customers_html_or_svg_is_served_so_that_it_cannot_run(
    tidings: Tidings, tenant: Tenant
) -> None:
    hostile = {
        "text/html": b"<html><script>fetch('/api/v1/contacts',{method:'POST'})</script></html>",
        "image/svg+xml": b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
    }
    with live_stack(tidings, tenant, fast_config()) as stack:
        for mime_type, content in hostile.items():
            sent = httpx.post(
                f"{stack.simulator.url}/_simulator/customers/66812345678/media",
                content=content,
                headers={"Content-Type": mime_type},
            )
            assert sent.status_code == 202, sent.text

        def stored() -> bool:
            messages = stack.messages()
            return len(messages) == 2 and all("stored_media" in m["content"] for m in messages)

        stack.drain(stored)
        for message in stack.messages():
            served = stack.api.get(f"/api/v1/messages/{message['id']}/media")
            assert served.status_code == 200
            assert served.headers["content-disposition"].startswith("attachment;")
            assert served.headers["x-content-type-options"] == "nosniff"
            assert served.headers["content-security-policy"].startswith("sandbox")


def test_a_customers_photo_is_shown_inline_but_sandboxed(tidings: Tidings, tenant: Tenant) -> None:
    with live_stack(tidings, tenant, fast_config()) as stack:
        httpx.post(
            f"{stack.simulator.url}/_simulator/customers/66812345678/media",
            content=noisy_png(40, 40),
            headers={"Content-Type": "image/png"},
        )
        stack.drain(lambda: any("stored_media" in m["content"] for m in stack.messages()))
        (message,) = stack.messages()
        served = stack.api.get(f"/api/v1/messages/{message['id']}/media")
        assert served.headers["content-disposition"].startswith("inline;")
        assert served.headers["content-security-policy"].startswith("sandbox")
