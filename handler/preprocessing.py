"""Image decoding and the evaluation transform, shared by the handler and by training.

Everything that decides what the network sees at serving time (input size, mean, std, resizing and
cropping) lives here, and training imports it, so the served preprocessing is the evaluated one.
"""
from __future__ import annotations

import io
import warnings

import torch
from PIL import Image, ImageOps, UnidentifiedImageError

INPUT_SIZE = 224
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# A 50-megapixel phone photo (8160x6120) fits; a decompression bomb does not.
MAX_IMAGE_PIXELS = 64_000_000

_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


class InvalidImageError(ValueError):
    """The request body is not an image we can classify; the message says why."""


def decode_image(data: bytes, draft_size: int | None = None,
                 max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Decode bytes into an upright RGB image.

    ``draft_size`` lets JPEG decoding skip detail finer than that size (a large speed-up for phone
    photos); the result is never smaller than ``draft_size`` on either side when the image is not.
    """
    if not data:
        raise InvalidImageError("the request body is empty; send the image bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise InvalidImageError(
            f"the body ({len(data)} bytes) is not an image Pillow can read; send a JPEG, PNG, WebP or BMP"
        ) from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise InvalidImageError(f"the image has too many pixels to be a photo: {exc}") from None
    width, height = image.size
    if width * height > max_pixels:
        raise InvalidImageError(
            f"the image is {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,}"
        )
    if draft_size and image.format == "JPEG":
        image.draft("RGB", (draft_size, draft_size))
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImageError(f"the image could not be decoded: {exc}") from None
    return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB: alpha is composited on white, 16-bit data scaled to 8 bits."""
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT_MODES:
        # A plain convert would clip 16-bit values at 255 and turn most of the image white.
        image = image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("LA", "La", "PA", "RGBa", "RGBA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def resize_and_crop(image: Image.Image, size: int) -> Image.Image:
    """Scale the short side to ``size`` and cut the centred ``size`` x ``size`` square."""
    width, height = image.size
    scale = size / min(width, height)
    new_width, new_height = max(size, round(width * scale)), max(size, round(height * scale))
    image = image.resize((new_width, new_height), Image.Resampling.BILINEAR)
    left, top = (new_width - size) // 2, (new_height - size) // 2
    return image.crop((left, top, left + size, top + size))


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB image as a uint8 CHW tensor; stays uint8 so batches are cheap to build."""
    array = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return array.view(image.height, image.width, 3).permute(2, 0, 1).contiguous()


def eval_transform(image: Image.Image, size: int = INPUT_SIZE) -> torch.Tensor:
    """The deterministic transform used for validation, test and serving (uint8 CHW)."""
    return image_to_tensor(resize_and_crop(image, size))


def normalize(batch: torch.Tensor, mean: tuple[float, ...] = MEAN,
              std: tuple[float, ...] = STD) -> torch.Tensor:
    """uint8 NCHW (on any device) to the float input the network expects."""
    mean_t = torch.tensor(mean, device=batch.device).view(1, -1, 1, 1) * 255
    std_t = torch.tensor(std, device=batch.device).view(1, -1, 1, 1) * 255
    return (batch.float() - mean_t) / std_t
