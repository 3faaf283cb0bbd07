"""Decoding and the shared transform: every Pillow mode, EXIF orientation, bombs, request shapes,
native-aspect framing and Shades of Gray colour constancy."""
from __future__ import annotations

import base64
import contextlib
import io
import re
import resource
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

from handler.batch import request_bytes
from handler.preprocessing import eval_transform, image_to_tensor, normalize, shades_of_gray
from imaging.decode import MAX_IMAGE_PIXELS, InvalidImageError, decode_image, open_image
from imaging.framing import fit_to_frame
from loadtest.images import smooth_photo

# A release's input (2.0's): 4:3, as dermatoscopes photograph, so the lesion's border stays in.
FRAME = (96, 128)

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
                                      ("CMYK", "JPEG"), ("I;16", "PNG"), ("L", "JPEG"),
                                      ("RGB", "WEBP"), ("RGBA", "WEBP")])
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


def test_a_fifty_megapixel_phone_photo_fits_and_more_is_refused_from_the_header():
    assert open_image(encode(Image.new("1", (8192, 6144)), "PNG")).size == (8192, 6144)
    with pytest.raises(InvalidImageError, match="53,084,160 pixels; the limit is 52,000,000"):
        open_image(encode(Image.new("1", (8640, 6144)), "PNG"))


@pytest.mark.parametrize("size", [(1_000_000, 1), (1, 1_000_000), (100_000, 1), (1, 100_000),
                                  (1100, 100), (100, 1100)])
def test_a_strip_longer_than_ten_to_one_is_refused(size):
    with pytest.raises(InvalidImageError, match=f"{size[0]}x{size[1]} pixels, a strip"):
        decode_image(encode(Image.new("RGB", size), "PNG"))


def test_a_ten_to_one_panorama_is_still_a_photo():
    assert decode_image(encode(Image.new("RGB", (1000, 100)), "PNG")).size == (1000, 100)


@pytest.mark.parametrize("fmt", ["JPEG", "MPO", "PNG", "WEBP"])
def test_the_formats_phones_and_cameras_save_are_read(fmt):
    image = Image.new("RGB", (40, 30), (128, 128, 128))
    assert decode_image(encode(image, fmt)).size == (40, 30)


@pytest.mark.parametrize("fmt", ["TIFF", "BMP", "GIF", "PPM", "TGA", "PCX", "ICO", "SGI", "DDS"])
def test_formats_no_phone_sends_are_refused_unread(fmt):
    with pytest.raises(InvalidImageError, match="not an image in an accepted format; send a JPEG, PNG"):
        decode_image(encode(Image.new("RGB", (40, 30), (128, 128, 128)), fmt))


def test_postscript_never_reaches_ghostscript():
    eps = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 40 30\n"
           b"/Times-Roman findfont 12 scalefont setfont 5 10 moveto (lesion) show\n%%EOF\n")
    with pytest.raises(InvalidImageError, match="not an image in an accepted format"):
        decode_image(eps)


def test_heic_is_refused_with_how_to_send_a_jpeg():
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64
    with pytest.raises(InvalidImageError, match="HEIC.*Most Compatible"):
        decode_image(heic)


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


@pytest.mark.parametrize("mode,fmt", [("RGB", "PNG"), ("RGBA", "PNG"), ("RGB", "WEBP")])
def test_a_large_photo_is_reduced_on_decoding_and_frames_as_at_full_size(mode, fmt):
    data = encode(smooth_photo((1600, 1200), mode), fmt)
    reduced = decode_image(data, draft_size=128)
    assert min(reduced.size) >= 128 and reduced.width < 400, reduced.size
    full = eval_transform(decode_image(data), FRAME).float()
    assert (eval_transform(reduced, FRAME).float() - full).abs().mean() < 1.5


def test_a_reduced_photo_keeps_its_exif_orientation():
    stored = smooth_photo((1152, 864))  # reduced by 6 exactly, so turning commutes with reducing
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    decoded = decode_image(encode(stored, "PNG", exif=exif.tobytes()), draft_size=128)
    assert decoded.width < decoded.height  # turned upright, after the reduction
    upright = decode_image(encode(stored.transpose(Image.Transpose.ROTATE_270), "PNG"), draft_size=128)
    assert torch.equal(image_to_tensor(decoded), image_to_tensor(upright))


