"""Evaluation scores a release through the preprocessing its metadata records, its own mean and
std included, as the handler serves it."""
from __future__ import annotations

from pathlib import Path

import torch

from contract.classes import CODES
from handler.checkpoint import load_release, save_release
from handler.model import SkinResNet34
from handler.preprocessing import eval_transform, model_input
from imaging.decode import decode_image
from training.datasets import Sample
from training.evaluate import release_logits

FIXTURES = Path(__file__).parent / "fixtures" / "images"
# Far from ImageNet's, so that evaluating with the defaults instead would change every logit.
RELEASE_MEAN, RELEASE_STD = (0.6, 0.3, 0.2), (0.1, 0.3, 0.2)


def test_release_logits_use_the_releases_own_mean_and_std(tmp_path):
    torch.manual_seed(0)
    metadata = {"name": "skin", "version": "0.0.1", "arch": "resnet34", "classes": list(CODES),
                "input_size": [48, 64], "colour_constancy": None, "mean": list(RELEASE_MEAN),
                "std": list(RELEASE_STD), "temperature": 1.0, "referral": {"threshold": 0.4}}
    model, metadata = load_release(save_release(SkinResNet34().state_dict(), metadata, tmp_path))
    paths = sorted(FIXTURES.glob("*.jpg"))[:3]
    samples = [Sample(path, CODES.index(path.name.split("_")[0]), path.stem) for path in paths]
    logits, labels = release_logits(model, metadata, samples, list(range(len(samples))))
    frames = torch.stack([eval_transform(decode_image(path.read_bytes(), draft_size=64), (48, 64))
                          for path in paths])
    with torch.inference_mode():
        expected = model(model_input(frames, False, RELEASE_MEAN, RELEASE_STD))
    assert labels.tolist() == [sample.label for sample in samples]
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)
