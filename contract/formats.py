"""The image formats SKIN accepts: what the server decodes, the page offers to upload and training
reads from a data folder.

What phones and cameras save (JPEG's opener also reads MPO, a phone's multi-picture JPEG). Pillow
knows some 40 formats, EPS among them, which runs Ghostscript where it is installed; each one more
is attack surface and no photo. TIFF stays out (libtiff is the decoder behind most of Pillow's CVEs),
and so do BMP and GIF, which no phone or dermatoscope camera saves.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ImageFormat:
    pillow_name: str  # as Pillow's Image.open(formats=...) takes it
    label: str  # as people write it
    suffixes: tuple[str, ...]  # of the files that hold it, lower case


FORMATS = (ImageFormat("JPEG", "JPEG", (".jpg", ".jpeg")),
           ImageFormat("PNG", "PNG", (".png",)),
           ImageFormat("WEBP", "WebP", (".webp",)))
ACCEPTED_FORMATS = tuple(image_format.pillow_name for image_format in FORMATS)
FILE_SUFFIXES = tuple(suffix for image_format in FORMATS for suffix in image_format.suffixes)
FORMAT_LABELS = tuple(image_format.label for image_format in FORMATS)
FORMAT_NAMES = f"{', '.join(FORMAT_LABELS[:-1])} or {FORMAT_LABELS[-1]}"
