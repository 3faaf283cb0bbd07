"""Image decoding, framing and colour constancy, shared by the handler and by training.

Everything that decides what the network sees at serving time (input size, mean, std, framing and
colour constancy) lives here, and training imports it, so the served preprocessing is the evaluated
one. The path of an image: ``decode_image`` -> ``eval_transform`` (uint8 frame at the release's
height x width) -> ``model_input`` (Shades of Gray, then mean/std) -> the network.
"""
from __future__ import annotations

import io
import warnings

import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# (height, width). Dermoscopy photos are 4:3; a square input would cut the lesion's border.
INPUT_SIZE = (96, 128)
# Minkowski norm of Shades of Gray (Finlayson & Trezzi 2004), as the ISIC 2018 and 2019 winners used.
SHADES_OF_GRAY_POWER = 6
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# A 50-megapixel phone photo (8160x6120, or 8192x6144) fits; a decompression bomb does not.
MAX_IMAGE_PIXELS = 52_000_000
# Panoramas stop near 4:1; a longer strip is no lesion photo, and framing it would keep a sliver.
MAX_ASPECT_RATIO = 10
# What phones and cameras save (JPEG's opener also reads MPO, a phone's multi-picture JPEG).
# Pillow knows some 40 formats, EPS among them, which runs Ghostscript where it is installed; each
# one more is attack surface and no photo. TIFF stays out (libtiff is the decoder behind most of
# Pillow's CVEs), and so do BMP and GIF, which no phone or dermatoscope camera saves.
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP")
FORMAT_NAMES = "JPEG, PNG or WebP"
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


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB image as a uint8 CHW tensor; stays uint8 so batches are cheap to build."""
    array = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return array.view(image.height, image.width, 3).permute(2, 0, 1).contiguous()


def eval_transform(image: Image.Image, size: int | tuple[int, int] = INPUT_SIZE) -> torch.Tensor:
    """The deterministic transform used for validation, test and serving (uint8 CHW)."""
    return image_to_tensor(fit_to_frame(image, size))


def shades_of_gray(batch: torch.Tensor, power: int = SHADES_OF_GRAY_POWER) -> torch.Tensor:
    """Colour constancy: scale each channel so that the image's Minkowski-``power`` illuminant
    estimate becomes grey, keeping its overall level. NCHW in (uint8 or float on 0-255), float out.

    Different dermatoscopes and phone cameras tint the same lesion differently; removing the tint
    per image lets a model trained at a few clinics read images from others.
    """
    pixels = batch.float()
    illuminant = (pixels / 255).pow(power).mean(dim=(-2, -1), keepdim=True).pow(1 / power)
    gains = illuminant.mean(dim=-3, keepdim=True) / illuminant.clamp(min=1e-3)
    return (pixels * gains).clamp(0, 255)


def normalize(batch: torch.Tensor, mean: tuple[float, ...] = MEAN,
              std: tuple[float, ...] = STD) -> torch.Tensor:
    """NCHW pixels on 0-255 (uint8 or float, on any device) to the float input the network expects."""
    mean_t = torch.tensor(mean, device=batch.device).view(1, -1, 1, 1) * 255
    std_t = torch.tensor(std, device=batch.device).view(1, -1, 1, 1) * 255
    return (batch.float() - mean_t) / std_t


def model_input(batch: torch.Tensor, colour_constancy: bool, mean: tuple[float, ...] = MEAN,
                std: tuple[float, ...] = STD) -> torch.Tensor:
    """What the network sees for a batch of frames on 0-255: the one step that training, evaluation
    and the handler all call after framing."""
    return normalize(shades_of_gray(batch) if colour_constancy else batch, mean, std)


def release_input(batch: torch.Tensor, metadata: dict) -> torch.Tensor:
    """``model_input`` with a release's own colour constancy, mean and std (its metadata)."""
    return model_input(batch, bool(metadata.get("colour_constancy")), tuple(metadata["mean"]),
                       tuple(metadata["std"]))
