"""The in-memory image cache and the batch augmentation.

Each image is decoded once with the serving code (``handler.preprocessing``) into one uint8 tensor
held in memory; every epoch then augments whole batches as tensors (one ``grid_sample`` for the
geometry, a few tensor ops for colour), which on a 2-core machine is far cheaper than decoding and
augmenting JPEGs image by image. Evaluation frames are exactly the served ``eval_transform``.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from handler.preprocessing import MEAN, STD, decode_image, eval_transform, input_shape, model_input

# Training crops are cut from frames cached this much larger than the input, so that a full-frame
# view is slightly downsampled, as a served photo is.
TRAIN_CACHE_MARGIN = 1.15


def load_images(paths: list[Path], size: int | tuple[int, int], desc: str = "decode") -> torch.Tensor:
    """uint8 NCHW tensor of ``paths`` after the served decode and framing at ``size``."""
    height, width = input_shape(size)
    images = torch.empty((len(paths), 3, height, width), dtype=torch.uint8)
    for index, path in enumerate(tqdm(paths, desc=desc, leave=False, mininterval=5)):
        image = decode_image(Path(path).read_bytes(), draft_size=max(height, width))
        images[index] = eval_transform(image, (height, width))
    return images


def train_cache_shape(size: int | tuple[int, int]) -> tuple[int, int]:
    height, width = input_shape(size)
    return round(height * TRAIN_CACHE_MARGIN), round(width * TRAIN_CACHE_MARGIN)


def _uniform(low: float, high: float, count: int, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(count, generator=generator) * (high - low) + low


class BatchAugment:
    """Per-image random geometry and colour for a whole uint8 batch at once; float 0-255 out.

    Geometry: a random crop of ``scale`` of the frame's area at a jittered aspect, any rotation, and
    flips (a lesion has no upright), sampled in one ``grid_sample`` with reflected borders. Colour:
    brightness, contrast, saturation and a per-channel gain that imitates another camera's tint, which
    colour constancy should then undo.
    """

    def __init__(self, size: int | tuple[int, int], scale: tuple[float, float] = (0.35, 1.0),
                 ratio: tuple[float, float] = (0.8, 1.25), brightness: float = 0.3,
                 contrast: float = 0.3, saturation: float = 0.3, tint: float = 0.15, seed: int = 0) -> None:
        self.size = input_shape(size)
        self.scale, self.ratio = scale, ratio
        self.brightness, self.contrast, self.saturation, self.tint = brightness, contrast, saturation, tint
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.colour(self.geometry(images.float()))

    def geometry(self, images: torch.Tensor) -> torch.Tensor:
        n, g = len(images), self.generator
        area = _uniform(*self.scale, n, g)
        log_ratio = _uniform(math.log(self.ratio[0]), math.log(self.ratio[1]), n, g)
        half_x, half_y = (area * log_ratio.exp()).sqrt(), (area / log_ratio.exp()).sqrt()
        flip = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
        angle = _uniform(-math.pi, math.pi, n, g)
        cos, sin = angle.cos(), angle.sin()
        # The rotation acts on pixel distances, so the frame's aspect enters the normalised matrix.
        height, width = images.shape[-2:]
        aspect = width / height
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = cos * half_x * flip
        theta[:, 0, 1] = -sin * half_y / aspect
        theta[:, 1, 0] = sin * half_x * flip * aspect
        theta[:, 1, 1] = cos * half_y
        theta[:, 0, 2] = _uniform(-1, 1, n, g) * (1 - half_x).clamp(min=0)
        theta[:, 1, 2] = _uniform(-1, 1, n, g) * (1 - half_y).clamp(min=0)
        grid = F.affine_grid(theta, [n, 3, *self.size], align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    def colour(self, images: torch.Tensor) -> torch.Tensor:
        n, g = len(images), self.generator

        def factor(strength: float, shape: tuple[int, ...] = (1, 1, 1)) -> torch.Tensor:
            return _uniform(1 - strength, 1 + strength, n * math.prod(shape), g).view(n, *shape)

        grey = images.mean(dim=1, keepdim=True)
        images = grey + (images - grey) * factor(self.saturation)
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        images = mean + (images - mean) * factor(self.contrast)
        images = images * factor(self.brightness) * factor(self.tint, (3, 1, 1))
        return images.clamp(0, 255)


class ImageBatches:
    """Batches of (pixels on 0-255, labels) from a cached uint8 tensor.

    For training, ``sampler`` picks the images of each epoch and ``augment`` transforms each batch;
    without them the images go in order, unchanged, for evaluation.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                 sampler: torch.utils.data.Sampler | None = None,
                 augment: BatchAugment | None = None) -> None:
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.sampler, self.augment = sampler, augment

    def __len__(self) -> int:
        if self.sampler is not None:
            return len(self.sampler) // self.batch_size  # a short last batch would skew BatchNorm
        return math.ceil(len(self.labels) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = (torch.tensor(list(self.sampler)) if self.sampler is not None
                 else torch.arange(len(self.labels)))
        for batch in range(len(self)):
            indices = order[batch * self.batch_size:(batch + 1) * self.batch_size]
            images = self.images[indices]
            yield (self.augment(images) if self.augment else images), self.labels[indices]


def to_model_input(batch: torch.Tensor, device: torch.device, colour_constancy: bool,
                   channels_last: bool, mean: tuple[float, ...] = MEAN,
                   std: tuple[float, ...] = STD) -> torch.Tensor:
    """A batch on 0-255 moved to ``device`` and turned into the served network input."""
    batch = model_input(batch.to(device, non_blocking=True), colour_constancy, mean, std)
    return batch.contiguous(memory_format=torch.channels_last) if channels_last else batch
