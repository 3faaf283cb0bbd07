"""Photos that are not dermoscopy images, for measuring the gate: nothing here was seen in training.

Kinds: ``natural`` (the sample photos scikit-image and matplotlib ship: a cat, an astronaut, coffee,
a rocket, coins, text pages, a retina, and crops of them), ``screenshot`` (the page's own
screenshots in docs/), ``flat`` (skin-coloured and other plain cards, with a little sensor noise),
``gradient``, ``noise`` and ``text`` (rendered pages). Everything is generated from a seed, so a release's figures
can be reproduced exactly.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import skimage
from PIL import Image, ImageDraw, ImageFilter, ImageFont

REPO = Path(__file__).resolve().parent.parent
# Named, so that a new screenshot does not change a release's figures.
SCREENSHOTS = [REPO / "docs" / f"screenshot-{name}.png" for name in ("desktop", "overlay", "phone")]
PHOTO_SIZE = (640, 480)
# Fitzpatrick-like skin tones and a few card colours (RGB).
FLAT_COLOURS = [(255, 224, 196), (241, 194, 167), (224, 172, 138), (198, 134, 99), (141, 85, 54),
                (92, 56, 36), (230, 200, 180), (200, 160, 150), (128, 128, 128), (40, 90, 160),
                (30, 140, 60), (200, 40, 40)]
WORDS = ("patient referral letter dermatology clinic appointment lesion photo date name the of and "
         "to in is for with please bring your card insurance number follow up results report").split()


@dataclass(frozen=True)
class OodImage:
    kind: str
    name: str
    image: Image.Image


def sample_photos() -> list[tuple[str, Image.Image]]:
    """The sample images that ship inside the scikit-image and matplotlib wheels (no download)."""
    folders = [Path(skimage.__file__).parent / "data", Path(matplotlib.get_data_path()) / "sample_data"]
    paths = sorted(path for folder in folders for path in folder.iterdir()
                   if path.suffix.lower() in (".png", ".jpg"))
    return [(path.name, Image.open(path).convert("RGB")) for path in paths]


def crops(image: Image.Image, rng: np.random.Generator, count: int) -> list[Image.Image]:
    """Random crops of half to full size: more views of one scene, each at a size a phone sends."""
    out = []
    for _ in range(count):
        scale = rng.uniform(0.5, 1.0)
        width, height = max(1, int(image.width * scale)), max(1, int(image.height * scale))
        left, top = rng.integers(0, image.width - width + 1), rng.integers(0, image.height - height + 1)
        out.append(image.crop((left, top, left + width, top + height)))
    return out


def flat_cards(rng: np.random.Generator) -> list[Image.Image]:
    """Plain cards with the little sensor noise a phone photo of one has."""
    cards = []
    for colour in FLAT_COLOURS:
        pixels = np.full((*PHOTO_SIZE[::-1], 3), colour, dtype=np.float32)
        pixels += rng.normal(0, 3, pixels.shape)
        cards.append(Image.fromarray(pixels.clip(0, 255).astype(np.uint8)))
    return cards


def gradients(rng: np.random.Generator, count: int) -> list[Image.Image]:
    width, height = PHOTO_SIZE
    out = []
    for _ in range(count):
        start, end = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        angle = rng.uniform(0, np.pi)
        x, y = np.meshgrid(np.linspace(0, 1, width), np.linspace(0, 1, height))
        t = (x * np.cos(angle) + y * np.sin(angle))
        t = (t - t.min()) / (t.max() - t.min())
        pixels = start + (end - start) * t[..., None]
        out.append(Image.fromarray(pixels.astype(np.uint8)))
    return out


def noise(rng: np.random.Generator, count: int) -> list[Image.Image]:
    """White noise, and coloured noise blurred to blobs of a few sizes."""
    width, height = PHOTO_SIZE
    out = []
    for index in range(count):
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        image = Image.fromarray(pixels)
        if index % 2:
            image = image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(2, 12))))
        out.append(image)
    return out


def text_pages(rng: np.random.Generator, count: int) -> list[Image.Image]:
    """Pages of words at a few font sizes, dark on light and light on dark."""
    width, height = PHOTO_SIZE
    out = []
    for index in range(count):
        dark_on_light = index % 3 != 2
        paper, ink = ((245, 242, 235), (20, 20, 30)) if dark_on_light else ((25, 25, 35), (230, 230, 230))
        page = Image.new("RGB", PHOTO_SIZE, paper)
        draw = ImageDraw.Draw(page)
        size = int(rng.choice([14, 20, 28, 40]))
        font = ImageFont.load_default(size=size)
        for line in range(0, height, int(size * 1.5)):
            words = " ".join(rng.choice(WORDS, 12))
            draw.text((int(rng.integers(5, 30)), line), words, fill=ink, font=font)
        out.append(page)
    return out


def ood_images(seed: int = 0) -> list[OodImage]:
    """Every non-dermoscopy image, in a fixed order for a fixed seed."""
    rng = np.random.default_rng(seed)
    images = []
    for name, photo in sample_photos():
        images.append(OodImage("natural", name, photo))
        images += [OodImage("natural", f"{name} crop {i}", crop)
                   for i, crop in enumerate(crops(photo, rng, 3))]
    for path in SCREENSHOTS:
        shot = Image.open(path).convert("RGB")
        images.append(OodImage("screenshot", path.name, shot))
        images += [OodImage("screenshot", f"{path.name} crop {i}", crop)
                   for i, crop in enumerate(crops(shot, rng, 4))]
    images += [OodImage("flat", f"card {i}", card) for i, card in enumerate(flat_cards(rng))]
    images += [OodImage("gradient", f"gradient {i}", image) for i, image in enumerate(gradients(rng, 16))]
    images += [OodImage("noise", f"noise {i}", image) for i, image in enumerate(noise(rng, 16))]
    images += [OodImage("text", f"text {i}", image) for i, image in enumerate(text_pages(rng, 16))]
    return images
