"""The linear probe: features that hold the class are read off by it, features that do not are not,
and the figures per source count each source's own images."""
from __future__ import annotations

import numpy as np

from contract.classes import CODES, NUM_CLASSES
from training.linear_probe import probe, probe_figures


def features(labels: np.ndarray, informative: bool, seed: int) -> np.ndarray:
    """Noise, plus the one-hot label in the first NUM_CLASSES dimensions where ``informative``."""
    noise = np.random.default_rng(seed).normal(size=(len(labels), 16))
    if informative:
        noise[:, :NUM_CLASSES] += 6 * np.eye(NUM_CLASSES)[labels]
    return noise


def test_features_that_hold_the_class_are_read_off_and_noise_is_not() -> None:
    train_labels, val_labels = np.arange(NUM_CLASSES).repeat(30), np.arange(NUM_CLASSES).repeat(10)
    weights = np.ones(len(train_labels))
    sources = ["A", "B"] * (len(val_labels) // 2)
    held = probe_figures(probe(features(train_labels, True, 0), train_labels, weights,
                               features(val_labels, True, 1), 1.0), val_labels, sources)
    noise = probe_figures(probe(features(train_labels, False, 0), train_labels, weights,
                                features(val_labels, False, 1), 1.0), val_labels, sources)
    assert held["bma"] > 0.95 and held["mel"] > 0.9
    assert noise["bma"] < 0.35
    assert set(held["by_source"]) == {"A", "B"}


def test_per_source_figures_count_only_that_sources_images() -> None:
    labels = np.array([CODES.index("MEL")] * 4)
    logits = np.zeros((4, NUM_CLASSES))
    logits[:2, CODES.index("MEL")] = 1  # source A's two melanomas found, B's two missed
    logits[2:, CODES.index("NV")] = 1
    figures = probe_figures(logits, labels, ["A", "A", "B", "B"])
    assert figures["mel"] == 0.5
    assert figures["by_source"]["A"]["mel"] == 1.0 and figures["by_source"]["B"]["mel"] == 0.0
