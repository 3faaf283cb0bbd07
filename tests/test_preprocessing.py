"""Decoding and the shared transform: every Pillow mode, EXIF orientation, bombs, request shapes."""
from __future__ import annotations

import base64
import io

import pytest
import torch
from PIL import Image

from handler.batch import request_bytes
from handler.preprocessing import (InvalidImageError, MAX_IMAGE_PIXELS, decode_image,
                                   eval_transform, normalize)

EXIF_ORIENTATION = 0x0112


def encode(image: Image.Image, fmt: str = "PNG", **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def grey_in(mode: str, level: int) -> Image.Image:
    """A 40x30 image of one grey ``level`` (0-255), expressed in ``mode``."""
    if mode in ("I;16", "I"):
        return Image.new(mode, (40, 30), level * 256)
    base = Image.new("RGBA", (40, 30), (level, level, level, 255))
    if mode == "P":
        return base.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE)
    if mode == "CMYK":
        return base.convert("RGB").convert("CMYK")
    return base.convert(mode)


@pytest.mark.parametrize("mode,fmt", [("L", "PNG"), ("LA", "PNG"), ("P", "PNG"), ("RGBA", "PNG"),
                                      ("CMYK", "TIFF"), ("CMYK", "JPEG"), ("I;16", "PNG"),
                                      ("I", "TIFF"), ("RGB", "BMP"), ("RGB", "WEBP")])
def test_every_mode_decodes_to_the_same_rgb(mode, fmt):
    data = encode(grey_in(mode, 128), fmt)
    image = decode_image(data)
    assert image.mode == "RGB" and image.size == (40, 30)
    red, green, blue = image.getpixel((20, 15))
    assert all(abs(channel - 128) <= 3 for channel in (red, green, blue)), (mode, fmt, image.getpixel((20, 15)))


def test_transparent_pixels_become_white_not_black():
    image = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    assert decode_image(encode(image)).getpixel((5, 5)) == (255, 255, 255)
    palette = Image.new("P", (10, 10), 0)
    palette.putpalette([0, 0, 0] * 256)
    palette.info["transparency"] = 0
    assert decode_image(encode(palette)).getpixel((5, 5)) == (255, 255, 255)


@pytest.mark.parametrize("orientation,transpose", [(3, Image.Transpose.ROTATE_180),
                                                   (6, Image.Transpose.ROTATE_90),
                                                   (8, Image.Transpose.ROTATE_270)])
def test_exif_orientation_restores_the_upright_pixels(fixture_images, orientation, transpose):
    upright = Image.open(io.BytesIO(fixture_images["MEL_ISIC_0024310.jpg"])).convert("RGB")
    # A camera stores the sensor's pixels and says how to turn them in the EXIF tag.
    stored = upright.transpose(transpose)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    decoded = decode_image(encode(stored, "PNG", exif=exif.tobytes()))
    assert decoded.size == upright.size
    assert torch.equal(eval_transform(decoded, 64), eval_transform(upright, 64))


def test_dimensions_beyond_the_pixel_limit_are_refused_before_decoding():
    side = int(MAX_IMAGE_PIXELS ** 0.5) + 10
    # Only the header is read, so a lazily built image of this size costs nothing to check.
    header_only = encode(Image.new("1", (side, side)), "PNG")
    with pytest.raises(InvalidImageError, match="limit is"):
        decode_image(header_only)


@pytest.mark.parametrize("data,message", [(b"", "empty"), (b"just some text", "not an image"),
                                          (b"\xff\xd8\xff\xe0" + b"\x00" * 20, "not an image|could not be decoded")])
def test_garbage_raises_a_clear_error(data, message):
    with pytest.raises(InvalidImageError, match=message):
        decode_image(data)


def test_truncated_jpeg_is_refused(fixture_images):
    data = fixture_images["NV_ISIC_0024306.jpg"]
    with pytest.raises(InvalidImageError, match="could not be decoded"):
        decode_image(data[: len(data) // 2])


def test_jpeg_draft_never_decodes_below_the_requested_size():
    photo = encode(Image.new("RGB", (4000, 3000), (200, 120, 90)), "JPEG")
    image = decode_image(photo, draft_size=224)
    assert min(image.size) >= 224 and image.size[0] < 4000


def test_eval_transform_is_a_centred_square_and_normalize_matches_mean_std():
    image = Image.new("RGB", (200, 150), (124, 116, 104))
    tensor = eval_transform(image, 96)
    assert tensor.shape == (3, 96, 96) and tensor.dtype == torch.uint8
    normalised = normalize(tensor.unsqueeze(0))
    assert normalised.abs().max() < 0.02  # the colour is ImageNet's mean, so it maps to ~0


@pytest.mark.parametrize("row", [
    {"body": b"IMG"}, {"body": bytearray(b"IMG")}, {"data": b"IMG"}, {"file": b"IMG"},
    {"body": {"data": base64.b64encode(b"IMG").decode()}},
    {"data": base64.b64encode(b"IMG").decode()},
])
def test_request_bytes_finds_the_image_in_every_request_shape(row):
    assert request_bytes(row) == b"IMG"


@pytest.mark.parametrize("row,message", [
    ({"other": b"x"}, "no image in the request"),
    ({"body": {"image": "x"}}, "JSON bodies"),
    ({"body": "this is not base64!"}, "is text"),
    ({"body": [1, 2]}, "unexpected JSON value"),
])
def test_request_bytes_explains_what_was_wrong(row, message):
    with pytest.raises(InvalidImageError, match=message):
        request_bytes(row)
