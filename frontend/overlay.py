"""Draw an explanation's heatmap over the photo, on exactly the frame the model saw.

The handler cuts a 4:3 (or square) frame out of the photo in source coordinates and shrinks it to
the release's input size. Cutting the same box at a whole multiple of that size gives the same part
of the photo, sharp enough for a screen, and the heatmap's cells then fall on the pixels they
describe.
"""
from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

from frontend.explanation import Explanation
from imaging.decode import decode_image
from imaging.framing import fit_to_frame

# About the width of the page's photo column on a desktop.
DISPLAY_WIDTH = 512
# Blue (little weight) through green and yellow to red (most), the usual Grad-CAM ramp.
RAMP = np.array([(0, 0, 160), (0, 140, 255), (40, 200, 60), (255, 220, 0), (230, 20, 0)], dtype=float)
# Cold areas stay almost clear, so the skin under them remains visible.
MIN_ALPHA, MAX_ALPHA = 0.1, 0.6


def display_frame(photo: bytes, frame: tuple[int, int], width: int = DISPLAY_WIDTH) -> Image.Image:
    """The part of ``photo`` that the model saw as ``frame`` (height, width), at about ``width`` px."""
    scale = max(1, math.ceil(width / frame[1]))
    return fit_to_frame(decode_image(photo), (frame[0] * scale, frame[1] * scale))


def heat_at(explanation: Explanation, size: tuple[int, int]) -> np.ndarray:
    """The heatmap interpolated to ``size`` (width, height) pixels, each cell centred on its area."""
    grid = Image.fromarray(np.asarray(explanation.heatmap, dtype=np.float32), mode="F")
    return np.clip(np.asarray(grid.resize(size, Image.Resampling.BILINEAR)), 0, 1)


def colour(heat: np.ndarray) -> np.ndarray:
    """RGB (float, 0-255) for heat values on [0, 1] along RAMP."""
    stops = np.linspace(0, 1, len(RAMP))
    return np.stack([np.interp(heat, stops, RAMP[:, channel]) for channel in range(3)], axis=-1)


def overlay(photo: bytes, explanation: Explanation, width: int = DISPLAY_WIDTH) -> Image.Image:
    """The model's frame of ``photo`` with the heatmap blended over it."""
    frame = display_frame(photo, explanation.frame, width)
    heat = heat_at(explanation, frame.size)
    alpha = (MIN_ALPHA + (MAX_ALPHA - MIN_ALPHA) * heat)[..., None]
    blended = np.asarray(frame, dtype=float) * (1 - alpha) + colour(heat) * alpha
    return Image.fromarray(blended.round().astype(np.uint8), mode="RGB")


def overlay_png(photo: bytes, explanation: Explanation, width: int = DISPLAY_WIDTH) -> bytes:
    """``overlay`` as PNG, which the page shows without re-compressing it."""
    out = io.BytesIO()
    overlay(photo, explanation, width).save(out, "PNG")
    return out.getvalue()
