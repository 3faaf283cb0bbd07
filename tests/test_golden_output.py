"""Golden output: the shipped release, served by a real TorchServe, answers each fixture photo with
the probabilities that its weights give here on an input built from first principles.

The reference shares no preprocessing code with the handler: it decodes with Pillow, frames, and
applies Shades of Gray and the release's mean/std in numpy, from the rules docs/training.md states. So a
regression in the shared functions (channel order, normalisation, colour constancy, framing) fails
here even though the handler and training would agree with each other.
"""
from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
import torch
from PIL import Image, ImageOps

import settings
from contract.classes import CLASSES, CODES
from handler.checkpoint import METADATA_FILE
from handler.model import SkinResNet34
from tests.conftest import TEST_BATCH_SIZE
from tools.archive import build_archive

GOLDEN = "golden"
WEIGHTS = settings.WEIGHTS
RELEASE = json.loads((settings.MODEL_STORE / METADATA_FILE).read_text(encoding="utf-8"))


def reference_input(photo: bytes, height: int, width: int) -> np.ndarray:
    """The network's input for ``photo`` (CHW, float32), as docs/training.md defines it."""
    image = Image.open(io.BytesIO(photo))
    # The server decodes a JPEG at the smallest DCT scale that keeps both sides at least the
    # frame's longer side, then box-reduces by the largest whole factor that still keeps them so.
    draft = max(height, width)
    image.draft("RGB", (draft, draft))
    image = ImageOps.exif_transpose(image).convert("RGB")
    if min(image.size) // draft >= 2:
        image = image.reduce(min(image.size) // draft)
    # A portrait photo is turned a quarter to the landscape frame; the excess of the longer side
    # is cut, centred, in the photo's own coordinates.
    if image.height > image.width:
        image = image.transpose(Image.Transpose.ROTATE_90)
    scale = min(image.width / width, image.height / height)
    left, top = (image.width - width * scale) / 2, (image.height - height * scale) / 2
    box = (max(0.0, left), max(0.0, top), min(image.width, left + width * scale),
           min(image.height, top + height * scale))
    pixels = np.asarray(image.resize((width, height), Image.Resampling.BILINEAR, box=box),
                        dtype=np.float64)  # height x width x RGB, 0-255
    power = RELEASE["colour_constancy"]["power"]
    illuminant = ((pixels / 255) ** power).mean(axis=(0, 1)) ** (1 / power)
    pixels = np.clip(pixels * illuminant.mean() / np.maximum(illuminant, 1e-3), 0, 255)
    normalised = (pixels / 255 - np.array(RELEASE["mean"])) / np.array(RELEASE["std"])
    return normalised.transpose(2, 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def golden_url(torchserve, model_store) -> str:
    """The shipped release registered beside the session's test model, in fp32, and taken away
    again afterwards."""
    build_archive(weights=WEIGHTS, export_path=model_store, config_file=model_store / "test-model-config.yaml",
                  model_name=GOLDEN, precision="fp32")
    management = f"{torchserve.url('management')}/models"
    headers = torchserve.headers("management")
    registered = requests.post(management, headers=headers, timeout=180,
                               params={"url": f"{GOLDEN}.mar", "model_name": GOLDEN,
                                       "initial_workers": 1, "synchronous": "true"})
    assert registered.status_code == 200, registered.text
    try:
        yield f"{torchserve.url('inference')}/predictions/{GOLDEN}"
    finally:
        requests.delete(f"{management}/{GOLDEN}", headers=headers, timeout=180)


def test_the_served_release_answers_as_its_weights_do_here(golden_url, torchserve, fixture_images):
    assert RELEASE["colour_constancy"]["method"] == "shades_of_gray"
    height, width = RELEASE["input_size"]
    model = SkinResNet34()
    model.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True))
    inputs = torch.from_numpy(np.stack([reference_input(photo, height, width)
                                        for photo in fixture_images.values()]))
    with torch.inference_mode():
        expected = torch.softmax(model.float().eval()(inputs) / RELEASE["temperature"], dim=1)

    headers = torchserve.headers()
    with ThreadPoolExecutor(max_workers=TEST_BATCH_SIZE) as pool:  # batched as served
        answers = list(pool.map(lambda photo: requests.post(golden_url, data=photo, headers=headers,
                                                            timeout=60), fixture_images.values()))
    concerning = [i for i, lesion in enumerate(CLASSES) if lesion.is_concerning]
    for name, answer, row in zip(fixture_images, answers, expected.tolist()):
        assert answer.status_code == 200, (name, answer.text)
        body = answer.json()
        assert body["version"] == RELEASE["version"]
        served = {p["code"]: p["probability"] for p in body["predictions"]}
        assert [served[code] for code in CODES] == pytest.approx(row, abs=1e-4), name
        assert body["referral"]["score"] == pytest.approx(sum(row[i] for i in concerning), abs=1e-4)
