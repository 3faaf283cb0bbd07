"""Framing a photo at the model's input shape, as the server frames it."""
from __future__ import annotations

from PIL import Image


def input_shape(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """(height, width) from a release's ``input_size``: an int means a square (releases up to 1.0)."""
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def fit_to_frame(image: Image.Image, size: int | tuple[int, int]) -> Image.Image:
    """Scale ``image`` to exactly ``size`` (height, width), cutting as little as possible.

    A portrait photo is turned a quarter to match a landscape frame (a lesion has no upright), and
    only the excess of the longer side is cut, centred. Cropping happens in source coordinates
    (``resize(box=...)``), so a hostile 1,000,000 x 1 image never allocates more than the frame.
    """
    height, width = input_shape(size)
    if (image.width - image.height) * (width - height) < 0:
        image = image.transpose(Image.Transpose.ROTATE_90)
    scale = min(image.width / width, image.height / height)
    box_width, box_height = width * scale, height * scale
    # Rounding can put the box a hair outside the image (112 * (225 / 112) > 225), which Pillow
    # refuses; the box never needs to leave it.
    left, top = max(0.0, (image.width - box_width) / 2), max(0.0, (image.height - box_height) / 2)
    return image.resize((width, height), Image.Resampling.BILINEAR,
                        box=(left, top, min(image.width, left + box_width),
                             min(image.height, top + box_height)))
