"""The non-lesion set: images that are not dermoscopy photos, for choosing and measuring the gate.

Two origins. ``photo``: the real photos, scans and screenshots that ship inside the pinned
scikit-image, matplotlib, scikit-learn, locust and networkx wheels, and SKIN's own page screenshots
in docs/, each with views of it (crops, turns, colour, JPEG) as a phone might send; ``drawn``:
images a program draws (training/ood_drawn.py). Each image belongs to a group (a photo and its
views; a drawing alone), and each group to one part: ``tuning``, on which methods and thresholds may
be chosen, or ``held_out``, which is only reported. Within each kind two groups in five are held
out, so every kind is in both parts and no view of a held-out photo is ever tuned on.

Everything is drawn from a seed, one generator per group, so a release's figures can be reproduced
exactly. Nothing here was seen in training.
"""
from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

import settings
from imaging.decode import to_rgb
from training.ood_drawn import DRAWN

TUNING, HELD_OUT = "tuning", "held_out"
# Shipped photos by kind: file names within the folders of PHOTO_FOLDERS, as the wheels ship them.
PHOTO_KINDS = {
    "object": ("coffee.png", "coins.png", "clock_motion.png", "motorcycle_left.png", "rocket.jpg",
               "flower.jpg", "motorcycle_right.png"),
    "animal": ("chelsea.png", "horse.png"),
    "person": ("astronaut.png", "camera.png", "grace_hopper.jpg"),
    "scene": ("china.jpg", "hubble_deep_field.jpg", "moon.png"),
    "texture": ("brick.png", "grass.png", "gravel.png"),
    "microscopy": ("cell.png", "ihc.png", "retina.jpg"),
    "document": ("page.png", "text.png"),
    "screenshot": ("screenshot-desktop.png", "screenshot-overlay.png", "screenshot-phone.png",
                   "graphs-light.png", "graphs-dark.png", "testruns-light.png", "testruns-dark.png"),
    "chart": ("test_display_complex.png", "test_display_labels_and_colors.png",
              "test_display_shortest_path.png", "test_house_with_colors.png"),
    "graphic": ("logo.png", "color.png", "logo2.png"),
}


def package_folder(package: str, *parts: str) -> Path:
    """A folder inside an installed package, found without importing it (importing locust
    monkey-patches the standard library for gevent)."""
    return Path(find_spec(package).origin).parent.joinpath(*parts)


PHOTO_FOLDERS = (package_folder("skimage", "data"), package_folder("matplotlib", "mpl-data", "sample_data"),
                 package_folder("sklearn", "datasets", "images"),
                 package_folder("locust", "webui", "dist", "assets"),
                 package_folder("networkx", "drawing", "tests", "baseline"), settings.REPO / "docs")
VIEWS_PER_PHOTO = 11
# Drawn images per kind.
DRAWN_COUNTS = {"document": 150, "screenshot": 120, "chart": 100, "scene": 150, "object": 150,
                "flat": 48, "gradient": 48, "noise": 48, "pattern": 60}


@dataclass(frozen=True)
class OodImage:
    kind: str
    origin: str  # "photo" or "drawn"
    group: str  # the photo or drawing it comes from
    name: str
    part: str  # TUNING or HELD_OUT
    image: Image.Image


def part_of(index: int) -> str:
    """The part of a kind's ``index``-th group: two in five are held out."""
    return HELD_OUT if index % 5 in (1, 3) else TUNING


def photo_path(name: str) -> Path:
    return next(folder / name for folder in PHOTO_FOLDERS if (folder / name).is_file())


def photo_views(photo: Image.Image, rng: np.random.Generator, count: int) -> list[Image.Image]:
    """Views of one photo as a phone might send them: a crop of a third to all of it, a quarter
    turn or a mirror, another exposure and saturation, a JPEG round trip."""
    views = []
    for _ in range(count):
        scale = rng.uniform(0.35, 1.0)
        width, height = max(1, int(photo.width * scale)), max(1, int(photo.height * scale))
        left, top = rng.integers(0, photo.width - width + 1), rng.integers(0, photo.height - height + 1)
        view = photo.crop((left, top, left + width, top + height))
        view = view.transpose(int(rng.choice([Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180,
                                              Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.ROTATE_270])))
        view = ImageEnhance.Brightness(view).enhance(rng.uniform(0.75, 1.25))
        view = ImageEnhance.Color(view).enhance(rng.uniform(0.6, 1.4))
        buffer = io.BytesIO()
        view.save(buffer, "JPEG", quality=int(rng.integers(50, 95)))
        views.append(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return views


def shipped_photo(name: str) -> Image.Image:
    """One shipped photo (a file name in PHOTO_KINDS), as RGB."""
    return to_rgb(Image.open(photo_path(name)))


def drawn(kind: str, index: int, seed: int = 0) -> Image.Image:
    """The ``index``-th drawn image of ``kind``, from its own generator: the same image whatever
    else is drawn."""
    rng = np.random.default_rng([seed, 1, list(DRAWN_COUNTS).index(kind), index])
    return DRAWN[kind](rng, index)


def ood_images(seed: int = 0, part: str | None = None) -> Iterator[OodImage]:
    """Every non-lesion image (or those of one ``part``), in a fixed order for a fixed seed. An
    iterator: the whole set is over a gigabyte of pixels, and callers frame each image as it comes."""
    for kind_index, (kind, names) in enumerate(PHOTO_KINDS.items()):
        for index, name in enumerate(names):
            group_part = part_of(index)
            if part not in (None, group_part):
                continue
            photo = shipped_photo(name)
            rng = np.random.default_rng([seed, 0, kind_index, index])
            yield OodImage(kind, "photo", name, name, group_part, photo)
            for view_index, view in enumerate(photo_views(photo, rng, VIEWS_PER_PHOTO - 1)):
                yield OodImage(kind, "photo", name, f"{name} view {view_index}", group_part, view)
    for kind, count in DRAWN_COUNTS.items():
        for index in range(count):
            group_part = part_of(index)
            if part not in (None, group_part):
                continue
            name = f"{kind} {index}"
            yield OodImage(kind, "drawn", name, name, group_part, drawn(kind, index, seed))
