"""One training epoch and batched prediction; the loop in train.py strings them together."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from tqdm import tqdm

from handler.preprocessing import MEAN, STD, dihedral_views
from training.losses import mixed_logits
from training.mixed_precision import Precision
from training.presets import to_model_input


@dataclass
class EpochStats:
    loss: float
    images_per_second: float  # the whole step: data, teacher, student
    data_images_per_second: float  # the batch path alone (cache gather and augmentation)
    seconds: float


def mix(inputs: torch.Tensor, alpha: float, generator: torch.Generator
        ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mixup (Zhang et al. 2018): (mixed inputs, each one's partner index, weight of the first)."""
    weight = float(torch.distributions.Beta(alpha, alpha).sample()) if alpha > 0 else 1.0
    partner = torch.randperm(len(inputs), generator=generator).to(inputs.device)
    return weight * inputs + (1 - weight) * inputs[partner], partner, weight


def train_one_epoch(model: torch.nn.Module, batches: Iterable, criterion: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
                    precision: Precision, colour_constancy: bool, mixup: float = 0.0,
                    scaler: torch.amp.GradScaler | None = None, desc: str = "train",
                    seed: int = 0, after_step: Callable[[], None] | None = None) -> EpochStats:
    """Train for one pass over ``batches`` (stepping the scheduler per batch).

    Batches of three (pixels, labels, teacher logits) bring the teacher's logits for exactly the
    view the student sees (``training.soft_targets``), and a mixed pair is given the mixture of the
    two teacher distributions. ``after_step`` runs after every optimiser step (the weights' moving
    average, a periodic checkpoint).
    """
    device = precision.device
    scaler = scaler or precision.grad_scaler()
    generator = torch.Generator().manual_seed(seed)
    model.train()
    start, data_seconds, seen, total_loss = time.monotonic(), 0.0, 0, 0.0
    iterator = iter(tqdm(batches, desc=desc, leave=False, mininterval=10))
    while True:
        fetch = time.monotonic()
        try:
            images, labels, *stored = next(iterator)
        except StopIteration:
            break
        data_seconds += time.monotonic() - fetch
        inputs = to_model_input(images, device, colour_constancy, precision.channels_last)
        labels = labels.to(device, non_blocking=True)
        inputs, partner, weight = mix(inputs, mixup, generator)
        partners = labels[partner]
        teacher_logits = (mixed_logits(stored[0].to(device), partner, weight, criterion.temperature)
                          if stored else None)
        with precision.autocast():
            logits = model(inputs).float()
        loss = criterion(logits, labels, teacher_logits, partners, weight)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if after_step is not None:
            after_step()
        seen += len(labels)
        total_loss += loss.item() * len(labels)
    seconds = time.monotonic() - start
    return EpochStats(total_loss / max(seen, 1), seen / max(seconds, 1e-9),
                      seen / max(data_seconds, 1e-9), seconds)


@torch.no_grad()
def predict(model: torch.nn.Module, batches: Iterable, precision: Precision,
            colour_constancy: bool, dihedral: bool = False, mean: tuple[float, ...] = MEAN,
            std: tuple[float, ...] = STD) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) for every batch, as float32 CPU tensors; ``dihedral`` averages the logits of
    the eight flips and quarter turns of each image, as a release that ships test-time augmentation
    answers. ``mean``/``std`` are a release's own."""
    model.eval()
    all_logits, all_labels = [], []
    for images, labels in tqdm(batches, desc="predict", leave=False, mininterval=10):
        inputs = to_model_input(images, precision.device, colour_constancy, precision.channels_last,
                                mean, std)
        with precision.autocast():
            views = dihedral_views(inputs) if dihedral else [inputs]
            logits = torch.stack([model(view).float() for view in views]).mean(0)
        all_logits.append(logits.cpu())
        all_labels.append(labels)
    return torch.cat(all_logits), torch.cat(all_labels)
