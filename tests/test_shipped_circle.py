"""The shipped weights read the lesion, not the dermatoscope: for the same test-split melanomas, nevi
and benign keratoses, a black circular vignette drawn round them changes the share called melanoma
by at most 0.05 in each class.

It runs on the real images in ../shared (the lesion-grouped test split the release records, a
fixed sample of each class), as the release serves them (its framing, colour constancy and, where
it ships them, the eight dihedral views).
"""
from __future__ import annotations

import random

import pytest

import settings
from contract.classes import CODES
from handler.checkpoint import MODEL_KEYS, load_release
from handler.preprocessing import serves_dihedral_tta
from training.evaluate import FP32_CPU, release_frames
from training.shortcuts import (
    ALLOWED_CIRCLE_SHIFT,
    AS_THEY_ARE,
    CIRCLE,
    CLASSES_SHOWN,
    circle_shift,
    format_table,
    mel_calls,
)
from training.splits import release_split

PER_CLASS = 150
# Trained before the circle augmentation and the per-source draws existed: 2.0 calls half of all
# nevi melanoma once a circle is drawn (MODEL_CARD.md). Strict, so a pass there would be noticed.
RELEASES_BEFORE_THE_CIRCLE = ("1.0", "2.0")


def sampled_test_images(samples: list, test: list[int]) -> list[int]:
    """A fixed sample of up to PER_CLASS test images of each class the circle test shows."""
    chosen = []
    for code in CLASSES_SHOWN:
        of_class = [i for i in test if samples[i].label == CODES.index(code)]
        chosen += random.Random(0).sample(of_class, min(PER_CLASS, len(of_class)))
    return chosen


@pytest.mark.skipif(not all(folder.is_dir() for folder in settings.DATA_DIRS),
                    reason=f"needs the data sets in {', '.join(map(str, settings.DATA_DIRS))}")
def test_a_circle_round_the_lesion_hardly_changes_the_shipped_weights_melanoma_calls(request) -> None:
    model, metadata = load_release(settings.WEIGHTS, required=MODEL_KEYS)
    if metadata["version"] in RELEASES_BEFORE_THE_CIRCLE:
        request.applymarker(pytest.mark.xfail(strict=True, raises=AssertionError,
                                              reason=f"release {metadata['version']} reads the circle"))
    samples, split = release_split(list(settings.DATA_DIRS), metadata["split"])
    frames = release_frames(metadata, samples, sampled_test_images(samples, split.test))

    table = mel_calls(model, *frames, FP32_CPU, bool(metadata.get("colour_constancy")),
                      tuple(metadata["mean"]), tuple(metadata["std"]), serves_dihedral_tta(metadata),
                      changes=(AS_THEY_ARE, CIRCLE))

    assert circle_shift(table) <= ALLOWED_CIRCLE_SHIFT, format_table(table)
