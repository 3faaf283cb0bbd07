"""Shrink a photo in the page before it is sent, so an 8 MB phone picture goes up as ~200 KB."""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps

# Four times the served input size (224 px) leaves the server's centre crop plenty of detail.
LONG_SIDE = 1024
JPEG_QUALITY = 90
# Modes whose conversion to RGB is exact; others (alpha, 16-bit, palette) go up unchanged so the
# server converts them the same way it did for training.
_SAFE_MODES = {"RGB", "L", "CMYK", "YCbCr"}


@dataclass(frozen=True)
class Photo:
    body: bytes  # what to send to the model server
    viewable: bool  # Pillow could read it, so the page can show it


def prepare_photo(data: bytes, long_side: int = LONG_SIDE) -> Photo:
    """Upright (EXIF orientation) and at most ``long_side`` px, re-encoded as JPEG.

    Files Pillow cannot read go up unchanged: the handler then says precisely what is wrong.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            # JPEG decoding at 1/2..1/8 scale: much faster and lighter for large phone photos.
            image.draft("RGB", (long_side, long_side))
            image = ImageOps.exif_transpose(image)
    except Exception:  # Pillow raises many types on damaged or hostile files; the server says why
        return Photo(data, viewable=False)
    if image.mode not in _SAFE_MODES:
        return Photo(data, viewable=True)
    image.thumbnail((long_side, long_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=JPEG_QUALITY)
    return Photo(out.getvalue(), viewable=True)
