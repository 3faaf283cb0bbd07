"""Image caches and the training/evaluation transforms.

Each image is decoded once with the serving code (``handler.preprocessing``) into an in-memory uint8
tensor; augmentation then works on small uint8 tensors, which on a 2-core machine is far cheaper than
decoding JPEGs every epoch. Evaluation images go through exactly the served ``eval_transform``.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torchvision.transforms import v2
from tqdm import tqdm

from handler.preprocessing import decode_image, eval_transform, normalize

# Training crops are cut from images cached this much larger than the training size.
TRAIN_CACHE_MARGIN = 1.15


def load_images(paths: list[Path], size: int, desc: str = "decode") -> torch.Tensor:
    """uint8 NCHW tensor of ``paths`` after the served decode + resize + centre crop at ``size``."""
    images = torch.empty((len(paths), 3, size, size), dtype=torch.uint8)
    for index, path in enumerate(tqdm(paths, desc=desc, leave=False, mininterval=5)):
        images[index] = eval_transform(decode_image(Path(path).read_bytes(), draft_size=size), size)
    return images


def train_cache_size(size: int) -> int:
    return round(size * TRAIN_CACHE_MARGIN)


class RandomRot90(torch.nn.Module):
    """Rotate by a random multiple of 90 degrees: dermoscopy images have no preferred orientation."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.rot90(image, int(torch.randint(4, ())), dims=(-2, -1))


def train_augmentation(size: int) -> v2.Compose:
    """Per-image augmentation of a uint8 CHW tensor; the output stays uint8 at ``size``."""
    return v2.Compose([
        v2.RandomResizedCrop(size, scale=(0.4, 1.0), ratio=(0.8, 1.25), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomVerticalFlip(),
        RandomRot90(),
        v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.03),
    ])


class CachedImages(torch.utils.data.Dataset):
    """(uint8 image, label) pairs from a cache, optionally augmented."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor,
                 transform: torch.nn.Module | None = None) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, self.labels[index]


def to_model_input(batch: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """A uint8 batch moved to ``device`` and normalised with the served mean/std."""
    batch = normalize(batch.to(device, non_blocking=True))
    return batch.contiguous(memory_format=torch.channels_last) if channels_last else batch
