"""The in-memory image cache and the batch augmentation.

Each image is decoded once with the serving code (``imaging.decode``, ``handler.preprocessing``)
into one uint8 tensor held in memory; every epoch then augments whole batches as tensors (one
``grid_sample`` for the geometry, a few tensor ops for colour), which on a 2-core machine is far
cheaper than decoding and augmenting JPEGs image by image. Evaluation frames are exactly the served
``eval_transform``.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.io import decode_jpeg, encode_jpeg
from torchvision.transforms.v2.functional import gaussian_blur
from tqdm import tqdm

from handler.preprocessing import MEAN, STD, frame_photo, model_input
from imaging.framing import input_shape
from training.datasets import Sample
from training.sampling import EpochSampler, sampling_weights

# Training crops are cut from frames cached this much larger than the input, so that a full-frame
# view is slightly downsampled, as a served photo is.
TRAIN_CACHE_MARGIN = 1.15


def decode_frames(paths: list[Path], size: int | tuple[int, int], desc: str = "decode") -> torch.Tensor:
    """uint8 NCHW tensor of ``paths`` after the served decode and framing at ``size``."""
    height, width = input_shape(size)
    images = torch.empty((len(paths), 3, height, width), dtype=torch.uint8)
    for index, path in enumerate(tqdm(paths, desc=desc, leave=False, mininterval=5)):
        images[index] = frame_photo(Path(path).read_bytes(), (height, width))
    return images


def train_cache_shape(size: int | tuple[int, int]) -> tuple[int, int]:
    height, width = input_shape(size)
    return round(height * TRAIN_CACHE_MARGIN), round(width * TRAIN_CACHE_MARGIN)


def _uniform(low: float, high: float, count: int, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(count, generator=generator) * (high - low) + low


def _chance(probability: float, count: int, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(count, generator=generator) < probability


class BatchAugment:
    """Per-image random geometry, dermatoscope circle, colour and camera degradation for a whole uint8
    batch at once; float 0-255 out.

    Each view is drawn as a few numbers per image (``sample``) and drawn from them (``render``), so a
    view can be stored and rendered again at another size: the teacher's soft targets are computed
    once per stored view, and the student sees the same view at its own resolution.

    * Geometry: a zoom between ``zoom`` (below 1 the lesion shrinks inside skin-coloured margins, as
      a phone held farther away frames it; above 1 a crop), a jittered aspect, any rotation (or,
      without ``rotate``, upright or upside down) and flips (a lesion has no upright), in one
      ``grid_sample``.
    * The circle: a contact dermatoscope's black or grey circular vignette, of random size, centre and
      softness, on images of every source and class, so that the circle says nothing about the class.
    * Colour: brightness, contrast, saturation and a per-channel gain that imitates another camera's
      tint, which colour constancy should then undo.
    * Degradation: down- and up-sampling, blur and JPEG re-encoding, so that sharpness, which differs
      between the collections, says nothing about the class either.
    """

    def __init__(self, size: int | tuple[int, int], zoom: tuple[float, float] = (0.5, 1.6),
                 ratio: tuple[float, float] = (0.8, 1.25), brightness: float = 0.3,
                 contrast: float = 0.3, saturation: float = 0.3, tint: float = 0.15,
                 vignette: float = 0.5, degrade: float = 0.5, rotate: bool = True, seed: int = 0) -> None:
        self.size = input_shape(size)
        self.zoom, self.ratio, self.rotate = zoom, ratio, rotate
        self.brightness, self.contrast, self.saturation, self.tint = brightness, contrast, saturation, tint
        self.vignette, self.degrade = vignette, degrade
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.render(images, self.sample(len(images), generator or self.generator))

    def sample(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The numbers that fix ``n`` views, one row per image (float32, storable)."""
        g = generator

        def strength(value: float, count: int = 1) -> torch.Tensor:
            return _uniform(1 - value, 1 + value, n * count, g).view(n, count)

        return {
            "zoom": _uniform(math.log(self.zoom[0]), math.log(self.zoom[1]), n, g).exp(),
            "log_ratio": _uniform(math.log(self.ratio[0]), math.log(self.ratio[1]), n, g),
            "flip": torch.where(_chance(0.5, n, g), -1.0, 1.0),
            # Without free rotation a view keeps the frame's orientation: upright or upside down.
            "angle": (_uniform(-math.pi, math.pi, n, g) if self.rotate
                      else torch.where(_chance(0.5, n, g), math.pi, 0.0)),
            "shift": _uniform(-1, 1, 2 * n, g).view(n, 2),
            # Radius as a fraction of the frame's half-diagonal: from a full circle inside the frame
            # to dark corners only; the edge's width as a fraction of the radius; the fill's grey.
            "circle": torch.where(_chance(self.vignette, n, g), 1.0, 0.0),
            "circle_radius": _uniform(0.55, 1.0, n, g),
            "circle_centre": _uniform(-0.12, 0.12, 2 * n, g).view(n, 2),
            "circle_edge": _uniform(0.01, 0.2, n, g),
            "circle_grey": torch.where(_chance(0.7, n, g), _uniform(0, 25, n, g), _uniform(25, 140, n, g)),
            "saturation": strength(self.saturation).squeeze(1),
            "contrast": strength(self.contrast).squeeze(1),
            "brightness": strength(self.brightness).squeeze(1),
            "tint": strength(self.tint, 3),
            # Degradation: 1 = none; a factor of 3 keeps a third of the resolution.
            "downsample": torch.where(_chance(self.degrade, n, g), _uniform(1, 3, n, g), 1.0),
            "blur": torch.where(_chance(self.degrade / 2, n, g), _uniform(0.3, 1.5, n, g), 0.0),
            "jpeg_quality": torch.where(_chance(self.degrade / 2, n, g), _uniform(30, 95, n, g), 0.0),
        }

    def render(self, images: torch.Tensor, params: dict[str, torch.Tensor],
               size: tuple[int, int] | None = None) -> torch.Tensor:
        """The views ``params`` fix, of uint8 or float ``images``, at ``size`` (default: this
        augmentation's)."""
        views = self.geometry(images.float(), params, input_shape(size or self.size))
        return self.degradation(self.colour(self.circle(views, params), params), params)

    @staticmethod
    def geometry(images: torch.Tensor, p: dict[str, torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        n = len(images)
        # The sampled window's half-size in normalised coordinates: 1 is the whole frame.
        half_x = p["log_ratio"].exp().sqrt() / p["zoom"]
        half_y = (-p["log_ratio"]).exp().sqrt() / p["zoom"]
        cos, sin, flip = p["angle"].cos(), p["angle"].sin(), p["flip"]
        # The rotation acts on pixel distances, so the frame's aspect enters the normalised matrix.
        height, width = images.shape[-2:]
        aspect = width / height
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = cos * half_x * flip
        theta[:, 0, 1] = -sin * half_y / aspect
        theta[:, 1, 0] = sin * half_x * flip * aspect
        theta[:, 1, 1] = cos * half_y
        theta[:, 0, 2] = p["shift"][:, 0] * (1 - half_x).abs()
        theta[:, 1, 2] = p["shift"][:, 1] * (1 - half_y).abs()
        grid = F.affine_grid(theta, [n, 3, *size], align_corners=False)
        # Outside the photo (a zoomed-out view) comes skin: the colour of the photo's own border.
        ring = torch.cat([images[..., :2, :].flatten(2), images[..., -2:, :].flatten(2),
                          images[..., :, :2].flatten(2), images[..., :, -2:].flatten(2)], dim=2)
        fill = ring.median(dim=2).values.view(n, 3, 1, 1)
        sampled = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
        # The photo fades into that skin over a few pixels instead of ending at a hard edge.
        inside = torch.sigmoid((1 - grid.abs()) / 0.04).prod(dim=-1).unsqueeze(1)
        return sampled * inside + fill * (1 - inside)

    @staticmethod
    def circle(images: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
        n, _, height, width = images.shape
        ys = torch.linspace(-height / 2, height / 2, height).view(1, height, 1)
        xs = torch.linspace(-width / 2, width / 2, width).view(1, 1, width)
        half_diagonal = math.hypot(width, height) / 2
        centre = p["circle_centre"].view(n, 2, 1, 1) * torch.tensor([width, height]).view(1, 2, 1, 1)
        distance = ((xs - centre[:, 0]) ** 2 + (ys - centre[:, 1]) ** 2).sqrt()
        radius = (p["circle_radius"] * half_diagonal).view(n, 1, 1)
        edge = (p["circle_edge"].view(n, 1, 1) * radius).clamp(min=0.5)
        outside = torch.sigmoid((distance - radius) / edge).unsqueeze(1) * p["circle"].view(n, 1, 1, 1)
        return images * (1 - outside) + p["circle_grey"].view(n, 1, 1, 1) * outside

    @staticmethod
    def colour(images: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
        n = len(images)
        grey = images.mean(dim=1, keepdim=True)
        images = grey + (images - grey) * p["saturation"].view(n, 1, 1, 1)
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        images = mean + (images - mean) * p["contrast"].view(n, 1, 1, 1)
        images = images * p["brightness"].view(n, 1, 1, 1) * p["tint"].view(n, 3, 1, 1)
        return images.clamp(0, 255)

    @staticmethod
    def degradation(images: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
        out = images.clone()
        size = images.shape[-2:]
        degraded = (p["downsample"] > 1) | (p["blur"] > 0) | (p["jpeg_quality"] > 0)
        for index in torch.nonzero(degraded).flatten().tolist():
            image = images[index:index + 1]
            factor = float(p["downsample"][index])
            if factor > 1:
                small = [max(8, round(side / factor)) for side in size]
                image = F.interpolate(F.interpolate(image, size=small, mode="area"), size=size,
                                      mode="bilinear", align_corners=False)
            sigma = float(p["blur"][index])
            if sigma > 0:
                image = gaussian_blur(image, [2 * math.ceil(2 * sigma) + 1] * 2, [sigma, sigma])
            quality = int(p["jpeg_quality"][index])
            if quality > 0:
                encoded = encode_jpeg(image[0].round().clamp(0, 255).to(torch.uint8), quality=quality)
                image = decode_jpeg(encoded).float().unsqueeze(0)
            out[index] = image[0]
        return out.clamp(0, 255)


class ImageBatches:
    """Batches of (pixels on 0-255, labels) from a cached uint8 tensor.

    For training, ``sampler`` picks the images of each epoch and ``augment`` transforms each batch;
    without them the images go in order, unchanged, for evaluation. ``epoch(number, start)`` gives
    one epoch from its ``start``-th batch on, with the draws and views of an uninterrupted run.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                 sampler: torch.utils.data.Sampler | None = None,
                 augment: BatchAugment | None = None, seed: int = 0) -> None:
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.sampler, self.augment, self.seed = sampler, augment, seed

    def __len__(self) -> int:
        if self.sampler is not None:
            return len(self.sampler) // self.batch_size  # a short last batch would skew BatchNorm
        return math.ceil(len(self.labels) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.epoch(0)

    def order(self, number: int) -> torch.Tensor:
        """The image indices of epoch ``number``, in the order they are batched."""
        if self.sampler is None:
            return torch.arange(len(self.labels))
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(number)
        return torch.tensor(list(self.sampler))

    def batch_generator(self, number: int, batch: int) -> torch.Generator:
        """The randomness of batch ``batch`` of epoch ``number``, the same however the run resumed."""
        return torch.Generator().manual_seed((self.seed * 1_000_003 + number) * 100_003 + batch)

    def epoch(self, number: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.order(number)
        for batch in range(start, len(self)):
            indices = order[batch * self.batch_size:(batch + 1) * self.batch_size]
            images = self.images[indices]
            if self.augment is not None:
                images = self.augment(images, self.batch_generator(number, batch))
            yield images, self.labels[indices]


def to_model_input(batch: torch.Tensor, device: torch.device, colour_constancy: bool,
                   channels_last: bool, mean: tuple[float, ...] = MEAN,
                   std: tuple[float, ...] = STD) -> torch.Tensor:
    """A batch on 0-255 moved to ``device`` and turned into the served network input."""
    batch = model_input(batch.to(device, non_blocking=True), colour_constancy, mean, std)
    return batch.contiguous(memory_format=torch.channels_last) if channels_last else batch


def training_batches(samples: list[Sample], indices: list[int], augment: BatchAugment, batch_size: int,
                     epoch_samples: int, class_power: float, seed: int, source_balance: bool = True
                     ) -> ImageBatches:
    """Augmented training batches over ``samples[indices]`` at ``augment``'s size, drawn rebalanced
    by class and, with ``source_balance``, by source within a class (``training.sampling``);
    ``epoch_samples`` 0 draws as many per epoch as there are images."""
    chosen = [samples[i] for i in indices]
    images = decode_frames([s.path for s in chosen], train_cache_shape(augment.size), desc="decode train")
    labels = torch.tensor([s.label for s in chosen])
    sources = [s.source if source_balance else "" for s in chosen]
    sampler = EpochSampler(sampling_weights(labels.tolist(), sources, class_power), epoch_samples or len(chosen), seed)
    return ImageBatches(images, labels, batch_size, sampler, augment, seed=seed)


def evaluation_batches(samples: list[Sample], indices: list[int], size: tuple[int, int],
                       batch_size: int, desc: str = "decode") -> ImageBatches:
    """``samples[indices]`` in order, framed exactly as served."""
    images = decode_frames([samples[i].path for i in indices], size, desc=desc)
    return ImageBatches(images, torch.tensor([samples[i].label for i in indices]), batch_size)


def stored_views(params: dict[str, torch.Tensor], images: torch.Tensor,
                 views: torch.Tensor) -> dict[str, torch.Tensor]:
    """From parameters stored per (image, view), those of view ``views[i]`` of image ``images[i]``."""
    return {key: value[images, views] for key, value in params.items()}


class StoredViewBatches(ImageBatches):
    """Training batches whose views were drawn once and stored with the teacher's logits for each
    (``training.soft_targets``): every image drawn gets one of its stored views, rendered at this
    cache's size, and yields (pixels, labels, teacher logits)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                 sampler: torch.utils.data.Sampler, augment: BatchAugment,
                 params: dict[str, torch.Tensor], teacher_logits: torch.Tensor, seed: int = 0) -> None:
        super().__init__(images, labels, batch_size, sampler, augment, seed)
        self.params, self.teacher_logits = params, teacher_logits

    def epoch(self, number: int, start: int = 0) -> Iterator[tuple[torch.Tensor, ...]]:
        order = self.order(number)
        views = self.teacher_logits.shape[1]
        for batch in range(start, len(self)):
            indices = order[batch * self.batch_size:(batch + 1) * self.batch_size]
            view = torch.randint(views, (len(indices),), generator=self.batch_generator(number, batch))
            yield (self.augment.render(self.images[indices], stored_views(self.params, indices, view)),
                   self.labels[indices],
                   self.teacher_logits[indices, view].float())
