"""Decoding a photo: the accepted formats, pixel and shape limits, reduced decoding of large photos,
EXIF orientation and any mode to RGB; what it cannot read raises InvalidImageError saying why."""
from __future__ import annotations

import io
import warnings

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from contract.formats import ACCEPTED_FORMATS, FORMAT_NAMES

# A 50-megapixel phone photo (8160x6120, or 8192x6144) fits; a decompression bomb does not.
MAX_IMAGE_PIXELS = 52_000_000
# Panoramas stop near 4:1; a longer strip is no lesion photo, and framing it would keep a sliver.
MAX_ASPECT_RATIO = 10
# ISO BMFF brands of HEIF files (an iPhone's "High Efficiency" photos): refused with how to fix it.
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif")
# Modes that Image.reduce averages meaningfully; palette, bilevel and 16-bit images convert first.
_REDUCIBLE_MODES = {"L", "LA", "RGB", "RGBA", "CMYK", "YCbCr", "I", "F"}

_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


class InvalidImageError(ValueError):
    """The request body is not an image we can classify; the message says why."""


def decode_image(data: bytes, draft_size: int | None = None,
                 max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Decode bytes into an upright RGB image.

    ``draft_size`` lets decoding skip detail finer than that size: JPEG decodes at 1/2 to 1/8 scale
    (no full-size image is ever allocated), other formats are reduced by whole factors right after
    decoding, before any copy. The result is never smaller than ``draft_size`` on either side when
    the image is not.
    """
    image = open_image(data, max_pixels)
    if draft_size:
        image.draft("RGB", (draft_size, draft_size))
    try:
        image.load()
        image = ImageOps.exif_transpose(reduce_to(image, draft_size))
        return reduce_to(to_rgb(image), draft_size)
    except Exception as exc:  # Pillow raises many types on damaged or hostile files
        raise InvalidImageError(f"the image could not be decoded: {exc}") from None


def open_image(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> ImageFile.ImageFile:
    """Read only the header of an accepted format and check the size and shape it announces."""
    if not data:
        raise InvalidImageError("the request body is empty; send the image bytes")
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        raise InvalidImageError("HEIC/HEIF photos are not accepted; send a JPEG (on an iPhone: "
                                "Settings > Camera > Formats > Most Compatible)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except UnidentifiedImageError:
        raise InvalidImageError(
            f"the body ({len(data)} bytes) is not an image in an accepted format; send a {FORMAT_NAMES}"
        ) from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise InvalidImageError(f"the image has too many pixels to be a photo: {exc}") from None
    except Exception as exc:  # a damaged header can raise from inside a format's parser
        raise InvalidImageError(f"the image header could not be read: {exc}") from None
    width, height = image.size
    if width * height > max_pixels:
        raise InvalidImageError(
            f"the image is {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,}"
        )
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise InvalidImageError(
            f"the image is {width}x{height} pixels, a strip rather than a photo; the longer side "
            f"may be at most {MAX_ASPECT_RATIO} times the shorter"
        )
    return image


def reduce_to(image: Image.Image, size: int | None) -> Image.Image:
    """``image`` shrunk by the largest whole factor that keeps both sides at least ``size`` (box
    averaging, alpha-aware); unchanged when there is no such factor or its mode cannot average."""
    factor = min(image.size) // size if size else 1
    if factor < 2 or image.mode not in _REDUCIBLE_MODES:
        return image
    return image.reduce(factor)


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
