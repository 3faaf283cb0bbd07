"""Prepare a photo in the page before it is sent: an 8 MB phone picture goes up as a ~200 KB JPEG
of its pixels alone, so the user's location (GPS EXIF) and other metadata never leave the page."""
from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from imaging.decode import decode_image

# Eight times the served input's longer side leaves the server's framing plenty of detail.
LONG_SIDE = 1024
JPEG_QUALITY = 90


@dataclass(frozen=True)
class Photo:
    body: bytes  # what to send to the model server: an RGB JPEG with no metadata


def prepare_photo(data: bytes, long_side: int = LONG_SIDE) -> Photo:
    """Upright (EXIF orientation), RGB, at most ``long_side`` px, re-encoded as JPEG.

    The page decodes with the server's own rules (formats, pixel limit, shape), so what it cannot
    read raises ``InvalidImageError`` saying why, and nothing is sent.
    """
    image = decode_image(data, draft_size=long_side)
    image.thumbnail((long_side, long_side), Image.Resampling.LANCZOS)
    # Only the pixels travel: a new image carries none of the original's EXIF, XMP or ICC data.
    pixels = Image.frombytes("RGB", image.size, image.tobytes())
    out = io.BytesIO()
    pixels.save(out, "JPEG", quality=JPEG_QUALITY)
    return Photo(out.getvalue())
