"""Which training images each epoch draws: rebalanced by class and, within a class, by source, in a
resumable order."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import torch


def sampling_weights(labels: list[int], sources: list[str], class_power: float) -> torch.Tensor:
    """A drawing weight per image: each class weighs ``count ** (1 - class_power)`` in all, and that
    weight is shared equally by the sources that hold the class, then by their images.

    The sources hold the classes in different mixes (most training melanomas come from one clinic,
    most nevi from another), so drawing in proportion to 1 / n(class, source) keeps the network from
    reading the class off the clinic's look: within a class every source is drawn as often.
    """
    class_counts = Counter(labels)
    cell_counts = Counter(zip(labels, sources))
    sources_per_class = Counter(label for label, _ in cell_counts)
    return torch.tensor([class_counts[label] ** (1 - class_power)
                         / (sources_per_class[label] * cell_counts[label, source])
                         for label, source in zip(labels, sources)], dtype=torch.float64)


class EpochSampler(torch.utils.data.Sampler[int]):
    """Draws ``num_samples`` indices with replacement in proportion to ``weights``, in an order fixed
    by the seed and the epoch (``set_epoch``), so that a run stopped mid-epoch resumes on the very
    draws it would have made."""

    def __init__(self, weights: torch.Tensor, num_samples: int, seed: int = 0) -> None:
        self.weights, self.num_samples, self.seed, self.epoch = weights.double(), num_samples, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.multinomial(self.weights, self.num_samples, True, generator=generator).tolist())