def test_a_large_png_with_alpha_decodes_without_full_size_copies():
    # 12 MP RGBA is 48 MB decoded; compositing it on white at full size took about 240 MB more.
    data = encode(smooth_photo((4000, 3000), "RGBA"), "PNG", compress_level=1)
    with address_space_headroom(160 * 1024 * 1024):
        image = decode_image(data, draft_size=128)
    assert image.mode == "RGB" and min(image.size) >= 128


def test_eval_transform_keeps_the_native_aspect_and_normalize_matches_mean_std():
    image = Image.new("RGB", (200, 150), (124, 116, 104))
    tensor = eval_transform(image, FRAME)
    assert tensor.shape == (3, 96, 128) and tensor.dtype == torch.uint8
    assert eval_transform(image, 64).shape == (3, 64, 64)  # releases up to 1.0 give one number
    normalised = normalize(tensor.unsqueeze(0))
    assert normalised.abs().max() < 0.02  # the colour is ImageNet's mean, so it maps to ~0


GREEN, GREY, RED, BLUE, YELLOW = (0, 200, 0), (128, 128, 128), (220, 0, 0), (0, 0, 220), (230, 230, 0)


def bordered(width: int, height: int, border: int = 10) -> Image.Image:
    """Grey inside a green border: any crop removes green from an edge of the frame."""
    image = Image.new("RGB", (width, height), GREEN)
    ImageDraw.Draw(image).rectangle((border, border, width - border - 1, height - border - 1), GREY)
    return image


def near(frame: torch.Tensor, colour: tuple[int, int, int], tolerance: int = 30) -> torch.Tensor:
    """Which pixels of a CHW uint8 frame are within ``tolerance`` of ``colour`` on every channel."""
    return ((frame.int() - torch.tensor(colour).view(3, 1, 1)).abs() <= tolerance).all(dim=0)


def edges(mask: torch.Tensor) -> dict[str, bool]:
    return {"top": bool(mask[0].all()), "bottom": bool(mask[-1].all()),
            "left": bool(mask[:, 0].all()), "right": bool(mask[:, -1].all())}


def test_a_four_by_three_photo_is_scaled_whole():
    frame = eval_transform(bordered(200, 150), (48, 64))
    assert edges(near(frame, GREEN)) == {"top": True, "bottom": True, "left": True, "right": True}
    assert near(frame, GREY)[24, 32]


def test_a_portrait_photo_is_turned_not_cropped():
    portrait = bordered(150, 200)
    draw = ImageDraw.Draw(portrait)
    draw.rectangle((10, 10, 139, 99), RED)  # top half of the inside
    draw.rectangle((10, 100, 139, 189), BLUE)  # bottom half
    frame = eval_transform(portrait, (48, 64))
    assert edges(near(frame, GREEN)) == {"top": True, "bottom": True, "left": True, "right": True}
    # Turned a quarter, the portrait's top and bottom halves lie side by side (either way round).
    red, blue = near(frame, RED)[8:-8], near(frame, BLUE)[8:-8]
    assert (red[:, 16].all() and blue[:, 48].all()) or (blue[:, 16].all() and red[:, 48].all())


def test_a_square_photo_loses_only_centred_top_and_bottom_bands():
    # 120x120 into 4:3 keeps the middle 90 rows, so 15 rows go at each end.
    square = Image.new("RGB", (120, 120), GREY)
    draw = ImageDraw.Draw(square)
    draw.rectangle((0, 0, 119, 9), RED)
    draw.rectangle((0, 110, 119, 119), BLUE)
    # Yellow from 3 rows outside to 5 inside each cut: a cut much off row 15 or 105 loses it.
    draw.rectangle((0, 12, 119, 19), YELLOW)
    draw.rectangle((0, 100, 119, 107), YELLOW)
    draw.rectangle((0, 0, 9, 119), GREEN)
    draw.rectangle((110, 0, 119, 119), GREEN)
    frame = eval_transform(square, (48, 64))
    assert not near(frame, RED).any() and not near(frame, BLUE).any()
    assert near(frame, YELLOW)[0, 10:-10].all() and near(frame, YELLOW)[-1, 10:-10].all()
    assert near(frame, GREEN)[:, 0].all() and near(frame, GREEN)[:, -1].all()


