"""What one TorchServe batch carries through the handler, and how to find the image in a request.

Kept apart from skin_handler.py because TorchServe requires the handler module to define exactly one
class.
"""
from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from handler.gate import Verdict
from imaging.decode import InvalidImageError

IMAGE_FIELDS = ("data", "file", "body")
# A row whose request a protocol adapter could not read (handler/kservev2_envelope.py) carries the
# reason here instead of an image, so that the handler answers it with 400 like a bad image.
REQUEST_ERROR = "request_error"


@dataclass
class Batch:
    """The good images of one TorchServe batch, and an error for each request that had none."""

    size: int
    images: torch.Tensor | None = None  # uint8 frames at the release's input size
    gate_frames: torch.Tensor | None = None  # uint8 frames at the gate network's input size
    positions: list[int] = field(default_factory=list)
    errors: dict[int, str] = field(default_factory=dict)
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (width, height) of each good image
    probabilities: torch.Tensor | None = None
    verdicts: list[Verdict] = field(default_factory=list)  # the gate's, one per good image

    def select(self, keep: Callable[[int], bool]) -> Batch:
        """The requests whose index ``keep`` accepts, at their places in the batch; the others are
        left out, so that their answers come from elsewhere."""
        rows = [row for row, idx in enumerate(self.positions) if keep(idx)]
        return Batch(size=self.size,
                     images=self.images[rows] if rows else None,
                     gate_frames=self.gate_frames[rows] if rows else None,
                     positions=[self.positions[row] for row in rows],
                     sizes=[self.sizes[row] for row in rows],
                     errors={idx: message for idx, message in self.errors.items() if keep(idx)})


def request_bytes(row: dict) -> bytes:
    """Find the image in one request: raw body, multipart field ``data``/``file``, or base64 JSON."""
    if REQUEST_ERROR in row:
        raise InvalidImageError(row[REQUEST_ERROR])
    value = next((row[key] for key in IMAGE_FIELDS if key in row), None)
    if value is None:
        raise InvalidImageError("no image in the request; send the image as the body, as a "
                                "multipart field 'data' or 'file', or as JSON {\"data\": base64}")
    if isinstance(value, dict):
        if "data" not in value:
            raise InvalidImageError('JSON bodies must look like {"data": "<base64 image>"}')
        value = value["data"]
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidImageError(
                "the body is text, not an image or base64 of one; send the image bytes") from None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise InvalidImageError(f"unexpected JSON value of type {type(value).__name__}; "
                            'send {"data": "<base64 image>"}')
