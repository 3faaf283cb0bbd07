"""Training draws: every class weighs count^(1-p) in all, shared equally by the sources that hold
it, in an order that a resume repeats."""
from __future__ import annotations

import torch

from training.sampling import EpochSampler, sampling_weights


def test_within_a_class_each_source_is_drawn_equally_often() -> None:
    # Melanomas mostly from one clinic, nevi mostly from the other: the source shortcut.
    labels = [0] * 90 + [0] * 10 + [1] * 20 + [1] * 180
    sources = ["bcn"] * 90 + ["ham"] * 10 + ["bcn"] * 20 + ["ham"] * 180
    weights = sampling_weights(labels, sources, class_power=0.5)

    def mass(label: int, source: str) -> float:
        return float(sum(w for w, lab, s in zip(weights, labels, sources) if lab == label and s == source))

    assert abs(mass(0, "bcn") - mass(0, "ham")) < 1e-9
    assert abs(mass(1, "bcn") - mass(1, "ham")) < 1e-9
    # Classes keep count^(1 - p): 100 and 200 images give masses in the ratio 10 : 14.14.
    ratio = (mass(1, "bcn") + mass(1, "ham")) / (mass(0, "bcn") + mass(0, "ham"))
    assert abs(ratio - (200 / 100) ** 0.5) < 1e-9


def test_one_source_falls_back_to_class_balance() -> None:
    labels = [0] * 30 + [1] * 10
    weights = sampling_weights(labels, [""] * 40, class_power=1.0)
    assert abs(weights[:30].sum() - weights[30:].sum()) < 1e-9


def test_each_epoch_has_its_own_draws_and_repeats_them() -> None:
    sampler = EpochSampler(torch.ones(50), 40, seed=3)
    sampler.set_epoch(0)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    sampler.set_epoch(0)
    assert list(sampler) == first != second and len(first) == 40