@contextlib.contextmanager
def address_space_headroom(extra_bytes: int) -> Iterator[None]:
    """Let this process map at most ``extra_bytes`` more, so that an oversized allocation raises
    MemoryError here instead of drawing the OOM killer onto the machine."""
    current = int(re.search(r"VmSize:\s+(\d+) kB", Path("/proc/self/status").read_text())[1]) * 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (current + extra_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.mark.parametrize("size", [(1_000_000, 1), (1, 1_000_000)])
def test_a_hostile_strip_is_framed_without_a_huge_intermediate(size):
    # Scaling the short side up first would need a 96,000,000 x 96 image (about 27 GB).
    strip = Image.new("RGB", size, RED)
    started = time.perf_counter()
    with address_space_headroom(256 * 1024 * 1024):
        framed = fit_to_frame(strip, FRAME)
    assert time.perf_counter() - started < 2
    assert framed.size == (128, 96)
    assert near(image_to_tensor(framed), RED).all()


@pytest.mark.parametrize("frame", [(112, 112), (150, 200), (96, 128)])
def test_every_photo_size_is_framed_despite_float_rounding(frame):
    # Square 112 (release 1.0) and 150x200 frames put the crop box 1e-14 px outside many sizes.
    sizes = [(width, height) for height in range(40, 400) for width in range(height, 2 * height, 13)]
    for size in sizes:
        assert fit_to_frame(Image.new("RGB", size), frame).size == (frame[1], frame[0]), size


def cast(batch: torch.Tensor, gains: tuple[float, float, float]) -> torch.Tensor:
    """``batch`` as another camera would see it: each channel scaled, then stored as uint8."""
    return (batch.float() * torch.tensor(gains).view(1, 3, 1, 1)).round().clamp(0, 255).to(torch.uint8)


def test_shades_of_gray_removes_a_colour_cast_from_a_neutral_image():
    generator = torch.Generator().manual_seed(0)
    texture = torch.randint(30, 190, (1, 1, 48, 64), generator=generator).expand(1, 3, 48, 64)
    tinted = cast(texture, (1.3, 1.0, 0.7))
    corrected = shades_of_gray(tinted)
    assert corrected.dtype == torch.float32 and not torch.isnan(corrected).any()
    means = corrected.mean(dim=(-2, -1)).flatten()
    assert (means.max() - means.min()) / means.mean() < 0.01
    # Up to one global scale (the overall level), the un-cast texture comes back.
    scale = (corrected * texture).sum() / (texture.float() ** 2).sum()
    assert (corrected - scale * texture).abs().max() < 1.5
    assert shades_of_gray(texture).sub(texture).abs().max() < 1e-3  # neutral stays as it is


def test_shades_of_gray_undoes_a_cast_on_a_real_photo(fixture_images):
    photo = eval_transform(decode_image(fixture_images["NV_ISIC_0024306.jpg"]), FRAME).unsqueeze(0)
    tinted = cast(photo, (1.0, 0.8, 0.6))  # warm light; no gain above 1, so nothing clips
    assert (tinted.float() - photo.float()).abs().mean() > 10
    corrected, reference = shades_of_gray(tinted), shades_of_gray(photo)
    scale = corrected.mean() / reference.mean()
    assert (corrected - scale * reference).abs().mean() < 1


@pytest.mark.parametrize("colour", [(0, 0, 0), (200, 0, 0)])
def test_shades_of_gray_on_empty_channels_is_finite(colour):
    flat = torch.tensor(colour, dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 8, 8)
    corrected = shades_of_gray(flat)
    assert torch.isfinite(corrected).all() and corrected.min() >= 0 and corrected.max() <= 255
    assert (corrected[:, 1:] == 0).all()  # nothing to scale: an empty channel stays empty


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
