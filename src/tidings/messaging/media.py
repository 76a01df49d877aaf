"""Media of conversations (I5): downloaded from the provider, images over the workspace's limit
re-encoded as JPEG, stored content-addressed under the data directory."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "video/mp4": ".mp4",
    "video/3gpp": ".3gp",
    "audio/ogg": ".ogg",
    "audio/mpeg": ".mp3",
    "audio/aac": ".aac",
    "audio/mp4": ".m4a",
    "audio/amr": ".amr",
    "application/pdf": ".pdf",
    "text/plain": ".txt",
}


@dataclass(frozen=True)
class StoredMedia:
    path: str  # relative to the media root
    mime_type: str
    size: int
    original_size: int
    sha256: str
    compressed: bool


def compress_image(data: bytes, *, limit: int) -> bytes:
    """A JPEG of ``data`` no larger than ``limit`` bytes: lower quality first, then smaller
    dimensions. Raises ``ValueError`` for bytes that are not an image."""
    try:
        opened = Image.open(io.BytesIO(data))
        opened.load()
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"not a readable image: {error}") from None
    image: Image.Image = opened if opened.mode in ("RGB", "L") else opened.convert("RGB")
    scale = 1.0
    while True:
        candidate = image
        if scale < 1.0:
            size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
            candidate = image.resize(size, Image.Resampling.LANCZOS)
        for quality in (85, 70, 55):
            buffer = io.BytesIO()
            candidate.save(buffer, format="JPEG", quality=quality, optimize=True)
            if buffer.tell() <= limit:
                return buffer.getvalue()
        scale *= 0.7


class MediaStore:
    """Files on disk under ``root``, named by content hash so a resent file is stored once."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def save(self, workspace_id: int, data: bytes, mime_type: str) -> tuple[str, str]:
        digest = hashlib.sha256(data).hexdigest()
        relative = Path(str(workspace_id)) / f"{digest}{EXTENSIONS.get(mime_type, '.bin')}"
        target = self.root / relative
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(target.suffix + ".part")
            partial.write_bytes(data)
            partial.replace(target)  # never a half-written file under the final name
        return str(relative), digest

    def path_of(self, relative: str) -> Path:
        resolved = (self.root / relative).resolve()
        if not resolved.is_relative_to(self.root.resolve()):
            raise ValueError("outside the media store")
        return resolved


def store_inbound(
    store: MediaStore, workspace_id: int, data: bytes, mime_type: str, *, compress_over: int
) -> StoredMedia:
    """Keep a customer's file; an image over ``compress_over`` bytes becomes a JPEG within it."""
    mime = mime_type.split(";")[0].strip().lower()
    original = len(data)
    compressed = False
    if mime.startswith("image/") and mime != "image/webp" and original > compress_over:
        data, mime, compressed = compress_image(data, limit=compress_over), "image/jpeg", True
    relative, digest = store.save(workspace_id, data, mime)
    return StoredMedia(relative, mime, len(data), original, digest, compressed)
