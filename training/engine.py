"""One training epoch and batched prediction; the loop in train.py strings them together."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from tqdm import tqdm

from handler.preprocessing import MEAN, STD
from training.precision import Precision
from training.presets import to_model_input


@dataclass
class EpochStats:
    loss: float
    images_per_second: float  # the whole step: data, teacher, student
    data_images_per_second: float  # the batch path alone (cache gather and augmentation)
    seconds: float
    stopped_early: bool


def mix(inputs: torch.Tensor, labels: torch.Tensor, alpha: float,
        generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Mixup (Zhang et al. 2018): (mixed inputs, labels, partner labels, weight of ``labels``)."""
    weight = float(torch.distributions.Beta(alpha, alpha).sample()) if alpha > 0 else 1.0
    partner = torch.randperm(len(labels), generator=generator).to(labels.device)
    return weight * inputs + (1 - weight) * inputs[partner], labels, labels[partner], weight


def train_one_epoch(model: torch.nn.Module, batches: Iterable, criterion: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
                    precision: Precision, colour_constancy: bool, teacher: torch.nn.Module | None = None,
                    mixup: float = 0.0, deadline: float | None = None,
                    scaler: torch.amp.GradScaler | None = None, desc: str = "train",
                    seed: int = 0, after_step: Callable[[], None] | None = None) -> EpochStats:
    """Train for one pass over ``batches`` (stepping the scheduler per batch).

    The teacher sees exactly the student's view, mixup included ("consistent" distillation, Beyer et
    al. 2022). ``deadline`` (a ``time.monotonic()`` value) ends the epoch early so that a time-boxed
    run still gets to evaluate and ship. ``after_step`` runs after every optimiser step (the
    weights' moving average, a periodic checkpoint).
    """
    device = precision.device
    scaler = scaler or precision.grad_scaler()
    generator = torch.Generator().manual_seed(seed)
    model.train()
    start, data_seconds, seen, total_loss, stopped = time.monotonic(), 0.0, 0, 0.0, False
    iterator = iter(tqdm(batches, desc=desc, leave=False, mininterval=10))
    while True:
        fetch = time.monotonic()
        try:
            images, labels = next(iterator)
        except StopIteration:
            break
        data_seconds += time.monotonic() - fetch
        inputs = to_model_input(images, device, colour_constancy, precision.channels_last)
        labels = labels.to(device, non_blocking=True)
        inputs, labels, partners, weight = mix(inputs, labels, mixup, generator)
        with precision.autocast():
            teacher_logits = None
            if teacher is not None:
                with torch.no_grad():
                    teacher_logits = teacher(inputs).float()
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
        if deadline is not None and time.monotonic() > deadline:
            stopped = True
            break
    seconds = time.monotonic() - start
    return EpochStats(total_loss / max(seen, 1), seen / max(seconds, 1e-9),
                      seen / max(data_seconds, 1e-9), seconds, stopped)


@torch.no_grad()
def predict(model: torch.nn.Module, batches: Iterable, precision: Precision,
            colour_constancy: bool, flip: bool = False, mean: tuple[float, ...] = MEAN,
            std: tuple[float, ...] = STD) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) for every batch, as float32 CPU tensors; ``flip`` averages the logits of the
    image and its mirror image (test-time augmentation). ``mean``/``std`` are a release's own."""
    model.eval()
    all_logits, all_labels = [], []
    for images, labels in tqdm(batches, desc="predict", leave=False, mininterval=10):
        inputs = to_model_input(images, precision.device, colour_constancy, precision.channels_last,
                                mean, std)
        with precision.autocast():
            logits = model(inputs).float()
            if flip:
                logits = (logits + model(inputs.flip(-1)).float()) / 2
        all_logits.append(logits.cpu())
        all_labels.append(labels)
    return torch.cat(all_logits), torch.cat(all_labels)
