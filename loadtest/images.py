"""The rotating set of real dermoscopy images that the load test and the benchmark send.

HAM10000 images when ../shared/data holds the dataset, otherwise the eight small fixtures committed
with the tests. This machine's copy of HAM10000 is 200x150 (the published images are 600x450), so
``at_size`` re-encodes them at the sizes clients really send: the page's 1024 px on the long side,
and a phone's full 12 MP (4000x3000). The dataset itself is never committed. ``smooth_photo``
draws a synthetic one of any size, for the memory benchmark and the decoder's tests.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

import settings

DATASET_IMAGES = settings.REPO / settings.DATA_DIRS[0] / "images"
FIXTURE_IMAGES = settings.REPO / "tests" / "fixtures" / "images"
DEFAULT_LIMIT = 64


def default_image_dir() -> Path:
    return DATASET_IMAGES if DATASET_IMAGES.is_dir() else FIXTURE_IMAGES


def read_photos(directory: Path | None = None, limit: int = DEFAULT_LIMIT) -> list[tuple[str, bytes]]:
    """Up to ``limit`` JPEGs as (file name, bytes), in a fixed order so runs send the same set."""
    directory = directory or default_image_dir()
    paths = sorted(directory.glob("*.jpg"))[:limit]
    if not paths:
        raise FileNotFoundError(f"no .jpg images in {directory}")
    return [(path.name, path.read_bytes()) for path in paths]


def at_size(images: list[tuple[str, bytes]], size: tuple[int, int] | None,
            quality: int = 90) -> list[tuple[str, bytes]]:
    """The images as JPEGs of ``size`` (width, height; None keeps the files as they are).

    Upscaled photos are smoother than a camera's, so they decode slightly faster than a real photo
    with as many pixels: a lower bound on decoding cost at that size."""
    if size is None:
        return images
    resized = []
    for name, data in images:
        out = io.BytesIO()
        with Image.open(io.BytesIO(data)) as image:
            image.convert("RGB").resize(size, Image.Resampling.BICUBIC).save(out, "JPEG", quality=quality)
        resized.append((name, out.getvalue()))
    return resized


def smooth_photo(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """Gradients over the whole picture: decodes to full size like any photo, yet compresses to a
    few MB at 48 MP, and any mistake of scale or position in the framing shows in the frame."""
    width, height = size
    x = (np.arange(width, dtype=np.uint32) * 255 // width).astype(np.uint8)
    y = (np.arange(height, dtype=np.uint32) * 255 // height).astype(np.uint8)
    bands = [np.broadcast_to(x, (height, width)), np.broadcast_to(y[:, None], (height, width)),
             np.broadcast_to(((x[None, :].astype(np.uint16) + y[:, None]) // 2).astype(np.uint8),
                             (height, width))]
    if mode == "RGBA":
        bands.append(np.full((height, width), 200, dtype=np.uint8))
    return Image.fromarray(np.stack(bands, -1), mode)
