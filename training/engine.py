"""One training epoch and batched prediction; the loop in train.py strings them together."""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from tqdm import tqdm

from training.presets import to_model_input


@dataclass
class EpochStats:
    loss: float
    images_per_second: float
    seconds: float
    stopped_early: bool


def train_one_epoch(model: torch.nn.Module, loader: torch.utils.data.DataLoader,
                    criterion: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, device: torch.device,
                    teacher: torch.nn.Module | None = None, deadline: float | None = None,
                    scaler: torch.amp.GradScaler | None = None, desc: str = "train") -> EpochStats:
    """Train for one pass over ``loader`` (stepping the scheduler per batch).

    ``teacher`` adds distillation targets; ``deadline`` (a ``time.monotonic()`` value) ends the epoch
    early so that a time-boxed run still gets to evaluate and ship. On CUDA the forward pass runs in
    float16 autocast, and ``scaler`` (kept across epochs by the caller) scales the loss so small
    gradients do not underflow.
    """
    cuda = device.type == "cuda"
    scaler = scaler or torch.amp.GradScaler(device.type, enabled=cuda)
    model.train()
    start, seen, total_loss, stopped = time.monotonic(), 0, 0.0, False
    bar = tqdm(loader, desc=desc, leave=False, mininterval=10)
    for images, labels in bar:
        inputs = to_model_input(images, device, channels_last=cuda)
        labels = labels.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=cuda):
            teacher_logits = None
            if teacher is not None:
                with torch.no_grad():
                    teacher_logits = teacher(inputs).float()
            loss = criterion(model(inputs).float(), labels, teacher_logits)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        seen += len(labels)
        total_loss += loss.item() * len(labels)
        bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}", refresh=False)
        if deadline is not None and time.monotonic() > deadline:
            stopped = True
            break
    seconds = time.monotonic() - start
    return EpochStats(total_loss / max(seen, 1), seen / max(seconds, 1e-9), seconds, stopped)


@torch.no_grad()
def predict(model: torch.nn.Module, loader: torch.utils.data.DataLoader,
            device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) for every batch of ``loader``, as float32 CPU tensors."""
    cuda = device.type == "cuda"
    model.eval()
    all_logits, all_labels = [], []
    for images, labels in tqdm(loader, desc="predict", leave=False, mininterval=10):
        with torch.autocast(device.type, dtype=torch.float16, enabled=cuda):
            logits = model(to_model_input(images, device, channels_last=cuda))
        all_logits.append(logits.float().cpu())
        all_labels.append(labels)
    return torch.cat(all_logits), torch.cat(all_labels)
