import random
from pathlib import Path

import pytest

from handler.classes import CODES
from training.datasets import Sample
from training.splits import split_samples


def synthetic_samples(seed: int = 1) -> list[Sample]:
    """Imbalanced classes, lesions with one to four images each."""
    rng = random.Random(seed)
    samples = []
    for label, lesions in enumerate([12, 30, 25, 10, 40, 120, 11, 10]):
        for lesion in range(lesions):
            for shot in range(rng.randint(1, 4)):
                samples.append(Sample(Path(f"{label}_{lesion}_{shot}.jpg"), label, f"L{label}_{lesion}"))
    return samples


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_split_is_grouped_stratified_and_complete(seed: int) -> None:
    samples = synthetic_samples()
    split = split_samples(samples, seed=seed)
    parts = {"train": split.train, "val": split.val, "test": split.test}
    assert sorted(split.train + split.val + split.test) == list(range(len(samples)))
    lesions = {name: {samples[i].lesion_id for i in part} for name, part in parts.items()}
    assert not lesions["train"] & lesions["val"]
    assert not lesions["train"] & lesions["test"]
    assert not lesions["val"] & lesions["test"]
    for name, part in parts.items():
        assert {samples[i].label for i in part} == set(range(len(CODES))), name
    assert 0.55 < len(split.train) / len(samples) < 0.85


def test_split_is_reproducible() -> None:
    samples = synthetic_samples()
    assert split_samples(samples, seed=3) == split_samples(samples, seed=3)


def test_too_few_lesions_is_an_error() -> None:
    samples = [Sample(Path(f"{label}.jpg"), label, f"L{label}") for label in range(len(CODES))]
    with pytest.raises(ValueError):
        split_samples(samples)
