import random
from pathlib import Path

import pytest

from contract.classes import CODES
from tests.fixtures.training.make_data import make_labels_csv
from training.datasets import Sample, read_folders
from training.splits import split_folders, split_samples


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


def test_several_folders_are_split_each_on_its_own(tmp_path: Path) -> None:
    folders = read_folders([make_labels_csv(tmp_path / "ham", per_class=9, images_per_lesion=2),
                            make_labels_csv(tmp_path / "bcn", per_class=7, lesion_prefix="BCN")])
    samples, split = split_folders(folders, seed=0)
    assert samples == folders[0] + folders[1]
    parts = {"train": split.train, "val": split.val, "test": split.test}
    assert sorted(split.train + split.val + split.test) == list(range(len(samples)))
    lesions = {name: {samples[i].lesion_id for i in part} for name, part in parts.items()}
    assert not lesions["train"] & lesions["val"] and not lesions["train"] & lesions["test"]
    assert not lesions["val"] & lesions["test"]
    # Adding a folder leaves the first folder's split (HAM10000's, as released in 1.0) unchanged.
    first, offset = split_samples(folders[0], seed=0), len(folders[0])
    second = split_samples(folders[1], seed=0)
    for name, part in parts.items():
        assert [i for i in part if i < offset] == getattr(first, name), name
        assert [i - offset for i in part if i >= offset] == getattr(second, name), name
