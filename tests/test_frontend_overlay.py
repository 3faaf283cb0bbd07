"""The heatmap overlay on its own: the page shows exactly the frame the handler gave the model, and
each heatmap cell colours the pixels it describes."""
from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from contract.classes import BY_CODE
from frontend.explanation import Explanation
from frontend.overlay import DISPLAY_WIDTH, display_frame, overlay, overlay_png
from frontend.photo import prepare_photo
from handler.preprocessing import eval_transform, image_to_tensor
from imaging.decode import decode_image


def patterned_photo(size: tuple[int, int]) -> bytes:
    """Waves across (red) and down (green) a few frame cells long, so that a crop a pixel off shows,
    and a ramp (blue) from the top left, so that a flip or a wrong quarter turn shows."""
    width, height = size
    x, y = np.meshgrid(np.arange(width) / width, np.arange(height) / height)
    pixels = np.stack([128 + 100 * np.sin(2 * math.pi * 11 * x), 128 + 100 * np.sin(2 * math.pi * 8 * y),
                       255 * (x + y) / 2], axis=-1)
    out = io.BytesIO()
    Image.fromarray(pixels.round().astype(np.uint8)).save(out, "JPEG", quality=95)
    return prepare_photo(out.getvalue()).body


@pytest.mark.parametrize("size, frame", [
    ((1024, 768), (96, 128)),  # a phone photo, as the page sends it
    ((600, 800), (96, 128)),  # portrait: the handler turns it a quarter
    ((1000, 400), (96, 128)),  # wider than 4:3: the sides are cut
    ((800, 600), (112, 112)),  # release 1.0's square frame
    ((300, 225), (72, 96)),  # the test release's frame, from a small photo
])
def test_the_overlay_shows_the_frame_the_model_saw(size, frame):
    photo = patterned_photo(size)
    shown = display_frame(photo, frame)
    assert shown.width >= DISPLAY_WIDTH and shown.width % frame[1] == 0
    assert shown.height * frame[1] == shown.width * frame[0]
    # What the handler feeds the network, decoded as it decodes.
    seen = eval_transform(decode_image(photo, draft_size=max(frame)), frame).float()
    shrunk = image_to_tensor(shown.resize((frame[1], frame[0]), Image.Resampling.BOX)).float()
    assert (shrunk - seen).abs().mean() < 4
    # The same comparison one frame pixel off, to show that the check sees such a shift.
    assert (shrunk[:, :, 1:] - seen[:, :, :-1]).abs().mean(dim=(1, 2)).max() > 12


def one_hot_explanation(rows: int, columns: int, hot: tuple[int, int], frame: tuple[int, int]) -> Explanation:
    grid = [[0.0] * columns for _ in range(rows)]
    grid[hot[0]][hot[1]] = 1.0
    return Explanation(BY_CODE["MEL"], 0.5, frame, tuple(tuple(row) for row in grid))


@pytest.mark.parametrize("hot", [(2, 9), (6, 3)])
def test_each_heatmap_cell_colours_the_pixels_it_describes(hot):
    frame = (72, 96)
    explanation = one_hot_explanation(9, 12, hot, frame)
    grey = io.BytesIO()
    Image.new("RGB", (800, 600), (128, 128, 128)).save(grey, "PNG")
    photo = grey.getvalue()
    base = np.asarray(display_frame(photo, frame), dtype=float)
    drawn = np.asarray(overlay(photo, explanation), dtype=float)
    assert drawn.shape == base.shape
    # On a uniform photo every cold pixel looks like the corner; what differs from it is heat.
    heat = np.abs(drawn - drawn[0, 0]).sum(-1)
    ys, xs = np.indices(heat.shape)
    cell_height, cell_width = drawn.shape[0] / 9, drawn.shape[1] / 12
    centre = ((heat * ys).sum() / heat.sum() + 0.5) / cell_height, ((heat * xs).sum() / heat.sum() + 0.5) / cell_width
    assert centre == pytest.approx((hot[0] + 0.5, hot[1] + 0.5), abs=0.05)
    # Interpolation spreads a cell no further than its neighbours' centres.
    far = ((np.abs((ys + 0.5) / cell_height - hot[0] - 0.5) > 1.5)
           | (np.abs((xs + 0.5) / cell_width - hot[1] - 0.5) > 1.5))
    assert heat[far].max() == 0 and heat[~far].max() > 0
    # Cold areas keep most of the photo.
    assert np.abs(drawn[0, 0] - base[0, 0]).max() < 0.15 * 255


def test_the_overlay_png_is_lossless_and_the_frame_size():
    explanation = one_hot_explanation(12, 16, (5, 5), (96, 128))
    photo = patterned_photo((1024, 768))
    png = Image.open(io.BytesIO(overlay_png(photo, explanation)))
    assert png.format == "PNG" and png.size == (512, 384)
    assert np.array_equal(np.asarray(png), np.asarray(overlay(photo, explanation)))


def explanation_body(heatmap: list[list[float]]) -> dict:
    return {"class": {"code": "BCC", "probability": 0.4}, "frame": {"height": 96, "width": 128},
            "heatmap": heatmap}


def test_an_explanation_is_checked_against_classes_json_and_its_range():
    parsed = Explanation.from_response(explanation_body([[0.0, 0.5], [1.0, 0.25]]))
    assert parsed.lesion is BY_CODE["BCC"] and parsed.frame == (96, 128)
    assert parsed.heatmap == ((0.0, 0.5), (1.0, 0.25))
    for bad, reason in (([[0.0, 1.5]], "outside"), ([[0.0, 0.5], [1.0]], "rectangular"),
                        ([], "rectangular")):
        with pytest.raises(ValueError, match=reason):
            Explanation.from_response(explanation_body(bad))
    with pytest.raises(ValueError, match="no class of classes.json"):
        Explanation.from_response({**explanation_body([[0.5]]), "class": {"code": "MELANOMA"}})
