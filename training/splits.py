"""The train/validation/test split: grouped by lesion, stratified by class, fixed by a seed."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from contract.classes import CODES
from training.datasets import Sample, read_folders
from training.dedupe import DedupeReport, deduplicate


@dataclass(frozen=True)
class Split:
    train: list[int]
    val: list[int]
    test: list[int]

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    def leave_out(self, held_out: list[bool]) -> Split:
        """Train and validate without the images flagged in ``held_out`` (one per sample), and test
        on every one of them: how the model does on a source it has never seen."""
        def kept(part: list[int]) -> list[int]:
            return [i for i in part if not held_out[i]]
        return Split(kept(self.train), kept(self.val), [i for i, out in enumerate(held_out) if out])

    def head(self, fraction: float) -> Split:
        """Every ``1 / fraction``-th index of each part, for smoke runs, so that each data folder
        keeps its share (classes may go missing)."""
        def cut(part: list[int]) -> list[int]:
            return part[::max(1, round(1 / fraction))]
        return Split(cut(self.train), cut(self.val), cut(self.test))


def split_samples(samples: list[Sample], val_fraction: float = 0.15, test_fraction: float = 0.15,
                  seed: int = 0) -> Split:
    """Indices into ``samples`` for each split.

    All images of one lesion land in the same split (so near-duplicate photos cannot leak from train
    into test), and each split keeps roughly the class proportions of the whole set. Raises
    ValueError when some class is missing from a split (too few lesions of that class).
    """
    labels = np.array([sample.label for sample in samples])
    groups = np.array([sample.lesion_id for sample in samples])
    everything = np.arange(len(samples))
    rest, test = _hold_out(everything, labels, groups, test_fraction, seed)
    train, val = _hold_out(rest, labels, groups, val_fraction / (1 - test_fraction), seed)
    split = Split(sorted(train.tolist()), sorted(val.tolist()), sorted(test.tolist()))
    for name, indices in (("train", split.train), ("val", split.val), ("test", split.test)):
        missing = [CODES[c] for c in range(len(CODES)) if c in set(labels) and c not in set(labels[indices])]
        if missing:
            raise ValueError(f"the {name} split has no images of {missing}; the data set is too small")
    return split


def split_folders(folders: list[list[Sample]], seed: int = 0) -> tuple[list[Sample], Split]:
    """All folders' samples in one list, and a split made within each folder.

    Splitting each folder on its own keeps a folder's split what it was when it was trained alone
    (HAM10000's test split stays 1.0's), and lesion ids never cross folders.
    """
    samples: list[Sample] = []
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for folder in folders:
        split = split_samples(folder, seed=seed)
        for name, indices in parts.items():
            indices += [len(samples) + index for index in getattr(split, name)]
        samples += folder
    return samples, Split(**parts)


def load_split(data_dirs: list[Path], seed: int, deduplicated: bool
               ) -> tuple[list[Sample], Split, DedupeReport | None]:
    """Read the data folders and split them as a release records it (``metadata["split"]``):
    releases from 3.0 on then drop byte-identical copies (training.dedupe), earlier ones did not.
    The split itself is the same either way, so a release warm-started from an earlier one has
    seen none of its validation or test images."""
    samples, split = split_folders(read_folders(data_dirs), seed=seed)
    if not deduplicated:
        return samples, split, None
    parts = [""] * len(samples)
    for name in ("train", "val", "test"):
        for index in getattr(split, name):
            parts[index] = name
    kept, kept_parts, report = deduplicate(samples, parts)
    indices = {name: [n for n, part in enumerate(kept_parts) if part == name] for name in ("train", "val", "test")}
    return [samples[i] for i in kept], Split(**indices), report


def release_split(data_dirs: list[Path], split_metadata: dict) -> tuple[list[Sample], Split]:
    """The split a release was trained and tested on, from its metadata's ``split``."""
    samples, split, _ = load_split(data_dirs, split_metadata["seed"], bool(split_metadata.get("deduplicated")))
    return samples, split


def _hold_out(indices: np.ndarray, labels: np.ndarray, groups: np.ndarray, fraction: float,
              seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` into (kept, held out), the held-out part about ``fraction`` of them."""
    folds = StratifiedGroupKFold(n_splits=max(2, round(1 / fraction)), shuffle=True, random_state=seed)
    kept, held = next(folds.split(indices, labels[indices], groups[indices]))
    return indices[kept], indices[held]
